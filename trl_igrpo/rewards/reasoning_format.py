"""Mode-aware think-format reward for reasoning ON/OFF training (Llama-Nemotron, arXiv 2505.00949 §5.1).

The paper's format reward follows DeepSeek-R1: in ``detailed thinking on`` mode the reasoning must be enclosed in
``<think>`` and ``</think>``, in ``detailed thinking off`` mode there must be no reasoning. Released templates and cards
pre-fill an empty ``<think></think>`` block for OFF (Nano-8B card, Nemotron 3, Qwen3), so OFF also accepts one empty
block at the start [trl-igrpo choice, see docs/reasoning.md].

Rules (:func:`reasoning_format_score`), after leading whitespace:

- ON: exactly one ``<think>`` and one ``</think>`` tag, the completion starts with ``<think>``, the reasoning inside is
  non-empty (unless ``allow_empty_reasoning``), and a non-empty answer follows ``</think>``. No other think-like tags
  (``<Think>``, ``<think x>``, ``<thinking>``...) anywhere.
- OFF: a non-empty answer and either no think-like tag at all, or one empty ``<think>\\s*</think>`` block at the start.

Anything else scores 0.0. The mode of each row comes from a fixed mode, a dataset column (default ``reasoning_mode``),
a per-row ``chat_template_kwargs`` with ``enable_thinking``, or a ``detailed thinking on|off`` system prompt. When a row
states its mode in more than one of these (or the trainer's ``chat_template_kwargs`` sets ``enable_thinking``) and
they disagree, the reward raises :class:`ReasoningModeConflictError`, at construction on the first training rows
(``check_dataset``) and on every batch: a reward fixed to ON on a ``detailed thinking off`` prompt would train the
model against its prompt, and no number of such rows is harmless, so there is no tolerance.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..reasoning.conversations import reasoning_mode_from_messages
from ..reasoning.modes import ON, normalize_reasoning_mode
from ..reasoning.think import THINK_CLOSE, THINK_LIKE_TAG, THINK_OPEN, split_reasoning
from ._text import completion_text

__all__ = [
    "ReasoningModeConflictError",
    "make_reasoning_format_reward",
    "reasoning_format_reward",
    "reasoning_format_score",
]


def reasoning_format_score(
    text: str, mode: Any, *, think_prefilled: bool = False, allow_empty_reasoning: bool = False
) -> float:
    """1.0 if ``text`` has the format of ``mode`` (see the module docstring), else 0.0.

    ``think_prefilled=True`` is for templates whose generation prompt already ends with ``<think>`` in ON mode
    (Nemotron 3): the completion then starts inside the block, so ``<think>`` is prepended before checking (unless the
    completion opens a block itself, which then counts as a second block).
    """
    mode = normalize_reasoning_mode(mode)
    # Anything that looks like a think tag counts, so near-misses (<Think>, < think>, <thinking>) never pass silently.
    tags = THINK_LIKE_TAG.findall(text)
    if mode == ON and think_prefilled:
        text = THINK_OPEN + text
        tags = [THINK_OPEN, *tags]
    if mode != ON and not tags:
        return 1.0 if text.strip() else 0.0
    reasoning, answer = split_reasoning(text)
    if tags != [THINK_OPEN, THINK_CLOSE] or reasoning is None or not answer:
        return 0.0
    if mode == ON:
        return 1.0 if reasoning or allow_empty_reasoning else 0.0
    return 1.0 if not reasoning else 0.0  # OFF: only an empty pre-filled block is allowed


class ReasoningModeConflictError(ValueError):
    """Two sources of one row's reasoning mode disagree (e.g. a reward fixed to ON on a ``detailed thinking off`` row)."""


def _mode_sources(
    i: int, fixed_mode: str | None, mode_column: str, prompts: Any, kwargs: dict[str, Any], global_kwargs: Any = None
) -> list[tuple[str, str]]:
    """Every ``(source, mode)`` that states row ``i``'s mode, in the order the reward trusts them."""
    sources: list[tuple[str, str]] = []
    if fixed_mode is not None:
        sources.append((f"the reward's fixed mode={fixed_mode!r}", fixed_mode))
    column = kwargs.get(mode_column)
    if column is not None:
        sources.append((f"column `{mode_column}`", normalize_reasoning_mode(column[i], field=mode_column)))
    per_row = kwargs.get("chat_template_kwargs")
    template_kwargs = per_row[i] if per_row is not None else None
    for where, value in (("the row's chat_template_kwargs", template_kwargs), ("the trainer's", global_kwargs)):
        if isinstance(value, dict) and value.get("enable_thinking") is not None:
            thinking = bool(value["enable_thinking"])
            sources.append((f"{where} enable_thinking={thinking}", normalize_reasoning_mode(thinking)))
    system_mode = reasoning_mode_from_messages(prompts[i]) if prompts is not None else None
    if system_mode is not None:
        sources.append((f"the system prompt 'detailed thinking {system_mode}'", system_mode))
    return sources


def _check_agreement(row: int, sources: list[tuple[str, str]], mode_column: str) -> None:
    if len({mode for _, mode in sources}) > 1:
        stated = "; ".join(f"{where} says {mode!r}" for where, mode in sources)
        raise ReasoningModeConflictError(
            f"Row {row} states contradicting reasoning modes: {stated}. The model generates in the mode its prompt "
            "sets, so a format reward for the other mode would train it against its prompt. Make them agree: fix the "
            f"`{mode_column}` column or the system prompt, or use a reward that reads the mode per row "
            "(reasoning_format_reward, make_reasoning_format_reward() without mode=)."
        )


