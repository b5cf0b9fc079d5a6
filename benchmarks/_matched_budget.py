"""What the two GRPO-vs-iGRPO benchmarks share (``igrpo_vs_grpo.py``, ``igrpo_vs_grpo_chained.py``): the command line,
the two trainers at a matched rollout budget (GRPO G = 8, iGRPO N = 4 + G = 4), one run per subprocess, and the
measurements every run reports (TRL's per-step ``step_time``, wall time, peak RSS)."""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "grpo": {"loss_type": "grpo"},
    "dapo": {"loss_type": "dapo"},
    "gspo": {"loss_type": "grpo", "importance_sampling_level": "sequence"},
}
METHODS = ("GRPO G=8", "iGRPO N=4 G=4")
#: Per-task defaults of the flags left unset. --task chained is sized to fit about an hour on a shared 2-core machine.
TASK_DEFAULTS = {
    "arithmetic": {
        "steps": 40,
        "eval_every": 5,
        "max_completion_length": 40,
        "eval_examples": 64,
        "model_dir": "outputs/warm-start-model",
    },
    "chained": {
        "steps": 60,
        "eval_every": 10,
        "max_completion_length": 64,
        "eval_examples": 64,
        "model_dir": "outputs/chained-warm-start-model",
    },
}


def build_parser(description: str, task: str = "arithmetic") -> argparse.ArgumentParser:
    """The flags of both benchmarks; ``--task`` picks the benchmark (``task`` is its default)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--task",
        choices=tuple(TASK_DEFAULTS),
        default=task,
        help="arithmetic: the demo task (one operation); chained: multi-step chained arithmetic (own docs section)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--num-ops", type=int, nargs="+", default=[4], help="chained: operations per problem (warm start: 3 and 4)"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, help="optimizer steps (arithmetic 40, chained 60)")
    parser.add_argument("--prompts-per-step", type=int, default=16, help="unique prompts per optimizer step")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--max-completion-length", type=int, help="arithmetic 40, chained 64")
    parser.add_argument("--train-examples", type=int, default=512)
    parser.add_argument("--eval-examples", type=int, help="held-out problems (64)")
    parser.add_argument(
        "--eval-every", type=int, help="held-out accuracy every K steps (0: only at the end; arithmetic 5, chained 10)"
    )
    parser.add_argument("--model-dir", help="cached warm start, built if absent (per task under outputs/)")
    parser.add_argument("--timing-only", action="store_true", help="only step time vs batch size, no evaluation")
    parser.add_argument("--batch-prompts", type=int, nargs="+", default=[2, 8, 32, 64], help="for --timing-only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print tables without updating docs/")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def fill_task_defaults(args: argparse.Namespace) -> None:
    """Set every flag left unset to its task's default (:data:`TASK_DEFAULTS`)."""
    for name, value in TASK_DEFAULTS[args.task].items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def make_trainer(spec: dict, train):
    """The GRPO (G = 8) or iGRPO (N = 4, G = 4) trainer of one run: same prompts per step, rewards and settings."""
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from trl_igrpo import IGRPOConfig, IGRPOTrainer
    from trl_igrpo.rewards import math_accuracy_reward, think_answer_format_reward

    common = dict(
        output_dir=spec["output_dir"],
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        max_completion_length=spec["max_completion_length"],
        max_steps=spec["steps"],
        learning_rate=spec["learning_rate"],
        lr_scheduler_type="constant",
        beta=0.0,
        temperature=0.7,
        seed=spec["seed"],
        disable_tqdm=True,
        **VARIANTS[spec["variant"]],
    )
    prompts = spec["prompts_per_step"]
    if spec["method"] == METHODS[0]:
        args = GRPOConfig(num_generations=8, per_device_train_batch_size=8 * prompts, **common)
        trainer_class = GRPOTrainer
    else:
        args = IGRPOConfig(num_drafts=4, num_generations=4, per_device_train_batch_size=4 * prompts, **common)
        trainer_class = IGRPOTrainer
    return trainer_class(
        model=spec["model"],
        reward_funcs=[math_accuracy_reward, think_answer_format_reward],
        args=args,
        train_dataset=train,
    )


def run_in_subprocess(module: str, spec: dict) -> dict:
    """Run one training run as ``python -m MODULE --worker SPEC`` (so its peak memory is its own) and return what it
    printed last (its measurements, JSON)."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--worker", json.dumps(spec)], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"run {spec['method']} {spec['variant']} seed {spec['seed']} failed:\n{result.stderr[-3000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def training_log(trainer, seconds: float) -> tuple[list[dict], dict]:
    """The run's per-step log entries and its timing: TRL's per-step `step_time` (generation + scoring + update),
    median after two warm-up steps so start-up costs are excluded, the wall time of `train()` and the peak RSS."""
    history = [entry for entry in trainer.state.log_history if "entropy" in entry]
    step_times = [entry["step_time"] for entry in history if "step_time" in entry]
    return history, {
        "seconds_per_step": statistics.median(step_times[2:] or step_times or [seconds]),
        "wall_seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def mean_std(values: list[float], digits: int = 3) -> str:
    """``mean ± std`` over seeds (the value alone for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def plot_mean_band(axis, steps: list, samples: list[list[float]], style: str, label: str) -> None:
    """One method's curve: the mean over seeds at each step, with a ± one-standard-deviation band."""
    means = [statistics.mean(values) for values in samples]
    spread = [statistics.stdev(values) if len(values) > 1 else 0.0 for values in samples]
    axis.plot(steps, means, style, marker="o", markersize=3, label=label)
    axis.fill_between(
        steps, [m - e for m, e in zip(means, spread)], [m + e for m, e in zip(means, spread)], alpha=0.15
    )
