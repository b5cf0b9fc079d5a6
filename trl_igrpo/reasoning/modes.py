"""Reasoning ON/OFF: chat-template modes, paired/mixed datasets and per-mode generation defaults.

Llama-Nemotron (arXiv 2505.00949, §2 "reasoning toggle") trains one model whose reasoning a system prompt switches:
``detailed thinking on`` makes it reason inside ``<think>...</think>`` before answering, ``detailed thinking off`` makes
it answer directly. SFT teaches the switch with *paired* data (the same prompt with a reasoning and a non-reasoning
response, each tagged with its system prompt) mixed in the same batches. Newer templates (Qwen3, Nemotron 3) switch
through the chat-template variable ``enable_thinking`` instead; with thinking off they pre-fill an empty think block.

Two *styles* of applying a mode, chosen per tokenizer by :func:`resolve_reasoning_style`:

- ``"system_prompt"`` (Llama-Nemotron v1): the mode is a line ``detailed thinking on|off`` at the start of the system
  message, merged with any existing system prompt (:func:`set_system_reasoning_mode`). Works with every template and
  with per-example modes everywhere (SFT, GRPO, iGRPO), because the mode lives in the conversation itself.
- ``"enable_thinking"`` (Qwen3 / Nemotron 3): the conversation is unchanged and ``{"enable_thinking": bool}`` is passed
  to ``apply_chat_template``. TRL's ``SFTTrainer`` reads a per-row ``chat_template_kwargs`` column; ``GRPOTrainer``
  only has the global ``GRPOConfig.chat_template_kwargs`` (see :func:`grpo_chat_template_kwargs`).

Models whose template has neither get the bundled ChatML template ``templates/reasoning_chatml.jinja``
(:func:`install_reasoning_template`), which supports both styles and strips reasoning from earlier turns.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .think import format_reasoning_response, split_reasoning, strip_reasoning

__all__ = [
    "DETAILED_THINKING_OFF",
    "DETAILED_THINKING_ON",
    "ENABLE_THINKING_STYLE",
    "REASONING_MODES",
    "REASONING_STYLES",
    "REASONING_TEMPLATE_PATH",
    "SYSTEM_PROMPT_STYLE",
    "apply_reasoning_mode",
    "chat_template_kwargs_for_mode",
    "detect_reasoning_style",
    "format_reasoning_example",
    "generate_with_reasoning_mode",
    "generation_config_for_mode",
    "generation_kwargs_for_mode",
    "grpo_chat_template_kwargs",
    "install_reasoning_template",
    "load_reasoning_template",
    "make_paired_reasoning_examples",
    "mix_reasoning_modes",
    "normalize_reasoning_mode",
    "reasoning_mode_from_messages",
    "render_with_reasoning_mode",
    "resolve_reasoning_style",
    "set_system_reasoning_mode",
    "strip_history_reasoning",
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

# A leading "detailed thinking on|off" line (plus the blank line that separates it from the rest of the system prompt).
_CONTROL_LINE = re.compile(r"\A\s*detailed thinking (on|off)[ \t]*(?:\r?\n[ \t]*)*", re.IGNORECASE)
_CONTROL_ANYWHERE = re.compile(r"\bdetailed thinking (on|off)\b", re.IGNORECASE)

# Sampling per mode (Llama-Nemotron paper §7.1 and model cards): ON samples at T=0.6, top-p 0.95; OFF is greedy.
_GENERATION_DEFAULTS: dict[str, dict[str, Any]] = {
    ON: {"do_sample": True, "temperature": 0.6, "top_p": 0.95},
    OFF: {"do_sample": False},
}


# --------------------------------------------------------------------------------------------------------------------
# Modes and styles
# --------------------------------------------------------------------------------------------------------------------
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
    if _CONTROL_ANYWHERE.search(template):
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


# --------------------------------------------------------------------------------------------------------------------
# Conversations
# --------------------------------------------------------------------------------------------------------------------
def _copy_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
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
    messages = _copy_messages(messages)
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
            match = _CONTROL_ANYWHERE.search(message["content"])
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
    return _copy_messages(messages), chat_template_kwargs_for_mode(mode, kwargs)


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
    messages = _copy_messages(messages)
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    for message in messages[:last_user]:
        if message["role"] == "assistant":
            message.pop("reasoning_content", None)
            if isinstance(message.get("content"), str):
                message["content"] = strip_reasoning(message["content"])
    return messages


# --------------------------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------------------------
def _as_messages(value: Any, role: str) -> list[dict[str, Any]]:
    return [{"role": role, "content": value}] if isinstance(value, str) else _copy_messages(value)


def format_reasoning_example(
    example: Mapping[str, Any],
    mode: Any,
    style: str = SYSTEM_PROMPT_STYLE,
    *,
    reasoning_column: str | None = None,
    off_completion_column: str | None = None,
    mode_column: str = "reasoning_mode",
) -> dict[str, Any]:
    """Turn one example with a reasoning trace into a conversational SFT example in ``mode``.

    Input: ``prompt`` + ``completion`` (strings or messages), or ``messages`` ending with the assistant response. The
    reasoning is the response's leading ``<think>`` block, or ``reasoning_column`` when given. Output keeps the input
    layout (always conversational) with the mode applied in ``style`` and ``mode_column`` set:

    - ON: the response is ``<think>\\nreasoning\\n</think>\\nanswer``. A row without reasoning raises ``ValueError``.
    - OFF: the response is the answer alone, or ``off_completion_column`` (a separately written non-reasoning
      response, as in the paper's paired data).
    - Earlier assistant turns lose their reasoning (:func:`strip_history_reasoning`).
    - ``enable_thinking`` style: a ``chat_template_kwargs`` column carries ``enable_thinking`` (read per row by
      TRL's ``SFTTrainer``).
    """
    mode = normalize_reasoning_mode(mode, field=mode_column)
    out = dict(example)
    if "messages" in example:
        conversation = _as_messages(example["messages"], "user")
        if not conversation or conversation[-1]["role"] != "assistant":
            raise ValueError("`messages` must end with the assistant response to format.")
        prompt, response = conversation[:-1], conversation[-1]
    elif "prompt" in example and "completion" in example:
        prompt = _as_messages(example["prompt"], "user")
        completion = _as_messages(example["completion"], "assistant")
        if len(completion) != 1 or completion[0]["role"] != "assistant":
            raise ValueError("`completion` must be a string or a single assistant message.")
        response = completion[0]
    else:
        raise ValueError(f"An example needs `messages` or `prompt` + `completion` columns, got {sorted(example)}.")

    text = response.get("content") or ""
    if reasoning_column is not None:
        if reasoning_column not in example:
            raise ValueError(f"`reasoning_column={reasoning_column!r}` is not a column of the example.")
        reasoning, answer = example[reasoning_column], strip_reasoning(text)
    elif isinstance(response.get("reasoning_content"), str):
        reasoning, answer = response["reasoning_content"], strip_reasoning(text)
    else:
        reasoning, answer = split_reasoning(text)
    response = {k: v for k, v in response.items() if k != "reasoning_content"}
    if mode == ON:
        if reasoning is None or not str(reasoning).strip():
            raise ValueError(
                "A reasoning-ON example needs a reasoning trace (a leading <think> block or `reasoning_column`)."
            )
        response["content"] = format_reasoning_response(str(reasoning), answer)
    else:
        if off_completion_column is not None:
            if off_completion_column not in example:
                raise ValueError(f"`off_completion_column={off_completion_column!r}` is not a column of the example.")
            off = example[off_completion_column]
            answer = off if isinstance(off, str) else _as_messages(off, "assistant")[-1]["content"]
        response["content"] = strip_reasoning(answer)

    prompt, kwargs = apply_reasoning_mode(
        strip_history_reasoning(prompt), mode, style, example.get("chat_template_kwargs") or None
    )
    if "messages" in example:
        out["messages"] = [*prompt, response]
    else:
        out["prompt"], out["completion"] = prompt, [response]
    if style == ENABLE_THINKING_STYLE:
        out["chat_template_kwargs"] = kwargs
    out[mode_column] = mode
    return out


def _map_rows(dataset: Any, rows_fn: Callable[[list[dict[str, Any]], list[int]], list[dict[str, Any]]]) -> Any:
    """Apply ``rows_fn(rows, indices) -> new_rows`` to a list of dicts or (batched) to a ``datasets.Dataset``."""
    if isinstance(dataset, list):
        return rows_fn([dict(r) for r in dataset], list(range(len(dataset))))

    def batched(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        new_rows = rows_fn(rows, indices)
        return {key: [row[key] for row in new_rows] for key in (new_rows[0] if new_rows else {})}

    return dataset.map(batched, batched=True, with_indices=True, remove_columns=dataset.column_names)


def make_paired_reasoning_examples(dataset: Any, style: str = SYSTEM_PROMPT_STYLE, **format_kwargs: Any) -> Any:
    """Two examples per input row, ON then OFF, from data with reasoning traces (Llama-Nemotron's paired SFT data).

    ``dataset`` is a ``datasets.Dataset`` or a list of dicts; ``format_kwargs`` go to :func:`format_reasoning_example`.
    """
    return _map_rows(
        dataset,
        lambda rows, _: [format_reasoning_example(r, m, style, **format_kwargs) for r in rows for m in (ON, OFF)],
    )


def mix_reasoning_modes(
    dataset: Any, on_fraction: float, *, seed: int = 0, style: str = SYSTEM_PROMPT_STYLE, **format_kwargs: Any
) -> Any:
    """Assign each row a mode, exactly ``round(on_fraction * n)`` of them ON, chosen deterministically from ``seed``.

    Rows keep their order (shuffle in the trainer); the same ``(n, on_fraction, seed)`` always selects the same rows.
    ``format_kwargs`` go to :func:`format_reasoning_example`.
    """
    if not 0.0 <= on_fraction <= 1.0:
        raise ValueError(f"`on_fraction` must be in [0, 1], got {on_fraction}.")
    n = len(dataset)
    on_rows = set(random.Random(seed).sample(range(n), round(on_fraction * n)))
    return _map_rows(
        dataset,
        lambda rows, idx: [
            format_reasoning_example(r, ON if i in on_rows else OFF, style, **format_kwargs) for r, i in zip(rows, idx)
        ],
    )


def grpo_chat_template_kwargs(
    modes: Iterable[Any], base: Mapping[str, Any] | None = None, *, column: str = "reasoning_mode"
) -> dict[str, Any]:
    """``GRPOConfig.chat_template_kwargs`` for the ``enable_thinking`` style, checking that all prompts share one mode.

    GRPO (and iGRPO) render every prompt with the same global kwargs and ignore a per-row ``chat_template_kwargs``
    column, so a dataset that mixes modes would silently be rendered in one mode. Mixed modes raise ``ValueError``:
    use the ``"system_prompt"`` style, which carries the mode inside each prompt.
    """
    distinct = {normalize_reasoning_mode(m, field=column) for m in modes}
    if len(distinct) != 1:
        raise ValueError(
            f"`{column}` holds {sorted(distinct) or 'no'} modes; GRPO applies one global `chat_template_kwargs`, so "
            "mix modes with style='system_prompt' instead."
        )
    return chat_template_kwargs_for_mode(distinct.pop(), base)


# --------------------------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------------------------
def generation_kwargs_for_mode(mode: Any, **overrides: Any) -> dict[str, Any]:
    """``generate`` kwargs per mode: ON samples at temperature 0.6, top-p 0.95; OFF decodes greedily (paper §7.1)."""
    return {**_GENERATION_DEFAULTS[normalize_reasoning_mode(mode)], **overrides}


def generation_config_for_mode(mode: Any, base: Any = None, **overrides: Any) -> Any:
    """A ``transformers.GenerationConfig`` (a copy of ``base`` if given) with the mode's sampling defaults."""
    import copy

    from transformers import GenerationConfig

    config = copy.deepcopy(base) if base is not None else GenerationConfig()
    kwargs = generation_kwargs_for_mode(mode, **overrides)
    if not kwargs.get("do_sample", True):  # greedy: unset sampling knobs so transformers does not warn
        kwargs = {"temperature": None, "top_p": None, "top_k": None, **kwargs}
    config.update(**kwargs)
    return config


def generate_with_reasoning_mode(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[Mapping[str, Any]]],
    mode: Any,
    style: str | None = None,
    *,
    max_new_tokens: int = 256,
    **generate_kwargs: Any,
) -> list[str]:
    """Generate one response per conversation in ``mode`` with the mode's sampling defaults; returns decoded text.

    Prompts are rendered with :func:`render_with_reasoning_mode`, left-padded and batched. ``generate_kwargs``
    override the defaults (e.g. ``temperature``). The decoded text excludes special tokens and any template pre-fill.
    """
    import torch

    style = resolve_reasoning_style(tokenizer, style)
    texts = [render_with_reasoning_mode(tokenizer, conversation, mode, style) for conversation in conversations]
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    finally:
        tokenizer.padding_side = padding_side
    config = generation_config_for_mode(mode, getattr(model, "generation_config", None), max_new_tokens=max_new_tokens)
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
    with torch.no_grad():
        output = model.generate(**inputs, generation_config=config, **generate_kwargs)
    return tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
