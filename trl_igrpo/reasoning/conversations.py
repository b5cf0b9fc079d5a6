"""A reasoning mode applied to one conversation: the ``detailed thinking on|off`` system line, or the
``enable_thinking`` template argument, and reading back which mode a conversation states.

Both styles are described in :mod:`~trl_igrpo.reasoning.modes`; :func:`apply_reasoning_mode` applies either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .modes import (
    DETAILED_THINKING_OFF,
    DETAILED_THINKING_ON,
    DETAILED_THINKING_PATTERN,
    ON,
    SYSTEM_PROMPT_STYLE,
    chat_template_kwargs_for_mode,
    normalize_reasoning_mode,
    resolve_reasoning_style,
)
from .think import strip_reasoning

__all__ = [
    "apply_reasoning_mode",
    "reasoning_mode_from_messages",
    "render_with_reasoning_mode",
    "set_system_reasoning_mode",
    "strip_history_reasoning",
]

# A leading "detailed thinking on|off" line (plus the blank line that separates it from the rest of the system prompt).
_CONTROL_LINE = re.compile(r"\A\s*detailed thinking (on|off)[ \t]*(?:\r?\n[ \t]*)*", re.IGNORECASE)


def copy_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A copy of a conversation (each message a new dict); raises ``TypeError`` for anything that is not one."""
    if isinstance(messages, str) or not all(isinstance(m, Mapping) and "role" in m for m in messages):
        raise TypeError("A conversation must be a list of {'role': ..., 'content': ...} messages.")
    return [dict(m) for m in messages]


def set_system_reasoning_mode(
    messages: Sequence[Mapping[str, Any]], mode: Any, *, separator: str = "\n\n"
) -> list[dict[str, Any]]:
    """Return a copy of ``messages`` whose system message starts with ``detailed thinking on|off``.

    - No system message: one is inserted first, holding only the control line (what Llama-Nemotron was trained on).
    - An existing system prompt is preserved: the control line is put in front of it, joined by ``separator``.
    - A control line already at the start of the system prompt is replaced, so applying a mode is idempotent and
      switching modes never leaves two contradicting lines.
    """
    control = DETAILED_THINKING_ON if normalize_reasoning_mode(mode) == ON else DETAILED_THINKING_OFF
    messages = copy_messages(messages)
    for message in messages:
        if message["role"] == "system":
            content = message.get("content") or ""
            if not isinstance(content, str):
                raise TypeError("set_system_reasoning_mode needs a system message with string content.")
            rest = _CONTROL_LINE.sub("", content, count=1)
            message["content"] = f"{control}{separator}{rest}" if rest.strip() else control
            return messages
    return [{"role": "system", "content": control}, *messages]


def reasoning_mode_from_messages(messages: Any) -> str | None:
    """The mode a ``detailed thinking on|off`` system prompt sets, or ``None`` (plain-text prompts, no control line)."""
    if not isinstance(messages, (list, tuple)):
        return None
    for message in messages:
        if (
            isinstance(message, Mapping)
            and message.get("role") == "system"
            and isinstance(message.get("content"), str)
        ):
            match = DETAILED_THINKING_PATTERN.search(message["content"])
            if match:
                return match.group(1).lower()
    return None


def apply_reasoning_mode(
    messages: Sequence[Mapping[str, Any]],
    mode: Any,
    style: str = SYSTEM_PROMPT_STYLE,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Apply a mode in a style; returns ``(messages, chat_template_kwargs)`` to pass to ``apply_chat_template``.

    ``"system_prompt"`` edits the system message (:func:`set_system_reasoning_mode`) and leaves the kwargs unchanged;
    ``"enable_thinking"`` leaves the messages unchanged and sets ``enable_thinking``.
    """
    style = resolve_reasoning_style(style=style)
    kwargs = dict(chat_template_kwargs or {})
    if style == SYSTEM_PROMPT_STYLE:
        return set_system_reasoning_mode(messages, mode), kwargs
    return copy_messages(messages), chat_template_kwargs_for_mode(mode, kwargs)


def render_with_reasoning_mode(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    mode: Any,
    style: str | None = None,
    *,
    add_generation_prompt: bool = True,
    **chat_template_kwargs: Any,
) -> str:
    """Render one conversation as text with the mode applied in the tokenizer's style (see :func:`apply_reasoning_mode`)."""
    style = resolve_reasoning_style(tokenizer, style)
    messages, kwargs = apply_reasoning_mode(messages, mode, style, chat_template_kwargs)
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
    )


def strip_history_reasoning(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Drop the reasoning of assistant turns before the last user message (Nemotron templates' history truncation).

    Later assistant turns (the training target) keep theirs. ``reasoning_content`` fields of earlier turns are removed.
    """
    messages = copy_messages(messages)
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    for message in messages[:last_user]:
        if message["role"] == "assistant":
            message.pop("reasoning_content", None)
            if isinstance(message.get("content"), str):
                message["content"] = strip_reasoning(message["content"])
    return messages
