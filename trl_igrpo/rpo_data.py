"""Data helpers for reward-aware preference optimization (RPO).

- A built-in synthetic arithmetic task with *graded* rewards (pairwise, k-response and prompt-only forms), so the
  examples and tests run offline and reward gaps actually vary (the point of RPO over DPO).
- :func:`synthetic_answer_reward`, a TRL-style reward function (``prompts``, ``completions``, ``**kwargs``).
- :func:`score_completions`: score prompt/completion pairs with TRL reward functions and/or sequence-classification
  reward models, weighted and summed as in GRPO, for datasets that lack reward columns.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = [
    "build_synthetic_preference_dataset",
    "build_synthetic_prompt_dataset",
    "score_completions",
    "synthetic_answer_reward",
    "synthetic_digit_reward",
]

_NUMBER = re.compile(r"-?\d+")
# Answer offsets from the truth for the candidate responses: graded from correct to far off.
_OFFSETS = (0, 1, 3, 10)


def _content(completion: Any) -> str:
    """Text of a plain or conversational (``[{"role": "assistant", "content": ...}]``) completion."""
    if isinstance(completion, list):
        return "".join(str(message.get("content", "")) for message in completion)
    return str(completion)


def synthetic_answer_reward(completions: list, solution: list, **kwargs) -> list[float]:
    """Graded reward for the synthetic arithmetic task: ``-min(|pred - solution|, 10) / 10``; -1 without a number.

    The prediction is the last integer in the completion. Works with plain and conversational completions.
    """
    rewards = []
    for completion, gold in zip(completions, solution, strict=True):
        numbers = _NUMBER.findall(_content(completion))
        if not numbers:
            rewards.append(-1.0)
            continue
        rewards.append(-min(abs(int(numbers[-1]) - int(gold)), 10) / 10.0)
    return rewards


def synthetic_digit_reward(completions: list, **kwargs) -> list[float]:
    """Shaping reward: fraction of digit characters in the completion (0 for an empty one).

    Varies even for a random untrained model, so online RPO on the tiny test model sees non-zero reward gaps.
    """
    rewards = []
    for completion in completions:
        text = _content(completion)
        rewards.append(sum(char.isdigit() for char in text) / len(text) if text else 0.0)
    return rewards


def _problems(num_prompts: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    problems = []
    for _ in range(num_prompts):
        a, b = rng.randint(1, 49), rng.randint(1, 49)
        problems.append((f"What is {a} + {b}?", a + b))
    return problems


def _wrap(prompt: str, completion: str, conversational: bool):
    if conversational:
        return [{"role": "user", "content": prompt}], [{"role": "assistant", "content": completion}]
    return prompt, completion


def build_synthetic_preference_dataset(
    num_prompts: int = 32,
    num_responses: int = 2,
    seed: int = 0,
    conversational: bool = True,
    with_rewards: bool = True,
):
    """Synthetic preference data with graded rewards from :func:`synthetic_answer_reward`.

    ``num_responses == 2`` gives the pairwise format (``prompt``, ``chosen``, ``rejected``, ``chosen_reward``,
    ``rejected_reward``, ``solution``), chosen being the better answer. ``num_responses > 2`` gives the k-response format
    (``prompt``, ``responses``, ``rewards``, ``solution``). ``with_rewards=False`` drops the reward columns (for the
    reward-function path). Deterministic for a seed.
    """
    from datasets import Dataset

    if not 2 <= num_responses <= len(_OFFSETS):
        raise ValueError(f"`num_responses` must be in [2, {len(_OFFSETS)}], got {num_responses}.")
    rng = random.Random(seed + 1)
    rows = []
    for question, answer in _problems(num_prompts, seed):
        offsets = rng.sample(_OFFSETS, num_responses)
        texts = [f"The answer is \\boxed{{{answer + rng.choice((-1, 1)) * offset}}}." for offset in offsets]
        rewards = synthetic_answer_reward(texts, [answer] * len(texts))
        pairs = [_wrap(question, text, conversational) for text in texts]
        prompt = pairs[0][0]
        completions = [completion for _, completion in pairs]
        if num_responses == 2:
            best, worst = (0, 1) if rewards[0] >= rewards[1] else (1, 0)
            row = {"prompt": prompt, "chosen": completions[best], "rejected": completions[worst]}
            if with_rewards:
                row["chosen_reward"], row["rejected_reward"] = rewards[best], rewards[worst]
        else:
            row = {"prompt": prompt, "responses": completions}
            if with_rewards:
                row["rewards"] = rewards
        row["solution"] = str(answer)
        rows.append(row)
    return Dataset.from_list(rows)


def build_synthetic_prompt_dataset(num_prompts: int = 32, seed: int = 0, conversational: bool = True):
    """Prompt-only synthetic arithmetic data (``prompt``, ``solution``) for online RPO."""
    from datasets import Dataset

    rows = []
    for question, answer in _problems(num_prompts, seed):
        prompt = [{"role": "user", "content": question}] if conversational else question
        rows.append({"prompt": prompt, "solution": str(answer)})
    return Dataset.from_list(rows)


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
        if isinstance(func, torch.nn.Module):
            if tokenizer is None:
                raise ValueError(f"Reward model {type(func).__name__} needs a matching `reward_processing_classes`.")
            values = _reward_model_scores(func, tokenizer, prompts, completions, batch_size)
        else:
            values = func(
                prompts=list(prompts), completions=list(completions), **{k: list(v) for k, v in columns.items()}
            )
            name = getattr(func, "__name__", type(func).__name__)
            if len(values) != len(prompts):
                raise ValueError(f"Reward function {name!r} returned {len(values)} rewards for {len(prompts)} rows.")
        per_func.append([math.nan if value is None else float(value) for value in values])
    totals = []
    for row in zip(*per_func, strict=True):
        scored = [(value, weight) for value, weight in zip(row, weights, strict=True) if not math.isnan(value)]
        totals.append(sum(value * weight for value, weight in scored) if scored else math.nan)
    return totals
