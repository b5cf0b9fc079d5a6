"""A synthetic arithmetic preference task with *graded* rewards (pairwise, k-response and prompt-only forms), so the
RPO examples and tests run offline and reward gaps actually vary (the point of RPO over DPO)."""

from __future__ import annotations

import random
import re

from ..rewards._text import completion_text

__all__ = [
    "build_synthetic_preference_dataset",
    "build_synthetic_prompt_dataset",
    "synthetic_answer_reward",
    "synthetic_digit_reward",
]

_NUMBER = re.compile(r"-?\d+")

# Answer offsets from the truth for the candidate responses: graded from correct to far off.
_OFFSETS = (0, 1, 3, 10)


def synthetic_answer_reward(completions: list, solution: list, **kwargs) -> list[float]:
    """Graded reward for the synthetic arithmetic task: ``-min(|pred - solution|, 10) / 10``; -1 without a number.

    The prediction is the last integer in the completion. Works with plain and conversational completions.
    """
    rewards = []
    for completion, gold in zip(completions, solution, strict=True):
        numbers = _NUMBER.findall(completion_text(completion))
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
        text = completion_text(completion)
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
