"""Tied-LoRA tuner model (arXiv 2311.09578): owns the tied A/B matrices and wraps the target layers.

The tied matrices are model-level shared state, as in PEFT's VB-LoRA vector bank: ``tiedlora_A[adapter][group]`` and
``tiedlora_B[adapter][group]`` are ``nn.ParameterDict`` entries of this module, so they appear exactly once in
``named_parameters()`` (the optimiser steps them once, autograd sums every layer's gradient into them) and once in the
saved adapter (``base_model.tiedlora_A.<group>``). Layers look them up through an unregistered reference at forward time.
"""

from __future__ import annotations

import warnings
import weakref

import torch
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils import get_quantization_kwargs, resolve_quantization_backend
from torch import nn
from transformers.pytorch_utils import Conv1D

from .config import DEFAULT_TARGET_MODULES, EXPORT_SOURCE_ATTRIBUTE, TiedLoraConfig
from .layer import Float32Parameter, Linear, TiedLoraLayer, as_float32_parameter, init_tied_matrix

_HALF_DTYPES = (torch.float16, torch.bfloat16)

#: Tag added to the base model (``add_model_tags``), so that PEFT's model card of a saved adapter lists it.
MODEL_CARD_TAG = "tied-lora"


def is_quantized_model(model: nn.Module) -> bool:
    """Whether ``model`` was loaded quantized: TRL's test (``is_loaded_in_4bit``/``8bit``, on which it casts trainable
    parameters to bfloat16) or any transformers quantizer (``hf_quantizer``)."""
    return bool(
        getattr(model, "is_loaded_in_4bit", False)
        or getattr(model, "is_loaded_in_8bit", False)
        or getattr(model, "hf_quantizer", None) is not None
    )


def tie_group_keys(target_name: str, in_features: int, out_features: int, fused_module_groups) -> tuple[str, str]:
    """Keys of the tied A and B a target module uses (pure function of its name and shape).

    Outside fused groups one (A, B) pair is tied per (out, in) shape. A member of a fused group (e.g. the paper's QKV)
    shares the group's A (one per input size) and gets its own tied B (one per member name and shape).
    """
    for group in fused_module_groups or ():
        if target_name in group:
            return f"fused_{'_'.join(group)}_in{in_features}", f"fused_{target_name}_{out_features}x{in_features}"
    key = f"linear_{out_features}x{in_features}"
    return key, key


