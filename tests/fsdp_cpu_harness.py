"""TEST HARNESS ONLY -- not part of the trl_igrpo package, never imported by it; do not use it to train.

Why it exists: accelerate 1.15 switches a run to FSDP only for GPU-type setups. In ``AcceleratorState.__init__``
(``accelerate/state.py``) the ``ACCELERATE_USE_FSDP`` / ``fsdp_plugin`` branch sits under ``distributed_type in
[MULTI_GPU, MULTI_NPU, ...]``, so the same FSDP config on CPU (gloo) silently becomes plain ``MULTI_CPU`` DDP. PyTorch's
FSDP2 (``fully_shard``) itself runs on a CPU device mesh over gloo, so the only thing missing to exercise accelerate's
*real* FSDP2 code path (``fsdp2_prepare_model``, sharded optimizer state, ``get_state_dict``, ``save_state`` /
``load_state``) in CPU CI is that one decision.

:func:`enable_fsdp_on_cpu` makes it: after accelerate's own ``AcceleratorState.__init__`` has run, a state that came out
as ``MULTI_CPU`` while ``ACCELERATE_USE_FSDP=true`` is switched to ``DistributedType.FSDP`` with the ``fsdp_plugin``
accelerate built from the launcher's environment. Nothing else of accelerate is replaced or copied; every FSDP code path
that then runs is accelerate's and PyTorch's own. The two-process tests (``tests/test_sharded_engines.py``) call it in
their worker before building a trainer.

Shipped code must not do this: :func:`trl_igrpo.utils.distributed.check_requested_engine` instead stops a run whose requested
FSDP did not happen, because on a real CPU run the user gets DDP without being told.
"""

from __future__ import annotations

import os

__all__ = ["enable_fsdp_on_cpu"]


def enable_fsdp_on_cpu() -> None:
    """Patch ``AcceleratorState.__init__`` in this process so a CPU (``MULTI_CPU``) state honours
    ``ACCELERATE_USE_FSDP=true``. Idempotent. Test-only (see the module docstring)."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    original = AcceleratorState.__init__
    if getattr(original, "_cpu_fsdp_test_harness", False):
        return

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        wants_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
        if wants_fsdp and self.distributed_type == DistributedType.MULTI_CPU:
            plugin = kwargs.get("fsdp_plugin") or FullyShardedDataParallelPlugin()
            if self.mixed_precision != "no":
                plugin.set_mixed_precision(self.mixed_precision)
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = plugin
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    __init__._cpu_fsdp_test_harness = True  # type: ignore[attr-defined]
    AcceleratorState.__init__ = __init__
