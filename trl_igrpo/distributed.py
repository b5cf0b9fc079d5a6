"""Ending a multi-process run cleanly.

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

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["end_distributed_run"]

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
