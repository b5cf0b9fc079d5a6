"""Generating in a reasoning mode with the mode's sampling defaults (Llama-Nemotron, arXiv 2505.00949 §7.1 and the
model cards): ON samples at temperature 0.6, top-p 0.95; OFF decodes greedily."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .conversations import render_with_reasoning_mode
from .modes import OFF, ON, normalize_reasoning_mode, resolve_reasoning_style

__all__ = ["generate_with_reasoning_mode", "generation_config_for_mode", "generation_kwargs_for_mode"]

_GENERATION_DEFAULTS: dict[str, dict[str, Any]] = {
    ON: {"do_sample": True, "temperature": 0.6, "top_p": 0.95},
    OFF: {"do_sample": False},
}


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
