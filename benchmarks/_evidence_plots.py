"""Plots of ``benchmarks/evidence.py``, drawn from ``results.json`` records (mean over seeds, 95 % t band)."""

from __future__ import annotations

from pathlib import Path
from statistics import mean

from benchmarks._evidence_stats import mean_interval

__all__ = ["write_plots"]

STYLE = {"grpo": ("GRPO G=8", "-", "tab:blue"), "igrpo": ("iGRPO N=4+G=4", "--", "tab:orange")}


def _smooth(values: list, window: int) -> list:
    """Trailing moving average that skips missing points (None)."""
    smoothed = []
    for i in range(len(values)):
        present = [v for v in values[max(0, i - window + 1) : i + 1] if v is not None]
        smoothed.append(mean(present) if present else None)
    return smoothed


def _band(axis, steps: list, per_run: list[list], label: str, style: str, color: str) -> None:
    """Mean over runs with a 95 % band, at the steps every run has."""
    length = min(len(values) for values in per_run)
    stats = [mean_interval([values[i] for values in per_run]) for i in range(length)]
    points = [(s, st) for s, st in zip(steps[:length], stats) if st["mean"] is not None]
    if not points:
        return
    xs = [s for s, _ in points]
    means = [st["mean"] for _, st in points]
    half = [st["half_width"] or 0.0 for _, st in points]
    axis.plot(xs, means, style, color=color, label=label)
    axis.fill_between(xs, [m - h for m, h in zip(means, half)], [m + h for m, h in zip(means, half)], color=color,
                      alpha=0.15)  # fmt: skip


def _arms(results: dict) -> list[tuple[str, str, list[dict]]]:
    arms = []
    for regime, loss in results["protocol"]["config"]["arms"]:
        runs = [r for r in results["runs"] if r["regime"] == regime and r["loss_type"] == loss]
        if runs:
            arms.append((regime, loss, runs))
    return arms


def _curve_panel(axis, runs: list[dict], section: str, key: str, window: int = 1, methods=("grpo", "igrpo")) -> None:
    for method in methods:
        chosen = [r for r in runs if r["method"] == method and key in r["curves"][section]]
        if chosen:
            label, style, color = STYLE[method]
            steps = chosen[0]["curves"][section]["step"]
            _band(axis, steps, [_smooth(r["curves"][section][key], window) for r in chosen], label, style, color)


def write_plots(results: dict, image_dir: Path) -> dict[str, str]:
    """Write the figures into ``image_dir``; returns ``{name: file name}`` of those drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image_dir.mkdir(parents=True, exist_ok=True)
    arms = _arms(results)
    if not arms:
        return {}
    steps = results["protocol"]["config"]["steps"]
    window = max(1, steps // 15)
    images = {}

    figure, axes = plt.subplots(1, len(arms), figsize=(3.3 * len(arms), 3.2), sharey=True, squeeze=False)
    for axis, (regime, loss, runs) in zip(axes[0], arms):
        _curve_panel(axis, runs, "validation", "pass@1")
        axis.set_title(f"{regime} regime, loss {loss}", fontsize=9)
        axis.set_xlabel("optimizer step")
    axes[0][0].set_ylabel("validation pass@1 (single pass)")
    axes[0][0].legend(fontsize=8)
    images["validation"] = _save(figure, image_dir / "evidence_validation.png")

    figure, axis = plt.subplots(figsize=(1.6 * len(arms) + 2.5, 3.4))
    baseline = (results["protocol"].get("warm_start_test") or {}).get("pass@1")
    for position, (_, _, runs) in enumerate(arms):
        for offset, method in ((-0.18, "grpo"), (0.18, "igrpo")):
            values = [r["metrics"]["pass@1"] for r in runs if r["method"] == method]
            if not values:
                continue
            label, _, color = STYLE[method]
            stats = mean_interval(values)
            axis.errorbar(position + offset, stats["mean"], yerr=stats["half_width"] or 0.0, fmt="s", color=color,
                          capsize=4, label=label if position == 0 else None)  # fmt: skip
            axis.scatter([position + offset + 0.07] * len(values), values, s=9, color=color, alpha=0.5)
    if baseline is not None:
        axis.axhline(baseline, color="gray", linestyle=":", label="warm start")
    axis.set_xticks(range(len(arms)), [f"{regime}\n{loss}" for regime, loss, _ in arms], fontsize=8)
    axis.set_ylabel(f"test pass@1 (k={results['protocol']['config']['test_samples']}, T=0.6)")
    axis.legend(fontsize=8)
    images["test"] = _save(figure, image_dir / "evidence_test.png")

    grpo_arms = [arm for arm in arms if arm[1] == "grpo"]
    figure, axes = plt.subplots(2, len(grpo_arms), figsize=(4.2 * len(grpo_arms), 6), squeeze=False)
    for column, (regime, _, runs) in enumerate(grpo_arms):
        _curve_panel(axes[0][column], runs, "validation", "entropy")
        axes[0][column].set_title(f"{regime}: held-out single-pass entropy", fontsize=9)
        _curve_panel(axes[1][column], runs, "train", "entropy", window)
        axes[1][column].set_title(f"{regime}: TRL training entropy (iGRPO: refinements)", fontsize=9)
        axes[1][column].set_xlabel("optimizer step")
    for row in axes:
        row[0].set_ylabel("nats / token")
    axes[0][0].legend(fontsize=8)
    images["entropy"] = _save(figure, image_dir / "evidence_entropy.png")

    panels = (("frac_reward_zero_std", "groups with zero reward spread"), ("draft_correct", "best-of-4 draft correct"),
              ("copy_rate", "refinement copies the draft"), ("gain", "refinement minus draft accuracy"))  # fmt: skip
    figure, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2))
    for axis, (key, title) in zip(axes, panels):
        for regime, _, runs in grpo_arms:
            for method in ("igrpo", "grpo") if key == "frac_reward_zero_std" else ("igrpo",):
                chosen = [r for r in runs if r["method"] == method]
                if not chosen:
                    continue
                style = "-" if regime == "hard" else "--"
                name = "iGRPO" if method == "igrpo" else "GRPO"
                color = {"hard": "tab:red", "unfiltered": "tab:green"}.get(regime, "tab:gray")
                _band(axis, chosen[0]["curves"]["train"]["step"],
                      [_smooth(r["curves"]["train"][key], window) for r in chosen], f"{name}, {regime}",
                      style if method == "igrpo" else ":", color)  # fmt: skip
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("optimizer step")
    axes[0].legend(fontsize=7)
    images["mechanism"] = _save(figure, image_dir / "evidence_mechanism.png")
    return images


def _save(figure, path: Path) -> str:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name
