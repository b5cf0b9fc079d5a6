"""How several reward functions become one scalar per completion: the single home of that rule in trl-igrpo.

TRL's ``GRPOTrainer`` scores every completion with each reward function (``None`` becomes NaN: "not applicable") and
combines the columns in one of two ways (``GRPOConfig.multi_objective_aggregation``):

- ``"sum_then_normalize"`` (default): a weighted, NaN-aware sum per completion, then group normalisation;
- ``"normalize_then_sum"`` (GDPO, arXiv 2601.05242): a z-score per function inside each group, then the weighted sum.

iGRPO's draft ranking, dynamic sampling, online RPO and the pass-rate estimator all need the same scalar, so they use
the functions below instead of re-deriving it. A completion for which *every* function returned ``None`` is
*unscorable*: its combined reward is NaN (TRL gives it advantage 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["AGGREGATIONS", "group_ranking_scores", "unscorable_rows", "weighted_reward_sum"]

AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")


def unscorable_rows(rewards_per_func: torch.Tensor) -> torch.Tensor:
    """Boolean ``(rows,)``: True where every reward function returned None/NaN for that completion."""
    return torch.isnan(rewards_per_func).all(dim=1)


def weighted_reward_sum(rewards_per_func: torch.Tensor, weights: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """``sum_k w_k r_k`` per row of a ``(rows, funcs)`` reward matrix, skipping NaN entries; NaN for unscorable rows.

    This is the reward GRPO normalises under ``sum_then_normalize`` (TRL ``_generate_and_score_completions``).
    """
    weights = torch.as_tensor(weights, dtype=rewards_per_func.dtype, device=rewards_per_func.device)
    total = torch.nansum(rewards_per_func * weights.unsqueeze(0), dim=1)
    return total.masked_fill(unscorable_rows(rewards_per_func), float("nan"))


def _nan_std(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Bessel-corrected standard deviation ignoring NaNs (TRL's ``nanstd``); 0 where fewer than two values exist."""
    from trl.trainer.utils import nanstd

    count = (~torch.isnan(values)).sum(dim=dim, keepdim=True)
    std = nanstd(values, dim=dim, keepdim=True)
    return torch.where(count > 1, std, torch.zeros_like(std))


def group_ranking_scores(
    rewards_per_func: torch.Tensor,
    weights: torch.Tensor | Sequence[float],
    group_size: int,
    aggregation: str = "sum_then_normalize",
) -> torch.Tensor:
    """One score per row that orders the rows *inside each group of* ``group_size`` as GRPO's advantage does.

    - ``sum_then_normalize``: the weighted sum (group normalisation is monotone, so it cannot change the order);
    - ``normalize_then_sum``: GDPO's per-function group z-score ``(r_k - mean_k) / (std_k + 1e-4)``, weighted and
      summed. GDPO's final batch z-score is monotone too and is left out.

    Unscorable rows are NaN. ``rewards_per_func`` is ``(num_groups * group_size, funcs)`` with groups contiguous.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"multi_objective_aggregation must be one of {AGGREGATIONS}, got {aggregation!r}.")
    if rewards_per_func.dim() != 2 or rewards_per_func.size(0) % group_size:
        raise ValueError(
            f"rewards of shape {tuple(rewards_per_func.shape)} do not split into groups of {group_size} rows."
        )
    if aggregation == "sum_then_normalize":
        return weighted_reward_sum(rewards_per_func, weights)
    grouped = rewards_per_func.view(-1, group_size, rewards_per_func.size(1))
    z_scores = (grouped - torch.nanmean(grouped, dim=1, keepdim=True)) / (_nan_std(grouped, dim=1) + 1e-4)
    return weighted_reward_sum(z_scores.reshape_as(rewards_per_func), weights)
