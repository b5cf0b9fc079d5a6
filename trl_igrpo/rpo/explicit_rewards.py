"""Where RPO's explicit rewards come from: dataset columns, TRL reward functions or sequence-classification models.

Offline data is checked (or scored) once, at construction, and stored as the internal ``rpo_rewards`` column; a
missing or non-finite reward fails before any compute, naming the column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from datasets import IterableDataset
from trl.data_utils import extract_prompt

from ..core.checks import check_reward_output
from ..rewards.aggregation import weighted_reward_sum
from .collator import RESPONSES_IDS_KEY, REWARDS_KEY
from .config import RPOConfig

__all__ = ["attach_rewards", "is_k_response", "load_reward_funcs", "score_completions"]


def load_reward_funcs(
    reward_funcs: Callable | torch.nn.Module | str | Sequence | None,
    reward_processing_classes: Any | Sequence | None,
) -> tuple[list, list]:
    """Normalise reward functions: a string is a local path to an ``AutoModelForSequenceClassification`` reward model.

    Returns ``(funcs, processing_classes)`` with one processing class (or ``None``) per function.
    """
    if reward_funcs is None:
        return [], []
    funcs = list(reward_funcs) if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
    processing: list[Any]
    if reward_processing_classes is None:
        processing = [None] * len(funcs)
    elif isinstance(reward_processing_classes, (list, tuple)):
        processing = list(reward_processing_classes)
    else:
        processing = [reward_processing_classes]
    if len(processing) != len(funcs):
        raise ValueError(f"Got {len(processing)} reward_processing_classes for {len(funcs)} reward functions.")
    for index, func in enumerate(funcs):
        if isinstance(func, str):
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            funcs[index] = AutoModelForSequenceClassification.from_pretrained(
                func, num_labels=1, trust_remote_code=False, use_safetensors=True
            ).eval()
            if processing[index] is None:
                processing[index] = AutoTokenizer.from_pretrained(func)
        if isinstance(funcs[index], torch.nn.Module):
            tokenizer = processing[index]
            if tokenizer is None:
                from transformers import AutoTokenizer

                tokenizer = processing[index] = AutoTokenizer.from_pretrained(funcs[index].config._name_or_path)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
        elif not callable(funcs[index]):
            raise TypeError(f"reward_funcs[{index}] must be a callable, an nn.Module or a path, got {type(func)}.")
    return funcs, processing


def is_k_response(columns: Sequence[str] | None, args: RPOConfig) -> bool:
    """True for k-response data (a ``responses`` column, or its tokenised form), False for pairwise data."""
    return columns is not None and (args.responses_column in columns or RESPONSES_IDS_KEY in columns)


def _bad_reward_rows(values: Sequence) -> list[int]:
    return [
        index
        for index, value in enumerate(values)
        if value is None or not isinstance(value, (int, float)) or not math.isfinite(value)
    ]


def attach_rewards(dataset, args: RPOConfig, name: str, reward_funcs, reward_processing_classes, reward_weights):
    """Validate or compute the explicit rewards and store them as the internal ``rpo_rewards`` list column.

    Fails before any training compute, naming the offending column.
    """
    if dataset is None:
        return None
    if isinstance(dataset, dict):
        return {
            key: attach_rewards(
                value, args, f"{name}[{key!r}]", reward_funcs, reward_processing_classes, reward_weights
            )
            for key, value in dataset.items()
        }
    columns = dataset.column_names
    if isinstance(dataset, IterableDataset):
        # Streaming data cannot be scanned up front; the collator checks every batch instead.
        if columns is None or REWARDS_KEY in columns:
            return dataset
        if is_k_response(columns, args):
            return dataset.map(lambda ex: {REWARDS_KEY: ex[args.rewards_column]})
        return dataset.map(lambda ex: {REWARDS_KEY: [ex[args.chosen_reward_column], ex[args.rejected_reward_column]]})
    if REWARDS_KEY in columns:
        return dataset
    scoring = (reward_funcs, reward_processing_classes, reward_weights)
    if is_k_response(columns, args):
        rewards = _k_response_rewards(dataset, args, name, *scoring)
    else:
        dataset, rewards = _pairwise_rewards(dataset, args, name, *scoring)
    return dataset.add_column(REWARDS_KEY, [[float(value) for value in row] for row in rewards])


def _other_columns(dataset, skip) -> dict:
    """The dataset's columns except ``skip``, passed on to reward functions (e.g. ``solution``)."""
    return {column: dataset[column] for column in dataset.column_names if column not in skip}


