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
a per-row ``chat_template_kwargs`` with ``enable_thinking``, or a ``detailed thinking on|off`` system prompt.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..reasoning.modes import ON, normalize_reasoning_mode, reasoning_mode_from_messages
from ..reasoning.think import THINK_CLOSE, THINK_LIKE_TAG, THINK_OPEN, split_reasoning
from ._text import completion_text

__all__ = ["make_reasoning_format_reward", "reasoning_format_reward", "reasoning_format_score"]


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


def _row_modes(n: int, fixed_mode: Any, mode_column: str, prompts: Any, kwargs: dict[str, Any]) -> list[str]:
    if fixed_mode is not None:
        return [normalize_reasoning_mode(fixed_mode, field="mode")] * n
    if mode_column in kwargs and kwargs[mode_column] is not None:
        column = kwargs[mode_column]
        if len(column) != n:
            raise ValueError(f"Column `{mode_column}` has {len(column)} values for {n} completions.")
        return [normalize_reasoning_mode(m, field=mode_column) for m in column]
    modes: list[str] = []
    per_row_kwargs = kwargs.get("chat_template_kwargs")
    for i in range(n):
        template_kwargs = per_row_kwargs[i] if per_row_kwargs is not None else None
        if isinstance(template_kwargs, dict) and template_kwargs.get("enable_thinking") is not None:
            modes.append(normalize_reasoning_mode(bool(template_kwargs["enable_thinking"])))
            continue
        mode = reasoning_mode_from_messages(prompts[i]) if prompts is not None else None
        if mode is None:
            raise ValueError(
                f"No reasoning mode for row {i}: pass a `{mode_column}` column ('on'/'off'), a per-row "
                "`chat_template_kwargs` with `enable_thinking`, a 'detailed thinking on|off' system prompt, or build the "
                "reward with make_reasoning_format_reward(mode=...)."
            )
        modes.append(mode)
    return modes


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

    reasoning_format_reward.__name__ = name or ("reasoning_format_reward" + (f"_{mode}" if mode else ""))
    reasoning_format_reward.__qualname__ = reasoning_format_reward.__name__
    return reasoning_format_reward


reasoning_format_reward = make_reasoning_format_reward()
"""Mode-aware format reward reading the per-row mode (``reasoning_mode`` column, ``chat_template_kwargs`` or system prompt)."""
