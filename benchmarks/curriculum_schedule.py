"""Plot the progressive-batching difficulty schedule: docs/img/curriculum_schedule.png.

Run from the repo root: ``.venv/bin/python -m benchmarks.curriculum_schedule``. Uses a synthetic pass-rate pool shaped like
the paper's filtered data (pass rates k/8 below 0.75, mostly hard), 1,200 prompts, 24 prompts per batch (50 batches),
sigma 0.15, linear schedule from the easiest to the hardest bin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trl_igrpo.curriculum.sampler import ProgressiveBatchSampler
from trl_igrpo.curriculum.schedule import balanced_batch_targets, expected_batch_pass_rate, plan_progressive_batches

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "img" / "curriculum_schedule.png"


def main() -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = np.arange(6) / 8
    rates = np.random.default_rng(0).choice(bins, 1200, p=[0.35, 0.2, 0.15, 0.12, 0.1, 0.08])
    sampler = ProgressiveBatchSampler(rates, mini_repeat_count=16, batch_size=24, seed=0)
    plan = sampler.plan()
    steps = np.arange(len(plan))
    mus = np.array([sampler.target_mean(b) for b in steps])
    values, counts = np.unique(rates, return_counts=True)
    targets = balanced_batch_targets(values, counts, mus, sampler.sigma)
    target_means = [expected_batch_pass_rate(values, w) for w in targets]
    empirical = [rates[batch].mean() for batch in plan]
    literal = [rates[batch].mean() for batch in plan_progressive_batches(rates, 24, 0.15, seed=0, balance_pool=False)]
    shares = np.array([[np.mean(rates[batch] == v) for v in values] for batch in plan])

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    top.plot(steps, mus, "k--", label=r"Gaussian centre $\mu_b$ (linear schedule)")
    top.plot(steps, target_means, color="tab:blue", label="target batch mean (pool-balanced)")
    top.plot(steps, empirical, "o", ms=3, color="tab:blue", label="sampled batch mean (balanced, default)")
    top.plot(steps, literal, "x", ms=4, color="tab:red", alpha=0.7, label="sampled batch mean (plain Gaussian)")
    top.set_ylabel("pass rate of batch (higher = easier)")
    top.set_title(r"Progressive batching: 1,200 prompts, 24 per batch, $\sigma$ = 0.15")
    top.legend(fontsize=8)
    bottom.stackplot(steps, shares.T, labels=[f"{v:.3f}" for v in values], cmap=None)
    bottom.set_ylabel("share of batch")
    bottom.set_xlabel("batch (generation step) within the epoch")
    bottom.legend(title="pass rate", fontsize=7, ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.28))
    fig.tight_layout()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUTPUT, dpi=110)
    return OUTPUT


if __name__ == "__main__":
    print(main())
