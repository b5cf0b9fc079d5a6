"""GRPO (G = 8) vs iGRPO (N = 4, G = 4) at a matched rollout budget, from the same warm-started checkpoint.

For each loss variant (``grpo``: the paper's Eq. 5 aggregation, ``dapo``, and GSPO = sequence-level importance
sampling) and each seed, both methods train for the same number of optimizer steps on the built-in arithmetic task,
from the same offline warm start (:func:`trl_igrpo.demo.warm_start.build_warm_started_model`), with the same prompts per
step. Reported per method: held-out single-pass greedy accuracy after training (the paper's evaluation protocol) and
every ``--eval-every`` steps during training (the learning curve: an endpoint alone hides whether a method learns
faster and then drifts), wall-clock per optimizer step, peak resident memory of the training process, and the policy
entropy over training. The in-training evaluations run in a callback after the optimizer step, outside TRL's
``step_time``, and decode greedily, so they consume no random numbers and leave the training run unchanged.

``--task chained`` runs the second benchmark, GRPO vs iGRPO on multi-step chained arithmetic
(``benchmarks/igrpo_vs_grpo_chained.py``, its own docs section).

Every run happens in its own subprocess, so peak memory (``ru_maxrss``) belongs to that run alone, and the two methods
of a (variant, seed) pair run back to back, so the step-time ratio compares like with like on a shared machine.

    .venv/bin/python -m benchmarks.igrpo_vs_grpo                        # 3 seeds x 3 variants, writes docs/
    .venv/bin/python -m benchmarks.igrpo_vs_grpo --task chained         # multi-step task, `trl-igrpo eval` metrics
    .venv/bin/python -m benchmarks.igrpo_vs_grpo --seeds 0 --variants grpo --steps 10 --no-write   # a quick look
    .venv/bin/python -m benchmarks.igrpo_vs_grpo --timing-only --batch-prompts 2 8 32   # step time vs batch size
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as a file (python benchmarks/igrpo_vs_grpo.py), not only with -m
    sys.path.insert(0, str(ROOT))

from benchmarks import igrpo_vs_grpo_chained  # noqa: E402
from benchmarks._matched_budget import (  # noqa: E402
    METHODS,
    build_parser,
    fill_task_defaults,
    make_trainer,
    mean_std,
    plot_mean_band,
    run_in_subprocess,
    training_log,
)

# Kept importable from here: benchmarks/evidence.py (branch i30) reads the policy entropy with it.
from benchmarks.igrpo_vs_grpo_chained import _completion_entropy  # noqa: E402, F401

MODULE = "benchmarks.igrpo_vs_grpo"


def run_one(spec: dict) -> dict:
    """Train one (method, variant, seed) and return its measurements. Runs inside a worker subprocess."""
    import torch
    from transformers import TrainerCallback

    from trl_igrpo.demo.arithmetic import make_arithmetic_dataset
    from trl_igrpo.eval.generation import evaluate_accuracy

    if spec.get("task") == "chained":
        return igrpo_vs_grpo_chained.run_one(spec)
    torch.set_num_threads(spec["threads"])
    data = make_arithmetic_dataset(
        spec["train_examples"] + spec["eval_examples"], seed=0, max_operand=spec["max_operand"]
    )
    train = data.select(range(spec["train_examples"]))
    held_out = data.select(range(spec["train_examples"], len(data)))
    trainer = make_trainer(spec, train)

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
    history, timing = training_log(trainer, seconds)
    return {
        **spec,
        "accuracy_before": accuracy_before,
        "accuracy_after": accuracy_after,
        "accuracy_curve": curve,
        **timing,
        "entropy": [entry["entropy"] for entry in history],
        "reward": [entry.get("reward") for entry in history],
    }


def main(argv: list[str] | None = None) -> None:
    """The command line (``--task chained`` runs ``igrpo_vs_grpo_chained.py``'s benchmark with the same flags)."""
    args = build_parser(__doc__.splitlines()[0]).parse_args(argv)
    if args.worker:
        print(json.dumps(run_one(json.loads(args.worker))))
        return
    fill_task_defaults(args)
    if args.task == "chained":
        igrpo_vs_grpo_chained.run_benchmark(args)
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
                result = run_in_subprocess(MODULE, spec)
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
                    mean_std([r["accuracy_before"] for r in runs]),
                    mean_std([r["accuracy_after"] for r in runs]),
                    mean_std([r["seconds_per_step"] for r in runs]),
                    mean_std([r["peak_rss_mib"] for r in runs]),
                    mean_std([statistics.mean(r["entropy"][-5:]) for r in runs]),
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
        f"{machine_description()}. Warm-started tiny Qwen2 (offline SFT, see `trl_igrpo/demo/warm_start.py`), "
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
        f"steps (greedy, single pass, the same {args.eval_examples} held-out problems).\n\n"
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
                plot_mean_band(axis, list(curve), list(curve.values()), style, method)
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
            times[method] = run_in_subprocess(MODULE, spec)["seconds_per_step"]
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


if __name__ == "__main__":
    main()
