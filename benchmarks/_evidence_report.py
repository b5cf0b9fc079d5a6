"""The report of ``benchmarks/evidence.py``: ``results.json`` (one record per run), plots and ``evidence.md``, all
generated from the run directories (or from a ``results.json``), never typed by hand.

A record: ``{"method", "regime", "loss_type", "seed", "metrics": {...}, "curves": {...}}``; ``metrics`` are the test
numbers of ``trl-igrpo eval`` on the run's final model (pass@1 over k samples, pass@k, maj@k, greedy, their hard/easy
breakdown, the draft -> refine diagnostic) and the held-out entropy; ``curves`` hold the training log (TRL's reward,
entropy and zero-spread fraction; iGRPO's Stage-2 mechanism) and the validation curve.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from statistics import mean

from benchmarks._evidence_stats import mean_interval, paired_difference

__all__ = ["collect_records", "dump_results", "publish", "render_report", "sweep_score", "write_report"]

ROOT = Path(__file__).resolve().parents[1]
TRAIN_KEYS = {
    "reward": "reward",
    "entropy": "entropy",
    "frac_reward_zero_std": "frac_reward_zero_std",
    "best_draft_reward": "igrpo/best_draft_reward_mean",
    "draft_correct": "mechanism/draft_correct",
    "refinement_correct": "mechanism/refinement_correct",
    "gain": "mechanism/gain",
    "copy_rate": "mechanism/copy_rate",
    "answer_copy_rate": "mechanism/answer_copy_rate",
    "fix_rate": "mechanism/fix_rate",
    "break_rate": "mechanism/break_rate",
}
MECHANISM = ("draft_correct", "refinement_correct", "gain", "copy_rate", "answer_copy_rate", "fix_rate", "break_rate")


def sweep_score(train: dict) -> float:
    """The sweep's selection score: validation pass@1, mean of the last two curve points (less noisy than one)."""
    points = [point["pass@1"] for point in train["val_curve"][1:]][-2:]
    return mean(points)


def eval_metrics(run_dir: Path) -> dict | None:
    """The test metrics of the ``trl-igrpo eval`` outputs in ``run_dir`` (None until all are written)."""
    if not (run_dir / "eval_entropy.json").exists():
        return None
    evals = {name: json.loads((run_dir / f"eval-{name}" / "results.json").read_text()) for name in
             ("sampled", "greedy", "draft_refine")}  # fmt: skip
    sampled, greedy, refine = evals["sampled"], evals["greedy"], evals["draft_refine"]
    k = sampled["metrics"]["num_samples"]
    by_difficulty = sampled.get("by_group", {}).get("difficulty", {})
    greedy_by_difficulty = greedy.get("by_group", {}).get("difficulty", {})
    return {
        "pass@1": sampled["metrics"]["pass@1"],
        "pass@k": sampled["metrics"]["pass@k"][str(k)],
        "maj@k": sampled["metrics"][f"maj@{k}"],
        "k": k,
        "greedy": greedy["metrics"]["pass@1"],
        **{f"pass@1_{level}": values["pass@1"] for level, values in by_difficulty.items()},
        **{f"greedy_{level}": values["pass@1"] for level, values in greedy_by_difficulty.items()},
        "draft_greedy": refine["drafts"]["pass@1"],
        "refine_greedy": refine["metrics"]["pass@1"],
        "entropy": json.loads((run_dir / "eval_entropy.json").read_text())["entropy"],
        "unparseable": sampled["metrics"]["unparseable_frac"],
        "truncated": sampled["metrics"]["truncated_frac"],
    }


def _record(run_dir: Path) -> dict | None:
    """The results.json record of a finished run directory (None while it is not finished)."""
    metrics = eval_metrics(run_dir)
    if metrics is None:
        return None
    spec = json.loads((run_dir / "spec.json").read_text())
    train = json.loads((run_dir / "train.json").read_text())
    metrics.update(learning_rate=spec["learning_rate"], train_seconds=train["train_seconds"],
                   seconds_per_step=train["seconds_per_step"])  # fmt: skip
    log = train["log"]
    curves = {
        "train": {"step": [entry["step"] for entry in log]}
        | {name: [entry.get(key) for entry in log] for name, key in TRAIN_KEYS.items()},
        "validation": {key: [point[key] for point in train["val_curve"]] for key in train["val_curve"][0]},
    }
    if spec["method"] == "grpo":
        for name in ("best_draft_reward", *MECHANISM):
            curves["train"].pop(name)
    fields = ("method", "regime", "loss_type", "seed")
    return {**{field: spec[field] for field in fields}, "metrics": metrics, "curves": curves}


