"""Format rewards for the ``<think>...</think><answer>...</answer>`` output format of the iGRPO paper (App. C)."""

from __future__ import annotations

import re

from ._text import completion_text

__all__ = ["think_answer_format_reward"]

# One think block, then one answer block, nothing else but whitespace around them. The tempered dots forbid any
# nested or repeated tag inside a block, so duplicates and wrong order never match.
_NO_TAG = r"(?:(?!</?think>|</?answer>).)"
THINK_ANSWER_PATTERN = re.compile(
    rf"\A\s*<think>(?P<think>{_NO_TAG}*)</think>\s*<answer>(?P<answer>{_NO_TAG}*)</answer>\s*\Z", re.DOTALL
)


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
        match = THINK_ANSWER_PATTERN.match(completion_text(completion))
        rewards.append(1.0 if match is not None and match.group("answer").strip() else 0.0)
    return rewards
