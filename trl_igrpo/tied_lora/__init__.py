"""Tied-LoRA (Renduchintala, Konuk, Kuchaiev; arXiv 2311.09578) as an out-of-tree PEFT 0.21 tuner.

Importing this package registers the tuner with PEFT so that ``peft.get_peft_model(model, TiedLoraConfig(...))``,
``PeftModel.from_pretrained`` and ``PeftConfig.from_pretrained`` handle Tied-LoRA adapters.

Registration note: ``peft.register_peft_method`` requires a member of the closed ``PeftType`` enum, which an external
package cannot add. PEFT 0.21 uses the peft type as a dict key (it never calls ``PeftType(...)``) and reads ``.value``
in some messages, so the config sets ``peft_type = TiedLoraPeftType.TIEDLORA`` (a ``str`` enum member equal to
``"TIEDLORA"``) and we insert that key into PEFT's three mapping dicts directly. This relies on private PEFT
structures, hence the ``peft>=0.21,<0.22`` pin.

Loading a saved adapter needs this registration first (``import trl_igrpo`` does it). PEFT 0.21 has no plugin or
entry-point discovery, and it looks ``"TIEDLORA"`` up before any code of this package could run, so a process that
never imported ``trl_igrpo`` gets PEFT's bare ``KeyError: 'TIEDLORA'``. The saved files say what to do instead: the
``load_requires`` field of ``adapter_config.json`` and a section of the adapter's README.md. To load an adapter
where ``trl_igrpo`` is not installed (plain PEFT, vLLM, other LoRA tools), export it: :func:`export_lora` writes the
equal standard LoRA adapter (``trl-igrpo export-lora`` on the command line).
"""

from __future__ import annotations

import peft
from packaging.version import Version

from .config import (
    DEFAULT_TARGET_MODULES,
    FUSED_QKV,
    LOAD_REQUIRES,
    TIED_LORA_CONFIGURATIONS,
    TIED_LORA_PEFT_TYPE,
    UNKNOWN_TIED_LORA_CONFIGURATIONS,
    TiedLoraConfig,
    TiedLoraPeftType,
    fused_qkv_trainable_parameters,
    lora_trainable_parameters,
)
from .export import EXPORT_SUBDIR, TiedLoraExportError, export_lora, export_saved_adapter, tied_lora_to_lora
from .layer import Float32Parameter, Linear, TiedLoraLayer, TiedLoraVector
from .model import TiedLoraModel, is_quantized_model, tie_group_keys

__all__ = [
    "DEFAULT_TARGET_MODULES",
    "EXPORT_SUBDIR",
    "FUSED_QKV",
    "LOAD_REQUIRES",
    "TIED_LORA_CONFIGURATIONS",
    "TIED_LORA_PEFT_TYPE",
    "UNKNOWN_TIED_LORA_CONFIGURATIONS",
    "Float32Parameter",
    "Linear",
    "TiedLoraConfig",
    "TiedLoraExportError",
    "TiedLoraLayer",
    "TiedLoraModel",
    "TiedLoraPeftType",
    "TiedLoraVector",
    "export_lora",
    "export_saved_adapter",
    "fused_qkv_trainable_parameters",
    "is_quantized_model",
    "lora_trainable_parameters",
    "register_tied_lora",
    "tie_group_keys",
    "tied_lora_to_lora",
]


def register_tied_lora() -> None:
    """Insert Tied-LoRA into PEFT's peft-type mappings (idempotent)."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    if not Version("0.21") <= Version(peft.__version__) < Version("0.22"):
        raise ImportError(
            f"trl_igrpo.tied_lora registers into PEFT's internal mappings and is tested with peft 0.21.x; found "
            f"peft {peft.__version__}."
        )
    registered = PEFT_TYPE_TO_TUNER_MAPPING.get(TIED_LORA_PEFT_TYPE)
    if registered is not None and registered.__qualname__ != TiedLoraModel.__qualname__:
        raise KeyError(f"PEFT type {TIED_LORA_PEFT_TYPE!r} is already registered to {registered!r}.")
    clash = [
        t for t, p in PEFT_TYPE_TO_PREFIX_MAPPING.items() if p == TiedLoraModel.prefix and t != TIED_LORA_PEFT_TYPE
    ]
    if clash:
        raise KeyError(f"Prefix {TiedLoraModel.prefix!r} is already used by PEFT type {clash[0]!r}.")
    PEFT_TYPE_TO_CONFIG_MAPPING[TIED_LORA_PEFT_TYPE] = TiedLoraConfig
    PEFT_TYPE_TO_TUNER_MAPPING[TIED_LORA_PEFT_TYPE] = TiedLoraModel
    PEFT_TYPE_TO_PREFIX_MAPPING[TIED_LORA_PEFT_TYPE] = TiedLoraModel.prefix


register_tied_lora()
