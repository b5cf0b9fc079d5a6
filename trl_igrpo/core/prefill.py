"""Prefill each distinct prompt once: GRPO asks for G completions of every prompt (iGRPO: N drafts of q, G refinements
of q'), and transformers' ``generate`` encodes each copy of the prompt separately.

:func:`shared_prompt_prefill` wraps a model's ``generate`` for one call: consecutive identical rows of the left-padded
batch are encoded once (one forward over the distinct prompts minus their last token, logits of one position only),
the key/value cache is copied to every row of the run (and to each of its beams or returned sequences, as ``generate``
expands them), and ``generate`` continues from it. The attention mask, the position ids, the logits processors and the
sampling calls are those ``generate`` would use on the full batch; only the duplicated prompt encoding is skipped. The
prompt's keys and values can differ from the full-batch ones in the last bits (CPU kernels block by batch size), so
next-token scores agree to about 1e-6: greedy completions are the same token for token, and so are sampled ones unless
two tokens are within rounding of each other (tested over every generation setting TRL accepts, under LoRA, Tied-LoRA
and 4-bit models: ``tests/test_prefill_equivalence.py``).

The settings ``generate`` actually runs with are the caller's ``generation_config`` with its unset fields filled from
the model's own ``generation_config`` (transformers' rule), so that is what is checked. The wrapper steps aside (the
normal ``generate``, same result, no saving) for anything whose cache is not a plain key/value cache it can copy:
state-space and hybrid models, ``cache_implementation`` set (static, offloaded, quantized caches), ``use_cache=False``,
chunked prefill, token healing, decoding modes other than greedy, sampling and beam search (assisted, contrastive,
constrained, group beam), prompt-learning PEFT adapters, encoder-decoder models, multimodal inputs and any other
argument it does not know (:func:`prefill_unsupported_reason` names the reason).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["effective_generation_config", "prefill_unsupported_reason", "prompt_runs", "shared_prompt_prefill"]

logger = logging.getLogger(__name__)

#: Decoding modes whose only use of a cache is to extend it (and, for beams, to reorder its rows).
SHARED_PREFILL_MODES = ("greedy_search", "sample", "beam_search", "beam_sample")
#: ``generate`` arguments the wrapper understands (``tokenizer`` only serves stop strings, which read the full ids).
_KNOWN_ARGUMENTS = frozenset({"input_ids", "attention_mask", "generation_config", "tokenizer"})


def prompt_runs(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(first_row_of_each_run, run_index_of_each_row)`` for consecutive identical rows; None if no row repeats."""
    rows = input_ids.size(0)
    same_as_previous = torch.zeros(rows, dtype=torch.bool)
    if rows > 1:
        same_as_previous[1:] = (input_ids[1:] == input_ids[:-1]).all(dim=1) & (
            attention_mask[1:] == attention_mask[:-1]
        ).all(dim=1)
    if not bool(same_as_previous.any()):
        return None
    run_index = torch.cumsum(~same_as_previous, dim=0) - 1
    first_rows = torch.nonzero(~same_as_previous, as_tuple=False).flatten()
    return first_rows, run_index


def _transformers_model(model):
    """The transformers model under PEFT wrappers: ``PeftModel.forward`` takes ``**kwargs`` and declares nothing, so
    what the forward accepts (``logits_to_keep``, the cache argument's name) is read from the model it calls."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def _forward_parameters(model) -> Mapping[str, inspect.Parameter]:
    """The class's ``forward`` parameters: instance-level wrappers (accelerate hooks, test doubles) take ``**kwargs``."""
    return inspect.signature(type(_transformers_model(model)).forward).parameters


def _cache_argument(model) -> str:
    """``cache`` on transformers versions that renamed ``past_key_values``, else ``past_key_values``."""
    return "cache" if "cache" in _forward_parameters(model) else "past_key_values"


def _logits_to_keep(model) -> dict:
    """The prefill forward needs only the key/value cache: ask for the logits of one position, not all of them.

    Without it a causal LM returns ``rows x prompt_length x vocabulary`` logits (1.2 GB in bf16 for 16 prompts of 254
    tokens at Qwen's 151,936-token vocabulary), which raised iGRPO's peak GPU memory by ~1.9 GiB on an H200.
    """
    return {"logits_to_keep": 1} if "logits_to_keep" in _forward_parameters(model) else {}


