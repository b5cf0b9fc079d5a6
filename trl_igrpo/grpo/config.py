"""The configuration of plain GRPO with the pass-rate curriculum and dynamic sampling
(:class:`~trl_igrpo.grpo.CurriculumGRPOTrainer`).

Kept apart from the trainer so that building the ``trl-igrpo grpo`` parser does not import the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.config import GRPOBaseConfig

__all__ = ["CurriculumGRPOConfig"]


@dataclass
class CurriculumGRPOConfig(GRPOBaseConfig):
    r"""
    Configuration class for the [`~trl_igrpo.CurriculumGRPOTrainer`]: plain GRPO with the pass-rate curriculum of
    [Llama-Nemotron](https://huggingface.co/papers/2505.00949) and/or the dynamic sampling of
    [DAPO](https://huggingface.co/papers/2503.14476).

    It adds no field of its own: [`~trl.GRPOConfig`] plus the shared fields of [`~trl_igrpo.core.GRPOBaseConfig`];
    switch on `progressive_batching` (pass-rate curriculum) and/or `dynamic_sampling`, listed by
    [`~trl_igrpo.curriculum.CurriculumConfigMixin`].
    """
