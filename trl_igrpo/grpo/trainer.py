"""Plain GRPO with the pass-rate curriculum and dynamic sampling (for users who do not need iGRPO)."""

from __future__ import annotations

from ..core.trainer import GRPOBaseTrainer
from .config import CurriculumGRPOConfig

__all__ = ["CurriculumGRPOConfig", "CurriculumGRPOTrainer"]


class CurriculumGRPOTrainer(GRPOBaseTrainer):
    """GRPO with progressive batching and dynamic sampling, both switched on by :class:`CurriculumGRPOConfig` fields.

    The base class does all the work (it is shared with ``IGRPOTrainer``); this class only names the configuration and
    the model-card tags. Its cards cite GRPO and, when switched on, the Llama-Nemotron curriculum and DAPO's dynamic
    sampling; a push without a Hub token fails before anything is saved or uploaded.
    """

    config_class = CurriculumGRPOConfig
