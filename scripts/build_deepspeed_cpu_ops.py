"""Build DeepSpeed's CPU communication op once, before any launch (``make install`` runs this).

On a machine without CUDA, DeepSpeed's CPU accelerator compiles its shared-memory communication op
(``ShareMemCommBuilder``, ``deepspeed_shm_comm``) with torch's C++ extension loader the first time a process starts
DeepSpeed's communication layer, on every rank of every launch that finds it missing: minutes on a small machine,
inside whatever timeout the launch runs under. A compile that is killed leaves ``<dir>/deepspeed_shm_comm/lock``
behind, and the next launch then waits on it forever in ``torch/utils/file_baton.py``.

So the op is built here, once, into a fixed ``TORCH_EXTENSIONS_DIR`` (default ``<venv>/torch_extensions``, which the
Makefile exports for every target), after removing a lock left by an earlier killed build. Later launches with the same
``TORCH_EXTENSIONS_DIR`` only load it. Nothing to do (exit 0) when deepspeed is not installed or its accelerator is not
the CPU one (CUDA machines use NCCL and need no such op).

    TORCH_EXTENSIONS_DIR=.venv/torch_extensions .venv/bin/python scripts/build_deepspeed_cpu_ops.py
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path


def extensions_dir() -> Path:
    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path(sys.prefix) / "torch_extensions").resolve()


def main() -> int:
    directory = extensions_dir()
    os.environ["TORCH_EXTENSIONS_DIR"] = str(directory)  # before deepspeed/torch read it
    if importlib.util.find_spec("deepspeed") is None:
        print("deepspeed is not installed: no DeepSpeed CPU op to build")
        return 0
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()
    if accelerator.device_name() != "cpu":
        print(f"DeepSpeed runs on {accelerator.device_name()!r} here: the CPU communication op is not needed")
        return 0
    builder = accelerator.create_op_builder("ShareMemCommBuilder")
    lock = directory / builder.name / "lock"
    if lock.exists():
        lock.unlink()
        print(f"removed a stale lock left by a killed build: {lock}")
    start = time.perf_counter()
    module = builder.load(verbose=False)
    print(f"DeepSpeed CPU op ready: {module.__file__} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
