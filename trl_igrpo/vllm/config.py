"""Config fields of the vLLM integration, shared by every GRPO-based config of the package."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .weight_sync import WEIGHT_SYNC_BACKENDS

__all__ = ["VLLMSyncConfigMixin"]


@dataclass
class VLLMSyncConfigMixin:
    r"""
    Configuration fields of the vLLM integration, shared by every GRPO-based config of the package (a dataclass mixin
    of [`~trl_igrpo.core.GRPOBaseConfig`]): how the policy's weights reach vLLM, and the extra engine arguments of
    colocate mode (see :mod:`trl_igrpo.vllm`). TRL's own vLLM fields (`use_vllm`, `vllm_mode`, ...) are those of
    [`~trl.GRPOConfig`].

    Parameters:
        > Parameters that control the weight sync

        vllm_weight_sync (`str`, *optional*, defaults to `"auto"`):
            `"nccl"` (TRL's path, needs CUDA), `"reload"` (colocate: vLLM's model runner reloads the weights in
            place) or `"filesystem"` (server: safetensors written to `vllm_weight_sync_dir`, then the server reloads
            them). `"auto"` picks `"nccl"` on CUDA and a reload path otherwise. One sync serves both iGRPO stages.
        vllm_weight_sync_dir (`str` or `None`, *optional*, defaults to `None`):
            `"filesystem"` only: a directory the server can read (a shared path when it runs on another node);
            `None` uses a temporary directory.

        > Parameters that control the colocated engine

        vllm_engine_kwargs (`dict`, `str` or `None`, *optional*, defaults to `None`):
            Extra `vllm.LLM(...)` arguments in colocate mode, e.g. `{"quantization": "fp8"}` for FP8 rollouts as in
            [Llama-Nemotron](https://huggingface.co/papers/2505.00949), or `{"dtype": "float32"}`. A JSON string works
            on the command line. Server mode: pass them to `trl-igrpo serve` instead.
    """

    vllm_weight_sync: str = field(
        default="auto",
        metadata={
            "help": "vLLM weight sync: 'auto' (nccl on CUDA, else reload/filesystem), 'nccl', 'reload', 'filesystem'."
        },
    )
    vllm_weight_sync_dir: str | None = field(
        default=None, metadata={"help": "Directory the vLLM server reloads weights from ('filesystem' sync)."}
    )
    vllm_engine_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": 'Extra vllm.LLM kwargs in colocate mode (JSON string on the CLI), e.g. \'{"quantization": "fp8"}\'.'
        },
    )

    def _validate_vllm_sync(self) -> None:
        """Check the vLLM fields (call from ``__post_init__``); a JSON string ``vllm_engine_kwargs`` becomes a dict."""
        if self.vllm_weight_sync not in WEIGHT_SYNC_BACKENDS:
            raise ValueError(f"vllm_weight_sync must be one of {WEIGHT_SYNC_BACKENDS}, got {self.vllm_weight_sync!r}.")
        if isinstance(self.vllm_engine_kwargs, str):
            try:
                self.vllm_engine_kwargs = json.loads(self.vllm_engine_kwargs)
            except json.JSONDecodeError as error:
                raise ValueError(f"vllm_engine_kwargs must be a dict or a JSON object string: {error}") from error
        if self.vllm_engine_kwargs is not None and not isinstance(self.vllm_engine_kwargs, dict):
            raise ValueError(f"vllm_engine_kwargs must be a dict, got {type(self.vllm_engine_kwargs).__name__}.")
