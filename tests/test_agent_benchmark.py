"""The agent benchmark's report: tables from the runs' measurements, paired cost ratios (no training here)."""

import argparse

from benchmarks.agent_igrpo_vs_grpo import METHODS, report


def _result(method, seed, before, after, cpu, wall):
    return {"method": method, "seed": seed, "before": before, "after": after, "step_cpu_s": cpu, "step_wall_s": wall,
            "max_rss_mb": 500.0, "history": []}  # fmt: skip


def test_report_tables_and_paired_cost_ratio():
    grpo, igrpo = list(METHODS)
    results = [
        _result(grpo, 0, {"accuracy": 0.1, "tool_call_rate": 0.5}, {"accuracy": 0.5, "tool_call_rate": 0.9}, [2.0, 2.0], [4.0]),
        _result(igrpo, 0, {"accuracy": 0.1, "tool_call_rate": 0.5}, {"accuracy": 0.7, "tool_call_rate": 1.0}, [3.0, 3.0], [5.0]),
        _result(grpo, 1, {"accuracy": 0.2, "tool_call_rate": 0.4}, {"accuracy": 0.3, "tool_call_rate": 0.8}, [1.0], [2.0]),
        _result(igrpo, 1, {"accuracy": 0.2, "tool_call_rate": 0.4}, {"accuracy": 0.5, "tool_call_rate": 0.6}, [2.0], [3.0]),
    ]  # fmt: skip
    options = argparse.Namespace(steps=3, prompts_per_step=2, learning_rate=1e-4, max_completion_length=80,
                                 eval_examples=16)  # fmt: skip
    page = report(results, options, ([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]))
    assert f"| 0 | {igrpo} | 0.100 | 0.700 | 0.500 | 1.000 |" in page
    assert f"| {grpo} | 2 | 0.150 ± 0.071 | 0.400 ± 0.141 | 0.450 ± 0.071 | 0.850 ± 0.071 |" in page
    assert f"| {igrpo} | 2.50 | 4.00 | 500 |" in page  # mean over seeds of the per-run mean CPU / wall per step
    assert "CPU time 1.750 ± 0.354, wall time 1.375 ± 0.177" in page  # (3/2, 2/1) and (5/4, 3/2), paired by seed
