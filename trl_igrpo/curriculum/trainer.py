"""Plain-GRPO trainer with the pass-rate curriculum and dynamic sampling (for users who do not need iGRPO)."""

from __future__ import annotations

from trl import GRPOTrainer

from ..hub import HubMixin
from .dynamic_sampling import DynamicSamplingMixin
from .sampler import ProgressiveBatchingMixin


class CurriculumGRPOTrainer(HubMixin, DynamicSamplingMixin, ProgressiveBatchingMixin, GRPOTrainer):
    """``GRPOTrainer`` with progressive batching and dynamic sampling, both switched on by
    :class:`~trl_igrpo.curriculum.CurriculumGRPOConfig` fields (``progressive_batching``, ``dynamic_sampling``).

    Its model cards (:class:`~trl_igrpo.hub.HubMixin`) cite GRPO and, when switched on, the Llama-Nemotron curriculum
    and DAPO's dynamic sampling; a push without a Hub token fails before anything is saved or uploaded.
    """

    _tag_names = ["trl", "grpo", "trl-igrpo"]
