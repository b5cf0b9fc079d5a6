"""benchmarks/evidence.py: the whole pipeline at toy scale as a user runs it, and the pieces its verdicts rest on
(statistics, the Stage-2 probe, the verdict rule)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._evidence_probe import stage2_mechanism_probe  # noqa: E402
from benchmarks._evidence_report import analyse, verdict  # noqa: E402
from benchmarks._evidence_stats import mean_interval, paired_difference, student_t_quantile  # noqa: E402

RECORD_KEYS = {"method", "regime", "loss_type", "seed", "metrics", "curves"}


def test_student_t_interval_and_paired_test_match_reference_values():
    assert student_t_quantile(0.975, 4) == pytest.approx(2.7764, abs=1e-4)  # tables: t(0.975, 4) = 2.776
    assert student_t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    stats = mean_interval([1.0, 2.0, 3.0])
    assert stats["mean"] == 2.0 and stats["half_width"] == pytest.approx(4.3027 * 1.0 / 3**0.5, abs=1e-3)
    # t with 2 degrees of freedom has a closed form: P(T <= t) = 1/2 + t / (2 sqrt(2 + t^2))
    difference = paired_difference({0: 0.6, 1: 0.7, 2: 0.8, 3: 0.9}, {0: 0.5, 1: 0.5, 2: 0.5})
    t = 0.2 / (0.1 / 3**0.5)
    assert difference["mean"] == pytest.approx(0.2)
    assert difference["p_value"] == pytest.approx(2 * (0.5 - t / (2 * (2 + t * t) ** 0.5)), rel=1e-6)
    assert (difference["wins"], difference["losses"], difference["seeds"]) == (3, 0, [0, 1, 2])
    assert paired_difference({0: 0.5, 7: 0.9}, {0: 0.4})["n"] == 1  # only seeds both methods ran are paired


def test_verdict_follows_the_paired_interval():
    def difference(mean, half, n=5):
        return {"n": n, "mean": mean, "half_width": half}

    assert verdict(difference(0.05, 0.03), 5) == "holds at this scale"
    assert verdict(difference(-0.05, 0.03), 5) == "does not hold at this scale: GRPO is better"
    assert verdict(difference(0.02, 0.03), 5).endswith("no significant difference")
    assert verdict(difference(0.05, 0.03, n=3), 5) == "holds at this scale (3 of 5 planned seeds)"
    assert verdict({"n": 1, "mean": 0.1, "half_width": None}, 5) == "not enough runs yet"


def _record(method, seed, pass_at_1):
    metrics = {key: pass_at_1 for key in ("pass@1", "maj@k", "pass@k", "greedy", "pass@1_hard", "pass@1_easy")}
    metrics.update(entropy=0.1, draft_greedy=0.4, refine_greedy=0.5)
    train = {"step": [1, 2], "entropy": [0.2, 0.1], "frac_reward_zero_std": [0.5, 0.6]}
    if method == "igrpo":
        train.update({key: [0.5, 0.5] for key in ("draft_correct", "refinement_correct", "gain", "copy_rate",
                                                   "answer_copy_rate", "fix_rate", "break_rate")})  # fmt: skip
    return {"method": method, "regime": "hard", "loss_type": "grpo", "seed": seed, "metrics": metrics,
            "curves": {"train": train, "validation": {"step": [0, 2], "entropy": [0.3, 0.2]}}}  # fmt: skip


def test_analysis_pairs_runs_by_seed_per_arm():
    runs = [_record("grpo", s, 0.5 + 0.01 * s) for s in range(3)] + [
        _record("igrpo", s, 0.6 + 0.01 * s) for s in range(3)
    ]
    results = {
        "protocol": {"config": {"seeds": [0, 1, 2], "arms": [["hard", "grpo"], ["hard", "dapo"]]}},
        "runs": runs,
    }
    analysis = analyse(results)
    assert list(analysis["arms"]) == ["hard/grpo"]  # an arm without runs is left out, not reported as 0
    comparison = analysis["arms"]["hard/grpo"]["comparisons"]["pass@1"]
    assert comparison["difference"]["mean"] == pytest.approx(0.1)
    assert comparison["difference"]["wins"] == 3
    assert analysis["arms"]["hard/grpo"]["verdict"] == "holds at this scale"
    assert analysis["arms"]["hard/grpo"]["mechanism"]["copy_rate"]["all"]["mean"] == pytest.approx(0.5)


def test_stage2_probe_measures_copies_fixes_and_breaks_and_returns_no_reward():
    logged = {}
    draft_right, draft_wrong = r"<think>1+1=2</think><answer>\boxed{2}</answer>", r"<answer>\boxed{3}</answer>"
    completions = [[{"role": "assistant", "content": text}] for text in
                   (draft_right, r"<answer>\boxed{5}</answer>", r"<answer>\boxed{2}</answer>", draft_wrong)]  # fmt: skip
    rewards = stage2_mechanism_probe(
        completions, solution=["2"] * 4, draft=[draft_right, draft_right, draft_wrong, draft_wrong],
        log_metric=lambda name, value: logged.__setitem__(name, value),
    )  # fmt: skip
    assert rewards == [None] * 4
    assert logged["mechanism/draft_correct"] == 0.5
    assert logged["mechanism/refinement_correct"] == 0.5  # rows 0 and 2
    assert logged["mechanism/gain"] == 0.0
    assert logged["mechanism/copy_rate"] == 0.5  # rows 0 and 3 repeat their draft verbatim
    assert logged["mechanism/fix_rate"] == 0.5  # of the two wrong drafts, row 2's refinement fixed it
    assert logged["mechanism/break_rate"] == 0.5  # of the two right drafts, row 1's refinement broke it
    assert stage2_mechanism_probe(completions, solution=["2"] * 4, log_metric=logged.__setitem__) == [None] * 4


@pytest.mark.slow
def test_smoke_pipeline_writes_results_plots_and_page(tmp_path):
    """`python benchmarks/evidence.py --smoke --output_dir DIR` (a subprocess, as a user runs it) runs every stage and
    writes one record per run with the issue's schema, the plots and the generated page; rerun after a kill, it
    finishes only what is missing."""
    out = tmp_path / "evidence"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    command = [sys.executable, str(ROOT / "benchmarks" / "evidence.py"), "--smoke", "--output_dir", str(out)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    config = results["protocol"]["config"]
    assert len(runs) == len(config["arms"]) * len(config["seeds"]) * 2
    assert all(set(run) == RECORD_KEYS for run in runs)
    assert {(r["regime"], r["loss_type"]) for r in runs} == {tuple(arm) for arm in config["arms"]}
    assert {r["method"] for r in runs} == {"grpo", "igrpo"}
    for run in runs:
        metrics = run["metrics"]
        assert {"pass@1", "maj@k", "pass@k", "greedy", "entropy", "draft_greedy", "refine_greedy"} <= set(metrics)
        assert 0.0 <= metrics["pass@1"] <= 1.0 and metrics["k"] == config["test_samples"]
        train = run["curves"]["train"]
        assert len(train["step"]) == config["steps"] and all(e is not None for e in train["entropy"])
        assert run["curves"]["validation"]["step"] == [0, config["steps"]]
        if run["method"] == "igrpo":  # the Stage-2 probe logged at every step of an on-policy run
            steps_per_generation = 4 if run["loss_type"] == "gspo" else 1
            logged = [v for v in train["copy_rate"] if v is not None]
            assert len(logged) == -(-config["steps"] // steps_per_generation)
            assert all(0.0 <= v <= 1.0 for v in logged)
        else:
            assert "copy_rate" not in train
    # the numbers come from `trl-igrpo eval` on the saved final model
    sampled = json.loads((out / "runs" / "hard-grpo-igrpo-seed0" / "eval-sampled" / "results.json").read_text())
    assert (
        sampled["metrics"]["pass@1"]
        == next(
            r for r in runs if (r["regime"], r["loss_type"], r["method"], r["seed"]) == ("hard", "grpo", "igrpo", 0)
        )["metrics"]["pass@1"]
    )
    assert (out / "runs" / "hard-grpo-igrpo-seed0" / "model" / "model.safetensors").exists()
    assert json.loads((out / "checks" / "prompt_check.json").read_text())["pass_rate_equal"] is True
    for image in ("validation", "test", "entropy", "mechanism"):
        assert (out / "img" / f"evidence_{image}.png").stat().st_size > 1000
    page = (out / "evidence.md").read_text()
    for heading in ("## Verdicts", "## Claim 1", "## Claim 2", "## Claim 3", "## Claim 4", "## Mechanism",
                    "## Protocol", "## Reproduce"):  # fmt: skip
        assert heading in page
    assert "not testable here" in page and "img/evidence_mechanism.png" in page

    # a run killed during its evaluation: the rerun evaluates that run again, retrains nothing, skips the rest
    run_dir = out / "runs" / "hard-grpo-igrpo-seed0"
    shutil.rmtree(run_dir / "eval-greedy")
    (run_dir / "eval_entropy.json").unlink()
    trained_at = (run_dir / "model" / "model.safetensors").stat().st_mtime_ns
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert re.findall(r"\] run (\S+) \(", again.stdout) == ["hard-grpo-igrpo-seed0"]
    assert not re.findall(r"\] sweep \S+$", again.stdout, re.M)  # the sweep's runs are cached too
    assert (run_dir / "model" / "model.safetensors").stat().st_mtime_ns == trained_at
    assert json.loads((run_dir / "eval-greedy" / "results.json").read_text())["metrics"]["num_problems"] > 0
    assert len(json.loads((out / "results.json").read_text())["runs"]) == len(runs)
