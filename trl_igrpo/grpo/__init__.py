"""Plain GRPO with the package's switches: TRL's ``GRPOTrainer`` plus the pass-rate curriculum (Llama-Nemotron
progressive batching), DAPO dynamic sampling and the shared checks, for users who do not need iGRPO.

- :mod:`~trl_igrpo.grpo.config`: :class:`CurriculumGRPOConfig`;
- :mod:`~trl_igrpo.grpo.trainer`: :class:`CurriculumGRPOTrainer` (``trl-igrpo grpo`` trains it).
"""

from typing import TYPE_CHECKING

from .config import CurriculumGRPOConfig

if TYPE_CHECKING:
    from .trainer import CurriculumGRPOTrainer

__all__ = ["CurriculumGRPOConfig", "CurriculumGRPOTrainer"]


def __getattr__(name: str):
    if name == "CurriculumGRPOTrainer":  # imported on first use, so building the CLI parser does not load the trainer
        from .trainer import CurriculumGRPOTrainer

        return CurriculumGRPOTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
