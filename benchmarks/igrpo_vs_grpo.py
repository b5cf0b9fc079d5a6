"""GRPO (G = 8) vs iGRPO (N = 4, G = 4) at a matched rollout budget, from the same warm-started checkpoint.

For each loss variant (``grpo``: the paper's Eq. 5 aggregation, ``dapo``, and GSPO = sequence-level importance
sampling) and each seed, both methods train for the same number of optimizer steps on the built-in arithmetic task,
from the same offline warm start (:func:`trl_igrpo.demo.warm_start.build_warm_started_model`), with the same prompts per
step. Reported per method: held-out single-pass greedy accuracy after training (the paper's evaluation protocol) and
every ``--eval-every`` steps during training (the learning curve: an endpoint alone hides whether a method learns
faster and then drifts), wall-clock per optimizer step, peak resident memory of the training process, and the policy
entropy over training. The in-training evaluations run in a callback after the optimizer step, outside TRL's
``step_time``, and decode greedily, so they consume no random numbers and leave the training run unchanged.

``--task chained`` compares the two methods (loss ``grpo`` only) on multi-step chained arithmetic
(:mod:`trl_igrpo.demo.chained_arithmetic`), where a draft's partial reasoning can help a refinement, from its own
warm start (:mod:`trl_igrpo.demo.chained_warm_start`). Held-out metrics come from :mod:`trl_igrpo.eval`: greedy, and
pass@1 / pass@8 / maj@8 over k = 8 samples at T = 0.6, every ``--eval-every`` steps in process (sampling on a forked,
step-seeded RNG, so the training run is unchanged) and at the end through the ``trl-igrpo eval`` command on the saved
checkpoints; plus the policy entropy on held-out single-pass samples and a draft -> refine diagnostic.

Every run happens in its own subprocess, so peak memory (``ru_maxrss``) belongs to that run alone, and the two methods
of a (variant, seed) pair run back to back, so the step-time ratio compares like with like on a shared machine.

    .venv/bin/python -m benchmarks.igrpo_vs_grpo                        # 3 seeds x 3 variants, writes docs/
    .venv/bin/python -m benchmarks.igrpo_vs_grpo --task chained         # multi-step task, `trl-igrpo eval` metrics
    .venv/bin/python -m benchmarks.igrpo_vs_grpo --seeds 0 --variants grpo --steps 10 --no-write   # a quick look
    .venv/bin/python -m benchmarks.igrpo_vs_grpo --timing-only --batch-prompts 2 8 32   # step time vs batch size
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

ROOT = Path(__file__).resolve().parents[1]
if (
    str(ROOT) not in sys.path
):  # also runnable as a file (python benchmarks/igrpo_vs_grpo.py), not only with -m from the root
    sys.path.insert(0, str(ROOT))
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
}
TASK_DEFAULTS["chained"] = {
    "steps": 60,
    "eval_every": 10,
    "max_completion_length": 64,
    "eval_examples": 64,
    "model_dir": "outputs/chained-warm-start-model",
}


def _make_trainer(spec: dict, train):
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


def run_one(spec: dict) -> dict:
    """Train one (method, variant, seed) and return its measurements. Runs inside a worker subprocess."""
    import torch
    from transformers import TrainerCallback

    from trl_igrpo.demo.arithmetic import make_arithmetic_dataset
    from trl_igrpo.eval.generation import evaluate_accuracy

    if spec.get("task") == "chained":
        return run_one_chained(spec)
    torch.set_num_threads(spec["threads"])
    data = make_arithmetic_dataset(
        spec["train_examples"] + spec["eval_examples"], seed=0, max_operand=spec["max_operand"]
    )
    train = data.select(range(spec["train_examples"]))
    held_out = data.select(range(spec["train_examples"], len(data)))
    trainer = _make_trainer(spec, train)

    def held_out_accuracy() -> float:
        return evaluate_accuracy(
            trainer.model, trainer.processing_class, held_out, max_new_tokens=spec["max_completion_length"]
        )

    accuracy_before = held_out_accuracy() if spec["eval"] else None
    curve = [(0, accuracy_before)] if spec["eval"] else []
    eval_every = spec.get("eval_every") or 0
    if spec["eval"] and eval_every:

        class HeldOutCurve(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step % eval_every == 0 and state.global_step < spec["steps"]:
                    curve.append((state.global_step, held_out_accuracy()))

        trainer.add_callback(HeldOutCurve())
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    accuracy_after = None
    if spec["eval"]:
        accuracy_after = held_out_accuracy()
        curve.append((trainer.state.global_step, accuracy_after))
    history, timing = _training_log(trainer, seconds)
    return {
        **spec,
        "accuracy_before": accuracy_before,
        "accuracy_after": accuracy_after,
        "accuracy_curve": curve,
        **timing,
        "entropy": [entry["entropy"] for entry in history],
        "reward": [entry.get("reward") for entry in history],
    }


def _in_subprocess(spec: dict) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.igrpo_vs_grpo", "--worker", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"run {spec['method']} {spec['variant']} seed {spec['seed']} failed:\n{result.stderr[-3000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _training_log(trainer, seconds: float) -> tuple[list[dict], dict]:
    """The run's per-step log entries and its timing: TRL's per-step `step_time` (generation + scoring + update),
    median after two warm-up steps so start-up costs are excluded, the wall time of `train()` and the peak RSS."""
    history = [entry for entry in trainer.state.log_history if "entropy" in entry]
    step_times = [entry["step_time"] for entry in history if "step_time" in entry]
    return history, {
        "seconds_per_step": statistics.median(step_times[2:] or step_times or [seconds]),
        "wall_seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--task",
        choices=("arithmetic", "chained"),
        default="arithmetic",
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
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_one(json.loads(args.worker))))
        return
    for name, value in TASK_DEFAULTS[args.task].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.task == "chained":
        _chained(args)
        return

    from trl_igrpo.demo.warm_start import DEMO_MAX_OPERAND, build_warm_started_model

    model = build_warm_started_model(ROOT / args.model_dir)  # the demo's defaults: same checkpoint as `make demo`
    base = dict(
        model=model,
        max_operand=DEMO_MAX_OPERAND,
        train_examples=args.train_examples,
        eval_examples=args.eval_examples,
        max_completion_length=args.max_completion_length,
        learning_rate=args.learning_rate,
        threads=args.threads,
        output_dir=str(ROOT / "outputs" / "bench-igrpo-vs-grpo"),
    )
    if args.timing_only:
        _timing(args, base)
        return

    results = []
    for variant in args.variants:
        for seed in args.seeds:
            for method in METHODS:
                spec = dict(
                    base, method=method, variant=variant, seed=seed, steps=args.steps,
                    prompts_per_step=args.prompts_per_step, eval=True, eval_every=args.eval_every,
                )  # fmt: skip
                result = _in_subprocess(spec)
                results.append(result)
                print(
                    f"{variant:5s} seed {seed} {method:14s} acc {result['accuracy_before']:.3f} -> "
                    f"{result['accuracy_after']:.3f}  {result['seconds_per_step']:.2f} s/step  "
                    f"{result['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    markdown = _report(args, results)
    print(markdown)
    if not args.no_write:
        from benchmarks._report import update_section

        update_section("igrpo_vs_grpo", markdown)
        _plot(results, args)


def _report(args, results: list[dict]) -> str:
    from benchmarks._report import machine_description, markdown_table

    rows = []
    for variant in args.variants:
        by_method = {m: [r for r in results if r["variant"] == variant and r["method"] == m] for m in METHODS}
        grpo, igrpo = by_method[METHODS[0]], by_method[METHODS[1]]
        step_ratio = [i["seconds_per_step"] / g["seconds_per_step"] for g, i in zip(grpo, igrpo)]
        memory_ratio = [i["peak_rss_mib"] / g["peak_rss_mib"] for g, i in zip(grpo, igrpo)]
        for method, runs in by_method.items():
            rows.append(
                [
                    variant,
                    method,
                    _mean_std([r["accuracy_before"] for r in runs]),
                    _mean_std([r["accuracy_after"] for r in runs]),
                    _mean_std([r["seconds_per_step"] for r in runs]),
                    _mean_std([r["peak_rss_mib"] for r in runs]),
                    _mean_std([statistics.mean(r["entropy"][-5:]) for r in runs]),
                    "1.00x" if method == METHODS[0] else f"{statistics.mean(step_ratio):.2f}x",
                    "1.00x" if method == METHODS[0] else f"{statistics.mean(memory_ratio):.2f}x",
                ]
            )
    table = markdown_table(
        [
            "loss",
            "method",
            "held-out acc. before",
            "held-out acc. after",
            "s / step",
            "peak RSS (MiB)",
            "entropy (last 5 steps)",
            "step time vs GRPO",
            "memory vs GRPO",
        ],
        rows,
    )
    curve_section = _curve_table(args, results)
    return (
        "## GRPO vs iGRPO at a matched rollout budget (`benchmarks/igrpo_vs_grpo.py`)\n\n"
        f"{machine_description()}. Warm-started tiny Qwen2 (offline SFT, see `trl_igrpo/warm_start.py`), "
        f"{args.steps} optimizer steps, {args.prompts_per_step} unique prompts per step (GRPO: 8 completions each; "
        f"iGRPO: 4 drafts + 4 refinements each), lr {args.learning_rate}, temperature 0.7, beta 0, "
        f"{args.eval_examples} held-out problems scored greedily in one pass. Mean ± std over seeds "
        f"{args.seeds}. s / step: median of TRL's `step_time` (generation, scoring and update) after two warm-up steps. "
        "Peak RSS: the whole training process (Python, torch and the model included). Ratios are iGRPO / GRPO per "
        "(loss, seed) pair, run back to back.\n\n"
        f"{table}\n\n![accuracy](img/igrpo_vs_grpo_accuracy.png)\n![entropy](img/igrpo_vs_grpo_entropy.png)\n"
        f"{curve_section}"
    )


def _mean_curve(runs: list[dict]) -> dict[int, list[float]]:
    """step -> held-out accuracies of `runs` at that step (steps every run evaluated)."""
    per_run = [dict((step, accuracy) for step, accuracy in r["accuracy_curve"]) for r in runs]
    steps = sorted(set.intersection(*(set(curve) for curve in per_run))) if per_run else []
    return {step: [curve[step] for curve in per_run] for step in steps}


def _curve_table(args, results: list[dict]) -> str:
    from benchmarks._report import markdown_table

    if not any(len(r.get("accuracy_curve", [])) > 2 for r in results):
        return ""
    rows, steps = [], None
    for variant in args.variants:
        for method in METHODS:
            curve = _mean_curve([r for r in results if r["variant"] == variant and r["method"] == method])
            steps = steps or list(curve)
            rows.append([variant, method, *(f"{statistics.mean(curve[s]):.3f}" for s in steps)])
    return (
        f"\n### Held-out accuracy during training\n\nMean over seeds {args.seeds}, evaluated every {args.eval_every} "
        "steps (greedy, single pass, same 64 held-out problems).\n\n"
        + markdown_table(["loss", "method", *(f"step {s}" for s in steps)], rows)
        + "\n\n![held-out accuracy over steps](img/igrpo_vs_grpo_accuracy_curve.png)\n"
    )


def _plot(results: list[dict], args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image_dir = ROOT / "docs" / "img"
    image_dir.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(6, 3.5))
    width = 0.35
    for offset, method in enumerate(METHODS):
        means, errors = [], []
        for variant in args.variants:
            values = [r["accuracy_after"] for r in results if r["variant"] == variant and r["method"] == method]
            means.append(statistics.mean(values))
            errors.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        positions = [i + (offset - 0.5) * width for i in range(len(args.variants))]
        axis.bar(positions, means, width, yerr=errors, capsize=3, label=method)
    before = statistics.mean(r["accuracy_before"] for r in results)
    axis.axhline(before, color="gray", linestyle="--", label="warm start")
    axis.set_xticks(range(len(args.variants)), args.variants)
    axis.set_ylabel("held-out accuracy (greedy, single pass)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(image_dir / "igrpo_vs_grpo_accuracy.png", dpi=120)
    plt.close(figure)

    if any(len(r.get("accuracy_curve", [])) > 2 for r in results):
        figure, axes = plt.subplots(1, len(args.variants), figsize=(3.2 * len(args.variants), 3.2), sharey=True)
        axes = axes if len(args.variants) > 1 else [axes]
        for axis, variant in zip(axes, args.variants):
            for method, style in zip(METHODS, ("-", "--")):
                curve = _mean_curve([r for r in results if r["variant"] == variant and r["method"] == method])
                steps = list(curve)
                means = [statistics.mean(curve[s]) for s in steps]
                spread = [statistics.stdev(curve[s]) if len(curve[s]) > 1 else 0.0 for s in steps]
                axis.plot(steps, means, style, marker="o", markersize=3, label=method)
                axis.fill_between(
                    steps, [m - e for m, e in zip(means, spread)], [m + e for m, e in zip(means, spread)], alpha=0.15
                )
            axis.set_title(f"loss: {variant}")
            axis.set_xlabel("optimizer step")
        axes[0].set_ylabel("held-out accuracy")
        axes[0].legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(image_dir / "igrpo_vs_grpo_accuracy_curve.png", dpi=120)
        plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for method, style in zip(METHODS, ("-", "--")):
        runs = [r for r in results if r["method"] == method and r["variant"] == args.variants[0]]
        steps = min(len(r["entropy"]) for r in runs)
        mean = [statistics.mean(r["entropy"][i] for r in runs) for i in range(steps)]
        axis.plot(range(1, steps + 1), mean, style, label=f"{method} ({args.variants[0]})")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("policy entropy (nats / token)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(image_dir / "igrpo_vs_grpo_entropy.png", dpi=120)
    plt.close(figure)


def _timing(args, base: dict) -> None:
    from benchmarks._report import machine_description, markdown_table, update_section

    rows = []
    for prompts in args.batch_prompts:
        times = {}
        for method in METHODS:
            spec = dict(
                base, method=method, variant="grpo", seed=0, steps=args.steps, prompts_per_step=prompts, eval=False
            )
            times[method] = _in_subprocess(spec)["seconds_per_step"]
        ratio = times[METHODS[1]] / times[METHODS[0]]
        rows.append([prompts, 8 * prompts, f"{times[METHODS[0]]:.2f}", f"{times[METHODS[1]]:.2f}", f"{ratio:.2f}x"])
        print(rows[-1], flush=True)
    markdown = (
        "## Step time vs batch size: when does two-stage generation cost more?\n\n"
        f"{machine_description()}. Same warm start, {args.steps} steps per point, `loss_type=grpo`, "
        "rollouts per step = 8 x unique prompts for both methods; median `step_time` after two warm-up steps.\n\n"
        + markdown_table(
            ["unique prompts / step", "rollouts / step", "GRPO s/step", "iGRPO s/step", "iGRPO / GRPO"], rows
        )
        + "\n"
    )
    print(markdown)
    if not args.no_write:
        update_section("igrpo_vs_grpo_timing", markdown)


# ----------------------------------------------------------------------------------------------------------------------
# The chained-arithmetic task (--task chained): multi-step problems where a draft's partial reasoning can help.

CHAINED_SAMPLES = 8  # k of the sampled evaluation (the paper's protocol outside AIME)


def _held_out_problems(rows: list[dict]):
    from trl_igrpo.eval.data import BenchmarkProblem

    return [BenchmarkProblem(i, r["prompt"], r["solution"], {"num_ops": r["num_ops"]}) for i, r in enumerate(rows)]


def _completion_entropy(model, tokenizer, prompts: list, completions: list[str], batch_size: int = 64) -> float:
    """Mean per-token entropy (nats, temperature 1) of the policy over the given completions of the given prompts."""
    import torch

    from trl_igrpo.eval.generation import render_prompt

    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch_prompts = [render_prompt(tokenizer, p) for p in prompts[start : start + batch_size]]
            batch_completions = completions[start : start + batch_size]
            prompt_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in batch_prompts]
            completion_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] or [0] for c in batch_completions]
            length = max(len(p) + len(c) for p, c in zip(prompt_ids, completion_ids))
            input_ids = torch.full((len(prompt_ids), length), tokenizer.pad_token_id)
            attention = torch.zeros_like(input_ids)
            mask = torch.zeros_like(input_ids, dtype=torch.bool)
            for row, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
                input_ids[row, : len(p) + len(c)] = torch.tensor(p + c)
                attention[row, : len(p) + len(c)] = 1
                mask[row, len(p) - 1 : len(p) + len(c) - 1] = True  # positions that predict completion tokens
            logits = model(input_ids=input_ids, attention_mask=attention).logits.float()
            log_probs = torch.log_softmax(logits, dim=-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1)
            total += entropy[mask].sum().item()
            count += int(mask.sum())
    model.train(was_training)
    return total / max(count, 1)


def _evaluate_in_process(model, tokenizer, problems, spec: dict, step: int, grader) -> dict:
    """Greedy and k-sample (T=0.6, top-p 0.95) held-out metrics through trl_igrpo.eval (the code of `trl-igrpo
    eval`), plus the held-out policy entropy; sampling runs on a forked RNG seeded by the step, so it neither disturbs
    training nor differs between methods at the same step."""
    import torch

    from trl_igrpo.eval.runner import EvalSettings, evaluate

    length = spec["max_completion_length"]
    greedy = EvalSettings(num_samples=1, temperature=0.0, max_new_tokens=length, batch_size=256)
    sampled = EvalSettings(num_samples=CHAINED_SAMPLES, max_new_tokens=length, batch_size=256, seed=10_000 + step)
    with torch.random.fork_rng(devices=[]):
        greedy_result = evaluate(model, tokenizer, problems, greedy, grader=grader, progress=False)
        sampled_result = evaluate(model, tokenizer, problems, sampled, grader=grader, progress=False)
    by_problem: dict[int, list[str]] = {}
    for record in sampled_result.samples:
        by_problem.setdefault(record["problem_index"], []).append(record["completion"])
    prompts = [p.problem for p in problems for _ in range(CHAINED_SAMPLES)]
    completions = [c for p in problems for c in by_problem[p.index]]
    metrics = sampled_result.results["metrics"]
    return {
        "step": step,
        "greedy": greedy_result.results["metrics"]["pass@1"],
        "pass@1": metrics["pass@1"],
        "pass@k": metrics["pass@k"][str(CHAINED_SAMPLES)],
        "maj@k": metrics[f"maj@{CHAINED_SAMPLES}"],
        "unparseable": metrics["unparseable_frac"],
        "entropy": _completion_entropy(model, tokenizer, prompts, completions),
    }


def _eval_cli(model_dir: str, held_out_file: str, output_dir: str, extra: list[str]) -> dict:
    """`trl-igrpo eval` on a saved checkpoint (a subprocess, as a user would run it); returns results.json."""
    command = [sys.executable, "-m", "trl_igrpo.eval", "--model_name_or_path", model_dir, "--dataset_name",
               held_out_file, "--output_dir", output_dir, "--no_progress", "--batch_size", "256",
               "--group_columns", "num_ops", *extra]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"trl-igrpo eval failed:\n{result.stderr[-3000:]}")
    return json.loads((Path(output_dir) / "results.json").read_text())


def run_one_chained(spec: dict) -> dict:
    """Train one (method, seed) on chained arithmetic; held-out metrics every ``eval_every`` steps in process, and at
    the end through the `trl-igrpo eval` command on the saved checkpoint (greedy, and k = 8 at T = 0.6; the same
    seeds, so the in-process points and the command agree)."""
    import torch
    from transformers import TrainerCallback

    from trl_igrpo.demo.chained_arithmetic import make_chained_dataset
    from trl_igrpo.eval.runner import EvalSettings, evaluate
    from trl_igrpo.rewards.math import MathAccuracyReward

    torch.set_num_threads(spec["threads"])
    data = make_chained_dataset(spec["train_examples"] + spec["eval_examples"], seed=0, num_ops=spec["num_ops"])
    train = data.select(range(spec["train_examples"]))
    held_out = [data[i] for i in range(spec["train_examples"], len(data))]
    problems = _held_out_problems(held_out)
    trainer = _make_trainer(spec, train)
    grader = MathAccuracyReward(num_workers=1)

    def draft_then_refine() -> dict:
        """Greedy draft, then a refinement conditioned on it, on the held-out set: does the model use a draft?"""
        settings = EvalSettings(num_samples=1, temperature=0.0, max_new_tokens=spec["max_completion_length"],
                                mode="draft_refine", batch_size=256)  # fmt: skip
        with torch.random.fork_rng(devices=[]):
            results = evaluate(trainer.model, trainer.processing_class, problems, settings, grader=grader,
                               progress=False).results  # fmt: skip
        return {"draft": results["drafts"]["pass@1"], "refinement": results["metrics"]["pass@1"]}

    two_pass_before = draft_then_refine()
    curve = [_evaluate_in_process(trainer.model, trainer.processing_class, problems, spec, 0, grader)]
    eval_every = spec["eval_every"]

    class HeldOutCurve(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if eval_every and state.global_step % eval_every == 0 and state.global_step < spec["steps"]:
                curve.append(
                    _evaluate_in_process(
                        trainer.model, trainer.processing_class, problems, spec, state.global_step, grader
                    )
                )

    trainer.add_callback(HeldOutCurve())
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    step = trainer.state.global_step
    two_pass = draft_then_refine()
    grader.close()

    # the endpoint through the command line on the saved checkpoint, as a user would measure it
    run_dir = Path(spec["output_dir"]) / f"{spec['method'].split()[0].lower()}-seed{spec['seed']}"
    trainer.save_model(str(run_dir / "model"))
    trainer.processing_class.save_pretrained(str(run_dir / "model"))
    length = str(spec["max_completion_length"])
    sampled = _eval_cli(str(run_dir / "model"), spec["held_out_file"], str(run_dir / "eval-sampled"),
                        ["--num_samples", str(CHAINED_SAMPLES), "--temperature", "0.6", "--top_p", "0.95",
                         "--max_new_tokens", length, "--seed", str(10_000 + step)])  # fmt: skip
    greedy = _eval_cli(str(run_dir / "model"), spec["held_out_file"], str(run_dir / "eval-greedy"),
                       ["--num_samples", "1", "--temperature", "0", "--max_new_tokens", length])  # fmt: skip
    records = [json.loads(line) for line in (run_dir / "eval-sampled" / "samples.jsonl").read_text().splitlines()]
    prompts = [problems[r["problem_index"]].problem for r in records]
    metrics = sampled["metrics"]
    curve.append(
        {
            "step": step,
            "greedy": greedy["metrics"]["pass@1"],
            "pass@1": metrics["pass@1"],
            "pass@k": metrics["pass@k"][str(CHAINED_SAMPLES)],
            "maj@k": metrics[f"maj@{CHAINED_SAMPLES}"],
            "unparseable": metrics["unparseable_frac"],
            "entropy": _completion_entropy(
                trainer.model, trainer.processing_class, prompts, [r["completion"] for r in records]
            ),
            "by_num_ops": {k: v["pass@1"] for k, v in sampled["by_group"]["num_ops"].items()},
        }
    )
    history, timing = _training_log(trainer, seconds)
    return {
        **spec,
        "curve": curve,
        "draft_refine_before": two_pass_before,
        "draft_refine": two_pass,
        **timing,
        "train_entropy": [entry["entropy"] for entry in history],
        "reward": [entry.get("reward") for entry in history],
        "draft_reward": [entry.get("igrpo/best_draft_reward_mean") for entry in history],
        "zero_std_frac": [entry.get("frac_reward_zero_std") for entry in history],
    }


def _chained(args) -> None:
    """GRPO vs iGRPO on chained arithmetic (loss `grpo`, the paper's Eq. 5): seeds x methods, back to back."""
    from trl_igrpo.demo.chained_arithmetic import make_chained_examples
    from trl_igrpo.demo.chained_warm_start import build_chained_warm_start

    output_dir = ROOT / "outputs" / "bench-igrpo-vs-grpo-chained"
    output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = build_chained_warm_start(ROOT / args.model_dir)
    # the build time recorded when the cached warm start was made (loading it takes no time)
    warm_start_seconds = json.loads((Path(model) / "chained_warm_start.json").read_text())["seconds"]
    rows = make_chained_examples(args.train_examples + args.eval_examples, seed=0, num_ops=args.num_ops)
    rows = rows[args.train_examples :]
    held_out_file = output_dir / "held_out.jsonl"
    held_out_file.write_text(
        "".join(
            json.dumps({"problem": r["prompt"][-1]["content"], "answer": r["solution"], "num_ops": r["num_ops"]})
            + "\n"
            for r in rows
        )
    )
    base = dict(
        task="chained", model=model, variant="grpo", train_examples=args.train_examples, num_ops=args.num_ops,
        eval_examples=args.eval_examples, max_completion_length=args.max_completion_length,
        learning_rate=args.learning_rate, threads=args.threads, output_dir=str(output_dir),
        held_out_file=str(held_out_file), steps=args.steps, prompts_per_step=args.prompts_per_step,
        eval_every=args.eval_every, eval=True,
    )  # fmt: skip
    results = []
    for seed in args.seeds:
        for method in METHODS:
            result = _in_subprocess(dict(base, method=method, seed=seed))
            results.append(result)
            first, last = result["curve"][0], result["curve"][-1]
            print(
                f"seed {seed} {method:14s} greedy {first['greedy']:.3f} -> {last['greedy']:.3f}  pass@1 "
                f"{first['pass@1']:.3f} -> {last['pass@1']:.3f}  {result['seconds_per_step']:.2f} s/step  "
                f"{result['wall_seconds']:.0f} s",
                flush=True,
            )
            (output_dir / "results.json").write_text(json.dumps(results, indent=1))
    total_minutes = (time.perf_counter() - start) / 60
    markdown = _chained_report(args, results, warm_start_seconds, total_minutes)
    print(markdown)
    if not args.no_write:
        from benchmarks._report import update_section

        update_section("igrpo_vs_grpo_chained", markdown)
        _chained_plots(results, args)


def _mean_sd(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _chained_report(args, results: list[dict], warm_start_seconds: float, total_minutes: float) -> str:
    from benchmarks._report import machine_description, markdown_table

    rows, per_seed = [], []
    for method in METHODS:
        runs = [r for r in results if r["method"] == method]
        first = [r["curve"][0] for r in runs]
        last = [r["curve"][-1] for r in runs]
        rows.append(
            [
                method,
                _mean_sd([f["greedy"] for f in first]),
                _mean_sd([f["greedy"] for f in last]),
                _mean_sd([f["pass@1"] for f in first]),
                _mean_sd([f["pass@1"] for f in last]),
                _mean_sd([f["pass@k"] for f in first]) + " → " + _mean_sd([f["pass@k"] for f in last]),
                _mean_sd([f["maj@k"] for f in first]) + " → " + _mean_sd([f["maj@k"] for f in last]),
                _mean_sd([f["entropy"] for f in first]) + " → " + _mean_sd([f["entropy"] for f in last]),
                _mean_sd([r["draft_refine_before"]["draft"] for r in runs]) + " → "
                + _mean_sd([r["draft_refine_before"]["refinement"] for r in runs]),
                _mean_sd([r["draft_refine"]["draft"] for r in runs]) + " → "
                + _mean_sd([r["draft_refine"]["refinement"] for r in runs]),
                _mean_sd([r["seconds_per_step"] for r in runs], 2),
            ]
        )  # fmt: skip
        for r in runs:
            last_point = r["curve"][-1]
            per_seed.append(
                [method, r["seed"], f"{last_point['greedy']:.3f}", f"{last_point['pass@1']:.3f}",
                 f"{r['draft_refine']['draft']:.3f} → {r['draft_refine']['refinement']:.3f}"]
            )  # fmt: skip
    table = markdown_table(
        ["method", "greedy before", "greedy after", "pass@1 before", "pass@1 after", f"pass@{CHAINED_SAMPLES}",
         f"maj@{CHAINED_SAMPLES}", "held-out entropy (nats/token)", "draft → refine, before",
         "draft → refine, after", "s / step"],
        rows,
    )  # fmt: skip
    steps = [point["step"] for point in results[0]["curve"]]
    curve_rows = []
    for method in METHODS:
        runs = [r for r in results if r["method"] == method]
        for key, label in (("greedy", "greedy"), ("pass@1", f"pass@1 (k={CHAINED_SAMPLES}, T=0.6)")):
            curve_rows.append(
                [
                    method,
                    label,
                    *(f"{statistics.mean(r['curve'][i][key] for r in runs):.3f}" for i in range(len(steps))),
                ]
            )
    curve_table = markdown_table(["method", "metric", *(f"step {s}" for s in steps)], curve_rows)
    signal_rows = []
    for method in METHODS:
        runs = [r for r in results if r["method"] == method]
        best_draft = [statistics.mean(r["draft_reward"][:5]) for r in runs if r["draft_reward"][0] is not None]
        signal_rows.append(
            [
                method,
                _mean_sd([statistics.mean(r["reward"][:5]) for r in runs], 2) + " → "
                + _mean_sd([statistics.mean(r["reward"][-5:]) for r in runs], 2),
                _mean_sd(best_draft, 2) if best_draft else "-",
                _mean_sd([statistics.mean(v for v in r["zero_std_frac"] if v is not None) for r in runs], 2),
            ]
        )  # fmt: skip
    signal_table = markdown_table(
        ["method", "trained completions' reward, first 5 → last 5 steps", "best draft's reward, first 5 steps",
         "groups with zero reward spread (no gradient)"],
        signal_rows,
    )  # fmt: skip
    seeds_table = markdown_table(
        ["method", "seed", "greedy after", f"pass@1 after (k={CHAINED_SAMPLES})", "draft → refine (greedy)"],
        per_seed,
    )
    return (
        "## GRPO vs iGRPO on chained arithmetic (`benchmarks/igrpo_vs_grpo.py --task chained`)\n\n"
        f"{machine_description()}; shared with other jobs. Task: `trl_igrpo.demo.chained_arithmetic`, a two-digit "
        f"start and {'/'.join(map(str, args.num_ops))} additions or subtractions of one-digit numbers "
        "(`What is 47+8-5+9?`), solved as a running total, one step per operation (`47+8=55, -5=50, +9=59`); about "
        "half the steps carry or borrow. A draft that forgets one carry keeps a correct prefix that a refinement can "
        "reuse. Warm start: `trl_igrpo.demo.chained_warm_start` (tiny 3-layer Qwen2, supervised on a teacher that "
        "forgets half of its carries, 30 % of the examples in iGRPO's refinement format with the teacher fixing the "
        f"draft's first slip; built once in {warm_start_seconds:.0f} s on this machine, then cached). Both methods "
        f"start from it with loss `grpo` (Eq. 5), beta 0, lr {args.learning_rate} (constant), "
        f"temperature 0.7, {args.prompts_per_step} unique prompts per step (GRPO: 8 completions each; iGRPO: 4 drafts "
        f"+ 4 refinements each), {args.steps} optimizer steps, {args.train_examples} training problems, completions "
        f"of at most {args.max_completion_length} tokens, seeds {args.seeds}; the same settings for both methods, "
        f"nothing tuned for either. Held-out: {args.eval_examples} problems, evaluated with `trl-igrpo eval` on the "
        f"saved checkpoints (greedy, and pass@1 over k = {CHAINED_SAMPLES} samples at T = 0.6, top-p 0.95), and "
        f"during training every {args.eval_every} steps with the same code in process. Held-out entropy: the "
        "policy's mean per-token entropy (temperature 1) over its own k-sample held-out completions, the same "
        "single-pass setting for both methods. Draft → refine: held-out greedy accuracy of a draft, then of a "
        "refinement conditioned on it (`--mode draft_refine`, iGRPO's Stage-2 prompt), before and after training. "
        "pass@8, maj@8 and entropy: before → after. Mean ± std over seeds; whole benchmark "
        f"{total_minutes:.0f} min of wall time with the warm start cached.\n\n"
        f"{table}\n\n### Held-out accuracy during training (mean over seeds)\n\n{curve_table}\n\n"
        "![held-out accuracy during training](img/igrpo_vs_grpo_chained_curve.png)\n"
        "![entropy](img/igrpo_vs_grpo_chained_entropy.png)\n\n"
        f"### Per seed, after training\n\n{seeds_table}\n\n"
        "### Training signal\n\nReward = accuracy + format (at most 2), mean over the step's trained completions "
        "(GRPO: its 8 single-pass samples per prompt; iGRPO: its 4 refinements). TRL's `frac_reward_zero_std`: the "
        f"share of groups whose rewards are all equal, mean over the run.\n\n{signal_table}\n"
    )


def _chained_plots(results: list[dict], args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image_dir = ROOT / "docs" / "img"
    image_dir.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for axis, key, title in zip(axes, ("greedy", "pass@1"), ("greedy", f"pass@1, k={CHAINED_SAMPLES}, T=0.6")):
        for method, style in zip(METHODS, ("-", "--")):
            runs = [r for r in results if r["method"] == method]
            steps = [point["step"] for point in runs[0]["curve"]]
            values = [[r["curve"][i][key] for r in runs] for i in range(len(steps))]
            means = [statistics.mean(v) for v in values]
            spread = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
            axis.plot(steps, means, style, marker="o", markersize=3, label=method)
            axis.fill_between(
                steps, [m - e for m, e in zip(means, spread)], [m + e for m, e in zip(means, spread)], alpha=0.15
            )
        axis.set_title(f"held-out {title}")
        axis.set_xlabel("optimizer step")
    axes[0].set_ylabel("accuracy (mean ± std over seeds)")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(image_dir / "igrpo_vs_grpo_chained_curve.png", dpi=120)
    plt.close(figure)

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for method, style in zip(METHODS, ("-", "--")):
        runs = [r for r in results if r["method"] == method]
        length = min(len(r["train_entropy"]) for r in runs)
        mean = [statistics.mean(r["train_entropy"][i] for r in runs) for i in range(length)]
        axes[0].plot(range(1, length + 1), mean, style, label=method)
        steps = [point["step"] for point in runs[0]["curve"]]
        held_out = [statistics.mean(r["curve"][i]["entropy"] for r in runs) for i in range(len(steps))]
        axes[1].plot(steps, held_out, style, marker="o", markersize=3, label=method)
    axes[0].set_title("training completions (GRPO: all 8; iGRPO: refinements)", fontsize=9)
    axes[1].set_title("held-out single-pass completions", fontsize=9)
    for axis in axes:
        axis.set_xlabel("optimizer step")
    axes[0].set_ylabel("entropy (nats / token)")
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(image_dir / "igrpo_vs_grpo_chained_entropy.png", dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
