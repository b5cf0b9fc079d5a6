"""trl-igrpo: NVIDIA reasoning post-training recipes (iGRPO, RPO, Tied-LoRA, reasoning ON/OFF) on the TRL API.

The public names below are imported on first use (PEP 562), as TRL and transformers do, so that ``import trl_igrpo``
and the ``trl-igrpo`` command line (``--help``, ``serve``) do not pay for importing torch, transformers and TRL until a
trainer is actually needed.

One thing must not wait for first use: the Tied-LoRA tuner has to be registered with PEFT before PEFT reads an adapter
config, even when the user never touches a ``trl_igrpo`` attribute (``import trl_igrpo`` then
``PeftModel.from_pretrained(base, tied_lora_dir)``). So importing ``trl_igrpo`` registers the tuner right away when PEFT
is already imported, and otherwise as soon as PEFT's own import finishes (:class:`_RegisterTiedLoraWhenPeftLoads`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# submodule -> the public names it defines (mirrors the TYPE_CHECKING imports below)
_EXPORTS_BY_SUBMODULE: dict[str, tuple[str, ...]] = {
    "core": ("GRPOBaseConfig", "UnscorableRewardsError"),
    "core.trainer": ("GRPOBaseTrainer",),
    "curriculum": (
        "CurriculumConfigMixin",
        "ProgressiveBatchSampler",
        "compute_pass_rates",
        "filter_by_pass_rate",
    ),
    "grpo": ("CurriculumGRPOConfig",),
    "grpo.trainer": ("CurriculumGRPOTrainer",),
    "hub": ("HubMixin", "HubTokenError", "require_hub_token"),
    "igrpo": ("IGRPOConfig",),
    "igrpo.trainer": ("IGRPOTrainer",),
    "rpo": (
        "DataCollatorForRPO",
        "OnlineRPOConfig",
        "OnlineRPOTrainer",
        "RPOConfig",
        "RPOTrainer",
        "rpo_bwd_kl",
        "rpo_fwd_kl",
        "rpo_listwise",
        "rpo_sq",
    ),
    "tied_lora": ("TiedLoraConfig", "TiedLoraModel"),
    "utils.distributed": ("end_distributed_run",),
}
_LAZY_EXPORTS = {name: submodule for submodule, names in _EXPORTS_BY_SUBMODULE.items() for name in names}
__all__ = sorted([*_LAZY_EXPORTS, "__version__"])

if TYPE_CHECKING:  # static analysers and the API docs (griffe) see the real objects
    from .core import GRPOBaseConfig, UnscorableRewardsError
    from .core.trainer import GRPOBaseTrainer
    from .curriculum import CurriculumConfigMixin, ProgressiveBatchSampler, compute_pass_rates, filter_by_pass_rate
    from .grpo import CurriculumGRPOConfig
    from .grpo.trainer import CurriculumGRPOTrainer
    from .hub import HubMixin, HubTokenError, require_hub_token
    from .igrpo import IGRPOConfig
    from .igrpo.trainer import IGRPOTrainer
    from .rpo import (
        DataCollatorForRPO,
        OnlineRPOConfig,
        OnlineRPOTrainer,
        RPOConfig,
        RPOTrainer,
        rpo_bwd_kl,
        rpo_fwd_kl,
        rpo_listwise,
        rpo_sq,
    )
    from .tied_lora import TiedLoraConfig, TiedLoraModel
    from .utils.distributed import end_distributed_run


def __getattr__(name: str):
    submodule = _LAZY_EXPORTS.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{submodule}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_EXPORTS))


def _register_tied_lora() -> None:
    try:
        importlib.import_module(".tied_lora", __name__)  # importing the subpackage registers the tuner
    except Exception as error:  # never break `import peft` for the user; say why Tied-LoRA is unavailable
        warnings.warn(f"trl-igrpo could not register the Tied-LoRA tuner with PEFT: {error!r}", stacklevel=2)


class _RegisterTiedLoraWhenPeftLoads(importlib.abc.MetaPathFinder):
    """Import hook: when ``peft`` is imported, run its normal loader, then register Tied-LoRA, then remove the hook.

    It stays in ``sys.meta_path`` until PEFT is actually executed: a mere ``importlib.util.find_spec("peft")`` (how
    transformers and TRL check that PEFT is available) must not use it up.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "peft":
            return None
        for finder in sys.meta_path:  # the spec PEFT would get without this hook
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        load_peft = spec.loader.exec_module
        hook = self

        def exec_module(module):
            load_peft(module)
            if hook in sys.meta_path:
                sys.meta_path.remove(hook)
            _register_tied_lora()

        spec.loader.exec_module = exec_module  # this spec's own loader instance, used for this one import only
        return spec


if "peft" in sys.modules:
    _register_tied_lora()
elif not any(isinstance(finder, _RegisterTiedLoraWhenPeftLoads) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterTiedLoraWhenPeftLoads())
