"""Format rewards for the ``<think>...</think><answer>...</answer>`` output format of the iGRPO paper (App. C)."""

from __future__ import annotations

import re

from ..reasoning.think import split_reasoning
from ._text import completion_text

__all__ = ["think_answer_format_reward"]

# After the think block: exactly one answer block. The tempered dots forbid any nested or repeated tag inside it.
_ANSWER_BLOCK = re.compile(r"\A<answer>(?P<answer>(?:(?!</?think>|</?answer>).)*)</answer>\Z", re.DOTALL)


def _is_think_answer(text: str) -> bool:
    reasoning, rest = split_reasoning(text)  # one well-formed think block at the start, stripped parts
    if reasoning is None or "<answer>" in reasoning or "</answer>" in reasoning:
        return False
    match = _ANSWER_BLOCK.match(rest)
    return match is not None and bool(match.group("answer").strip())


def think_answer_format_reward(completions, **kwargs) -> list[float]:
    r"""1.0 when a completion is exactly ``<think>reasoning</think>`` followed by ``<answer>answer</answer>``, else 0.0.

    This is the output format the iGRPO paper's system prompt asks for ("give the answer:
    <think>...</think><answer>...</answer>") and the "format" reward of its Table S.2 (weight 1.0). The check is
    strict:

    - exactly one think block and one answer block, in that order (no duplicates, no nesting);
    - the answer must contain non-whitespace text; the reasoning may be empty (a template may pre-fill ``<think>``);
    - only whitespace is allowed before ``<think>``, between the blocks, and after ``</answer>``.

    Accepts plain-text and conversational completions; extra keyword arguments (dataset columns) are ignored.
    """
    rewards = []
    for completion in completions:
        rewards.append(1.0 if _is_think_answer(completion_text(completion)) else 0.0)
    return rewards