def _k_response_rewards(dataset, args: RPOConfig, name: str, reward_funcs, reward_processing_classes, reward_weights):
    """Per row, the k rewards of a k-response dataset: the checked ``rewards_column``, or the responses scored by the
    reward functions."""
    columns, responses = dataset.column_names, dataset[args.responses_column]
    sizes = {len(item) for item in responses}
    if len(sizes) != 1 or min(sizes) < 2:
        raise ValueError(
            f"{name}: every row of column {args.responses_column!r} must hold the same number k >= 2 of responses; "
            f"found sizes {sorted(sizes)}."
        )
    if args.rewards_column in columns:
        rewards = dataset[args.rewards_column]
        for row, (items, values) in enumerate(zip(responses, rewards, strict=True)):
            if values is None or len(values) != len(items) or _bad_reward_rows(values):
                raise ValueError(
                    f"{name}: column {args.rewards_column!r} row {row} must hold {len(items)} finite rewards "
                    f"(one per response in {args.responses_column!r}), got {values!r}."
                )
        return rewards
    if not reward_funcs:
        raise ValueError(
            f"{name} has no reward column {args.rewards_column!r} (k-response data in {args.responses_column!r}). "
            "Add it, set `rewards_column`, or pass `reward_funcs` to score the responses."
        )
    if "prompt" not in columns:
        raise ValueError(f"{name}: k-response data needs a 'prompt' column to be scored by reward functions.")
    k = len(responses[0])
    prompts = [prompt for prompt in dataset["prompt"] for _ in range(k)]
    flat = [item for items in responses for item in items]
    others = _other_columns(dataset, {"prompt", args.responses_column})
    others = {key: [value for value in values for _ in range(k)] for key, values in others.items()}
    scores = score_completions(reward_funcs, prompts, flat, reward_processing_classes, reward_weights, **others)
    _raise_unscored(scores, name, args.rewards_column)
    return [scores[i * k : (i + 1) * k] for i in range(len(dataset))]


def _pairwise_rewards(dataset, args: RPOConfig, name: str, reward_funcs, reward_processing_classes, reward_weights):
    """``(dataset, [(chosen reward, rejected reward), ...])`` of a pairwise dataset: the checked reward columns, the
    completions scored by the reward functions (after extracting a missing ``prompt``), or the configured defaults."""
    columns = dataset.column_names
    if "chosen" not in columns or "rejected" not in columns:
        raise ValueError(
            f"{name} must be pairwise ('chosen', 'rejected' and reward columns) or k-response "
            f"({args.responses_column!r}, {args.rewards_column!r}); got columns {columns}."
        )
    reward_columns = (args.chosen_reward_column, args.rejected_reward_column)
    missing = [column for column in reward_columns if column not in columns]
    if not missing:
        for column in reward_columns:
            bad = _bad_reward_rows(dataset[column])
            if bad:
                raise ValueError(
                    f"{name}: reward column {column!r} has missing or non-finite values (None/NaN/inf) in rows "
                    f"{bad[:10]}{'...' if len(bad) > 10 else ''}. Fix or drop those rows."
                )
        return dataset, list(zip(dataset[reward_columns[0]], dataset[reward_columns[1]], strict=True))
    if reward_funcs:
        if "prompt" not in columns:
            dataset = dataset.map(extract_prompt)
        others = _other_columns(dataset, {"prompt", "chosen", "rejected", *reward_columns})
        scored = []
        for completion_column, reward_column in zip(("chosen", "rejected"), reward_columns, strict=True):
            scores = score_completions(
                reward_funcs,
                dataset["prompt"],
                dataset[completion_column],
                reward_processing_classes,
                reward_weights,
                **others,
            )
            _raise_unscored(scores, name, reward_column)
            scored.append(scores)
        return dataset, list(zip(*scored, strict=True))
    if args.default_chosen_reward is not None and args.default_rejected_reward is not None:
        return dataset, [(args.default_chosen_reward, args.default_rejected_reward)] * len(dataset)
    raise ValueError(
        f"{name} has no reward column {missing[0]!r} (expected {list(reward_columns)}). Add the column, set "
        "`chosen_reward_column`/`rejected_reward_column`, pass `reward_funcs` to score the completions, or set "
        "`default_chosen_reward`/`default_rejected_reward` (NeMo-Aligner's 1.0/0.0 fallback)."
    )


