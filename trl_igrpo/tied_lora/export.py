"""Export a Tied-LoRA adapter as a standard PEFT LoRA adapter, losslessly (PEFT, vLLM and every LoRA consumer load it).

Tied-LoRA's update of layer l (arXiv 2311.09578, Sec. 2) is ``scaling · diag(v_l) · B · diag(u_l) · A``. That is a
LoRA update at the same rank r with

    lora_A_l = diag(u_l) · A          lora_B_l = diag(v_l) · B          lora_alpha = alpha  (scaling alpha / r)

so each adapted module gets its own ``lora_A``/``lora_B`` and the LoRA model computes the Tied-LoRA model's outputs (up
to float rounding). In a fused group (the paper's QKV) every member already has its own tied B (its rows of the fused
B) and reads the group's A and u, so each member's pair is built the same way. A frozen u or v is the identity.

The mapping from modules to the tied tensors (which A, B, u, v each module reads) is taken from a Tied-LoRA model built
by the tuner itself (the trained model, or one on the meta device from the base model's ``config.json``), so the export
follows the tuner's tie-group rules by construction; the tensors come from the saved ``adapter_model.safetensors``
(or the model). ``trl-igrpo export-lora`` (:mod:`trl_igrpo.tied_lora.cli`) is the command line of :func:`export_lora`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import warnings
from dataclasses import dataclass

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer, check_target_module_exists
from peft.utils import SAFETENSORS_WEIGHTS_NAME, get_peft_model_state_dict
from peft.utils.other import AuxiliaryTrainingWrapper
from torch import nn

from .card import EXPORT_CARD_HEADING, export_model_card
from .config import EXPORT_SOURCE_ATTRIBUTE, TIED_LORA_PEFT_TYPE, TiedLoraConfig
from .layer import TiedLoraLayer
from .model import TiedLoraModel

__all__ = [
    "EXPORT_SUBDIR",
    "TiedLoraExportError",
    "export_beside_saved_adapter",
    "export_lora",
    "export_saved_adapter",
    "tied_lora_to_lora",
]

#: Folder, inside a saved Tied-LoRA adapter, that ``TiedLoraConfig(export_lora=True)`` writes the LoRA export to.
EXPORT_SUBDIR = "lora"

_CONFIG_NAME = "adapter_config.json"
#: Names accepted for ``dtype`` / ``--dtype``.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: transformers auto class per PEFT task type (how the base model's module names were formed)
_AUTO_CLASSES = {
    None: "AutoModelForCausalLM",
    "CAUSAL_LM": "AutoModelForCausalLM",
    "SEQ_CLS": "AutoModelForSequenceClassification",
    "TOKEN_CLS": "AutoModelForTokenClassification",
    "QUESTION_ANS": "AutoModelForQuestionAnswering",
    "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM",
    "FEATURE_EXTRACTION": "AutoModel",
}


class TiedLoraExportError(ValueError):
    """The adapter cannot be exported as asked (not Tied-LoRA, another base model, existing output); says the fix."""


@dataclass(frozen=True)
class _ModulePlan:
    """One adapted module: its name in the base model and the checkpoint keys of the tied tensors it reads."""

    name: str
    in_features: int
    out_features: int
    r: int
    scaling: float
    a_key: str
    b_key: str
    u_key: str | None
    v_key: str | None


def _module_plans(tuner: TiedLoraModel, adapter: str) -> list[_ModulePlan]:
    """Per adapted module, the keys (as ``save_pretrained`` writes them) of its A, B, u and v; from the tuner itself."""
    names = {id(param): name for name, param in tuner.named_parameters()}

    def key(param: nn.Parameter | None) -> str | None:
        if param is None:
            return None
        return "base_model." + type(tuner)._remove_adapter_name_from_key(names[id(param)], adapter)

    plans = []
    for name, module in tuner.model.named_modules():
        if isinstance(module, TiedLoraLayer) and adapter in module.r:
            A, B, u, v = module.tied_factors(adapter)
            plans.append(
                _ModulePlan(
                    name,
                    module.in_features,
                    module.out_features,
                    module.r[adapter],
                    module.scaling[adapter],
                    key(A),
                    key(B),
                    key(u),
                    key(v),
                )  # fmt: skip
            )
    if not plans:
        raise TiedLoraExportError(f"The model has no Tied-LoRA layer for adapter {adapter!r}: nothing to export.")
    return plans


def _check_tensor(tensors: dict, key: str, shape: tuple[int, ...], module: str, base_hint: str) -> torch.Tensor:
    if key not in tensors:
        factor = next((f for f in ("tiedlora_A", "tiedlora_B") if f".{f}." in key), None)
        if factor is not None:  # tie-group keys name the shapes: another width shows up as another key
            held = sorted(k.rsplit(".", 1)[-1] for k in tensors if f".{factor}." in k)
            raise TiedLoraExportError(
                f"Module {module!r} of the base model needs the tied tensor {key!r}, but the adapter holds {factor} "
                f"{held}: it was trained on a base model with other dimensions or modules. {base_hint}"
            )
        raise TiedLoraExportError(
            f"The adapter has no tensor {key!r}, which module {module!r} of the base model needs: the adapter was "
            f"trained on another model (more layers or other modules). {base_hint}"
        )
    tensor = tensors[key]
    if tensor.numel() == 0 and math.prod(shape) > 0:
        raise TiedLoraExportError(
            f"{key!r} is empty: the model's parameters are partitioned (DeepSpeed ZeRO-3 / FSDP). Export from the "
            "saved adapter directory instead (`export_lora(checkpoint_dir, ...)`), or set `export_lora=True` in "
            "TiedLoraConfig so that every save writes the export."
        )
    if tuple(tensor.shape) != shape:
        raise TiedLoraExportError(
            f"{key!r} has shape {tuple(tensor.shape)}, but module {module!r} of the base model needs {shape}: the "
            f"adapter was trained on a base model with other dimensions. {base_hint}"
        )
    return tensor


def _compact_target_modules(tuner: TiedLoraModel, names: list[str], config: TiedLoraConfig) -> dict:
    """``target_modules`` (and layer selection) of the export: the bare module names (``q_proj`` ...) when PEFT's own
    matching of them selects exactly the adapted modules, else the full module names."""
    candidates: list[str] = []

    def walk(module: nn.Module, prefix: str) -> None:  # the base model's module names, not the wrappers' insides
        for child_name, child in module.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            candidates.append(name)
            if not isinstance(child, (BaseTunerLayer, AuxiliaryTrainingWrapper)):
                walk(child, name)

    walk(tuner.model, "")
    compact = {
        "target_modules": sorted({name.rsplit(".", 1)[-1] for name in names}),
        "layers_to_transform": config.layers_to_transform,
        "layers_pattern": config.layers_pattern,
    }
    probe = LoraConfig(**compact, modules_to_save=config.modules_to_save)
    adapted = set(names)
    if all(bool(check_target_module_exists(probe, key)) == (key in adapted) for key in candidates):
        return compact
    return {"target_modules": sorted(adapted)}


def _lora_alpha(config: TiedLoraConfig) -> float | int:
    alpha = config.r if config.alpha is None else config.alpha
    return int(alpha) if float(alpha).is_integer() else float(alpha)


def tied_lora_to_lora(
    model: PeftModel | TiedLoraModel,
    tensors: dict[str, torch.Tensor] | None = None,
    adapter_name: str | None = None,
    dtype: torch.dtype | None = None,
    base_hint: str = "",
) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
    """The standard LoRA adapter equal to a Tied-LoRA adapter: its ``LoraConfig`` and state dict (PEFT's saved keys).

    Args:
        model: A Tied-LoRA PEFT model; it names the adapted modules and the tied tensors each reads.
        tensors: The adapter's tensors as ``save_pretrained`` writes them (``adapter_model.safetensors``); ``None``
            takes them from ``model``.
        adapter_name: The adapter to export; ``None``: the active one.
        dtype: dtype of the exported tensors; ``None`` keeps the adapter's. Products are computed in float32.
        base_hint: Appended to shape/key mismatch errors (what to do about the base model).
    """
    tuner = model.base_model if isinstance(model, PeftModel) else model
    if not isinstance(tuner, TiedLoraModel):
        raise TiedLoraExportError(
            f"Expected a Tied-LoRA PEFT model, got {type(tuner).__name__}: export_lora converts Tied-LoRA adapters "
            "(peft_type TIEDLORA); a LoRA adapter already loads in PEFT and vLLM as is."
        )
    adapter = adapter_name or _single_active_adapter(tuner)
    config = tuner.peft_config[adapter]
    if tensors is None:
        tensors = get_peft_model_state_dict(model, adapter_name=adapter)
    plans = _module_plans(tuner, adapter)
    used: set[str] = set()
    state: dict[str, torch.Tensor] = {}
    for plan in plans:
        lora_A, lora_B = _lora_pair(plan, tensors, dtype, base_hint)
        state[f"base_model.model.{plan.name}.lora_A.weight"] = lora_A
        state[f"base_model.model.{plan.name}.lora_B.weight"] = lora_B
        used.update(key for key in (plan.a_key, plan.b_key, plan.u_key, plan.v_key) if key is not None)
    _pass_through_modules_to_save(tensors, used, config, state, dtype, base_hint)
    if len({(plan.r, plan.scaling) for plan in plans}) != 1 or plans[0].scaling != config.scaling:
        raise AssertionError("every Tied-LoRA layer of one adapter has the config's r and scaling")
    lora_config = LoraConfig(
        r=config.r,
        lora_alpha=_lora_alpha(config),  # LoRA's scaling lora_alpha / r is then Tied-LoRA's alpha / r exactly
        use_rslora=False,
        lora_dropout=config.dropout,
        fan_in_fan_out=config.fan_in_fan_out,
        bias="none",
        modules_to_save=copy.copy(config.modules_to_save),
        task_type=config.task_type,
        base_model_name_or_path=config.base_model_name_or_path,
        revision=config.revision,
        inference_mode=True,
        **_compact_target_modules(tuner, [plan.name for plan in plans], config),
    )
    return lora_config, state


def _lora_pair(
    plan: _ModulePlan, tensors: dict, dtype: torch.dtype | None, base_hint: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(diag(u_l) A, diag(v_l) B)`` of one module, computed in float32, in ``dtype`` (default: A's dtype)."""
    A = _check_tensor(tensors, plan.a_key, (plan.r, plan.in_features), plan.name, base_hint).detach()
    B = _check_tensor(tensors, plan.b_key, (plan.out_features, plan.r), plan.name, base_hint).detach()
    out_dtype = dtype or A.dtype
    A, B = A.to(torch.float32, copy=True), B.to(torch.float32, copy=True)  # never a view shared by two modules
    if plan.u_key is not None:
        u = _check_tensor(tensors, plan.u_key, (plan.r,), plan.name, base_hint)
        A = A * u.detach().to(A.device, torch.float32)[:, None]
    if plan.v_key is not None:
        v = _check_tensor(tensors, plan.v_key, (plan.out_features,), plan.name, base_hint)
        B = B * v.detach().to(B.device, torch.float32)[:, None]
    return A.to(out_dtype).cpu().contiguous(), B.to(out_dtype).cpu().contiguous()


def _single_active_adapter(tuner: TiedLoraModel) -> str:
    active = list(tuner.active_adapters)
    if len(active) != 1:
        raise TiedLoraExportError(f"Several adapters are active ({active}); pass `adapter_name=` to pick one.")
    return active[0]


def _pass_through_modules_to_save(
    tensors: dict, used: set, config: TiedLoraConfig, state: dict, dtype: torch.dtype | None, base_hint: str
) -> None:
    """Copy the fully trained ``modules_to_save`` (same keys in LoRA and Tied-LoRA); refuse any other leftover."""
    for key, tensor in tensors.items():
        if key in used:
            continue
        module_path = key.removeprefix("base_model.model.")
        if TiedLoraModel.prefix in key or not any(
            re.match(rf"(^|.*\.){re.escape(name)}\.", module_path) for name in config.modules_to_save or ()
        ):
            raise TiedLoraExportError(
                f"The adapter's tensor {key!r} belongs to no module of the base model: the adapter was trained on "
                f"another model (fewer layers or other modules). {base_hint}"
            )
        cast = dtype is not None and tensor.is_floating_point()
        state[key] = tensor.detach().to(dtype if cast else tensor.dtype).cpu().contiguous()


def _tied_parameter_count(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() for key, t in tensors.items() if TiedLoraModel.prefix in key)


def _write(output_dir: str, lora_config: LoraConfig, state: dict, card: str) -> None:
    from safetensors.torch import save_file

    os.makedirs(output_dir, exist_ok=True)
    save_file(state, os.path.join(output_dir, SAFETENSORS_WEIGHTS_NAME), metadata={"format": "pt"})
    lora_config.save_pretrained(output_dir)
    with open(os.path.join(output_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)


def _check_output_dir(output_dir: str, overwrite: bool, source_dir: str | None = None) -> None:
    if source_dir is not None and os.path.realpath(output_dir) == os.path.realpath(source_dir):
        raise TiedLoraExportError(
            f"--output_dir {output_dir} is the Tied-LoRA adapter's own directory; the export would replace it. Pick "
            f"another directory, e.g. {os.path.join(output_dir, EXPORT_SUBDIR)}."
        )
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise TiedLoraExportError(
            f"--output_dir {output_dir} exists and is not empty; nothing was written. Pick a new directory, or pass "
            "--overwrite (overwrite=True) to replace the adapter files in it."
        )


# --------------------------------------------------------------------------------------------- saved adapter dirs
def _read_tied_config(adapter_path: str) -> TiedLoraConfig:
    config_path = os.path.join(adapter_path, _CONFIG_NAME)
    if not os.path.isfile(config_path):
        checkpoints = sorted(
            (d for d in os.listdir(adapter_path) if d.startswith("checkpoint-"))
            if os.path.isdir(adapter_path)
            else (),
            key=lambda d: int(d.split("-")[-1]) if d.split("-")[-1].isdigit() else -1,
        )
        hint = (
            f" It holds checkpoints; the latest is {os.path.join(adapter_path, checkpoints[-1])}."
            if checkpoints
            else ""
        )
        raise TiedLoraExportError(
            f"{adapter_path} has no {_CONFIG_NAME}: pass the directory of a saved Tied-LoRA adapter (a training "
            f"output_dir or one of its checkpoint-N folders).{hint}"
        )
    with open(config_path, encoding="utf-8") as f:
        peft_type = json.load(f).get("peft_type")
    if peft_type != TIED_LORA_PEFT_TYPE:
        fix = (
            "It already is a standard LoRA adapter: PEFT and vLLM load it as is, no export needed."
            if peft_type == "LORA"
            else "PEFT's `peft.save_as_lora` converts some other adapter types approximately (SVD)."
        )
        raise TiedLoraExportError(
            f"{adapter_path} holds a {peft_type} adapter, not Tied-LoRA (peft_type TIEDLORA); export_lora converts "
            f"Tied-LoRA adapters only. {fix}"
        )
    return TiedLoraConfig.from_pretrained(adapter_path)


def _read_tensors(adapter_path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = os.path.join(adapter_path, SAFETENSORS_WEIGHTS_NAME)
    if not os.path.isfile(path):
        raise TiedLoraExportError(
            f"{adapter_path} has no {SAFETENSORS_WEIGHTS_NAME} (only safetensors are read, never pickles): save the "
            "adapter with `save_pretrained(..., safe_serialization=True)` (the default)."
        )
    return load_file(path)


def _meta_structure(config: TiedLoraConfig, base_model: str) -> PeftModel:
    """The Tied-LoRA model on the meta device, from the base model's ``config.json`` only (no weights are read)."""
    import transformers

    try:
        model_config = transformers.AutoConfig.from_pretrained(
            base_model, revision=config.revision, trust_remote_code=False
        )
    except (OSError, ValueError) as error:
        raise TiedLoraExportError(
            f"Could not read the base model's config.json from {base_model!r} ({error}). Pass --base_model with a "
            "local path or Hub id of the model the adapter was trained on."
        ) from error
    model_config.__dict__.pop("quantization_config", None)  # the module names and shapes are what matter here
    task = getattr(config.task_type, "value", config.task_type)
    auto_class = getattr(transformers, _AUTO_CLASSES.get(task, "AutoModelForCausalLM"))
    structure_config = copy.deepcopy(config)
    structure_config.export_lora = False
    with torch.device("meta"):
        model = auto_class.from_config(model_config)
        try:
            return get_peft_model(model, structure_config)
        except ValueError as error:
            raise TiedLoraExportError(
                f"The adapter's target modules do not fit the base model {base_model!r} ({error}). Pass --base_model "
                "with the model the adapter was trained on."
            ) from error


def _same_model(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    if os.path.exists(a) and os.path.exists(b):
        return os.path.realpath(a) == os.path.realpath(b)
    return a.rstrip("/") == b.rstrip("/")


def _resolve_base_model(config: TiedLoraConfig, base_model: str | None, allow_different: bool) -> str:
    recorded = config.base_model_name_or_path
    if base_model is None:
        if recorded is None:
            raise TiedLoraExportError(
                "The adapter's adapter_config.json records no base_model_name_or_path; pass --base_model (the model "
                "the adapter was trained on)."
            )
        return recorded
    if recorded is not None and not _same_model(recorded, base_model) and not allow_different:
        raise TiedLoraExportError(
            f"The adapter was trained on {recorded!r} (adapter_config.json), but --base_model is {base_model!r}. The "
            "export records its base model in adapter_config.json, and PEFT and vLLM apply it to that model. Drop "
            f"--base_model to use {recorded!r}, or, if {base_model!r} is the same model under another name (a local "
            "copy, a mirror), pass --allow_different_base_model."
        )
    return base_model


def export_saved_adapter(
    adapter_path: str,
    output_dir: str | None = None,
    *,
    base_model: str | None = None,
    allow_different_base_model: bool = False,
    structure: PeftModel | TiedLoraModel | None = None,
    structure_adapter: str | None = None,
    dtype: torch.dtype | None = None,
    overwrite: bool = False,
    source: str | None = None,
) -> str:
    """Export the Tied-LoRA adapter saved in ``adapter_path`` to ``output_dir`` (default ``adapter_path/lora``).

    ``structure`` (a live Tied-LoRA model of the same adapter, e.g. the one being trained) names the modules; without
    it the base model's ``config.json`` is read and the model is built on the meta device. See :func:`export_lora`.
    """
    output_dir = output_dir or os.path.join(adapter_path, EXPORT_SUBDIR)
    _check_output_dir(output_dir, overwrite, source_dir=adapter_path)
    config = _read_tied_config(adapter_path)
    tensors = _read_tensors(adapter_path)
    if structure is None:
        base = _resolve_base_model(config, base_model, allow_different_base_model)
        structure, structure_adapter = _meta_structure(config, base), "default"
        hint = f"Pass --base_model with the model the adapter was trained on (recorded: {config.base_model_name_or_path!r})."
    else:
        base, hint = config.base_model_name_or_path, "The live model does not match the saved adapter."
    lora_config, state = tied_lora_to_lora(structure, tensors, structure_adapter, dtype=dtype, base_hint=hint)
    lora_config.base_model_name_or_path = base
    card = export_model_card(lora_config, config, source or f"`{adapter_path}`", _tied_parameter_count(tensors), state)
    _write(output_dir, lora_config, state, card)
    return output_dir


def export_lora(
    model_or_adapter_path: PeftModel | str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    base_model: str | None = None,
    adapter_name: str | None = None,
    dtype: torch.dtype | str | None = None,
    overwrite: bool = False,
    allow_different_base_model: bool = False,
) -> str:
    """Write a Tied-LoRA adapter as a standard PEFT LoRA adapter that PEFT, vLLM and other LoRA consumers load as is.

    The export is exact: ``lora_A_l = diag(u_l) A``, ``lora_B_l = diag(v_l) B`` (each fused-group member's own B) and
    ``lora_alpha = alpha`` at the same rank r, so the LoRA update ``lora_alpha / r · lora_B_l lora_A_l`` is the
    Tied-LoRA update ``scaling · diag(v_l) B diag(u_l) A`` (arXiv 2311.09578, Sec. 2). ``modules_to_save`` are copied.
    The output holds ``adapter_config.json`` (``peft_type: LORA``), ``adapter_model.safetensors`` and a model card.

    Args:
        model_or_adapter_path: A Tied-LoRA ``PeftModel`` in memory, or the directory of a saved Tied-LoRA adapter
            (a training ``output_dir`` or ``checkpoint-N``).
        output_dir: Where to write the LoRA adapter; must be new or empty unless ``overwrite``.
        base_model: Saved adapters only: the base model (path or Hub id) whose ``config.json`` gives the module names
            and shapes; default: ``base_model_name_or_path`` of the adapter config. No weights are loaded.
        adapter_name: In-memory models with several adapters: which one; default the active one.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` (or a ``torch.dtype``) for the exported tensors; ``None``
            keeps the adapter's dtype.
        overwrite: Replace the adapter files of a non-empty ``output_dir``.
        allow_different_base_model: Accept a ``base_model`` whose name differs from the recorded one (a local copy
            of the same model); it is then recorded in the export.

    Returns:
        ``output_dir`` as a string.

    Raises:
        TiedLoraExportError: not a Tied-LoRA adapter, a base model that does not fit it, or an existing output.
    """
    output_dir = os.fspath(output_dir)
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise TiedLoraExportError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}.")
        dtype = DTYPES[dtype]
    if isinstance(model_or_adapter_path, (str, os.PathLike)):
        if adapter_name is not None:
            raise TiedLoraExportError(
                "adapter_name selects an adapter of an in-memory model; a saved directory holds one adapter (PEFT "
                f"saves adapter {adapter_name!r} into <dir>/{adapter_name}): pass that directory instead."
            )
        return export_saved_adapter(
            os.fspath(model_or_adapter_path), output_dir, base_model=base_model, dtype=dtype, overwrite=overwrite,
            allow_different_base_model=allow_different_base_model,
        )  # fmt: skip
    model = model_or_adapter_path
    if base_model is not None or allow_different_base_model:
        raise TiedLoraExportError(
            "base_model and allow_different_base_model apply to saved adapter directories; an in-memory model "
            "already is its base model. Drop them, or pass the saved adapter's directory."
        )
    if not isinstance(model, PeftModel):
        raise TiedLoraExportError(
            f"Expected a Tied-LoRA PeftModel or an adapter directory, got {type(model).__name__}; unwrap a trainer's "
            "model first (`accelerator.unwrap_model(trainer.model)`)."
        )
    _check_output_dir(output_dir, overwrite)
    if not isinstance(model.base_model, TiedLoraModel):
        tied_lora_to_lora(model)  # raises, saying what the model is
    adapter_name = adapter_name or _single_active_adapter(model.base_model)
    tensors = get_peft_model_state_dict(model, adapter_name=adapter_name)
    lora_config, state = tied_lora_to_lora(model, tensors, adapter_name, dtype=dtype)
    tied_config = model.peft_config[adapter_name]
    card = export_model_card(lora_config, tied_config, "an in-memory model", _tied_parameter_count(tensors), state)
    _write(output_dir, lora_config, state, card)
    return output_dir


def export_beside_saved_adapter(save_directory: str, config: TiedLoraConfig) -> str | None:
    """``TiedLoraConfig(export_lora=True).save_pretrained``: export the adapter just saved in ``save_directory`` into
    ``save_directory/lora``. Uses the live model that ``config`` belongs to for the module layout when there is one."""
    if not os.path.isfile(os.path.join(save_directory, SAFETENSORS_WEIGHTS_NAME)):
        if os.path.isfile(os.path.join(save_directory, "adapter_model.bin")):
            raise TiedLoraExportError(
                f"export_lora=True: {save_directory} holds a pickled adapter_model.bin, and the export reads "
                "safetensors only. Save with safe_serialization=True (the default), or set export_lora=False."
            )
        warnings.warn(
            f"export_lora=True, but {save_directory} holds no adapter weights (a config-only save): no LoRA export "
            "was written.",
            stacklevel=3,
        )
        return None
    output_dir = os.path.join(save_directory, EXPORT_SUBDIR)
    _check_previous_export(output_dir)
    reference, adapter = getattr(config, EXPORT_SOURCE_ATTRIBUTE, (lambda: None, None))
    return export_saved_adapter(
        save_directory, output_dir, structure=reference(), structure_adapter=adapter, overwrite=True,
        source="in the folder above this one (this folder is its `lora/` export)",
    )  # fmt: skip


def _check_previous_export(output_dir: str) -> None:
    """``save_directory/lora`` may only be replaced when it is empty or a previous export."""
    if not os.path.isdir(output_dir) or not os.listdir(output_dir):
        return
    card = os.path.join(output_dir, "README.md")
    if os.path.isfile(card):
        with open(card, encoding="utf-8") as f:
            if EXPORT_CARD_HEADING in f.read():
                return
    raise TiedLoraExportError(
        f"export_lora=True would write the LoRA export into {output_dir}, which holds other files. Move them, or set "
        "export_lora=False."
    )
