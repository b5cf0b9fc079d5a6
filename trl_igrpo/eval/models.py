"""Loading what ``trl-igrpo eval`` evaluates: a full checkpoint, or a PEFT adapter (LoRA, Tied-LoRA, ...) on its base.

An adapter directory is recognised by its ``adapter_config.json``. The base model is the one the adapter records
(``base_model_name_or_path``) unless ``base_model_name_or_path`` is given, the adapter is loaded with
``PeftModel.from_pretrained`` and merged into the base weights (generation then runs at the base model's speed). The
package's import registers the Tied-LoRA tuner with PEFT, so Tied-LoRA adapters load like any other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["adapter_base_model", "is_adapter", "load_model_and_tokenizer", "resolve_dtype"]


def is_adapter(name_or_path: str) -> bool:
    """Whether ``name_or_path`` is a PEFT adapter: a local directory with ``adapter_config.json``, or a Hub repo whose
    ``adapter_config.json`` can be fetched (from the cache when offline)."""
    path = Path(os.path.expanduser(name_or_path))
    if path.is_dir():
        return (path / "adapter_config.json").is_file()
    if path.exists():
        return False
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(name_or_path, "adapter_config.json")
    except Exception:
        return False
    return True


def adapter_base_model(adapter_name_or_path: str) -> str:
    """The ``base_model_name_or_path`` an adapter's ``adapter_config.json`` records.

    Raises ``ValueError`` when it records none (pass ``--base_model_name_or_path``).
    """
    path = Path(os.path.expanduser(adapter_name_or_path))
    if path.is_dir():
        config = json.loads((path / "adapter_config.json").read_text())
    else:
        from huggingface_hub import hf_hub_download

        config = json.loads(Path(hf_hub_download(adapter_name_or_path, "adapter_config.json")).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(
            f"the adapter {adapter_name_or_path!r} does not record its base model (no base_model_name_or_path in "
            "adapter_config.json); pass --base_model_name_or_path."
        )
    return base


def resolve_dtype(dtype: str | None):
    """``"auto"``/``None`` -> ``"auto"``; ``"float32"``, ``"bfloat16"``, ``"float16"`` -> the torch dtype."""
    import torch

    if dtype in (None, "auto"):
        return "auto"
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown --dtype {dtype!r}; use auto, float32, bfloat16 or float16.")
    return value


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in ("tokenizer_config.json", "tokenizer.json", "tokenizer.model"))


def load_model_and_tokenizer(
    model_name_or_path: str,
    base_model_name_or_path: str | None = None,
    dtype: str | None = "auto",
    device: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    merge_adapter: bool = True,
) -> tuple[Any, Any, dict[str, Any]]:
    """Load a causal LM for evaluation; returns ``(model, tokenizer, info)``.

    ``info`` records what was loaded: ``{"model", "adapter", "base_model", "peft_type"}``. A missing local path
    raises ``FileNotFoundError`` in one line (:func:`~trl_igrpo.utils.model_path.check_model_path`), for the adapter's
    recorded base model too. The tokenizer comes from the adapter directory when it has one, else from the base; a
    tokenizer without a pad token pads with EOS. ``device=None`` picks CUDA when available.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .. import tied_lora  # noqa: F401  (registers the Tied-LoRA tuner with PEFT before an adapter config is read)
    from ..utils.model_path import check_model_path

    model_name_or_path = check_model_path(model_name_or_path) or model_name_or_path
    common = {"revision": revision, "trust_remote_code": trust_remote_code}
    info: dict[str, Any] = {"model": model_name_or_path, "adapter": None, "base_model": None, "peft_type": None}
    if is_adapter(model_name_or_path):
        from peft import PeftConfig, PeftModel

        base = base_model_name_or_path or adapter_base_model(model_name_or_path)
        base = check_model_path(base, what="base model path (from the adapter's adapter_config.json)") or base
        peft_config = PeftConfig.from_pretrained(model_name_or_path)
        model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=resolve_dtype(dtype), **common)
        model = PeftModel.from_pretrained(model, model_name_or_path)
        if merge_adapter:
            model = model.merge_and_unload()
        adapter_dir = Path(os.path.expanduser(model_name_or_path))
        tokenizer_source = model_name_or_path if adapter_dir.is_dir() and _has_tokenizer(adapter_dir) else base
        peft_type = getattr(peft_config.peft_type, "value", peft_config.peft_type)
        info.update(adapter=model_name_or_path, base_model=base, peft_type=str(peft_type))
    else:
        if base_model_name_or_path is not None:
            raise ValueError(
                f"--base_model_name_or_path is for adapters, but {model_name_or_path!r} has no adapter_config.json."
            )
        model = AutoModelForCausalLM.from_pretrained(model_name_or_path, dtype=resolve_dtype(dtype), **common)
        tokenizer_source = model_name_or_path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, **common)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    model.eval()
    return model, tokenizer, info
