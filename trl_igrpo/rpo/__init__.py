"""Reward-aware Preference Optimization (RPO; Nemotron-4 340B, arXiv 2406.11704; arXiv 2502.00203; Llama-Nemotron).

- :mod:`~trl_igrpo.rpo.losses`: the pure loss functions (``rpo_sq``, ``rpo_fwd_kl``, ``rpo_bwd_kl``, ``rpo_listwise``...);
- :mod:`~trl_igrpo.rpo.objective`: the objective both trainers minimise and the gap metrics they log;
- :mod:`~trl_igrpo.rpo.config` / :mod:`~trl_igrpo.rpo.online_config`: :class:`RPOConfig`, :class:`OnlineRPOConfig`;
- :mod:`~trl_igrpo.rpo.trainer`: :class:`RPOTrainer` (offline, on TRL's ``DPOTrainer``);
- :mod:`~trl_igrpo.rpo.online_trainer`: :class:`OnlineRPOTrainer` (online, on :class:`~trl_igrpo.core.GRPOBaseTrainer`);
- :mod:`~trl_igrpo.rpo.explicit_rewards`, :mod:`~trl_igrpo.rpo.collator`: explicit rewards and the batch layout.
"""

from .collator import DataCollatorForRPO
from .config import RPOConfig, RPOSharedConfigMixin
from .losses import rpo_bwd_kl, rpo_fwd_kl, rpo_listwise, rpo_sq
from .online_config import OnlineRPOConfig
from .online_trainer import OnlineRPOTrainer
from .trainer import RPOTrainer

__all__ = [
    "DataCollatorForRPO",
    "OnlineRPOConfig",
    "OnlineRPOTrainer",
    "RPOConfig",
    "RPOSharedConfigMixin",
    "RPOTrainer",
    "rpo_bwd_kl",
    "rpo_fwd_kl",
    "rpo_listwise",
    "rpo_sq",
]