def _row_modes(n: int, fixed_mode: str | None, mode_column: str, prompts: Any, kwargs: dict[str, Any]) -> list[str]:
    """The reasoning mode of each of ``n`` rows; raises when a row has none, or when its sources disagree."""
    column = kwargs.get(mode_column)
    if column is not None and len(column) != n:
        raise ValueError(f"Column `{mode_column}` has {len(column)} values for {n} completions.")
    modes: list[str] = []
    for i in range(n):
        sources = _mode_sources(i, fixed_mode, mode_column, prompts, kwargs)
        if not sources:
            raise ValueError(
                f"No reasoning mode for row {i}: pass a `{mode_column}` column ('on'/'off'), a per-row "
                "`chat_template_kwargs` with `enable_thinking`, a 'detailed thinking on|off' system prompt, or build the "
                "reward with make_reasoning_format_reward(mode=...)."
            )
        _check_agreement(i, sources, mode_column)
        modes.append(sources[0][1])
    return modes


def _check_rows(rows: list[dict], fixed_mode: str | None, mode_column: str, chat_template_kwargs: Any = None) -> None:
    """``check_dataset`` hook: contradicting modes in the first training rows stop the run before any compute."""
    columns = {key: [row.get(key) for row in rows] for key in (mode_column, "chat_template_kwargs") if key in rows[0]}
    prompts = [row.get("prompt") for row in rows]
    for i in range(len(rows)):
        _check_agreement(
            i, _mode_sources(i, fixed_mode, mode_column, prompts, columns, chat_template_kwargs), mode_column
        )


def make_reasoning_format_reward(
    mode: Any = None,
    *,
    mode_column: str = "reasoning_mode",
    think_prefilled: bool = False,
    allow_empty_reasoning: bool = False,
    eos_token_ids: Iterable[int] | None = None,
    truncated_score: float | None = None,
    name: str | None = None,
):
    """Build a TRL reward function ``(completions, **kwargs) -> list[float | None]`` scoring the ON/OFF format.

    Args:
        mode: a fixed mode for every row ("on"/"off"/bool); ``None`` reads it per row (module docstring).
        mode_column: dataset column holding the per-row mode.
        think_prefilled: the ON generation prompt already ends with ``<think>`` (Nemotron 3 templates).
        allow_empty_reasoning: accept ``<think></think>answer`` in ON mode (the v1 cards call it expected for trivial
            prompts; off by default because it lets ON collapse into OFF).
        eos_token_ids: when given, completions whose ``completion_ids`` do not end with one of these ids count as
            truncated and score ``truncated_score`` instead of being format-checked.
        truncated_score: score of a truncated completion (``None`` = TRL ignores the row for this function; NVIDIA's
            GenRM format checker uses 1.0 so truncation is not penalised twice).
        name: metric name (``rewards/<name>/mean``); defaults to ``reasoning_format_reward[_on|_off]``.
    """
    if mode is not None:
        mode = normalize_reasoning_mode(mode, field="mode")
    eos = frozenset(eos_token_ids) if eos_token_ids is not None else None

    def reasoning_format_reward(completions, prompts=None, completion_ids=None, **kwargs) -> list[float | None]:
        """1.0 when a completion has the format its row's reasoning mode asks for, else 0.0 (TRL reward signature).

        ON: ``<think>reasoning</think>answer``; OFF: an answer with no think block (see
        :func:`reasoning_format_score`). Truncated completions (when ``eos_token_ids`` was given) score
        ``truncated_score``. Built by :func:`make_reasoning_format_reward`, whose arguments fix the mode and options.
        """
        modes = _row_modes(len(completions), mode, mode_column, prompts, kwargs)
        rewards: list[float | None] = []
        for i, (completion, row_mode) in enumerate(zip(completions, modes)):
            if (
                eos is not None
                and completion_ids is not None
                and (not completion_ids[i] or completion_ids[i][-1] not in eos)
            ):
                rewards.append(truncated_score)
                continue
            rewards.append(
                reasoning_format_score(
                    completion_text(completion),
                    row_mode,
                    think_prefilled=think_prefilled and row_mode == ON,
                    allow_empty_reasoning=allow_empty_reasoning,
                )
            )
        return rewards

    def check_dataset(rows: list[dict], chat_template_kwargs: Any = None, **context: Any) -> None:
        """Raise :class:`ReasoningModeConflictError` when a row's reasoning modes disagree (the trainers call this on
        the first training rows, with their ``chat_template_kwargs``)."""
        _check_rows(rows, mode, mode_column, chat_template_kwargs)

    reasoning_format_reward.__name__ = name or ("reasoning_format_reward" + (f"_{mode}" if mode else ""))
    reasoning_format_reward.__qualname__ = reasoning_format_reward.__name__
    reasoning_format_reward.check_dataset = check_dataset  # type: ignore[attr-defined]
    return reasoning_format_reward


reasoning_format_reward = make_reasoning_format_reward()
"""Mode-aware format reward reading the per-row mode (``reasoning_mode`` column, ``chat_template_kwargs`` or system prompt)."""
