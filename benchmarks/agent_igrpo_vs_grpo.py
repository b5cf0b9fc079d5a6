"""GRPO (G = 8) vs iGRPO (N = 4 trajectories, G = 4) on a task that needs a tool, at a matched rollout budget.

The task is the inventory lookup (:mod:`trl_igrpo.demo.inventory`): the answer is in an environment that only a tool
call reaches (``environment_factory=InventoryEnv``, TRL's tool loop). Both methods start from the same warm start
(:mod:`trl_igrpo.demo.inventory_warm_start`: a tiny Qwen3 that calls the tool about half of the time) and train for the
same number of optimizer steps on the same prompts per step: GRPO samples 8 trajectories per prompt, iGRPO 4 drafts +
4 refinements (the paper's 4 + 4 against 8). Reported per seed and method, on held-out rows, before and after training,
with single-pass sampling at the training temperature (the paper's inference protocol): accuracy and the tool-call
rate (share of trajectories that call the tool); and the cost per optimizer step (wall and process CPU time, TRL's
``step_time``), so the extra cost of iGRPO with tools is measured on the same machine in the same session.

Every run happens in its own subprocess (one thread), and the two methods of a seed run back to back, alternating
which goes first, so the ratio of their costs compares like with like on a shared machine.

    .venv/bin/python benchmarks/agent_igrpo_vs_grpo.py                     # 5 seeds, 30 steps: docs/benchmarks_agents.md
    .venv/bin/python benchmarks/agent_igrpo_vs_grpo.py --seeds 0 --steps 3 --no-write   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a file, not only with -m from the root
    sys.path.insert(0, str(ROOT))
PAGE = ROOT / "docs" / "benchmarks_agents.md"
FIGURE = ROOT / "docs" / "img" / "agent_igrpo_vs_grpo.png"
METHODS = {"GRPO G=8": {"num_generations": 8}, "iGRPO N=4 G=4": {"num_generations": 4, "num_drafts": 4}}
_HEADER = (
    "# Agent benchmark: GRPO vs iGRPO with a tool\n\nWritten by `benchmarks/agent_igrpo_vs_grpo.py` (do not edit by "
    "hand); the task and the method are described in [iGRPO for agents](agents.md).\n"
)


# ----------------------------------------------------------------------------------------------------------------------
# One run (a subprocess).
class _CpuClock:
    """A trainer callback recording the process CPU time and wall time of every optimizer step."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Clock(TrainerCallback):
            def __init__(self):
                self.steps: list[tuple[float, float]] = []

            def on_step_begin(self, args, state, control, **kwargs):
                self._start = (time.process_time(), time.perf_counter())

            def on_step_end(self, args, state, control, **kwargs):
                cpu, wall = time.process_time(), time.perf_counter()
                self.steps.append((cpu - self._start[0], wall - self._start[1]))

        return Clock()


