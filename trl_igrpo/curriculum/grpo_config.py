"""The configuration of plain GRPO with the pass-rate curriculum and dynamic sampling (:class:`CurriculumGRPOTrainer`).

Kept apart from the trainer so that building the ``trl-igrpo grpo`` parser does not import the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.config import GRPOBaseConfig

__all__ = ["CurriculumGRPOConfig"]


@dataclass
class CurriculumGRPOConfig(GRPOBaseConfig):
    """``GRPOConfig`` plus the shared fields of [`~trl_igrpo.core.GRPOBaseConfig`]: switch on ``progressive_batching``
    (pass-rate curriculum) and/or ``dynamic_sampling`` (DAPO)."""
