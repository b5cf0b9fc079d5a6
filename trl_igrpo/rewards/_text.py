"""Shared helpers for reward functions: TRL passes completions either as strings or as lists of chat messages."""

from __future__ import annotations

import re
from typing import Any

from ..reasoning.think import message_text

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def completion_text(completion: Any) -> str:
    """Return the text of one completion, plain (``str``) or conversational (``[{"role": ..., "content": ...}, ...]``).

    For conversational completions the assistant messages are concatenated (TRL produces exactly one); message
    content given as a list of parts (``[{"type": "text", "text": ...}]``) is flattened to its text parts, and
    reasoning that TRL's ``parse_response`` split into ``reasoning_content`` is put back as a leading think block
    (:func:`~trl_igrpo.reasoning.think.message_text`), so rewards see one text whichever way TRL decoded it.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        texts = []
        for message in completion:
            if not isinstance(message, dict):
                raise TypeError(f"Conversational completions must be lists of message dicts, got {type(message)!r}.")
            if message.get("role", "assistant") != "assistant":
                continue
            texts.append(message_text(message))
        return "".join(texts)
    raise TypeError(f"A completion must be a string or a list of messages, got {type(completion)!r}.")


def last_boxed_content(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``) with nested braces matched; ``None`` if there is none
    or its braces never close (a completion cut off mid-answer)."""
    starts = [match.end() for match in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for position in range(start, len(text)):
            if text[position] == "{":
                depth += 1
            elif text[position] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:position].strip()
    return None
