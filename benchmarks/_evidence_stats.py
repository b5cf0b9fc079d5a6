"""Small-sample statistics for ``benchmarks/evidence.py`` (no SciPy): mean with a Student-t 95 % interval, and the
paired t-test of iGRPO minus GRPO over seeds (the same seed gives both methods the same initial model and the same
prompts in the same order, so the seed pairs them)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import mean, stdev

__all__ = ["mean_interval", "paired_difference", "student_t_cdf", "student_t_quantile"]


def _continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's continued fraction of the regularized incomplete beta function (Numerical Recipes ``betacf``)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return result


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta ``I_x(a, b)``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _continued_fraction(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t (bisection on :func:`student_t_cdf`)."""
    low, high = -1e3, 1e3
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if student_t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


def mean_interval(values: Sequence[float | None]) -> dict:
    """``{"n", "mean", "half_width"}``: the mean and the half-width of its two-sided 95 % t interval (None for n < 2)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"n": 0, "mean": None, "half_width": None}
    if len(present) < 2:
        return {"n": 1, "mean": present[0], "half_width": None}
    half = student_t_quantile(0.975, len(present) - 1) * stdev(present) / math.sqrt(len(present))
    return {"n": len(present), "mean": mean(present), "half_width": half}


def paired_difference(treatment: dict[int, float], control: dict[int, float]) -> dict:
    """iGRPO minus GRPO over the seeds both have: mean difference with its 95 % interval, the paired t-test's two-sided
    p-value, and how many seeds the treatment won / lost."""
    seeds = sorted(set(treatment) & set(control))
    differences = [treatment[s] - control[s] for s in seeds]
    result = {**mean_interval(differences), "seeds": seeds, "p_value": None}
    result["wins"] = sum(d > 0 for d in differences)
    result["losses"] = sum(d < 0 for d in differences)
    if len(differences) >= 2:
        spread = stdev(differences)
        if spread == 0:
            result["p_value"] = 1.0 if mean(differences) == 0 else 0.0
        else:
            t = mean(differences) / (spread / math.sqrt(len(differences)))
            result["p_value"] = 2 * (1 - student_t_cdf(abs(t), len(differences) - 1))
    return result
