"""Multi-process runs: checking that the requested sharded engine is the one running, and ending a run cleanly.

**Requested engine.** ``accelerate launch --config_file fsdp2.yaml`` (or ``deepspeed_zero3.yaml``) only *asks* for
FSDP or DeepSpeed, through ``ACCELERATE_USE_FSDP`` / ``ACCELERATE_USE_DEEPSPEED``; ``AcceleratorState`` then decides,
and some set-ups silently get plain DDP instead (accelerate 1.15 enables FSDP only for GPU-type devices, so on CPU an
FSDP config trains as DDP, every process holding the whole model and optimizer state). :func:`check_requested_engine`
compares the request with the result and stops the run before training, naming the reason and the fix. The trainers
call it right after TRL's constructor (``GRPOBaseTrainer``, ``RPOTrainer``); set ``TRL_IGRPO_ALLOW_ENGINE_FALLBACK=1``
to train with the engine accelerate chose after a warning.

**Ending a run.**
A script launched with ``accelerate launch`` on CPU (gloo) can fail after training has finished. Gloo's worker threads
sometimes hold the last reference to a finished collective whose tensors belong to Python, and freeing those tensors
needs the GIL. Two things can then go wrong:

- **Abort at exit.** If the interpreter is already shutting down, the worker thread is killed while it waits for the
  GIL, and the process dies with "terminate called without an active exception" (SIGABRT; pytorch/pytorch#190489).
- **Hang.** If the main thread holds the GIL while it destroys the process group, it waits for that worker thread,
  which waits for the GIL. One way this happens: ``destroy_process_group()`` is called while a DDP model is still
  alive, and the model is freed later.

:func:`end_distributed_run` avoids both. It runs a barrier, so every rank has finished its collectives. It then
releases the GIL for a moment, so the worker threads can free what they hold, and only then destroys the process
group. Call it once at the very end of a script, on every rank. The ``trl-igrpo`` scripts and ``examples/`` do.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["ALLOW_ENGINE_FALLBACK_ENV", "EngineFallbackError", "check_requested_engine", "end_distributed_run"]

logger = logging.getLogger(__name__)

#: Set this environment variable to ``1`` to train with the engine accelerate chose (after a warning) when it is not
#: the FSDP/DeepSpeed the launch requested, e.g. to run an FSDP config on CPU as DDP on purpose.
ALLOW_ENGINE_FALLBACK_ENV = "TRL_IGRPO_ALLOW_ENGINE_FALLBACK"

_TRUE = ("1", "true", "yes", "y", "t", "on")  # accelerate's str_to_bool
#: The request signal of each sharded engine (set by ``accelerate launch`` from the config file, or by accelerate when a
#: plugin is passed in code), and the ``DistributedType`` name that fulfils it.
_REQUEST_ENV = {"FSDP": "ACCELERATE_USE_FSDP", "DEEPSPEED": "ACCELERATE_USE_DEEPSPEED"}
_ENGINE_NAME = {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed"}
_GPU_TYPES = "MULTI_GPU, MULTI_XPU, MULTI_NPU, MULTI_MLU, MULTI_MUSA, MULTI_SDAA, MULTI_HPU, MULTI_NEURON"


class EngineFallbackError(RuntimeError):
    """The launch requested FSDP or DeepSpeed, but accelerate set up another engine (plain DDP or a single process)."""


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return str(environ.get(name, "")).strip().lower() in _TRUE


def _type_name(distributed_type) -> str:
    return str(getattr(distributed_type, "value", distributed_type)).split(".")[-1].upper()


def _zero3_partitioned_load() -> bool:
    """Whether transformers loads models ZeRO-3-partitioned in this process (a DeepSpeed config with stage 3 is live)."""
    try:
        from transformers.integrations import is_deepspeed_zero3_enabled
    except ImportError:  # pragma: no cover - transformers always has it
        return False
    return bool(is_deepspeed_zero3_enabled())


def _reason_and_fix(engine: str, got: str, environ: Mapping[str, str]) -> tuple[str, str]:
    name = _ENGINE_NAME[engine]
    allow = f"or set {ALLOW_ENGINE_FALLBACK_ENV}=1 to train as {got} on purpose"
    if environ.get("LOCAL_RANK") is None and environ.get("WORLD_SIZE") is None:
        return (
            "the script was not started by a distributed launcher (LOCAL_RANK is unset), so accelerate runs one "
            "plain process",
            f"start it with `accelerate launch --config_file <{name} config> script.py` (or `trl-igrpo <method> "
            f"--config_file ...`), {allow}",
        )
    if engine == "DEEPSPEED" and _flag(environ, "ACCELERATE_USE_CPU"):
        return (
            "ACCELERATE_USE_CPU is set (e.g. by `accelerate launch --cpu`), and accelerate skips DeepSpeed whenever "
            "the CPU is forced that way",
            "drop `--cpu` / unset ACCELERATE_USE_CPU; for a CPU run keep `use_cpu: true` in the accelerate config "
            "and `use_cpu=True` in the training config, which DeepSpeed honours, and build DeepSpeed's CPU op "
            f"first (scripts/build_deepspeed_cpu_ops.py); {allow}",
        )
    if engine == "FSDP" and got == "MULTI_CPU":
        return (
            f"accelerate enables FSDP only for GPU-type set-ups ({_GPU_TYPES}); on CPU (use_cpu, --cpu, "
            "ACCELERATE_USE_CPU, or no GPU) an FSDP config falls back to plain DDP, where every process holds the "
            "whole model, gradients and optimizer state",
            "run on GPUs; to shard on CPU use DeepSpeed ZeRO-3 (examples/accelerate_configs/deepspeed_zero3.yaml "
            f"with use_cpu: true, launched without --cpu / ACCELERATE_USE_CPU, see docs/scaling.md); {allow}",
        )
    return (
        f"accelerate set up {got} instead",
        f"check the accelerate config and environment of the launch (docs/scaling.md); {allow}",
    )


def check_requested_engine(accelerator: Accelerator, environ: Mapping[str, str] | None = None) -> None:
    """Stop a run whose requested sharded engine (FSDP or DeepSpeed) is not the one accelerate set up.

    The request is read from the environment: ``ACCELERATE_USE_FSDP=true`` or ``ACCELERATE_USE_DEEPSPEED=true``, which
    ``accelerate launch`` sets from a config file with ``distributed_type: FSDP`` / ``DEEPSPEED`` (and accelerate sets
    when a plugin is passed in code). The result is ``accelerator.distributed_type``. When they disagree (plain DDP,
    ``MULTI_CPU`` or a single process instead), this raises :class:`EngineFallbackError` naming the request, what
    runs instead, why, and the fix. A request that is fulfilled, or no request, returns silently.

    With ``TRL_IGRPO_ALLOW_ENGINE_FALLBACK=1`` it warns instead (``RuntimeWarning`` and a log line, on the main
    process) and the run trains with the engine accelerate chose, except when the model was already loaded
    ZeRO-3-partitioned for a DeepSpeed that is not running: that model cannot train at all, so it always raises.

    Args:
        accelerator: the run's accelerator (``trainer.accelerator``); its ``distributed_type`` and
            ``is_main_process`` are read.
        environ: the environment to read (default ``os.environ``).

    Raises:
        EngineFallbackError: the requested engine is not running (see above).
    """
    environ = os.environ if environ is None else environ
    requested = [engine for engine, variable in _REQUEST_ENV.items() if _flag(environ, variable)]
    got = _type_name(accelerator.distributed_type)
    if not requested or got in requested:
        return
    engine = requested[-1]  # DeepSpeed over FSDP when both are set, as `accelerate launch` picks
    reason, fix = _reason_and_fix(engine, got, environ)
    message = (
        f"{_ENGINE_NAME[engine]} was requested ({_REQUEST_ENV[engine]}=true) but accelerate set up {got}: no "
        f"parameter, gradient or optimizer sharding would happen. Why: {reason}. Fix: {fix}."
    )
    if engine == "DEEPSPEED" and _zero3_partitioned_load():
        raise EngineFallbackError(
            message + " The model was already loaded ZeRO-3-partitioned (empty placeholder weights), so it cannot "
            f"train without DeepSpeed: {ALLOW_ENGINE_FALLBACK_ENV} does not apply."
        )
    if not _flag(environ, ALLOW_ENGINE_FALLBACK_ENV):
        raise EngineFallbackError(message)
    if getattr(accelerator, "is_main_process", True):
        logger.warning("%s Training anyway (%s is set).", message, ALLOW_ENGINE_FALLBACK_ENV)
        warnings.warn(f"{message} Training anyway ({ALLOW_ENGINE_FALLBACK_ENV} is set).", RuntimeWarning, stacklevel=2)


#: How long the main thread sleeps, with the GIL released, so gloo's worker threads can free finished work. They
#: usually need microseconds; this margin covers a busy 2-core CI machine.
DEFAULT_SETTLE_SECONDS = 0.1


def end_distributed_run(accelerator: Accelerator, settle_seconds: float = DEFAULT_SETTLE_SECONDS) -> None:
    """Finish a run on every rank: barrier, let collective worker threads settle, then ``accelerator.end_training()``.

    ``end_training`` finishes any trackers and destroys the process group. In a single process it does only the first
    of these, and the barrier and the pause are skipped. No collective may run on this rank afterwards.

    Args:
        accelerator: the run's accelerator (``trainer.accelerator``).
        settle_seconds: how long to sleep after the barrier, with the GIL released; see :data:`DEFAULT_SETTLE_SECONDS`.
    """
    if settle_seconds < 0:
        raise ValueError(f"settle_seconds must be >= 0, got {settle_seconds}")
    if accelerator.num_processes > 1:
        accelerator.wait_for_everyone()
        time.sleep(settle_seconds)
    accelerator.end_training()