def run_one(method: str, seed: int, options: argparse.Namespace) -> dict:
    """Evaluate the warm start, train one method, evaluate again; return the measurements."""
    import torch

    torch.set_num_threads(1)
    from trl import GRPOConfig, GRPOTrainer

    from trl_igrpo import IGRPOConfig, IGRPOTrainer
    from trl_igrpo.demo.inventory import InventoryEnv, inventory_accuracy_reward, make_inventory_dataset
    from trl_igrpo.demo.inventory_warm_start import default_inventory_warm_start
    from trl_igrpo.testing import cpu_training_kwargs

    settings = METHODS[method]
    per_prompt = settings["num_generations"]
    common = dict(
        output_dir=str(Path(options.output_dir) / f"{method.split()[0].lower()}-seed{seed}"),
        per_device_train_batch_size=options.prompts_per_step * per_prompt, per_device_eval_batch_size=32,
        num_generations_eval=1, max_completion_length=options.max_completion_length, max_tool_calling_iterations=2,
        max_steps=options.steps, learning_rate=options.learning_rate, lr_scheduler_type="constant", loss_type="grpo",
        temperature=0.7, beta=0.0, seed=seed, **cpu_training_kwargs(),
    )  # fmt: skip
    is_igrpo = "num_drafts" in settings
    args = IGRPOConfig(**common, **settings) if is_igrpo else GRPOConfig(**common, **settings)
    trainer = (IGRPOTrainer if is_igrpo else GRPOTrainer)(
        model=default_inventory_warm_start(options.warm_start_dir),
        reward_funcs=inventory_accuracy_reward,
        args=args,
        train_dataset=make_inventory_dataset(options.train_examples, seed=1),
        eval_dataset=make_inventory_dataset(options.eval_examples, seed=2),
        environment_factory=InventoryEnv,
    )
    clock = _CpuClock()
    trainer.add_callback(clock)

    def evaluate() -> dict:
        metrics = trainer.evaluate()
        return {"accuracy": metrics["eval_reward"], "tool_call_rate": metrics["eval_inventory/tool_call_rate"]}

    before = evaluate()
    start = (time.process_time(), time.perf_counter())
    trainer.train()
    train_cpu, train_wall = time.process_time() - start[0], time.perf_counter() - start[1]
    after = evaluate()
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    return {
        "method": method, "seed": seed, "before": before, "after": after,
        "train_wall_s": train_wall, "train_cpu_s": train_cpu, "steps": len(clock.steps),
        "step_cpu_s": [cpu for cpu, _ in clock.steps], "step_wall_s": [wall for _, wall in clock.steps],
        "history": [{k: v for k, v in entry.items() if isinstance(v, (int, float))} for entry in history],
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# The comparison.
def run_all(options: argparse.Namespace) -> list[dict]:
    from trl_igrpo.demo.inventory_warm_start import default_inventory_warm_start

    default_inventory_warm_start(options.warm_start_dir)  # built once, before the timed runs
    results = []
    for index, seed in enumerate(options.seeds):
        order = list(METHODS) if index % 2 == 0 else list(reversed(METHODS))
        for method in order:
            out = Path(options.output_dir) / f"result-{method.split()[0].lower()}-{seed}.json"
            command = [sys.executable, __file__, "--worker", method, str(seed), str(out), *_forwarded(options)]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
            print(f"seed {seed}: {method} ...", flush=True)
            finished = subprocess.run(command, env=env, capture_output=True, text=True)
            if finished.returncode:
                raise RuntimeError(f"{method} seed {seed} failed:\n{finished.stderr[-4000:]}")
            results.append(json.loads(out.read_text()))
            print(f"  {_one_line(results[-1])}", flush=True)
    return results


def _forwarded(options: argparse.Namespace) -> list[str]:
    flags = ["--steps", options.steps, "--prompts-per-step", options.prompts_per_step, "--learning-rate",
             options.learning_rate, "--train-examples", options.train_examples, "--eval-examples",
             options.eval_examples, "--max-completion-length", options.max_completion_length,
             "--output-dir", options.output_dir]  # fmt: skip
    if options.warm_start_dir:
        flags += ["--warm-start-dir", options.warm_start_dir]
    return [str(flag) for flag in flags]


def _one_line(result: dict) -> str:
    b, a = result["before"], result["after"]
    return (
        f"accuracy {b['accuracy']:.3f} -> {a['accuracy']:.3f}, tool calls {b['tool_call_rate']:.3f} -> "
        f"{a['tool_call_rate']:.3f}, {statistics.mean(result['step_cpu_s']):.2f} CPU-s/step"
    )


def _mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def report(results: list[dict], options: argparse.Namespace, load: tuple[list[float], list[float]]) -> str:
    """The page's markdown: per-seed table, means, cost per step."""
    from benchmarks._report import machine_description, markdown_table

    rows = []
    for result in sorted(results, key=lambda r: (r["seed"], r["method"])):
        b, a = result["before"], result["after"]
        rows.append([result["seed"], result["method"], f"{b['accuracy']:.3f}", f"{a['accuracy']:.3f}",
                     f"{b['tool_call_rate']:.3f}", f"{a['tool_call_rate']:.3f}"])  # fmt: skip
    summary, cost = [], []
    for method in METHODS:
        mine = [r for r in results if r["method"] == method]
        if not mine:
            continue
        summary.append([method, len(mine), _mean_sd([r["before"]["accuracy"] for r in mine]),
                        _mean_sd([r["after"]["accuracy"] for r in mine]),
                        _mean_sd([r["before"]["tool_call_rate"] for r in mine]),
                        _mean_sd([r["after"]["tool_call_rate"] for r in mine])])  # fmt: skip
        step_cpu = [statistics.mean(r["step_cpu_s"]) for r in mine]
        step_wall = [statistics.mean(r["step_wall_s"]) for r in mine]
        cost.append([method, f"{statistics.mean(step_cpu):.2f}", f"{statistics.mean(step_wall):.2f}",
                     f"{statistics.mean(r['max_rss_mb'] for r in mine):.0f}"])  # fmt: skip
    ratio = ""
    if len(cost) == 2:
        pairs = [(g, i) for g in results for i in results
                 if g["seed"] == i["seed"] and g["method"] == "GRPO G=8" and i["method"] != "GRPO G=8"]  # fmt: skip
        cpu_ratios = [statistics.mean(i["step_cpu_s"]) / statistics.mean(g["step_cpu_s"]) for g, i in pairs]
        wall_ratios = [statistics.mean(i["step_wall_s"]) / statistics.mean(g["step_wall_s"]) for g, i in pairs]
        ratio = (
            f"\niGRPO / GRPO per optimizer step, paired by seed: CPU time {_mean_sd(cpu_ratios)}, "
            f"wall time {_mean_sd(wall_ratios)}.\n"
        )
    return "\n".join([
        f"Machine: {machine_description()}, one thread per run; load average (1 min) {load[0][0]:.1f} at the start, "
        f"{load[1][0]:.1f} at the end (other work shares the machine).",
        f"\nSettings: {options.steps} optimizer steps, {options.prompts_per_step} prompts per step, learning rate "
        f"{options.learning_rate} (constant), loss `grpo`, temperature 0.7, `max_completion_length` "
        f"{options.max_completion_length}, `max_tool_calling_iterations` 2; held-out: {options.eval_examples} rows, "
        "one sample each.",
        "\n## Held-out accuracy and tool-call rate, before and after training\n",
        markdown_table(["seed", "method", "accuracy before", "accuracy after", "tool calls before",
                        "tool calls after"], rows),  # fmt: skip
        "\nMean ± standard deviation over seeds:\n",
        markdown_table(["method", "seeds", "accuracy before", "accuracy after", "tool calls before",
                        "tool calls after"], summary),  # fmt: skip
        "\n## Cost per optimizer step\n",
        markdown_table(["method", "CPU s / step", "wall s / step", "peak RSS (MB)"], cost),
        ratio,
        f"![training reward per step](img/{FIGURE.name})" if FIGURE.exists() else "",
    ])  # fmt: skip


def plot(results: list[dict]) -> bool:
    """Training reward per step, mean over seeds (iGRPO: refinements and selected drafts)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    curves = {
        "GRPO G=8: rollouts": ("GRPO G=8", "reward"),
        "iGRPO: refinements (Stage 2)": ("iGRPO N=4 G=4", "reward"),
        "iGRPO: selected drafts": ("iGRPO N=4 G=4", "igrpo/best_draft_reward_mean"),
    }
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for label, (method, key) in curves.items():
        runs = [r["history"] for r in results if r["method"] == method]
        if not runs or any(key not in step for run in runs for step in run):
            continue
        length = min(len(run) for run in runs)
        axis.plot(range(1, length + 1), [statistics.mean(run[i][key] for run in runs) for i in range(length)],
                  label=label)  # fmt: skip
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("training reward (accuracy)")
    axis.set_title("Inventory lookup: GRPO vs iGRPO (mean over seeds)")
    axis.legend()
    figure.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(FIGURE, dpi=110)
    plt.close(figure)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--train-examples", type=int, default=256)
    parser.add_argument("--eval-examples", type=int, default=256)
    parser.add_argument("--max-completion-length", type=int, default=80)
    parser.add_argument(
        "--warm-start-dir", default=None, help="Cache directory of the warm start (default: ~/.cache)."
    )
    parser.add_argument("--output-dir", default="outputs/agent-benchmark")
    parser.add_argument("--no-write", action="store_true", help="Print the report instead of writing docs/.")
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "SEED", "OUT"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        method, seed, out = options.worker
        result = run_one(method, int(seed), options)
        Path(out).write_text(json.dumps(result))
        return
    if len(options.seeds) < 1:
        raise SystemExit("--seeds needs at least one seed")
    Path(options.output_dir).mkdir(parents=True, exist_ok=True)
    load_start = list(os.getloadavg())
    results = run_all(options)
    load_end = list(os.getloadavg())
    (Path(options.output_dir) / "results.json").write_text(json.dumps(results))
    if options.no_write:
        print(report(results, options, (load_start, load_end)))
        return
    plot(results)
    PAGE.write_text(_HEADER + "\n" + report(results, options, (load_start, load_end)) + "\n")
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