class TiedLoraModel(BaseTuner):
    """Creates a Tied-LoRA model from a transformers model; use through ``peft.get_peft_model``.

    Example:
        ```py
        >>> import trl_igrpo.tied_lora  # registers the tuner with PEFT
        >>> from peft import get_peft_model
        >>> from trl_igrpo.tied_lora import TiedLoraConfig
        >>> model = get_peft_model(base_model, TiedLoraConfig(r=8))  # TL6 on fused q/k/v
        ```
    """

    prefix: str = "tiedlora_"
    tuner_layer_cls = TiedLoraLayer
    target_module_mapping: dict[str, list[str]] = {}
    uses_shared_state: bool = True

    # ------------------------------------------------------------------------------------------------ shared state
    def _pre_injection_hook(self, model: nn.Module, config: TiedLoraConfig, adapter_name: str) -> None:
        self._ensure_shared_containers()
        # a weak back-reference (not a dataclass field: never saved) through which `export_lora=True` saves find the
        # module layout of this adapter, even when the saving process holds partitioned (ZeRO-3) parameters
        setattr(config, EXPORT_SOURCE_ATTRIBUTE, (weakref.ref(self), adapter_name))  # noqa: B010

    def _post_injection_hook(self, model: nn.Module, config: TiedLoraConfig, adapter_name: str) -> None:
        # PEFT's model card (README.md of save_pretrained) takes the base model's tags: name the method there
        if hasattr(model, "add_model_tags"):
            model.add_model_tags([MODEL_CARD_TAG])

    def _ensure_shared_containers(self) -> dict[str, nn.ModuleDict]:
        # BaseTuner.__getattr__ forwards unknown names to the wrapped model, so look in _modules, not hasattr
        if "tiedlora_A" not in self._modules:
            self.tiedlora_A = nn.ModuleDict({})
            self.tiedlora_B = nn.ModuleDict({})
        return {"A": self._modules["tiedlora_A"], "B": self._modules["tiedlora_B"]}

    def _get_or_create_tied(
        self, config: TiedLoraConfig, adapter_name: str, factor: str, key: str, shape: tuple[int, int], base_layer
    ) -> None:
        containers = self._ensure_shared_containers()
        if adapter_name not in containers[factor]:
            containers[factor][adapter_name] = nn.ParameterDict({})
        bank = containers[factor][adapter_name]
        if key in bank:
            if tuple(bank[key].shape) != shape:
                raise ValueError(f"tied {factor} {key!r} has shape {tuple(bank[key].shape)}, expected {shape}")
            return
        weight = base_layer.weight
        # quantized: float32 from the start (a packed weight may even have a float storage dtype, e.g. bf16 4-bit)
        keep_float32 = (
            self._has_quantized_base()
            or resolve_quantization_backend(base_layer, **get_quantization_kwargs(self.model)) is not None
        )
        dtype = weight.dtype if weight.dtype.is_floating_point and not keep_float32 else torch.float32
        zero = config.init_weights and config.zero_initialised_factor() == factor
        trainable = config.train_A if factor == "A" else config.train_B
        parameter_cls = Float32Parameter if keep_float32 else nn.Parameter
        bank[key] = parameter_cls(
            init_tied_matrix(shape, zero, device=weight.device, dtype=dtype), requires_grad=trainable
        )

    def _has_quantized_base(self) -> bool:
        """Whether the base model is quantized (see :func:`is_quantized_model`) or any adapted layer is."""
        return is_quantized_model(self.model) or any(
            m.quantization_backend is not None for m in self.model.modules() if isinstance(m, TiedLoraLayer)
        )

    def _keep_adapter_float32(self, adapter_name: str) -> None:
        """On a quantized base model, make every parameter of ``adapter_name`` a float32
        [`Float32Parameter`][trl_igrpo.tied_lora.Float32Parameter] (idempotent).

        TRL casts the trainable parameters of bitsandbytes models to bfloat16 after ``get_peft_model``; u and v start
        at 1.0, where bfloat16 cannot represent steps below 2^-8, so they would never train (TL6 silently becoming
        TL5). Runs after injection and after PEFT loads weights (``_cast_adapter_dtype``), which may replace parameters.
        """
        if not self._has_quantized_base():
            return
        for module in self.model.modules():
            if not isinstance(module, TiedLoraLayer):
                continue
            for container in (module.tiedlora_u, module.tiedlora_v):
                if adapter_name in container:
                    vector = container[adapter_name]
                    vector.weight = as_float32_parameter(vector.weight)
        for container in self._ensure_shared_containers().values():
            if adapter_name in container:
                bank = container[adapter_name]
                for key in list(bank.keys()):
                    bank[key] = as_float32_parameter(bank[key])

    def tied_parameters(self, adapter_name: str | None = None) -> dict[str, nn.Parameter]:
        """The tied matrices as ``{"A/<group>": param, "B/<group>": param}`` for one adapter (default: active)."""
        adapter_name = adapter_name or self.active_adapters[0]
        containers = self._ensure_shared_containers()
        out = {}
        for factor, container in containers.items():
            if adapter_name in container:
                out.update({f"{factor}/{key}": p for key, p in container[adapter_name].items()})
        return out

    def _set_tied_requires_grad(self, adapter_name: str, requires_grad: bool) -> None:
        config = self.peft_config.get(adapter_name)
        if config is None:
            return
        containers = self._ensure_shared_containers()
        for factor, flag in (("A", config.train_A), ("B", config.train_B)):
            if adapter_name in containers[factor]:
                for param in containers[factor][adapter_name].values():
                    param.requires_grad_(requires_grad and flag)

    # --------------------------------------------------------------------------------------------------- injection
    def _prepare_adapter_config(self, peft_config: TiedLoraConfig, model_config: dict) -> TiedLoraConfig:
        if peft_config.target_modules is None:
            peft_config.target_modules = set(DEFAULT_TARGET_MODULES)
        return peft_config

    def _create_and_replace(
        self,
        tiedlora_config: TiedLoraConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **optional_kwargs,
    ) -> None:
        if current_key is None:
            raise ValueError("Current Key shouldn't be `None`")
        base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
        is_conv1d = isinstance(base, Conv1D)
        if isinstance(base, nn.Linear):
            in_features, out_features = base.in_features, base.out_features
            if tiedlora_config.fan_in_fan_out:
                warnings.warn(
                    "fan_in_fan_out is set to True but the target module is `torch.nn.Linear`; setting it to False.",
                    stacklevel=2,
                )
                tiedlora_config.fan_in_fan_out = False
        elif is_conv1d:
            in_features, out_features = base.weight.ds_shape if hasattr(base.weight, "ds_shape") else base.weight.shape
            if not tiedlora_config.fan_in_fan_out:
                warnings.warn(
                    "fan_in_fan_out is set to False but the target module is `Conv1D`; setting it to True.",
                    stacklevel=2,
                )
                tiedlora_config.fan_in_fan_out = True
        else:
            raise TypeError(
                f"Target module {current_key!r} is a {type(base).__name__}; Tied-LoRA supports `torch.nn.Linear` and "
                "`transformers.pytorch_utils.Conv1D` only. Check `target_modules`."
            )

        r = tiedlora_config.r
        if r > min(in_features, out_features):
            raise ValueError(
                f"Tied-LoRA r={r} is larger than target module {current_key!r} allows: its weight is "
                f"{out_features} x {in_features}, so its update diag(v) B diag(u) A has rank at most "
                f"{min(in_features, out_features)}, and a larger r only adds parameters that cannot change it. Set "
                f"r <= {min(in_features, out_features)}, or leave this module out of target_modules."
            )
        a_key, b_key = tie_group_keys(target_name, in_features, out_features, tiedlora_config.fused_module_groups)
        self._get_or_create_tied(tiedlora_config, adapter_name, "A", a_key, (r, in_features), base)
        self._get_or_create_tied(tiedlora_config, adapter_name, "B", b_key, (out_features, r), base)
        shared = self._ensure_shared_containers()

        # inside a fused group (same parent, same input) the per-layer u is owned by the first member wrapped
        u_source = None
        group = next((g for g in tiedlora_config.fused_module_groups if target_name in g), None)
        if group is not None and tiedlora_config.train_u:
            for sibling_name in group:
                sibling = parent._modules.get(sibling_name)
                if (
                    sibling_name != target_name
                    and isinstance(sibling, TiedLoraLayer)
                    and adapter_name in sibling.tiedlora_u
                ):
                    u_source = sibling
                    break

        if isinstance(target, TiedLoraLayer):
            target.update_layer(adapter_name, tiedlora_config, shared, a_key, b_key, u_source=u_source)
        else:
            new_module = Linear(
                target, adapter_name, tiedlora_config, shared, a_key, b_key, u_source=u_source,
                is_target_conv_1d_layer=is_conv1d, **get_quantization_kwargs(self.model),
            )  # fmt: skip
            if adapter_name not in self.active_adapters:
                # adding an additional adapter: it is not automatically trainable
                new_module.requires_grad_(False)
            self._replace_module(parent, target_name, new_module, target)

    def inject_adapter(self, model: nn.Module, adapter_name: str, *args, **kwargs) -> None:
        """PEFT's adapter injection, keeping the ``requires_grad`` of the other adapters' tied matrices unchanged."""
        # BaseTuner.inject_adapter restores the requires_grad of pre-existing parameters of the *wrapped* model only;
        # do the same for the tied matrices of the other adapters, which live on this module
        saved = {
            name: [(p, p.requires_grad) for p in self.tied_parameters(name).values()]
            for name in self.peft_config
            if name != adapter_name
        }
        super().inject_adapter(model, adapter_name, *args, **kwargs)
        for flags in saved.values():
            for param, requires_grad in flags:
                param.requires_grad_(requires_grad)
        self._keep_adapter_float32(adapter_name)

    # ------------------------------------------------------------------------------------ trainability & adapters
    def _mark_only_adapters_as_trainable(self, model: nn.Module) -> None:
        super()._mark_only_adapters_as_trainable(model)
        for name, config in self.peft_config.items():
            self._set_tied_requires_grad(name, name in self.active_adapters and not config.inference_mode)

    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        """Activate adapter(s) as PEFT does; the model-level tied matrices of active adapters train, others freeze."""
        super().set_adapter(adapter_name, inference_mode=inference_mode)
        active = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        for name in self.peft_config:
            self._set_tied_requires_grad(name, name in active and not inference_mode)

    def set_requires_grad(self, adapter_names, requires_grad: bool = True) -> None:
        """PEFT's ``set_requires_grad``, extended to the adapters' tied matrices held on this model."""
        super().set_requires_grad(adapter_names, requires_grad=requires_grad)
        for name in [adapter_names] if isinstance(adapter_names, str) else adapter_names:
            self._set_tied_requires_grad(name, requires_grad)

    def delete_adapter(self, adapter_name: str) -> None:
        """Delete an adapter from every layer (PEFT) and drop its tied matrices from this model."""
        super().delete_adapter(adapter_name)
        for container in self._ensure_shared_containers().values():
            if adapter_name in container:
                del container[adapter_name]

    def _cast_adapter_dtype(self, adapter_name: str, autocast_adapter_dtype: bool = True) -> None:
        """Upcast fp16/bf16 adapter weights to fp32 like PEFT does for LoRA, including the model-level tied ones.

        On a quantized base model every adapter parameter becomes a float32
        [`Float32Parameter`][trl_igrpo.tied_lora.Float32Parameter], even with ``autocast_adapter_dtype=False``.
        PEFT calls this after creating and after loading an adapter.
        """
        super()._cast_adapter_dtype(adapter_name, autocast_adapter_dtype=autocast_adapter_dtype)
        self._keep_adapter_float32(adapter_name)
        if not autocast_adapter_dtype:
            return
        for container in self._ensure_shared_containers().values():
            if adapter_name not in container:
                continue
            bank = container[adapter_name]
            for key in list(bank.keys()):
                param = bank[key]
                if param.dtype in _HALF_DTYPES:
                    bank[key] = nn.Parameter(param.detach().to(torch.float32), requires_grad=param.requires_grad)
