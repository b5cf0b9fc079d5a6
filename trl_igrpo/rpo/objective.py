"""The RPO objective both trainers minimise, and the gap metrics both log (Nemotron-4 340B; arXiv 2502.00203)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from accelerate.utils import gather_object

from .losses import (
    RPO_LISTWISE_LOSS,
    group_pairs,
    implicit_ranking_accuracy,
    pearson_correlation,
    rpo_listwise,
    rpo_pairwise_loss,
)

__all__ = ["compute_rpo_objective", "log_rpo_gap_metrics"]


def compute_rpo_objective(
    loss_types: Sequence[str],
    loss_weights: Sequence[float],
    logratios: torch.Tensor,
    rewards: torch.Tensor,
    beta: float,
    eta: float,
    pairing: str,
    mask: torch.Tensor | None = None,
    sft_loss: Callable[[], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of RPO losses on grouped log-ratios/rewards of shape ``(N, k)``; returns ``(loss, stats)``.

    k = 2 groups are used as given (column 0 = chosen) for ``dpo``/``ipo``; k > 2 groups are paired with ``pairing``,
    oriented so the higher reward comes first. ``sft_loss`` is called for the ``"sft"`` term. ``stats`` holds the local
    implicit (``a = beta * gap``) and explicit (``b = eta * reward gap``) gaps of the pairs for logging.
    """
    if mask is None and logratios.size(1) == 2:
        logratio_gap, reward_gap = logratios[:, 0] - logratios[:, 1], rewards[:, 0] - rewards[:, 1]
    else:
        logratio_gap, reward_gap = group_pairs(logratios, rewards, pairing, mask)
    loss = logratios.new_zeros(())
    for loss_type, weight in zip(loss_types, loss_weights, strict=True):
        if loss_type == "sft":
            if sft_loss is None:
                raise ValueError("loss type 'sft' needs the sft_loss callable")
            term = sft_loss()
        elif loss_type == RPO_LISTWISE_LOSS:
            term = rpo_listwise(logratios, rewards.to(logratios.dtype), beta, eta, mask).mean()
        elif logratio_gap.numel() == 0:
            term = logratios.sum() * 0.0  # no pair in this batch: keep the graph, contribute nothing
        else:
            term = rpo_pairwise_loss(loss_type, logratio_gap, reward_gap.to(logratio_gap.dtype), beta, eta).mean()
        loss = loss + weight * term
    return loss, {"implicit": (beta * logratio_gap).detach(), "explicit": (eta * reward_gap).detach()}


def log_rpo_gap_metrics(metrics: dict, accelerator, implicit: torch.Tensor, explicit: torch.Tensor) -> None:
    """Log implicit vs explicit reward gaps, their Pearson correlation and the implicit ranking accuracy."""
    implicit = torch.tensor(gather_object(implicit.float().cpu().tolist()))
    explicit = torch.tensor(gather_object(explicit.float().cpu().tolist()))
    if implicit.numel() == 0:
        return
    metrics["rpo/implicit_gap"].append(implicit.mean().item())
    metrics["rpo/explicit_gap"].append(explicit.mean().item())
    metrics["rpo/gap_abs_error"].append((implicit - explicit).abs().mean().item())
    correlation = pearson_correlation(implicit, explicit)
    if not math.isnan(correlation):
        metrics["rpo/gap_correlation"].append(correlation)
    accuracy = implicit_ranking_accuracy(implicit, explicit)
    if not math.isnan(accuracy):
        metrics["rpo/ranking_accuracy"].append(accuracy)
