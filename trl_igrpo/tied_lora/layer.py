"""Tied-LoRA tuner layer: ``y = W x + scaling * v_l * (B (u_l * (A dropout(x))))`` (arXiv 2311.09578, Sec. 2).

The tied A and B do not live on the layer: they are one tensor per tie group, owned by the ``TiedLoraModel`` in its
``tiedlora_A`` / ``tiedlora_B`` containers, and each layer keeps an *unregistered* reference to those containers plus
the key of its group. That keeps a single copy in ``state_dict``/``named_parameters`` (saved once, seen once by the
optimiser) while autograd sums the gradient contributions of every layer that uses them. The per-layer u and v are
ordinary adapter weights of the layer; inside a fused group (the paper's QKV) only the first member owns u and the
siblings reference it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.tuners_utils import BaseTunerLayer, check_adapters_to_merge
from peft.utils import resolve_quantization_backend
from peft.utils.other import transpose
from torch import nn
from transformers.pytorch_utils import Conv1D

from .config import TiedLoraConfig

#: The C-level ``Tensor.data`` descriptor that :class:`Float32Parameter` wraps.
_TENSOR_DATA = torch.Tensor.data

KEEP_FLOAT32_WARNING = (
    "Tied-LoRA keeps its adapter parameters in float32 on a quantized base model and ignored a cast to {dtype} (TRL "
    "casts the trainable parameters of 4-/8-bit models to bfloat16). In bfloat16 the per-layer vectors u and v, which "
    "start at 1.0 where the spacing is 2^-7, could not take optimiser steps of ~lr: they would silently stop "
    "training. The adapter forward casts its input to float32 and its output back to the model's dtype instead."
)


class Float32Parameter(nn.Parameter):
    """An ``nn.Parameter`` whose values stay float32 whatever assigns lower-precision data to it later.

    Used for every Tied-LoRA adapter parameter on a quantized base model. TRL's SFT, GRPO and DPO trainers run
    ``param.data = param.data.to(torch.bfloat16)`` over all trainable parameters of a bitsandbytes 4-/8-bit model, and
    ``Module.to(dtype)`` / ``.half()`` assign ``param.data`` too; this parameter upcasts such data back to float32 (with
    a warning) instead of storing it. Device moves and float32 data pass through unchanged. Deep copies and pickling
    keep the class.
    """

    def __new__(cls, data: torch.Tensor | None = None, requires_grad: bool = True):
        if data is None:
            data = torch.empty(0)
        # a parameter passed in (accelerate's and PEFT's init_empty_weights re-wrap parameters with their own class) is
        # unwrapped to its plain tensor, which nn.Parameter requires of tensors of a Parameter subclass
        data = data.detach() if isinstance(data, nn.Parameter) else data
        if data.is_floating_point() and data.dtype != torch.float32:
            data = data.to(torch.float32)
        return super().__new__(cls, data, requires_grad)

    @property
    def data(self) -> torch.Tensor:
        """The parameter's tensor, as ``Tensor.data``; assigning non-float32 floating-point data stores it upcast."""
        return _TENSOR_DATA.__get__(self)

    @data.setter
    def data(self, value: torch.Tensor) -> None:
        if value.is_floating_point() and value.dtype != torch.float32:
            warnings.warn(KEEP_FLOAT32_WARNING.format(dtype=value.dtype), stacklevel=2)
            value = value.to(torch.float32)
        _TENSOR_DATA.__set__(self, value)

    def __reduce_ex__(self, protocol):
        return (_rebuild_float32_parameter, (self.detach(), self.requires_grad))


def _rebuild_float32_parameter(data: torch.Tensor, requires_grad: bool) -> Float32Parameter:
    return Float32Parameter(data, requires_grad=requires_grad)


def as_float32_parameter(param: nn.Parameter) -> Float32Parameter:
    """``param`` itself if it already is a :class:`Float32Parameter`, else one holding its values in float32."""
    if isinstance(param, Float32Parameter):
        return param
    return Float32Parameter(param.detach(), requires_grad=param.requires_grad)


class TiedLoraVector(nn.Module):
    """A per-layer scaling vector (u or v) held as ``.weight`` so that state-dict keys read ``...tiedlora_u.<adapter>
    .weight`` like LoRA's modules (TRL copies adapters by replacing ``.default.`` in parameter names)."""

    def __init__(self, size: int, value: float, device=None, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.full((size,), float(value), device=device, dtype=dtype))


def init_tied_matrix(shape: tuple[int, int], zero: bool, device=None, dtype=None) -> torch.Tensor:
    """A tied A or B: zeros when it is the zero-initialised factor, else LoRA's Kaiming-uniform (a = sqrt(5))."""
    tensor = torch.empty(shape, device=device, dtype=dtype)
    if zero:
        return nn.init.zeros_(tensor)
    if tensor.device.type == "meta":
        return tensor
    return nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))