def effective_generation_config(model, generation_config=None):
    """The settings ``generate`` runs with: ``generation_config`` with its unset fields taken from the model's own
    ``generation_config`` (transformers' ``_prepare_generation_config``); None if transformers cannot build it."""
    prepare = getattr(_transformers_model(model), "_prepare_generation_config", None)
    if prepare is None:
        return None
    try:
        return prepare(generation_config)[0]
    except Exception:  # e.g. generation settings left in model.config: generate itself will say so
        return None


def prefill_unsupported_reason(model, generate_kwargs: Mapping[str, Any]) -> str | None:
    """Why :func:`shared_prompt_prefill` must leave this ``generate`` call alone, or None when it can share the
    prompt encoding without changing the result."""
    unknown = sorted(set(generate_kwargs) - _KNOWN_ARGUMENTS)
    if unknown:
        return f"generate arguments {unknown} (multimodal inputs, an explicit cache, ...)"
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and getattr(peft_config, "is_prompt_learning", False):
        return "a prompt-learning PEFT adapter (it builds its own cache)"
    base = _transformers_model(model)
    if getattr(base.config, "is_encoder_decoder", False):
        return "an encoder-decoder model"
    supports_dynamic = getattr(base, "_supports_default_dynamic_cache", None)
    if supports_dynamic is None or not supports_dynamic():
        return "no plain key/value cache (state-space or hybrid layers)"
    if not _logits_to_keep(model):
        return "the forward has no logits_to_keep (the prefill would compute logits for every prompt position)"
    config = effective_generation_config(model, generate_kwargs.get("generation_config"))
    if config is None:
        return "generation settings transformers cannot resolve"
    if config.cache_implementation is not None:
        return f"cache_implementation={config.cache_implementation!r}"
    if config.use_cache is False:
        return "use_cache=False"
    if getattr(config, "prefill_chunk_size", None) is not None:
        return "prefill_chunk_size (chunked prefill)"
    if getattr(config, "token_healing", False):
        return "token_healing (it rewrites the prompt's last tokens)"
    mode = str(getattr(config.get_generation_mode(), "value", config.get_generation_mode()))
    if mode not in SHARED_PREFILL_MODES:
        return f"the {mode} decoding mode"
    return None


def _rows_per_prompt(model, generation_config) -> int:
    """Rows ``generate`` makes of each input row (``repeat_interleave`` by ``max(num_beams, num_return_sequences)``)."""
    config = effective_generation_config(model, generation_config)
    return max(int(config.num_beams or 1), int(config.num_return_sequences or 1))


@contextlib.contextmanager
def shared_prompt_prefill(model):
    """Within the block, ``model.generate`` encodes each run of identical prompt rows once (see the module docstring).

    The wrapper replaces ``generate`` on this model instance for the block and restores it on exit: TRL's
    ``_generate_single_turn`` calls ``unwrapped_model.generate(...)`` itself and offers no hook, so the only other way
    in would be a copy of that method.
    """
    from transformers import DynamicCache

    original_generate = model.generate
    stepped_aside = set[str]()

    def generate(*args, **kwargs):
        input_ids, attention_mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if args or input_ids is None or attention_mask is None or input_ids.size(1) < 2:
            return original_generate(*args, **kwargs)
        reason = prefill_unsupported_reason(model, kwargs)
        if reason is not None:
            if reason not in stepped_aside:
                stepped_aside.add(reason)
                logger.info("Shared prompt prefill steps aside (normal generate) for %s.", reason)
            return original_generate(*args, **kwargs)
        runs = prompt_runs(input_ids.cpu(), attention_mask.cpu())
        if runs is None:
            return original_generate(*args, **kwargs)
        first_rows, run_index = (tensor.to(input_ids.device) for tensor in runs)
        ids, mask = input_ids[first_rows, :-1], attention_mask[first_rows, :-1]
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)  # generate's own rule for left padding
        argument = _cache_argument(model)
        cache = DynamicCache(config=_transformers_model(model).config)
        if not all(hasattr(layer, "batch_select_indices") for layer in getattr(cache, "layers", [])):
            return original_generate(*args, **kwargs)  # e.g. linear-attention / state-space layers of hybrid models
        with torch.no_grad():
            model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                **{argument: cache}, **_logits_to_keep(model),
            )  # fmt: skip
        # each run's prefix cache to all of its rows, and to every beam / returned sequence generate makes of a row
        expand = _rows_per_prompt(model, kwargs.get("generation_config"))
        cache.batch_select_indices(run_index.repeat_interleave(expand))
        return original_generate(**kwargs, **{argument: cache})

    had_instance_generate = "generate" in vars(model)
    model.generate = generate
    try:
        yield
    finally:
        if had_instance_generate:
            model.generate = original_generate
        else:
            del model.generate  # back to the class's method