def collect_records(out: Path) -> list[dict]:
    records = [_record(run_dir) for run_dir in sorted((out / "runs").glob("*")) if run_dir.is_dir()]
    return [record for record in records if record is not None]


def _protocol(out: Path, config) -> dict:
    """What the report needs besides the runs: settings, sweep, pass-rate distributions, the prompt check."""
    import dataclasses

    def read(path: Path, default=None):
        return json.loads(path.read_text()) if path.exists() else default

    def rates(path: Path) -> dict[str, int]:
        counts: dict[str, int] = {}
        for line in path.read_text().splitlines() if path.exists() else []:
            rate = f"{json.loads(line)['pass_rate']:.3f}"
            counts[rate] = counts.get(rate, 0) + 1
        return dict(sorted(counts.items()))

    stamp = read(out / "warm_start" / "chained_warm_start.json", {})
    return {
        "config": dataclasses.asdict(config),
        "sweep": {method: read(out / "sweep" / f"{method}.json") for method in ("grpo", "igrpo")},
        "train_pass_rates": rates(out / "pass_rate" / "train_scored.jsonl"),
        "test_pass_rates": rates(out / "pass_rate" / "test_scored.jsonl"),
        "prompt_check": read(out / "checks" / "prompt_check.json"),
        "warm_start": {"settings": stamp.get("settings"), "build_seconds": stamp.get("seconds")},
        "val_at_start": read(out / "checks" / "val_at_start.json"),
        "warm_start_test": eval_metrics(out / "baseline"),
        "failed_runs": sorted(path.parent.name for path in (out / "runs").glob("*/FAILED")),
        "machine": _machine(),
        "code_version": (out / "code_version.txt").read_text().strip()
        if (out / "code_version.txt").exists()
        else None,
    }


def _machine() -> str:
    from benchmarks._report import machine_description

    return machine_description()


def write_report(out: Path, config) -> dict:
    """Write ``results.json``, the plots (``img/``) and ``evidence.md`` into ``out`` from the finished runs."""
    results = {"protocol": _protocol(out, config), "runs": collect_records(out)}
    (out / "results.json").write_text(dump_results(results))
    return render_report(results, out)


def _rounded(value):
    """Floats to 6 significant digits (curves are logged in float32; the rest is noise that only grows the file)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def dump_results(results: dict) -> str:
    """``results.json`` text: the protocol indented, then one run record per line (small, diff-friendly)."""
    runs = ",\n".join(json.dumps(_rounded(run), separators=(",", ":")) for run in results["runs"])
    protocol = json.dumps(_rounded(results["protocol"]), indent=1)
    return f'{{"protocol": {protocol},\n"runs": [\n{runs}\n]}}\n'


def render_report(results: dict, out: Path) -> dict:
    """The plots (``out/img``) and ``out/evidence.md`` of a results dictionary; returns the analysis."""
    from benchmarks._evidence_docs import render_markdown
    from benchmarks._evidence_plots import write_plots

    analysis = analyse(results)
    images = write_plots(results, out / "img")
    (out / "evidence.md").write_text(render_markdown(results, analysis, images))
    return analysis


def publish(out: Path) -> None:
    """Copy the report into the repository: docs/evidence.md, docs/img/evidence_*.png, and
    benchmarks/results/evidence/results.json (the file the page is generated from)."""
    (ROOT / "benchmarks" / "results" / "evidence").mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "results.json", ROOT / "benchmarks" / "results" / "evidence" / "results.json")
    for image in (out / "img").glob("evidence_*.png"):
        shutil.copy(image, ROOT / "docs" / "img" / image.name)
    shutil.copy(out / "evidence.md", ROOT / "docs" / "evidence.md")


# ----------------------------------------------------------------------------------------------------------------------
# Analysis: per arm and metric, both methods' mean with a 95 % interval and the paired difference


def _by_seed(runs: list[dict], method: str, value) -> dict[int, float]:
    return {r["seed"]: value(r) for r in runs if r["method"] == method and value(r) is not None}


def compare(runs: list[dict], value) -> dict:
    """GRPO and iGRPO (mean, 95 % interval over seeds) and their paired difference, for ``value(record)``."""
    grpo, igrpo = _by_seed(runs, "grpo", value), _by_seed(runs, "igrpo", value)
    return {
        "grpo": mean_interval(list(grpo.values())),
        "igrpo": mean_interval(list(igrpo.values())),
        "difference": paired_difference(igrpo, grpo),
    }


def verdict(difference: dict, planned_seeds: int) -> str:
    """holds / does not hold at this scale, from the paired difference's 95 % interval."""
    n = difference["n"]
    if n < 2 or difference["half_width"] is None:
        return "not enough runs yet"
    low, high = difference["mean"] - difference["half_width"], difference["mean"] + difference["half_width"]
    partial = f" ({n} of {planned_seeds} planned seeds)" if n < planned_seeds else ""
    if low > 0:
        return "holds at this scale" + partial
    if high < 0:
        return "does not hold at this scale: GRPO is better" + partial
    return "does not hold at this scale: no significant difference" + partial