class TiedLoraLayer(BaseTunerLayer):
    """PEFT tuner layer adding the Tied-LoRA update ``scaling * diag(v) B diag(u) A x`` to a wrapped base layer.

    The tied matrices A and B are not owned by the layer: they live on
    [`TiedLoraModel`][trl_igrpo.tied_lora.TiedLoraModel] (one pair per tie group, shared across layers) and are looked
    up by key. The layer owns only its per-layer scaling
    vectors u and v (or, inside a fused group, reads u from the sibling layer that owns it).
    """

    # per-adapter containers; `tiedlora_dropout` is listed so that every layer reports its adapters even when neither u
    # nor v is trained (TL5), where the layer owns no parameter at all
    adapter_layer_names = ("tiedlora_u", "tiedlora_v", "tiedlora_dropout")
    other_param_names = ("r", "scaling", "tiedlora_A_key", "tiedlora_B_key", "tiedlora_u_source")

    def __init__(self, base_layer: nn.Module, **kwargs) -> None:
        self.base_layer = base_layer
        self.r: dict[str, int] = {}
        self.scaling: dict[str, float] = {}
        self.tiedlora_A_key: dict[str, str] = {}
        self.tiedlora_B_key: dict[str, str] = {}
        # adapter -> sibling layer owning the shared per-layer u (fused groups); a plain dict, so not registered
        self.tiedlora_u_source: dict[str, TiedLoraLayer] = {}
        self.tiedlora_u = nn.ModuleDict({})
        self.tiedlora_v = nn.ModuleDict({})
        self.tiedlora_dropout = nn.ModuleDict({})
        self._disable_adapters = False
        self.merged_adapters = []
        # plain dict: a reference to the tuner's containers, deliberately not registered as submodules
        self.tiedlora_shared: dict[str, nn.ModuleDict] = {}

        base = self.get_base_layer()
        if isinstance(base, nn.Linear):
            in_features, out_features = base.in_features, base.out_features
        elif isinstance(base, Conv1D):
            in_features, out_features = base.weight.ds_shape if hasattr(base.weight, "ds_shape") else base.weight.shape
        else:
            raise TypeError(f"Tied-LoRA supports nn.Linear and Conv1D target modules, got {type(base).__name__}.")
        self.in_features = in_features
        self.out_features = out_features
        # PEFT's quantization backend of the base layer (bitsandbytes 4-/8-bit, ...): None when it is not quantized;
        # merge/unmerge go through it to dequantize and requantize the base weight
        self.quantization_backend = resolve_quantization_backend(
            base, get_apply_tensor_subclass=kwargs.get("get_apply_tensor_subclass")
        )
        self.kwargs = kwargs

    def update_layer(
        self,
        adapter_name: str,
        config: TiedLoraConfig,
        shared: dict[str, nn.ModuleDict],
        a_key: str,
        b_key: str,
        u_source: TiedLoraLayer | None = None,
        inference_mode: bool = False,
    ) -> None:
        """Attach adapter ``adapter_name``: record the tie-group keys and create the per-layer u and v it trains."""
        if a_key not in shared["A"][adapter_name] or b_key not in shared["B"][adapter_name]:
            raise KeyError(f"tied matrices {a_key!r}/{b_key!r} of adapter {adapter_name!r} were not created")
        self.tiedlora_shared = shared
        self.r[adapter_name] = config.r
        self.scaling[adapter_name] = config.scaling
        self.tiedlora_A_key[adapter_name] = a_key
        self.tiedlora_B_key[adapter_name] = b_key
        dropout = nn.Dropout(p=config.dropout) if config.dropout > 0.0 else nn.Identity()
        self.tiedlora_dropout[adapter_name] = dropout

        zero_factor = config.zero_initialised_factor() if config.init_weights else None
        if config.train_u:
            if u_source is not None:
                self.tiedlora_u_source[adapter_name] = u_source
            else:
                self.tiedlora_u[adapter_name] = TiedLoraVector(config.r, 0.0 if zero_factor == "u" else 1.0)
        if config.train_v:
            self.tiedlora_v[adapter_name] = TiedLoraVector(self.out_features, 0.0 if zero_factor == "v" else 1.0)
        if not config.init_weights:
            with torch.no_grad():
                for container in (self.tiedlora_u, self.tiedlora_v):
                    if adapter_name in container and container[adapter_name].weight.device.type != "meta":
                        container[adapter_name].weight.normal_(1.0, 0.5)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=inference_mode)

    # ----------------------------------------------------------------------------------------------------- factors
    def tied_factors(
        self, adapter: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(A, B, u, v) of ``adapter``; u or v is None when frozen (the identity)."""
        A = self.tiedlora_shared["A"][adapter][self.tiedlora_A_key[adapter]]
        B = self.tiedlora_shared["B"][adapter][self.tiedlora_B_key[adapter]]
        if adapter in self.tiedlora_u:
            u = self.tiedlora_u[adapter].weight
        elif adapter in self.tiedlora_u_source:
            u = self.tiedlora_u_source[adapter].tiedlora_u[adapter].weight
        else:
            u = None
        v = self.tiedlora_v[adapter].weight if adapter in self.tiedlora_v else None
        return A, B, u, v

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        """``scaling * diag(v) B diag(u) A`` in the layout of the base weight (transposed for ``fan_in_fan_out``), in
        the base weight's dtype (in the adapter's compute dtype when the base weight is quantized)."""
        A, B, u, v = self.tied_factors(adapter)
        weight = self.get_base_layer().weight
        quantized = self.quantization_backend is not None or not weight.dtype.is_floating_point
        # half-precision matmuls on CPU are slow or unsupported: compute in fp32 and cast back, as PEFT's LoRA does
        compute_dtype = (
            torch.float32 if weight.device.type == "cpu" and A.dtype in (torch.float16, torch.bfloat16) else A.dtype
        )
        A, B = A.to(compute_dtype), B.to(compute_dtype)
        if u is not None:
            A = A * u.to(compute_dtype)[:, None]
        if v is not None:
            B = B * v.to(compute_dtype)[:, None]
        delta = (B @ A) * self.scaling[adapter]
        return transpose(delta, self.fan_in_fan_out).to(delta.dtype if quantized else weight.dtype)

    # ------------------------------------------------------------------------------------------------ merge/unmerge
    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Add the adapters' delta weights into the base layer's weight (``safe_merge`` checks for non-finite values)."""
        adapter_names = check_adapters_to_merge(self, adapter_names)
        if not adapter_names:
            return
        self._check_base_weight_mergeable()
        for adapter in adapter_names:
            if adapter not in self.r:
                continue
            # get/set_base_weight (PEFT) dequantize and requantize a quantized base weight; plain .data otherwise
            weight = self.get_base_weight()
            merged = weight + self.get_delta_weight(adapter).to(weight.dtype)
            if safe_merge and not torch.isfinite(merged).all():
                raise ValueError(f"NaNs detected in the merged weights. The adapter {adapter} seems to be broken")
            self.set_base_weight(merged)
            self.merged_adapters.append(adapter)

    def unmerge(self) -> None:
        """Subtract every merged adapter's delta weight from the base layer's weight again."""
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.", stacklevel=2)
            return
        self._check_base_weight_mergeable()
        while self.merged_adapters:
            adapter = self.merged_adapters.pop()
            if adapter in self.r:
                weight = self.get_base_weight()
                self.set_base_weight(weight - self.get_delta_weight(adapter).to(weight.dtype))

    def _check_base_weight_mergeable(self) -> None:
        backend = self.quantization_backend
        if backend is None:
            return
        if not backend.supports_merge:
            raise TypeError(
                f"Cannot merge a Tied-LoRA adapter into a {backend.backend_name} quantized layer: PEFT cannot "
                "dequantize and requantize its weight. Keep the adapter unmerged, or load the base model unquantized "
                "to merge."
            )
        warnings.warn(
            f"Merging or unmerging Tied-LoRA in a {backend.backend_name} quantized layer requantizes the base weight: "
            "the result differs from the unmerged model by rounding errors.",
            stacklevel=3,
        )

    # ------------------------------------------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Base layer output plus, for each active adapter, ``scaling * (B diag(v)) (A diag(u)) dropout(x)``."""
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        if self.merged:
            return self.base_layer(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        previous_dtype = result.dtype
        for adapter in self.active_adapters:
            if adapter not in self.r:
                continue
            A, B, u, v = self.tied_factors(adapter)
            # fold the scaling vectors (and the scalar) into the small r x in / out x r matrices instead of scaling the
            # (batch, seq, r|out) activations: two matmuls per layer exactly like LoRA, plus O((in + out) r) work
            if u is not None:
                A = A * u[:, None]
            if v is not None:
                B = B * v[:, None]
            scaling = self.scaling[adapter]
            if scaling != 1.0:
                B = B * scaling
            out = F.linear(F.linear(self.tiedlora_dropout[adapter](self._cast_input_dtype(x, A.dtype)), A), B)
            result = result + out.to(previous_dtype)
        return result

    def supports_lora_conversion(self, adapter_name: str = "default") -> bool:
        """Always ``True``: the delta weight is an ordinary low-rank product, so PEFT can convert it to plain LoRA."""
        return True

    def __repr__(self) -> str:
        return "tiedlora." + nn.Module.__repr__(self)


class Linear(nn.Module, TiedLoraLayer):
    """Tied-LoRA wrapper of an ``nn.Linear`` (or GPT-2 style ``Conv1D``)."""

    # nn.Module precedes the mixin in the MRO (PEFT's layout), so route the two methods nn.Module also defines
    forward = TiedLoraLayer.forward
    __repr__ = TiedLoraLayer.__repr__

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        config: TiedLoraConfig,
        shared: dict[str, nn.ModuleDict],
        a_key: str,
        b_key: str,
        u_source: TiedLoraLayer | None = None,
        is_target_conv_1d_layer: bool = False,
        **kwargs,
    ) -> None:
        super().__init__()
        TiedLoraLayer.__init__(self, base_layer, **kwargs)
        self.fan_in_fan_out = config.fan_in_fan_out
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config, shared, a_key, b_key, u_source=u_source)
        self.is_target_conv_1d_layer = is_target_conv_1d_layer
