"""The GPU kit cannot rot: `benchmarks/gpu_check.py --cpu --tiny` runs the same code path as the device run, and the
wheel list covers what the GPU machine lacks.

The dry run trains every variant 2 steps on a tiny Qwen2 whose vocabulary is larger than the tokenizer's (as
Qwen2.5-0.5B's is), so the id restriction and the fixed token budget are exercised; Liger is skipped with its reason
because its Triton kernels need CUDA.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schedule_alternates_inside_pairs_and_covers_every_pair_first():
    order = [variant for variant, _ in _module().schedule(list(_module().VARIANTS), rounds=2)]
    first = ["grpo", "igrpo", "igrpo_no_prefill", "igrpo_prefetch", "grpo_liger", "igrpo_liger", "lora", "tied_lora"]
    assert order == first + first


def test_schedule_keeps_only_the_chosen_variants():
    assert _module().schedule(["igrpo", "grpo"], rounds=2) == [("grpo", 0), ("igrpo", 0), ("grpo", 1), ("igrpo", 1)]


def test_docs_section_is_the_rendering_of_the_saved_gpu_runs():
    module = _module()
    assert "Not yet run on a GPU" in module.docs_markdown(None)  # before any GPU run
    saved = sorted((ROOT / "benchmarks" / "results").glob("gpu_check_*.json"))
    assert saved, "the GPU runs behind docs/benchmarks.md are kept in benchmarks/results/"
    results = [json.loads(path.read_text()) for path in saved]
    for result in results:
        module.summarize(result)
    text = module.docs_markdown(results)
    assert "bash scripts/prepare_gpu_wheels.sh" in text
    assert "--target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site:. python3 benchmarks/gpu_check.py" in text
    assert "| iGRPO prefetched drafts / GRPO |" in text and "### Run 2\n" in text
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    assert "<!-- BEGIN gpu_check -->\n" + text.strip() + "\n<!-- END gpu_check -->" in docs  # docs are the rendering


def test_wheel_list_pins_one_version_of_each_missing_package():
    lines = [line.split("#")[0].strip() for line in (ROOT / "scripts" / "gpu_wheels.txt").read_text().splitlines()]
    pins = dict(line.split("==") for line in lines if line)
    for needed in ("trl", "datasets", "math-verify", "latex2sympy2_extended", "antlr4-python3-runtime", "dill",
                   "multiprocess", "liger-kernel", "peft"):  # fmt: skip
        assert needed in pins, needed
    assert not {"torch", "transformers", "accelerate", "vllm", "flash-attn"} & set(pins)  # there already, or too big
    import importlib.metadata

    for name in ("trl", "peft", "datasets"):  # the versions this repository is tested with
        assert pins[name] == importlib.metadata.version(name), name


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cpu_tiny_dry_run(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu", "--tiny", "--output_dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    summary, runs = results["summary"], {run["variant"]: run for run in results["runs"]}
    assert [run["variant"] for run in results["runs"]] == ["grpo", "igrpo", "igrpo_no_prefill", "igrpo_prefetch",
                                                           "grpo_liger", "igrpo_liger", "lora", "tied_lora"]  # fmt: skip
    for variant in ("grpo", "igrpo", "igrpo_no_prefill", "igrpo_prefetch", "lora", "tied_lora"):
        assert summary[variant]["status"] == "ok" and summary[variant]["median_step_s"] > 0, summary[variant]
        assert len(runs[variant]["step_times_s"]) == 2 and len(runs[variant]["measured_s"]) == 1  # warm-up left out
        assert runs[variant]["completions/mean_length"] == 8  # every completion exactly the budget
    for variant in ("grpo_liger", "igrpo_liger"):
        assert runs[variant]["status"] == "skipped" and "CUDA" in runs[variant]["reason"]
    # iGRPO: drafts of the full budget, and they reach the Stage-2 prompt (decodable ids only)
    assert runs["igrpo"]["igrpo/draft_mean_length"] == 8
    assert runs["igrpo"]["igrpo/refinement_prompt_mean_length"] > 8 + 20
    # the speed options are really on: step 2 of the prefetch run conditions on drafts sampled at step 1
    assert "igrpo/draft_policy_lag" not in runs["igrpo"] and runs["igrpo_prefetch"]["igrpo/draft_policy_lag"] > 0
    ratios = {c["comparison"]: c for c in results["comparisons"]}
    assert ratios["iGRPO / GRPO"]["step_time_ratio"] > 0 and ratios["Tied-LoRA / LoRA (GRPO)"]["step_time_ratio"] > 0
    assert ratios["iGRPO / GRPO"]["peak_memory_ratio"] is None  # no GPU memory on CPU
    assert ratios["iGRPO / GRPO, both with Liger"]["step_time_ratio"] is None
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| iGRPO / GRPO |" in markdown and "No GPU: no memory figures." in markdown
