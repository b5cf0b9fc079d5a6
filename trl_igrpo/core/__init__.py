"""What the package's GRPO-based trainers share: :class:`GRPOBaseTrainer`, :class:`GRPOBaseConfig`, the checks.

- :mod:`~trl_igrpo.core.trainer`: the base trainer and its rollout hook;
- :mod:`~trl_igrpo.core.config`: the shared config fields;
- :mod:`~trl_igrpo.core.checks`: the pure checks that stop a run early (data, generation settings, unscorable rewards);
- :mod:`~trl_igrpo.core.decoding`: decoding sampled ids exactly as TRL's ``GRPOTrainer`` does;
- :mod:`~trl_igrpo.core.prefill`: encoding each distinct prompt once per group (``share_prompt_prefill``);
- :mod:`~trl_igrpo.core.run_settings`: the settings recorded in each checkpoint and compared on resume;
- :mod:`~trl_igrpo.core.run_logging`: the one-line console and the final-answer columns of the completions table.

The core builds on the pieces below it (:mod:`trl_igrpo.curriculum`, :mod:`trl_igrpo.vllm`, :mod:`trl_igrpo.rewards`,
:mod:`trl_igrpo.hub`, :mod:`trl_igrpo.utils`) and never imports a method (``igrpo``, ``rpo``, ``grpo``) or anything above
them (``tests/test_layering.py``).
"""

from typing import TYPE_CHECKING

from .checks import UnscorableRewardsError
from .config import GRPOBaseConfig

if TYPE_CHECKING:
    from .trainer import GRPOBaseTrainer

__all__ = ["GRPOBaseConfig", "GRPOBaseTrainer", "UnscorableRewardsError"]


def __getattr__(name: str):
    if name == "GRPOBaseTrainer":  # imported on first use, so building a config (the CLI parser) does not load TRL's
        from .trainer import GRPOBaseTrainer  # trainer

        return GRPOBaseTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
