"""What the package's GRPO-based trainers share: :class:`GRPOBaseTrainer`, :class:`GRPOBaseConfig`, the checks.

- :mod:`~trl_igrpo.core.trainer`: the base trainer and its rollout hook;
- :mod:`~trl_igrpo.core.config`: the shared config fields;
- :mod:`~trl_igrpo.core.checks`: the pure checks that stop a run early (data, context, unscorable rewards);
- :mod:`~trl_igrpo.core.decoding`: decoding sampled ids exactly as TRL's ``GRPOTrainer`` does.
"""

from typing import TYPE_CHECKING

from .checks import UnscorableRewardsError
from .config import GRPOBaseConfig

if TYPE_CHECKING:
    from .trainer import GRPOBaseTrainer

__all__ = ["GRPOBaseConfig", "GRPOBaseTrainer", "UnscorableRewardsError"]


def __getattr__(name: str):
    if name == "GRPOBaseTrainer":  # imported lazily: the trainer imports the vLLM and curriculum packages
        from .trainer import GRPOBaseTrainer

        return GRPOBaseTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
