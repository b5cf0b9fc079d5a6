"""``<think>`` handling: the one place in trl-igrpo that parses reasoning blocks.

Reasoning models write ``<think>reasoning</think>answer``; some chat templates pre-fill ``<think>`` in the generation
prompt, so a completion may also start inside the block (``reasoning</think>answer``). TRL's ``parse_response`` splits
the same text into a message ``{"content": answer, "reasoning_content": reasoning}``. Every function that needs the
reasoning or the answer of a completion (rewards, iGRPO drafts, the judge, the reasoning toggle) goes through here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "THINK_CLOSE",
    "THINK_LIKE_TAG",
    "THINK_OPEN",
    "format_reasoning_response",
    "message_text",
    "split_reasoning",
    "strip_reasoning",
]

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

#: Any tag that looks like a think tag (``<think>``, ``</ think >``, ``<thinking>``, ``<think_step>``...): format rewards
#: refuse completions with stray or misspelled ones.
THINK_LIKE_TAG = re.compile(r"<\s*/?\s*think[a-z_-]*\b[^<>]*>", re.IGNORECASE)

_WELL_FORMED_THINK = re.compile(r"\A\s*<think>(?P<reasoning>(?:(?!</?think>).)*)</think>(?P<answer>.*)\Z", re.DOTALL)


def split_reasoning(text: str) -> tuple[str | None, str]:
    """Split ``"<think>reasoning</think>answer"`` into ``("reasoning", "answer")``, both stripped.

    Returns ``(None, text.strip())`` when the text does not start with exactly one well-formed think block (no tags,
    unclosed, nested or repeated blocks); an empty block gives ``("", answer)``.
    """
    match = _WELL_FORMED_THINK.match(text)
    if match is None or THINK_OPEN in match.group("answer") or THINK_CLOSE in match.group("answer"):
        return None, text.strip()
    return match.group("reasoning").strip(), match.group("answer").strip()


def strip_reasoning(text: str) -> str:
    """Keep only the text after the last ``</think>`` (how reasoning templates drop reasoning from history).

    Also right for completions whose ``<think>`` was pre-filled by the generation prompt (``reasoning</think>answer``).
    An unclosed ``<think>`` (truncated reasoning) is dropped with everything after it, so a completion that is all
    reasoning gives ``""``; text without tags is returned stripped.
    """
    if THINK_CLOSE in text:
        return text.rsplit(THINK_CLOSE, 1)[1].strip()
    return text.split(THINK_OPEN, 1)[0].strip()


def format_reasoning_response(reasoning: str | None, answer: str) -> str:
    """``"<think>\\n{reasoning}\\n</think>\\n{answer}"`` (the Nemotron 3 / TRL layout); ``reasoning=None`` gives the answer."""
    if reasoning is None:
        return answer.strip()
    reasoning = reasoning.strip()
    return (
        f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n{answer.strip()}"
        if reasoning
        else f"{THINK_OPEN}\n{THINK_CLOSE}\n{answer.strip()}"
    )


def message_text(message: Mapping[str, Any]) -> str:
    """The full text of one assistant message, reasoning included.

    TRL decodes a completion with ``parse_response`` when the tokenizer has a response template, which moves the
    reasoning into ``reasoning_content``; this puts it back as a leading think block, so a reward sees the same text
    whether or not the completion was parsed. Content given as parts (``[{"type": "text", "text": ...}]``) is joined.
    """
    content = message.get("content") or ""
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    reasoning = message.get("reasoning_content")
    if not reasoning:
        return content
    reasoning = reasoning.strip()
    if reasoning.startswith(THINK_OPEN):  # the template pre-filled <think> and the parser kept it
        reasoning = reasoning[len(THINK_OPEN) :].strip()
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n{content}"
