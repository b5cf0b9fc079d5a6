"""Plain-GRPO trainer with the pass-rate curriculum and dynamic sampling (for users who do not need iGRPO)."""

from __future__ import annotations

from trl import GRPOTrainer

from .dynamic_sampling import DynamicSamplingMixin
from .sampler import ProgressiveBatchingMixin


class CurriculumGRPOTrainer(DynamicSamplingMixin, ProgressiveBatchingMixin, GRPOTrainer):
    """``GRPOTrainer`` with progressive batching and dynamic sampling, both switched on by
    :class:`~trl_igrpo.curriculum.CurriculumGRPOConfig` fields (``progressive_batching``, ``dynamic_sampling``)."""
