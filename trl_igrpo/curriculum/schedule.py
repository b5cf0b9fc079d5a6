"""Pure math of the Llama-Nemotron pass-rate curriculum ("progressive batching", arXiv 2505.00949 §5).

The paper states only the idea: "a Gaussian centred on a difficulty that moves from high pass rates (easy) in early batches
to low pass rates (hard) in later batches", with samples assigned "mainly by this target, taking into account how many
samples remain at each pass rate", leftover capacity "filled from the pass rates with the largest remaining pools", and a
random shuffle inside each batch. It gives no formula, sigma, schedule or rounding rule. The choices made here are:

* bins are the distinct observed pass rates p_k (k/8 with 8 samples per prompt);
* the target mean of batch b out of B moves from ``start`` to ``end`` by ``schedule_mean`` (linear by default);
* target weights w_k ∝ exp(-(p_k - mu_b)^2 / (2 sigma^2)) over the bins that still hold samples (``gaussian_bin_weights``);
* the batch is split by largest-remainder rounding of w_k * batch_size, capped by what each bin still holds, and the
  remaining capacity goes one sample at a time to the bin with the largest remaining pool (``allocate_batch_counts``).

Everything here is a small pure function over numpy arrays so it can be tested without a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SCHEDULES = ("linear", "cosine")


def schedule_mean(progress: float, start: float, end: float, schedule: str = "linear") -> float:
    """Centre of the target pass-rate Gaussian at ``progress`` in [0, 1] of the curriculum.

    ``linear``: mu = start + (end - start) * t. ``cosine``: mu = start + (end - start) * (1 - cos(pi t)) / 2, which lingers
    longer on the easy and hard ends. Neither is from the paper (it gives no schedule); linear is the default.
    """
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must lie in [0, 1], got {progress}")
    if schedule == "linear":
        fraction = progress
    elif schedule == "cosine":
        fraction = (1.0 - math.cos(math.pi * progress)) / 2.0
    else:
        raise ValueError(f"curriculum_schedule must be one of {SCHEDULES}, got {schedule!r}")
    return start + (end - start) * fraction


def batch_progress(batch_index: int, num_batches: int) -> float:
    """Progress t = b / (B - 1) of batch ``batch_index`` (0 for a one-batch curriculum)."""
    if num_batches <= 1:
        return 0.0
    return min(max(batch_index / (num_batches - 1), 0.0), 1.0)


def gaussian_bin_weights(
    bin_values: Sequence[float] | np.ndarray,
    mean: float,
    sigma: float,
    available: Sequence[bool] | np.ndarray | None = None,
) -> np.ndarray:
    """Normalised target weights w_k ∝ exp(-(p_k - mean)^2 / (2 sigma^2)) over the available bins.

    Unavailable bins (no samples left) get weight 0. If every available weight underflows (mean far from all available
    bins with a tiny sigma), the nearest available bin gets all the weight, so the result always sums to 1 when at least
    one bin is available.
    """
    values = np.asarray(bin_values, dtype=np.float64)
    mask = np.ones_like(values, dtype=bool) if available is None else np.asarray(available, dtype=bool)
    if not mask.any():
        raise ValueError("no pass-rate bin has samples left")
    if sigma <= 0:
        raise ValueError(f"curriculum_sigma must be > 0, got {sigma}")
    weights = np.exp(-((values - mean) ** 2) / (2.0 * sigma**2)) * mask
    total = weights.sum()
    if total <= 0.0 or not np.isfinite(total):
        weights = np.zeros_like(values)
        distance = np.where(mask, np.abs(values - mean), np.inf)
        weights[int(np.argmin(distance))] = 1.0
        return weights
    return weights / total


def allocate_batch_counts(weights: np.ndarray, batch_size: int, remaining: np.ndarray) -> np.ndarray:
    """How many samples each bin contributes to one batch.

    1. Largest-remainder rounding of ``weights * batch_size`` (sums exactly to ``batch_size``).
    2. Cap each bin at ``remaining`` (samples it still holds).
    3. Give the leftover capacity one sample at a time to the bin with the largest remaining pool (ties: larger weight,
       then lower bin index), as the paper does ("leftover capacity ... filled from the pass rates with the largest
       remaining pools").
    """
    weights = np.asarray(weights, dtype=np.float64)
    remaining = np.asarray(remaining, dtype=np.int64)
    if remaining.sum() < batch_size:
        raise ValueError(f"only {int(remaining.sum())} samples remain for a batch of {batch_size}")
    target = weights * batch_size
    counts = np.floor(target).astype(np.int64)
    shortfall = batch_size - int(counts.sum())
    if shortfall > 0:
        order = np.lexsort((np.arange(len(weights)), -(target - counts)))  # largest fractional part first
        counts[order[:shortfall]] += 1
    counts = np.minimum(counts, remaining)
    leftover = batch_size - int(counts.sum())
    while leftover > 0:
        pool = remaining - counts
        order = np.lexsort((np.arange(len(weights)), -weights, -pool))
        counts[order[0]] += 1
        leftover -= 1
    return counts


def balanced_batch_targets(
    bin_values: np.ndarray, bin_counts: np.ndarray, means: Sequence[float], sigma: float, iterations: int = 1000
) -> np.ndarray:
    """Per-batch target weights, shape ``(len(means), len(bin_values))``, that use every bin's supply exactly once.

    Plain Gaussian targets consume the bins at the edge of the pass-rate range (the easiest and the hardest) more slowly
    than interior bins, because half of their Gaussian falls outside the range; sampling without replacement then leaves
    the unused easy prompts for the *last* batches, the opposite of a curriculum. This ``trl-igrpo`` addition rescales the
    Gaussian kernel g[b, k] = exp(-(p_k - mu_b)^2 / (2 sigma^2)) with Sinkhorn iterations into r_b g[b, k] c_k whose rows
    sum to 1 (one batch) and whose columns sum to each bin's share of the data: the allocation closest in KL divergence to
    the Gaussian targets that consumes the pool evenly (entropic optimal transport from the schedule to the data).
    """
    values = np.asarray(bin_values, dtype=np.float64)
    counts = np.asarray(bin_counts, dtype=np.float64)
    kernel = np.exp(-((values[None, :] - np.asarray(means, dtype=np.float64)[:, None]) ** 2) / (2.0 * sigma**2))
    kernel = np.maximum(kernel, 1e-300)
    column_targets = counts / counts.sum() * len(means)  # in units of batches
    col = np.ones(len(values))
    for _ in range(iterations):
        row = 1.0 / (kernel @ col)
        col = column_targets / (kernel.T @ row)
    weights = row[:, None] * kernel * col[None, :]
    return weights / weights.sum(axis=1, keepdims=True)


def expected_batch_pass_rate(bin_values: np.ndarray, weights: np.ndarray) -> float:
    """Mean pass rate of a batch drawn exactly from ``weights`` (used by tests and the schedule plot)."""
    return float(np.dot(np.asarray(bin_values, dtype=np.float64), np.asarray(weights, dtype=np.float64)))


def plan_progressive_batches(
    pass_rates: Sequence[float] | np.ndarray,
    batch_size: int,
    sigma: float,
    start: float | None = None,
    end: float | None = None,
    schedule: str = "linear",
    seed: int = 0,
    balance_pool: bool = True,
) -> list[list[int]]:
    """Assign dataset indices to ``len(pass_rates) // batch_size`` batches of unique prompts, easy to hard.

    Sampling is without replacement within the plan (one pass over the data, as in the paper); an incomplete last batch
    is dropped, like TRL's ``RepeatSampler``. Within each bin the samples are taken in a seeded random order, and each
    batch is shuffled. The result depends only on the arguments (deterministic for a seed).

    With ``balance_pool`` (default) the per-batch targets come from :func:`balanced_batch_targets`; without it they are
    the plain Gaussian over the bins that still hold samples (the paper's literal description).
    """
    rates = np.asarray(pass_rates, dtype=np.float64)
    bin_values, bin_of_sample = np.unique(np.round(rates, 9), return_inverse=True)
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(bin_of_sample == k))) for k in range(len(bin_values))]
    remaining = np.array([len(pool) for pool in pools], dtype=np.int64)
    start = float(bin_values.max()) if start is None else float(start)
    end = float(bin_values.min()) if end is None else float(end)
    num_batches = len(rates) // batch_size
    means = [schedule_mean(batch_progress(b, num_batches), start, end, schedule) for b in range(num_batches)]
    balanced = balanced_batch_targets(bin_values, remaining, means, sigma) if balance_pool and num_batches else None
    batches = []
    for b in range(num_batches):
        weights = gaussian_bin_weights(bin_values, means[b], sigma, remaining > 0)
        if balanced is not None and (balanced[b] * (remaining > 0)).sum() > 0:
            weights = balanced[b] * (remaining > 0)
            weights = weights / weights.sum()
        counts = allocate_batch_counts(weights, batch_size, remaining)
        batch: list[int] = []
        for k, count in enumerate(counts):
            batch.extend(int(i) for i in pools[k][:count])
            pools[k] = pools[k][count:]
        remaining -= counts
        batches.append([batch[i] for i in rng.permutation(len(batch))])
    return batches
