"""Test helpers shared by several test modules (import as ``from helpers import ...``; pytest puts ``tests/`` on
``sys.path``). Fixtures live in ``conftest.py``."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import torch


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for test servers and the distributed rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_processes(
    script: str | Path,
    *script_args: str,
    config_file: str | Path | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: int = 540,
) -> subprocess.CompletedProcess:
    """Run ``script`` on 2 real processes (gloo on CPU) through ``accelerate launch`` and return the finished process.

    ``--multi_gpu --num_processes 2`` with ``ACCELERATE_USE_CPU=true`` (``--cpu --num_processes 2`` silently runs one
    process), ``OMP_NUM_THREADS=1`` per rank, a free rendezvous port, and an optional accelerate ``config_file``
    (DeepSpeed, FSDP) whose engine then replaces plain DDP.
    """
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        **(extra_env or {}),
    }
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    if config_file is not None:
        launch += ["--config_file", str(config_file), "--num_processes", "2"]
    else:
        launch += ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
        launch += ["--dynamo_backend", "no"]
    launch += ["--main_process_port", str(free_port()), str(script), *map(str, script_args)]
    return subprocess.run(launch, env=env, capture_output=True, text=True, timeout=timeout)


def snapshot_trainable(model) -> dict[str, torch.Tensor]:
    """A detached copy of every trainable parameter, by name."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def unchanged_parameters(model, before: dict[str, torch.Tensor]) -> list[str]:
    """Names in ``before`` whose parameter is still exactly equal to its snapshot."""
    return [name for name, p in model.named_parameters() if name in before and torch.equal(p.detach(), before[name])]


def varied_reward(completions, **kwargs) -> list[float]:
    """Non-constant, deterministic rewards: every group gets a non-zero advantage, so the loss has a gradient."""
    rng = random.Random(len(completions) + sum(len(str(c)) for c in completions))
    return [rng.random() for _ in completions]


def two_rank_results(script: str | Path, model_dir: str | Path, out_dir: Path, **launch_kwargs) -> list[dict]:
    """Launch ``script model_dir out_dir`` on 2 processes (:func:`launch_two_processes`), check it succeeded, and
    return what each rank wrote to ``out_dir/rank{r}.json``."""
    import json

    result = launch_two_processes(script, model_dir, out_dir, **launch_kwargs)
    assert result.returncode == 0, result.stderr[-4000:]
    return [json.loads((Path(out_dir) / f"rank{rank}.json").read_text()) for rank in (0, 1)]


#: DeepSpeed's CPU communication op (``ShareMemCommBuilder``): torch builds it under ``$TORCH_EXTENSIONS_DIR/<name>``.
DEEPSPEED_CPU_COMM_OP = "deepspeed_shm_comm"


def deepspeed_extensions_dir() -> Path:
    """Where DeepSpeed's CPU ops are built: ``$TORCH_EXTENSIONS_DIR``, else ``<venv>/torch_extensions`` (the Makefile's
    choice, see ``scripts/build_deepspeed_cpu_ops.py``)."""
    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path(sys.prefix) / "torch_extensions")


def deepspeed_cpu_env() -> dict[str, str]:
    """``extra_env`` for a DeepSpeed launch on CPU, after checking the communication op is built and not locked.

    A launch would otherwise compile the op on every rank (minutes, inside the test's timeout), or, with a lock left by
    a killed compile, wait forever in ``torch/utils/file_baton.py``. ``ACCELERATE_USE_CPU`` must be off: accelerate
    skips DeepSpeed when it is on (the config's ``use_cpu: true`` and the trainer's ``use_cpu=True`` are enough).
    """
    import importlib.util

    import pytest

    if importlib.util.find_spec("deepspeed") is None:
        pytest.fail("deepspeed is not installed: it is in the dev extra, run `make install`.")
    op_dir = deepspeed_extensions_dir() / DEEPSPEED_CPU_COMM_OP
    fix = "run `make install` (or `python scripts/build_deepspeed_cpu_ops.py`) with the same TORCH_EXTENSIONS_DIR"
    if (op_dir / "lock").exists():
        pytest.fail(f"{op_dir / 'lock'} exists (left by a killed compile?): a launch would hang on it; {fix}.")
    if not (op_dir / f"{DEEPSPEED_CPU_COMM_OP}.so").exists():
        pytest.fail(f"DeepSpeed's CPU op is not built in {op_dir}: {fix}.")
    return {"ACCELERATE_USE_CPU": "false", "TORCH_EXTENSIONS_DIR": str(deepspeed_extensions_dir())}