def _window_mean(values: list, first: bool, fraction: float = 0.1) -> float | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    size = max(1, round(len(present) * fraction))
    return mean(present[:size] if first else present[-size:])


def _all_mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return mean(present) if present else None


ACCURACY_METRICS = ("pass@1", "maj@k", "pass@k", "greedy", "pass@1_hard", "pass@1_easy")


def analyse(results: dict) -> dict:
    """Every comparison the page shows, keyed by arm ``regime/loss``."""
    runs = results["runs"]
    planned = len(results["protocol"]["config"]["seeds"])
    arms: dict[str, dict] = {}
    for regime, loss in results["protocol"]["config"]["arms"]:
        arm_runs = [r for r in runs if r["regime"] == regime and r["loss_type"] == loss]
        if not arm_runs:
            continue
        comparisons = {m: compare(arm_runs, lambda r, m=m: r["metrics"].get(m)) for m in ACCURACY_METRICS}
        comparisons["entropy_test"] = compare(arm_runs, lambda r: r["metrics"]["entropy"])
        comparisons["entropy_validation"] = compare(
            arm_runs, lambda r: _all_mean(r["curves"]["validation"]["entropy"][1:])
        )
        comparisons["entropy_train_first"] = compare(
            arm_runs, lambda r: _window_mean(r["curves"]["train"]["entropy"], True)
        )
        comparisons["entropy_train_last"] = compare(
            arm_runs, lambda r: _window_mean(r["curves"]["train"]["entropy"], False)
        )
        comparisons["zero_spread"] = compare(
            arm_runs, lambda r: _all_mean(r["curves"]["train"]["frac_reward_zero_std"])
        )
        comparisons["refine_greedy"] = compare(arm_runs, lambda r: r["metrics"]["refine_greedy"])
        comparisons["draft_greedy"] = compare(arm_runs, lambda r: r["metrics"]["draft_greedy"])
        mechanism = {}
        igrpo_runs = [r for r in arm_runs if r["method"] == "igrpo"]
        for name in ("frac_reward_zero_std", *MECHANISM):
            mechanism[name] = {
                window: mean_interval([summary(r["curves"]["train"][name]) for r in igrpo_runs])
                for window, summary in (
                    ("first", lambda v: _window_mean(v, True)),
                    ("last", lambda v: _window_mean(v, False)),
                    ("all", _all_mean),
                )
            }
        arms[f"{regime}/{loss}"] = {
            "regime": regime, "loss_type": loss, "comparisons": comparisons, "mechanism": mechanism,
            "verdict": verdict(comparisons["pass@1"]["difference"], planned),
            "entropy_verdict": verdict(comparisons["entropy_validation"]["difference"], planned),
        }  # fmt: skip
    return {"arms": arms, "planned_seeds": planned, "finished_runs": len(runs)}
