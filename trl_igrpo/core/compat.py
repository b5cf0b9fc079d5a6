"""Names of the 0.1 trainer mixins, kept importable: each is now :class:`GRPOBaseTrainer` under another name.

``class MyTrainer(DynamicSamplingMixin, ProgressiveBatchingMixin, GRPOTrainer)`` still works (every name resolves to a
subclass of the base, so the MRO is consistent) and gets all of the base's behaviour, switched by config fields; the
config must be a :class:`~trl_igrpo.core.GRPOBaseConfig`. New code subclasses ``GRPOBaseTrainer`` directly.
"""

from __future__ import annotations

import warnings

from .trainer import GRPOBaseTrainer

__all__ = ["DynamicSamplingMixin", "ProgressiveBatchingMixin", "VLLMCPUSyncMixin"]


class _RenamedBase(GRPOBaseTrainer):
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__ != __name__:
            warnings.warn(
                f"{cls.__name__} builds on a trl-igrpo 0.1 mixin name; subclass trl_igrpo.GRPOBaseTrainer instead "
                "(dynamic sampling, progressive batching and vLLM sync are config switches there).",
                DeprecationWarning,
                stacklevel=2,
            )


class DynamicSamplingMixin(_RenamedBase):
    """0.1 name of :class:`GRPOBaseTrainer` (dynamic sampling: ``dynamic_sampling=True``)."""


class ProgressiveBatchingMixin(_RenamedBase):
    """0.1 name of :class:`GRPOBaseTrainer` (pass-rate curriculum: ``progressive_batching=True``)."""


class VLLMCPUSyncMixin(_RenamedBase):
    """0.1 name of :class:`GRPOBaseTrainer` (vLLM weight sync: ``vllm_weight_sync``)."""