def _raise_unscored(scores: list[float], name: str, column: str) -> None:
    bad = _bad_reward_rows(scores)
    if bad:
        raise ValueError(f"{name}: reward functions left {column!r} unscored (None/NaN) for rows {bad[:10]}.")


def _reward_model_scores(model, tokenizer, prompts: Sequence, completions: Sequence, batch_size: int) -> list[float]:
    """Score with a sequence-classification reward model (``logits[:, 0]``), chat-templating conversational rows."""
    from trl.data_utils import apply_chat_template, is_conversational

    if is_conversational({"prompt": prompts[0]}):
        texts = [apply_chat_template({"messages": p + c}, tokenizer)["text"] for p, c in zip(prompts, completions)]
    else:
        texts = [p + c for p, c in zip(prompts, completions, strict=True)]
    device = next(model.parameters()).device
    scores = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                padding_side="right",
                add_special_tokens=False,
            ).to(device)
            scores.extend(model(**batch).logits[:, 0].float().tolist())
    return scores


def score_completions(
    reward_funcs: Sequence[Callable | torch.nn.Module],
    prompts: Sequence,
    completions: Sequence,
    reward_processing_classes: Sequence | None = None,
    reward_weights: Sequence[float] | None = None,
    batch_size: int = 16,
    **columns: Sequence,
) -> list[float]:
    """Weighted sum of rewards for each (prompt, completion), in GRPO's convention.

    Reward functions are called as ``f(prompts=..., completions=..., **columns)`` (the other dataset columns, e.g.
    ``solution``) and may return ``None`` (ignored for that row). ``nn.Module`` entries are sequence-classification
    reward models scored on the chat-templated text with the matching ``reward_processing_classes`` entry. A row that
    every function left unscored is NaN.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"Got {len(prompts)} prompts for {len(completions)} completions.")
    weights = list(reward_weights) if reward_weights is not None else [1.0] * len(reward_funcs)
    if len(weights) != len(reward_funcs):
        raise ValueError(f"Got {len(weights)} reward weights for {len(reward_funcs)} reward functions.")
    processing = list(reward_processing_classes or [None] * len(reward_funcs))
    per_func = []
    for func, tokenizer in zip(reward_funcs, processing, strict=True):
        values: Sequence[float | None]
        if isinstance(func, torch.nn.Module):
            if tokenizer is None:
                raise ValueError(f"Reward model {type(func).__name__} needs a matching `reward_processing_classes`.")
            values = _reward_model_scores(func, tokenizer, prompts, completions, batch_size)
        else:
            output = func(
                prompts=list(prompts), completions=list(completions), **{k: list(v) for k, v in columns.items()}
            )
            name = getattr(func, "__name__", type(func).__name__)
            values = check_reward_output(output, name, len(prompts))  # a string or a list per row: named error
        per_func.append([math.nan if value is None else float(value) for value in values])
    matrix = torch.tensor(per_func, dtype=torch.float64).T  # (rows, funcs)
    return weighted_reward_sum(matrix, weights).tolist()
