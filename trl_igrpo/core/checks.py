"""Checks that stop a run before it trains on garbage: empty data, prompts that cannot fit, unscorable rewards.

Pure functions and one small counter, shared by every trainer of the package; each error names the problem and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import TrainerCallback

from ..rewards.aggregation import unscorable_rows

__all__ = [
    "NoOptimizerStepCallback",
    "UnscorableBatchCounter",
    "UnscorableRewardsError",
    "check_context_budget",
    "check_dataset_fills_a_batch",
    "check_generation_settings",
    "model_context_length",
]


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


def model_context_length(model, override: int | None = None) -> int | None:
    """The number of positions the policy can attend to: ``override`` if given, else the model config's
    ``max_position_embeddings`` (``None`` when the architecture has no such limit, e.g. pure state-space models)."""
    if override is not None:
        return override
    config = getattr(model, "config", None)
    length = getattr(config, "max_position_embeddings", None) if config is not None else None
    return int(length) if isinstance(length, int) and length > 0 else None


def check_context_budget(
    context_length: int | None,
    prompt_length: int,
    completion_length: int,
    draft_length: int = 0,
    where: str = "the model",
    completion_name: str = "max_completion_length",
    fix: str = "",
) -> None:
    """Raise a ``ValueError`` naming every term when ``prompt + draft + completion > context_length``.

    Beyond the context a model either fails or (RoPE models) silently produces garbage, and vLLM rejects the request.
    iGRPO's Stage-2 prompt is the original prompt plus a Stage-1 draft, so its budget is
    ``len(prompt) + max_draft_length + max_completion_length`` (iGRPO paper §3.2.2). ``context_length=None`` skips.
    """
    if context_length is None:
        return
    required = prompt_length + draft_length + completion_length
    if required <= context_length:
        return
    parts = f"prompt {prompt_length}"
    if draft_length:
        parts += f" + draft {draft_length} (max_draft_length)"
    parts += f" + completion {completion_length} ({completion_name})"
    raise ValueError(
        f"{where} holds {context_length} tokens but a rollout needs {parts} = {required}. "
        + (fix or "Shorten the prompts, or lower max_completion_length (and, for iGRPO, max_draft_length).")
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
