"""vLLM rollouts for the package's GRPO-based trainers: weight sync with or without CUDA, context checks, the server.

- :mod:`~trl_igrpo.vllm.config`: the ``vllm_weight_sync`` / ``vllm_weight_sync_dir`` / ``vllm_engine_kwargs`` fields;
- :mod:`~trl_igrpo.vllm.weight_sync`: the sync backends;
- :mod:`~trl_igrpo.vllm.engine`: :class:`~trl_igrpo.vllm.engine.WeightSyncVLLMGeneration`, the ``VLLMGeneration`` the
  trainers generate with;
- :mod:`~trl_igrpo.vllm.serve`: ``trl-igrpo serve`` (``python -m trl_igrpo.vllm.serve``).
"""

from .config import VLLMSyncConfigMixin
from .weight_sync import WEIGHT_SYNC_BACKENDS, resolve_weight_sync_backend

__all__ = ["WEIGHT_SYNC_BACKENDS", "VLLMSyncConfigMixin", "resolve_weight_sync_backend"]
