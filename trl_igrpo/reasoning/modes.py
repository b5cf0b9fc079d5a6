"""Reasoning ON/OFF: the two modes, the two styles of applying them, and the chat templates that implement them.

Llama-Nemotron (arXiv 2505.00949, §2 "reasoning toggle") trains one model whose reasoning a system prompt switches:
``detailed thinking on`` makes it reason inside ``<think>...</think>`` before answering, ``detailed thinking off`` makes
it answer directly. SFT teaches the switch with *paired* data (the same prompt with a reasoning and a non-reasoning
response, each tagged with its system prompt) mixed in the same batches. Newer templates (Qwen3, Nemotron 3) switch
through the chat-template variable ``enable_thinking`` instead; with thinking off they pre-fill an empty think block.

Two *styles* of applying a mode, chosen per tokenizer by :func:`resolve_reasoning_style`:

- ``"system_prompt"`` (Llama-Nemotron v1): the mode is a line ``detailed thinking on|off`` at the start of the system
  message, merged with any existing system prompt (:func:`~trl_igrpo.reasoning.conversations.set_system_reasoning_mode`). Works with every template and
  with per-example modes everywhere (SFT, GRPO, iGRPO), because the mode lives in the conversation itself.
- ``"enable_thinking"`` (Qwen3 / Nemotron 3): the conversation is unchanged and ``{"enable_thinking": bool}`` is passed
  to ``apply_chat_template``. TRL's ``SFTTrainer`` reads a per-row ``chat_template_kwargs`` column; ``GRPOTrainer``
  only has the global ``GRPOConfig.chat_template_kwargs`` (see :func:`~trl_igrpo.reasoning.training_data.grpo_chat_template_kwargs`).

Models whose template has neither get the bundled ChatML template ``templates/reasoning_chatml.jinja``
(:func:`install_reasoning_template`), which supports both styles and strips reasoning from earlier turns.

The other ideas of the toggle live beside this module: applying a mode to one conversation
(:mod:`~trl_igrpo.reasoning.conversations`), paired and mixed ON/OFF training data
(:mod:`~trl_igrpo.reasoning.training_data`) and generating with each mode's sampling defaults
(:mod:`~trl_igrpo.reasoning.sampling`); :mod:`trl_igrpo.reasoning` exports them all.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DETAILED_THINKING_OFF",
    "DETAILED_THINKING_ON",
    "ENABLE_THINKING_STYLE",
    "REASONING_MODES",
    "REASONING_STYLES",
    "REASONING_TEMPLATE_PATH",
    "SYSTEM_PROMPT_STYLE",
    "chat_template_kwargs_for_mode",
    "detect_reasoning_style",
    "install_reasoning_template",
    "load_reasoning_template",
    "normalize_reasoning_mode",
    "resolve_reasoning_style",
]

logger = logging.getLogger(__name__)

ON, OFF = "on", "off"
REASONING_MODES = (ON, OFF)
SYSTEM_PROMPT_STYLE = "system_prompt"
ENABLE_THINKING_STYLE = "enable_thinking"
REASONING_STYLES = (SYSTEM_PROMPT_STYLE, ENABLE_THINKING_STYLE)

DETAILED_THINKING_ON = "detailed thinking on"  # Llama-Nemotron system prompts (paper §2, model cards)
DETAILED_THINKING_OFF = "detailed thinking off"

REASONING_TEMPLATE_PATH = Path(__file__).parent.parent / "templates" / "reasoning_chatml.jinja"

#: ``detailed thinking on|off`` anywhere in a text (a chat template, a system prompt); group 1 is the mode.
DETAILED_THINKING_PATTERN = re.compile(r"\bdetailed thinking (on|off)\b", re.IGNORECASE)


def normalize_reasoning_mode(mode: Any, *, field: str = "reasoning_mode") -> str:
    """Return ``"on"`` or ``"off"`` for ``"on"/"off"`` (any case), ``True/False``, or the full system prompts.

    Raises ``ValueError`` naming ``field`` for anything else, so a bad dataset column fails before any compute.
    """
    if isinstance(mode, bool):
        return ON if mode else OFF
    if isinstance(mode, str):
        value = mode.strip().lower()
        if value in (ON, OFF):
            return value
        if value in (DETAILED_THINKING_ON, DETAILED_THINKING_OFF):
            return value.rsplit(" ", 1)[1]
    raise ValueError(f"`{field}` must be 'on' or 'off' (or a bool), got {mode!r}.")


def _chat_template_text(tokenizer_or_template: Any) -> str | None:
    template = tokenizer_or_template
    if not isinstance(template, (str, dict)) and template is not None:
        template = getattr(template, "chat_template", None)
        if template is None and hasattr(tokenizer_or_template, "tokenizer"):  # processors
            template = getattr(tokenizer_or_template.tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates: the default one renders conversations
        template = template.get("default")
    return template


def detect_reasoning_style(tokenizer_or_template: Any) -> str | None:
    """Inspect a chat template (or a tokenizer's) and return the reasoning style it implements, or ``None``.

    ``"enable_thinking"`` when the template reads the ``enable_thinking`` variable (Qwen3, Nemotron 3, the bundled
    template), ``"system_prompt"`` when it mentions ``detailed thinking`` (Llama-Nemotron v1, whose template defaults
    the system prompt to ``detailed thinking on``), ``None`` when it has neither (plain ChatML, Llama 3, ...).
    """
    template = _chat_template_text(tokenizer_or_template)
    if not template:
        return None
    if re.search(r"\benable_thinking\b", template):
        return ENABLE_THINKING_STYLE
    if DETAILED_THINKING_PATTERN.search(template):
        return SYSTEM_PROMPT_STYLE
    return None


def resolve_reasoning_style(tokenizer_or_template: Any = None, style: str | None = None) -> str:
    """Pick the style for a tokenizer: ``style`` if given (validated), else what its template implements.

    A template with neither mechanism falls back to ``"system_prompt"``, which works with any template that renders a
    system message; call :func:`install_reasoning_template` first to get think-aware rendering instead.
    """
    if style is not None:
        if style not in REASONING_STYLES:
            raise ValueError(f"`style` must be one of {REASONING_STYLES}, got {style!r}.")
        return style
    detected = detect_reasoning_style(tokenizer_or_template)
    if detected is None:
        logger.info(
            "The chat template has no reasoning toggle; using the 'system_prompt' style (detailed thinking on/off). "
            "Call trl_igrpo.reasoning.install_reasoning_template(tokenizer) for think-aware rendering."
        )
        return SYSTEM_PROMPT_STYLE
    return detected


def load_reasoning_template() -> str:
    """The bundled reasoning ChatML template (``trl_igrpo/templates/reasoning_chatml.jinja``) as a string."""
    return REASONING_TEMPLATE_PATH.read_text(encoding="utf-8")


def install_reasoning_template(tokenizer: Any, *, overwrite: bool = False) -> bool:
    """Give ``tokenizer`` the bundled reasoning ChatML template if its own template has no reasoning toggle.

    Returns ``True`` when the template was replaced. A template that already implements a style is kept unless
    ``overwrite=True``. The bundled template uses ChatML markers; a warning is logged when ``<|im_start|>`` or
    ``<|im_end|>`` are not single tokens of this tokenizer (the template still renders, but less efficiently).
    To use it in ``SFTTrainer`` without touching the tokenizer, pass ``SFTConfig(chat_template_path=str(REASONING_TEMPLATE_PATH))``.
    """
    if not overwrite and detect_reasoning_style(tokenizer) is not None:
        return False
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    missing = [marker for marker in ("<|im_start|>", "<|im_end|>") if marker not in vocab]
    if missing:
        logger.warning(f"The tokenizer has no {missing} token(s); the reasoning ChatML template renders them as text.")
    tokenizer.chat_template = load_reasoning_template()
    return True


def chat_template_kwargs_for_mode(mode: Any, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{**base, "enable_thinking": mode == "on"}``: the ``enable_thinking`` style's template arguments."""
    return {**(base or {}), "enable_thinking": normalize_reasoning_mode(mode) == ON}
