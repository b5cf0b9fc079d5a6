"""Checks that stop a run before it trains on garbage: empty data, generation settings TRL cannot use, unscorable
rewards, reward functions that return something other than one number per completion, data that a reward function
refuses (prompts that cannot fit the context: :mod:`trl_igrpo.utils.context`).

Pure functions and one small counter, shared by every trainer of the package; each error names the problem and the fix.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from transformers import TrainerCallback

from ..rewards.aggregation import unscorable_rows

__all__ = [
    "REWARD_DATA_CHECK_ROWS",
    "NoOptimizerStepCallback",
    "RewardOutputError",
    "UnscorableBatchCounter",
    "UnscorableRewardsError",
    "check_dataset_fills_a_batch",
    "check_generation_settings",
    "check_reward_output",
    "checked_reward_funcs",
    "first_rows",
    "run_reward_data_checks",
]

#: Rows of the training set handed to the reward functions' ``check_dataset`` hooks when a trainer is built.
REWARD_DATA_CHECK_ROWS = 256


def check_dataset_fills_a_batch(dataset, prompts_per_batch: int, name: str = "train_dataset") -> None:
    """Raise when a map-style ``dataset`` is empty or holds fewer prompts than one generation batch draws.

    TRL's samplers drop an incomplete last batch, so such a dataset gives zero optimizer steps and exit code 0.
    Iterable datasets (no ``len``) are checked at the end of training instead (see :class:`NoOptimizerStepCallback`).
    """
    if dataset is None or not hasattr(dataset, "__len__") or isinstance(getattr(dataset, "column_names", None), dict):
        return
    rows = len(dataset)
    if rows == 0:
        raise ValueError(f"{name} is empty (0 rows): there is nothing to train on. Check the dataset path and split.")
    if rows < prompts_per_batch:
        raise ValueError(
            f"{name} has {rows} rows but one generation batch draws {prompts_per_batch} distinct prompts "
            "(generation_batch_size / num_generations), so the sampler would yield no batch and training would end "
            "after 0 steps. Use more data or lower per_device_train_batch_size / steps_per_generation."
        )


def check_generation_settings(generation_config) -> None:
    """Refuse transformers-generation settings TRL 1.16's GRPO rollout cannot use, at construction instead of inside
    the first step. ``generation_config`` is what ``generate`` will run with (``generation_kwargs`` plus the model's
    own ``generation_config``, see :func:`~trl_igrpo.core.prefill.effective_generation_config`); None skips."""
    if generation_config is None:
        return
    sequences = generation_config.num_return_sequences
    if sequences is not None and sequences > 1:
        raise ValueError(
            f"num_return_sequences={sequences} (from generation_kwargs or the model's generation_config) cannot be "
            "used for GRPO rollouts: TRL samples one completion per prompt row (num_generations rows per prompt), and "
            "extra sequences per row end in a tensor size error inside the first step. Remove it; num_generations "
            "sets the completions per prompt."
        )
    if generation_config.stop_strings:
        raise ValueError(
            f"stop_strings={generation_config.stop_strings!r} (from generation_kwargs or the model's "
            "generation_config) cannot be used with transformers generation in TRL 1.16: its rollout does not pass "
            "the tokenizer that `generate` needs for stop strings (a ValueError inside the first step), and it ends "
            "completions only at EOS tokens. Add the token ids that should end a completion to the model's "
            "generation_config.eos_token_id (TRL ends completions at each of them) instead."
        )


class UnscorableRewardsError(RuntimeError):
    """Every reward function returned None/NaN for every completion of a batch, more often than allowed."""


class UnscorableBatchCounter:
    """Counts reward batches in which no completion got any score, and raises past ``limit`` of them.

    GRPO turns an unscorable completion into advantage 0; a whole unscorable batch is a step with no learning signal
    (loss 0), which usually means a broken reward (a judge that is down, a missing column, a parser that never
    matches). ``limit`` is the number of such batches tolerated (``max_unscorable_reward_batches``; 0 raises at once).
    """

    def __init__(self, limit: int = 0):
        if limit < 0:
            raise ValueError(f"max_unscorable_reward_batches must be >= 0, got {limit}.")
        self.limit = limit
        self.count = 0

    def check(self, rewards_per_func: torch.Tensor, reward_func_names: Iterable[str], stage: str = "") -> float:
        """Record one gathered ``(rows, funcs)`` reward matrix; return the fraction of unscorable rows."""
        if rewards_per_func.numel() == 0:
            return 0.0
        unscorable = unscorable_rows(rewards_per_func)
        fraction = unscorable.float().mean().item()
        if fraction < 1.0:
            return fraction
        self.count += 1
        if self.count > self.limit:
            names = ", ".join(reward_func_names)
            where = f" ({stage})" if stage else ""
            raise UnscorableRewardsError(
                f"Every reward function ({names}) returned None or NaN for all {rewards_per_func.size(0)} completions "
                f"of a batch{where}: this step would train on nothing (advantage 0, loss 0). This is unscorable batch "
                f"{self.count}; max_unscorable_reward_batches={self.limit}. Check that the reward functions can read "
                "their dataset columns (e.g. `solution`) and that any judge endpoint is up, or raise "
                "max_unscorable_reward_batches to tolerate a few such batches."
            )
        return fraction


class NoOptimizerStepCallback(TrainerCallback):
    """Fail a run that ends without a single optimizer step (e.g. an empty or too small iterable dataset)."""

    def on_train_end(self, args, state, control, **kwargs):
        """Raise when training ended at step 0 although steps were requested."""
        if state.global_step == 0 and state.max_steps != 0:
            raise RuntimeError(
                "Training ended without a single optimizer step: the training data produced no complete batch. "
                "Check that the dataset is not empty and holds at least one generation batch of prompts "
                "(generation_batch_size / num_generations)."
            )


# ----------------------------------------------------------------------------------------------------------------------
# Reward functions: what they return, and the data they are given.


class RewardOutputError(TypeError):
    """A reward function returned something other than one number (or None) per completion."""


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{text[:80]}{'...' if len(text) > 80 else ''} ({type(value).__name__})"


def check_reward_output(values: Any, name: str, expected: int) -> list[float | None]:
    """``values`` as TRL needs them, a list of ``expected`` floats or ``None``, or a :class:`RewardOutputError` naming
    the function ``name``, the offending entry and the fix.

    Accepted entries: ``None`` (no opinion), ``bool``, ints, floats (NaN counts as ``None``), NumPy scalars and 0-d
    tensors; a 1-D tensor or array stands for a list. Without this check TRL fails deep inside ``torch.tensor`` with
    "too many dimensions 'str'" or an ``expand`` error that names no function.
    """
    contract = f"a reward function must return one float (or None) per completion, a list of {expected} here"
    if isinstance(values, (torch.Tensor,)) or type(values).__module__ == "numpy":
        if getattr(values, "ndim", 1) != 1:
            raise RewardOutputError(
                f"Reward function '{name}' returned an array of shape {tuple(values.shape)}; {contract}."
            )
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise RewardOutputError(f"Reward function '{name}' returned {_describe(values)}; {contract}.")
    if len(values) != expected:
        raise RewardOutputError(
            f"Reward function '{name}' returned {len(values)} values for {expected} completions; {contract}."
        )
    checked: list[float | None] = []
    for index, value in enumerate(values):
        if (isinstance(value, torch.Tensor) or type(value).__module__ == "numpy") and getattr(value, "ndim", 1) == 0:
            value = value.item()  # a 0-d tensor or a NumPy scalar
        if value is None or (isinstance(value, numbers.Real) and math.isnan(float(value))):
            checked.append(None)
        elif isinstance(value, numbers.Real):
            checked.append(float(value))
        else:
            hint = (
                "a list per completion: return one number each (e.g. their mean)"
                if isinstance(value, (list, tuple, dict, torch.Tensor))
                else "convert it to a float (e.g. float(x), or map labels to numbers)"
                if isinstance(value, (str, bytes))
                else "return a float or None"
            )
            raise RewardOutputError(
                f"Reward function '{name}' returned {_describe(value)} for completion {index}; {contract}: {hint}."
            )
    return checked


def _checked(func: Callable, name: str) -> Callable:
    """``func`` whose outputs go through :func:`check_reward_output`; async stays async (TRL awaits it then)."""
    from trl.trainer.utils import is_async_callable

    if is_async_callable(func):

        async def checked_async(**kwargs):
            return check_reward_output(await func(**kwargs), name, len(kwargs["completions"]))

        checked_async.__name__ = name
        return checked_async

    def checked(**kwargs):
        return check_reward_output(func(**kwargs), name, len(kwargs["completions"]))

    checked.__name__ = name
    return checked


@contextlib.contextmanager
def checked_reward_funcs(trainer):
    """Inside the block, ``trainer.reward_funcs`` are wrappers that validate each output (reward models excepted).

    The trainer's own list is restored afterwards, so everything else (Hub cards, pickling, ``check_dataset`` hooks)
    sees the user's functions.
    """
    original = trainer.reward_funcs
    trainer.reward_funcs = [
        func if isinstance(func, torch.nn.Module) else _checked(func, name)
        for func, name in zip(original, trainer.reward_func_names)
    ]
    try:
        yield
    finally:
        trainer.reward_funcs = original


def first_rows(dataset, limit: int) -> list[dict]:
    """The first ``limit`` rows of a map-style or iterable dataset as dicts (``[]`` for anything else)."""
    if dataset is None:
        return []
    if hasattr(dataset, "select") and hasattr(dataset, "__len__"):
        rows = dataset.select(range(min(len(dataset), limit))).to_list()
    elif hasattr(dataset, "__iter__") and not hasattr(dataset, "__len__"):  # IterableDataset
        rows = list(itertools.islice(iter(dataset), limit))
    elif hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        rows = [dataset[i] for i in range(min(len(dataset), limit))]
    else:
        return []
    return rows if all(isinstance(row, dict) for row in rows) else []


def run_reward_data_checks(reward_funcs: Sequence[Any], dataset, **context: Any) -> None:
    """Call ``func.check_dataset(rows, **context)`` for every reward function that defines it, with the first
    :data:`REWARD_DATA_CHECK_ROWS` rows of ``dataset``: a reward refuses data it cannot score (unreadable gold
    answers, contradicting reasoning modes) before any compute. ``context`` carries e.g. ``chat_template_kwargs``."""
    hooks = []
    for func in reward_funcs:
        hook = getattr(func, "check_dataset", None)
        while hook is None and isinstance(func, functools.partial):
            func = func.func
            hook = getattr(func, "check_dataset", None)
        if callable(hook) and not isinstance(func, torch.nn.Module):
            hooks.append(hook)
    if not hooks:
        return
    rows = first_rows(dataset, REWARD_DATA_CHECK_ROWS)
    if rows:
        for hook in hooks:
            hook(rows, **context)
