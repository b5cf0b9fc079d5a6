r"""Gold answers that cannot be graded: the rules shared by the math reward, its dataset check and ``trl-igrpo eval``.

A gold answer is *unreadable* when math-verify cannot turn it into one mathematical value, or turns it into a wrong one.
Anchoring a bare gold as ``\boxed{...}`` (NeMo-RL practice, needed for ``(1, 2]``, ``10\%``, ``2x+1``) makes math-verify
"parse" almost anything: ``"see the worked solution"`` becomes the product of the symbols s, e, e, t, h, ..., which no
completion ever matches, so without these rules such a row silently scores 0.0 (a wrong answer) instead of ``None``
(unscorable). Unreadable (:func:`gold_problem` gives the reason):

- ``None``, an empty string, a value that is not a string or a number;
- a placeholder: ``N/A``, ``TODO``, ``TBD``, ``none``, ``?``, ...;
- a GSM8K rationale (``... #### 72``): the answer is the text after ``####``;
- what math-verify reads as words (:func:`prose_in_reading`): a run of three or more letters outside LaTeX commands and
  ``\text{}`` in the text it extracted, e.g. ``The answer is 5`` or ``Monday`` (read as M·o·n·d·a·y; write
  ``\text{Monday}``). Units and connectives it understands are fine: ``5 inches`` reads as 5, ``2 and 3`` as {2, 3};
- anything math-verify reads as no value, or only as a string (``\frac{1}{``, ``}{``).

The first three need no math-verify (:func:`gold_text_problem`); the others are checked on math-verify's reading in
:mod:`trl_igrpo.rewards.math`.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "GOLD_PLACEHOLDERS",
    "UnreadableGoldError",
    "gold_string",
    "gold_text_problem",
    "prose_in_reading",
    "summarize_unreadable_golds",
]

#: Lower-cased values that mark a missing answer rather than an answer.
GOLD_PLACEHOLDERS = frozenset(
    {"n/a", "na", "n.a.", "none", "null", "nil", "nan", "todo", "tbd", "tba", "unknown", "?", "??", "-", "--", "..."}
)

# LaTeX whose argument is text or an environment name, not maths: removed with its argument before looking for words.
_TEXT_ARGUMENT = re.compile(
    r"\\(?:text\w*|math(?:rm|bf|it|sf|tt|cal|bb|frak)|mbox|operatorname|begin|end)\s*\*?\s*\{[^{}]*\}"
)
_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[^\W\d_]{3,}")


class UnreadableGoldError(ValueError):
    """Too many gold answers of a dataset cannot be graded; the message names the column, the rows and the fix."""


def gold_string(gold: Any) -> tuple[str | None, str | None]:
    """``(text, None)`` for a usable gold value, ``(None, reason)`` otherwise. Numbers become their text."""
    if gold is None:
        return None, "it is missing (None)"
    if isinstance(gold, bool):
        return None, f"it is a boolean ({gold}), not an answer"
    if isinstance(gold, (int, float)):
        if isinstance(gold, float) and not math.isfinite(gold):
            return None, f"it is {gold}"
        return (str(int(gold)) if isinstance(gold, float) and gold.is_integer() else str(gold)), None
    if not isinstance(gold, str):
        return None, f"it is a {type(gold).__name__}, not a string"
    return gold, None


def gold_text_problem(gold: Any) -> str | None:
    """Why ``gold`` is unreadable before any parsing (see the module docstring), or ``None`` when it may be read."""
    text, problem = gold_string(gold)
    if problem is not None or text is None:
        return problem
    stripped = text.strip()
    if not stripped:
        return "it is empty"
    if stripped.lower() in GOLD_PLACEHOLDERS:
        return "it is a placeholder, not an answer"
    if "####" in stripped:
        return "it is a GSM8K rationale: the answer is the text after '####'"
    return None


def prose_in_reading(reading: str) -> str | None:
    r"""The first word (three or more letters outside LaTeX commands and ``\text{}``) in the text math-verify
    extracted, or ``None``. math-verify reads such a word as a product of one-letter symbols."""
    bare = _COMMAND.sub(" ", _TEXT_ARGUMENT.sub(" ", reading))
    match = _WORD.search(bare)
    return match.group(0) if match else None


def summarize_unreadable_golds(rows: list[tuple[int, Any, str]], shown: int = 5) -> str:
    """``row 3: 'see the worked solution' (it is prose ...); ...`` for the first ``shown`` of ``(row, gold, reason)``."""
    parts = [f"row {row}: {str(gold)[:60]!r} ({reason})" for row, gold, reason in rows[:shown]]
    more = f"; and {len(rows) - shown} more" if len(rows) > shown else ""
    return "; ".join(parts) + more
