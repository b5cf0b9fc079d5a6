"""Prefill each distinct prompt once: GRPO asks for G completions of every prompt (iGRPO: N drafts of q, G refinements
of q'), and transformers' ``generate`` encodes each copy of the prompt separately.

:func:`shared_prompt_prefill` wraps a model's ``generate`` for one call: consecutive identical rows of the left-padded
batch are encoded once (one forward over the distinct prompts minus their last token), the key/value cache is copied
to every row of the run, and ``generate`` continues from it. The attention mask, the position ids and the sampling
calls are those ``generate`` would use on the full batch; only the duplicated prompt encoding is skipped. The prompt's
keys and values can differ from the full-batch ones in the last bits (CPU kernels block by batch size), so next-token
scores agree to about 1e-6: greedy completions are the same token for token, and so are sampled ones unless two
tokens are within rounding of each other (tested: identical on the warm-started demo model). Models whose cache is not a plain key/value cache
(state-space and hybrid models), static cache implementations and multimodal inputs keep the normal path.
"""

from __future__ import annotations

import contextlib
import inspect

import torch

__all__ = ["prompt_runs", "shared_prompt_prefill"]


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


def _cache_argument(model) -> str:
    """``cache`` on transformers versions that renamed ``past_key_values``, else ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _logits_to_keep(model) -> dict:
    """The prefill forward needs only the key/value cache: ask for the logits of one position, not all of them.

    Without it a causal LM returns ``rows x prompt_length x vocabulary`` logits (1.2 GB in bf16 for 16 prompts of 254
    tokens at Qwen's 151,936-token vocabulary), which raised iGRPO's peak GPU memory by ~1.9 GiB on an H200.
    """
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def _supports_shared_prefill(model, generation_config, kwargs: dict) -> bool:
    supports_dynamic = getattr(model, "_supports_default_dynamic_cache", None)
    if supports_dynamic is None or not supports_dynamic():
        return False
    if generation_config is not None and getattr(generation_config, "cache_implementation", None) is not None:
        return False
    extra = set(kwargs) - {"input_ids", "attention_mask", "generation_config"}
    return not extra  # multimodal fields, an explicit cache, ...: keep the normal path


@contextlib.contextmanager
def shared_prompt_prefill(model):
    """Within the block, ``model.generate`` encodes each run of identical prompt rows once (see the module docstring)."""
    from transformers import DynamicCache

    original_generate = model.generate

    def generate(*args, **kwargs):
        input_ids, attention_mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if args or input_ids is None or attention_mask is None or input_ids.size(1) < 2:
            return original_generate(*args, **kwargs)
        if not _supports_shared_prefill(model, kwargs.get("generation_config"), kwargs):
            return original_generate(*args, **kwargs)
        runs = prompt_runs(input_ids.cpu(), attention_mask.cpu())
        if runs is None:
            return original_generate(*args, **kwargs)
        first_rows, run_index = (tensor.to(input_ids.device) for tensor in runs)
        ids, mask = input_ids[first_rows, :-1], attention_mask[first_rows, :-1]
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)  # generate's own rule for left padding
        argument = _cache_argument(model)
        cache = DynamicCache(config=model.config)
        if not all(hasattr(layer, "batch_select_indices") for layer in getattr(cache, "layers", [])):
            return original_generate(*args, **kwargs)  # e.g. linear-attention / state-space layers of hybrid models
        with torch.no_grad():
            model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                **{argument: cache}, **_logits_to_keep(model),
            )  # fmt: skip
        cache.batch_select_indices(run_index)  # copy each run's prefix cache to all of its rows
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
