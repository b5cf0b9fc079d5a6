"""Reading a judge's reply: strict parsers that return a score in [0, 1] or raise
:class:`~trl_igrpo.rewards.judge.JudgeReplyError`.

Strictness is the defence against prompt injection: a completion that talks the judge into saying something else
gains nothing unless the judge says it in exactly the verdict format.
"""

from __future__ import annotations

import re

from ...reasoning.think import THINK_CLOSE, THINK_OPEN, strip_reasoning
from .errors import JudgeReplyError

__all__ = ["parse_numeric_verdict", "parse_yes_no_verdict"]

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUMERIC_VERDICT = re.compile(rf"(?:(?:score|grade|rating)\s*[:=]\s*)?(?P<value>{_NUMBER})\s*\.?", re.IGNORECASE)
_YES_NO_VERDICT = re.compile(r"(?:(?:verdict|answer)\s*[:=]\s*)?(?P<value>yes|no)\s*\.?", re.IGNORECASE)


def _verdict_text(reply: str, location: str) -> str:
    if THINK_OPEN in reply and THINK_CLOSE not in reply:
        raise JudgeReplyError("The judge reply opens a <think> block but never closes it (truncated reasoning).")
    reply = strip_reasoning(reply)  # reasoning judges: grade only what follows the reasoning
    if location == "last_line":
        lines = [line.strip() for line in reply.splitlines() if line.strip()]
        reply = lines[-1] if lines else ""
    return reply


def parse_numeric_verdict(
    reply: str, *, score_range: tuple[float, float] = (0.0, 1.0), location: str = "reply"
) -> float:
    """Parse a reply that is exactly one number (optionally ``Score: x``) in ``score_range``; map it to [0, 1].

    ``location="reply"`` requires the whole reply (after any ``<think>`` block) to be the verdict; ``"last_line"``
    only its last non-empty line. Out-of-range numbers, several numbers, or any extra text raise
    :class:`~trl_igrpo.rewards.judge.JudgeReplyError` (never clipped: a judge saying "5" on a 0-1 scale is confused,
    not generous).
    """
    text = _verdict_text(reply, location)
    match = _NUMERIC_VERDICT.fullmatch(text)
    if match is None:
        raise JudgeReplyError(f"Expected a single number as the verdict, got {text[:200]!r}.")
    low, high = score_range
    value = float(match.group("value"))
    if not low <= value <= high:
        raise JudgeReplyError(f"The verdict {value} is outside the score range [{low}, {high}].")
    return (value - low) / (high - low)


def parse_yes_no_verdict(reply: str, *, location: str = "reply") -> float:
    """Parse a reply that is exactly ``YES`` or ``NO`` (any case, optional ``Verdict:`` prefix / final period)."""
    text = _verdict_text(reply, location)
    match = _YES_NO_VERDICT.fullmatch(text)
    if match is None:
        raise JudgeReplyError(f"Expected YES or NO as the verdict, got {text[:200]!r}.")
    return 1.0 if match.group("value").lower() == "yes" else 0.0
