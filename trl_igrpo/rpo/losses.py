"""Reward-aware Preference Optimization (RPO) losses as pure tensor functions.

RPO (Nemotron-4 340B, arXiv 2406.11704; generalised in Sun et al., "Reward-aware Preference Optimization: A Unified
Mathematical Framework for Model Alignment", arXiv 2502.00203; reference code NVIDIA NeMo-Aligner) trains the policy's
*implicit* reward gap to match an *explicit* reward gap under a distance D:

    L_RPO(x, y_c, y_l) = D[ a || b ],   a = beta * (rho(y_c) - rho(y_l)),   b = eta * (r(x, y_c) - r(x, y_l))

where ``rho(y) = log pi_theta(y|x) - log pi_ref(y|x)`` is the sequence log-ratio (token-summed, or token-averaged when
``average_log_probs``), ``beta`` is the KL strength and ``eta`` the reward scale. DPO is the limit of ``rpo_bwd_kl`` where
the target is a hard 0/1 label (``b -> +inf``).

Every pairwise function here takes the same frame, per example:

- ``logratio_gap``: ``rho(y_c) - rho(y_l)`` (unscaled, shape ``(N,)``),
- ``reward_gap``: ``r_c - r_l`` (raw, shape ``(N,)``; ignored by ``dpo`` and ``ipo``),
- ``beta``, ``eta``: floats,

and returns the per-example loss (shape ``(N,)``); reduce it yourself (NeMo-Aligner takes the mean over pairs).
Log-sigmoids are computed with ``F.logsigmoid``, never ``log(sigmoid(.))``, and Bernoulli terms with zero probability
are dropped exactly, so an infinite reward gap is a valid input.

This module has no dependency on TRL or transformers; this is not TRL's removed ``rpo_alpha`` (which was Iterative
Reasoning Preference Optimization, DPO + NLL).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "RPO_LISTWISE_LOSS",
    "RPO_LOSS_TYPES",
    "RPO_PAIRWISE_LOSSES",
    "RPO_PAIRINGS",
    "SFT_NORMALIZATIONS",
    "dpo",
    "group_pairs",
    "group_rows",
    "implicit_ranking_accuracy",
    "ipo",
    "pearson_correlation",
    "rpo_bwd_kl",
    "rpo_fwd_kl",
    "rpo_listwise",
    "rpo_pairwise_loss",
    "rpo_sq",
    "sequence_logps",
    "sft_nll",
]


def _bernoulli_kl(p_logit: torch.Tensor, q_logit: torch.Tensor) -> torch.Tensor:
    """KL(Bern(sigmoid(p_logit)) || Bern(sigmoid(q_logit))), elementwise, in log-sigmoid form.

    ``sum_{s in {+1,-1}} sigmoid(s p) * (logsigmoid(s p) - logsigmoid(s q))``. A term whose weight ``sigmoid(s p)``
    is exactly 0 (``p = -/+inf``) contributes exactly 0, so infinite logits are handled without ``0 * inf = nan``.
    The result is clamped at 0 to remove round-off below zero (the true value is >= 0; the gradient there is ~0).
    """
    total = torch.zeros_like(torch.broadcast_tensors(p_logit, q_logit)[0])
    for sign in (1.0, -1.0):
        weight = torch.sigmoid(sign * p_logit)
        log_ratio = F.logsigmoid(sign * p_logit) - F.logsigmoid(sign * q_logit)
        positive = weight > 0
        safe_log_ratio = torch.where(positive, log_ratio, torch.zeros_like(log_ratio))
        total = total + torch.where(positive, weight * safe_log_ratio, torch.zeros_like(log_ratio))
    return total.clamp_min(0.0)


def rpo_sq(logratio_gap: torch.Tensor, reward_gap: torch.Tensor, beta: float, eta: float) -> torch.Tensor:
    """Squared distance ``(beta * logratio_gap - eta * reward_gap) ** 2`` (NeMo-Aligner ``rpo_sq``).

    Gradient ``2 beta (a - b) grad(logratio_gap)``: unbounded in the residual. With reward-model scores this is
    distill-DPO; applied to all pairs of k on-policy samples it gives the RLOO estimator (rpo.md section 3).
    """
    return (beta * logratio_gap - eta * reward_gap) ** 2


def rpo_bwd_kl(logratio_gap: torch.Tensor, reward_gap: torch.Tensor, beta: float, eta: float) -> torch.Tensor:
    """Backward KL ``KL(Bern(sigmoid(b)) || Bern(sigmoid(a)))``, the distance used for Nemotron-4 340B.

    Target (reward) distribution first. Equals DPO with the soft label ``sigmoid(eta * reward_gap)`` up to a
    theta-independent entropy; with ``reward_gap = +inf`` it equals ``-logsigmoid(a)``, TRL's ``sigmoid`` DPO loss.
    """
    return _bernoulli_kl(eta * reward_gap, beta * logratio_gap)


def rpo_fwd_kl(logratio_gap: torch.Tensor, reward_gap: torch.Tensor, beta: float, eta: float) -> torch.Tensor:
    """Forward KL ``KL(Bern(sigmoid(a)) || Bern(sigmoid(b)))`` (model distribution first; NeMo-Aligner ``rpo_fwd_kl``).

    With a constant target ``sigmoid(b) = 1 - eps`` this is EXO-pair (TRL ``exo_pair``).
    """
    return _bernoulli_kl(beta * logratio_gap, eta * reward_gap)


def dpo(logratio_gap: torch.Tensor, reward_gap: torch.Tensor | None = None, beta: float = 0.1, eta: float = 1.0):
    """DPO in the RPO frame: ``-logsigmoid(beta * logratio_gap)``; the explicit reward gap is ignored."""
    return -F.logsigmoid(beta * logratio_gap)


def ipo(logratio_gap: torch.Tensor, reward_gap: torch.Tensor | None = None, beta: float = 0.1, eta: float = 1.0):
    """IPO in the RPO frame: ``(logratio_gap - 1 / (2 beta)) ** 2`` on the *unscaled* gap (IPO Eq. 17, tau = beta).

    Equals ``rpo_sq`` with a constant explicit gap ``eta * reward_gap = 1/2``, divided by ``beta ** 2``. TRL's ``ipo``
    uses token-averaged log-ratios, so it matches this with ``sequence_logps(..., average=True)``.
    """
    return (logratio_gap - 1.0 / (2.0 * beta)) ** 2


RPO_PAIRWISE_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "rpo_sq": rpo_sq,
    "rpo_bwd_kl": rpo_bwd_kl,
    "rpo_fwd_kl": rpo_fwd_kl,
    "dpo": dpo,
    "ipo": ipo,
}
RPO_LISTWISE_LOSS = "rpo_listwise"
RPO_LOSS_TYPES = (*RPO_PAIRWISE_LOSSES, RPO_LISTWISE_LOSS)
RPO_PAIRINGS = ("best_vs_worst", "all_pairs")


def rpo_pairwise_loss(
    loss_type: str, logratio_gap: torch.Tensor, reward_gap: torch.Tensor, beta: float, eta: float
) -> torch.Tensor:
    """Dispatch to the pairwise loss named ``loss_type`` (one of ``RPO_PAIRWISE_LOSSES``); per-example values."""
    if loss_type not in RPO_PAIRWISE_LOSSES:
        raise ValueError(f"Unknown pairwise RPO loss {loss_type!r}; expected one of {sorted(RPO_PAIRWISE_LOSSES)}.")
    return RPO_PAIRWISE_LOSSES[loss_type](logratio_gap, reward_gap, beta, eta)


def rpo_listwise(
    logratios: torch.Tensor,
    rewards: torch.Tensor,
    beta: float,
    eta: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """k-response RPO: ``KL(softmax(eta * r) || softmax(beta * rho))`` over each prompt's responses.

    ``logratios`` and ``rewards`` have shape ``(N, k)``; ``mask`` (bool, same shape) marks real responses when groups
    have fewer than ``k``. Returns shape ``(N,)``. A two-item softmax is the sigmoid of the difference, so at k = 2 this
    equals ``rpo_bwd_kl`` (NeMo-Aligner PR #311 "rpo multi resp"; rpo.md section 4). Only reward *differences* matter
    (softmax is shift-invariant) and ``eta`` acts as a temperature.
    """
    target_scores = eta * rewards
    model_scores = beta * logratios
    if mask is not None:
        mask = mask.bool()
        neg_inf = torch.finfo(target_scores.dtype).min
        target_scores = target_scores.masked_fill(~mask, neg_inf)
        model_scores = model_scores.masked_fill(~mask, torch.finfo(model_scores.dtype).min)
    log_target = torch.log_softmax(target_scores, dim=-1)
    log_model = torch.log_softmax(model_scores, dim=-1)
    target = log_target.exp()
    keep = target > 0 if mask is None else (target > 0) & mask
    diff = torch.where(keep, log_target - log_model, torch.zeros_like(log_model))
    kl = torch.where(keep, target * diff, torch.zeros_like(diff)).sum(dim=-1)
    return kl.clamp_min(0.0)


def sequence_logps(per_token_logps: torch.Tensor, mask: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Sum (or, with ``average``, token-mean) of per-token log-probs over the completion ``mask``; shape ``(N,)``.

    NeMo-Aligner's ``preference_average_log_probs`` selects the average; TRL's ``ipo`` always averages.
    """
    mask = mask.to(per_token_logps.dtype)
    total = (per_token_logps * mask).sum(dim=-1)
    if average:
        total = total / mask.sum(dim=-1).clamp_min(1.0)
    return total


SFT_NORMALIZATIONS = ("sequence_sum", "sequence_mean", "token_mean")


def sft_nll(per_token_logps: torch.Tensor, mask: torch.Tensor, normalization: str = "sequence_sum") -> torch.Tensor:
    """Negative log-likelihood of the SFT target responses (one per row, ``mask`` marks their tokens); a scalar.

    With ``S_i = sum_t mask_it * logp_it`` and ``n_i = sum_t mask_it`` over ``N`` rows:

    - ``"sequence_sum"``: ``-(1/N) sum_i S_i``, NeMo-Aligner's ``sft_loss_func`` (``sft_average_log_probs=False``).
    - ``"sequence_mean"``: ``-(1/N) sum_i S_i / n_i``, NeMo-Aligner with ``sft_average_log_probs=True``.
    - ``"token_mean"``: ``-sum_i S_i / sum_i n_i``, TRL DPO's ``"sft"``; equals ``"sequence_sum"`` divided by the mean
      target length ``(1/N) sum_i n_i`` (exactly, for any lengths), so it is about |y| times weaker.

    No rows gives 0 (still attached to the graph).
    """
    if normalization not in SFT_NORMALIZATIONS:
        raise ValueError(f"Unknown SFT normalization {normalization!r}; expected one of {SFT_NORMALIZATIONS}.")
    if per_token_logps.size(0) == 0:
        return per_token_logps.sum() * 0.0
    if normalization == "token_mean":
        mask = mask.to(per_token_logps.dtype)
        return -(per_token_logps * mask).sum() / mask.sum().clamp_min(1.0)
    return -sequence_logps(per_token_logps, mask, average=normalization == "sequence_mean").mean()


def group_rows(values: torch.Tensor, group_ids: torch.Tensor, *more: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Scatter flat rows into a padded ``(num_groups, max_group_size)`` layout by ``group_ids``.

    Returns ``(grouped_values, *grouped_more, mask)``; groups are ordered by increasing id and rows keep their order
    within a group. Used by online RPO, where the k samples of one prompt may arrive shuffled.
    """
    unique_ids, inverse = torch.unique(group_ids, sorted=True, return_inverse=True)
    num_groups = unique_ids.numel()
    sizes = torch.bincount(inverse, minlength=num_groups)
    width = int(sizes.max().item()) if num_groups else 0
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(sizes, 0) - sizes
    slot = torch.empty_like(inverse)
    slot[order] = torch.arange(inverse.numel(), device=inverse.device) - starts[inverse[order]]
    outputs = []
    for tensor in (values, *more):
        grouped = tensor.new_zeros((num_groups, width))
        grouped = grouped.index_put((inverse, slot), tensor)
        outputs.append(grouped)
    mask = torch.zeros((num_groups, width), dtype=torch.bool, device=values.device)
    mask[inverse, slot] = True
    return (*outputs, mask)


def group_pairs(
    logratios: torch.Tensor, rewards: torch.Tensor, pairing: str = "best_vs_worst", mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn k responses per prompt into pairwise ``(logratio_gap, reward_gap)`` vectors, oriented so reward_gap >= 0.

    ``best_vs_worst``: one pair per prompt, highest vs lowest reward (Nemotron-4 / Llama-Nemotron online practice).
    ``all_pairs``: all C(k, 2) pairs per prompt (with ``rpo_sq`` and on-policy samples this is RLOO, rpo.md section 3).
    Masked-out responses are skipped; prompts with fewer than two responses yield no pair.
    """
    if pairing not in RPO_PAIRINGS:
        raise ValueError(f"Unknown pairing {pairing!r}; expected one of {RPO_PAIRINGS}.")
    if mask is None:
        mask = torch.ones_like(rewards, dtype=torch.bool)
    mask = mask.bool()
    valid_groups = mask.sum(dim=-1) >= 2
    if pairing == "best_vs_worst":
        best = rewards.masked_fill(~mask, -math.inf).argmax(dim=-1)
        worst = rewards.masked_fill(~mask, math.inf).argmin(dim=-1)
        rows = torch.arange(rewards.size(0), device=rewards.device)
        logratio_gap = logratios[rows, best] - logratios[rows, worst]
        reward_gap = rewards[rows, best] - rewards[rows, worst]
        return logratio_gap[valid_groups], reward_gap[valid_groups]
    first, second = torch.triu_indices(rewards.size(1), rewards.size(1), offset=1, device=rewards.device)
    pair_valid = mask[:, first] & mask[:, second]
    logratio_gap = logratios[:, first] - logratios[:, second]
    reward_gap = rewards[:, first] - rewards[:, second]
    flip = torch.where(reward_gap < 0, -1.0, 1.0).to(logratio_gap.dtype)
    return (logratio_gap * flip)[pair_valid], (reward_gap * flip.to(reward_gap.dtype))[pair_valid]


def pearson_correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of two 1-D tensors; NaN when fewer than two items or either has zero variance."""
    x, y = x.detach().double().flatten(), y.detach().double().flatten()
    if x.numel() < 2:
        return float("nan")
    xc, yc = x - x.mean(), y - y.mean()
    denom = xc.norm() * yc.norm()
    if denom == 0:
        return float("nan")
    return float((xc * yc).sum() / denom)


def implicit_ranking_accuracy(logratio_gap: torch.Tensor, reward_gap: torch.Tensor) -> float:
    """Fraction of pairs with a non-zero reward gap whose implicit gap has the same sign; NaN if there are none."""
    decided = reward_gap != 0
    if not bool(decided.any()):
        return float("nan")
    agree = torch.sign(logratio_gap[decided]) == torch.sign(reward_gap[decided])
    return float(agree.float().mean())
