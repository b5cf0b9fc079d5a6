"""GRPO (G = 8) vs iGRPO (N = 4, G = 4) on multi-step chained arithmetic, where a draft's partial reasoning can help a
refinement.

Both methods (loss ``grpo``, the paper's Eq. 5) train from the same warm start (:mod:`trl_igrpo.demo.chained_warm_start`)
on :mod:`trl_igrpo.demo.chained_arithmetic`. Held-out metrics come from :mod:`trl_igrpo.eval`: greedy, and pass@1 /
pass@8 / maj@8 over k = 8 samples at T = 0.6, every ``--eval-every`` steps in process (sampling on a forked,
step-seeded RNG, so the training run is unchanged) and at the end through the ``trl-igrpo eval`` command on the saved
checkpoints; plus the policy entropy on held-out single-pass samples and a draft -> refine diagnostic. Every run
happens in its own subprocess, and the two methods of a seed run back to back.

    .venv/bin/python -m benchmarks.igrpo_vs_grpo_chained              # writes its section of docs/benchmarks.md
    .venv/bin/python -m benchmarks.igrpo_vs_grpo --task chained       # the same, through the first benchmark's CLI
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as a file (python benchmarks/igrpo_vs_grpo_chained.py)
    sys.path.insert(0, str(ROOT))

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

MODULE = "benchmarks.igrpo_vs_grpo_chained"

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


def run_one(spec: dict) -> dict:
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
    trainer = make_trainer(spec, train)
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
    history, timing = training_log(trainer, seconds)
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


def run_benchmark(args) -> None:
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
            result = run_in_subprocess(MODULE, dict(base, method=method, seed=seed))
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


def _chained_report(args, results: list[dict], warm_start_seconds: float, total_minutes: float) -> str:
    """The docs section: what was run, then the before/after table, the curve, the per-seed results and the signal."""
    from benchmarks._report import machine_description

    table, seeds_table = _outcome_tables(results)
    curve_table, signal_table = _curve_table(results), _signal_table(results)
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


def _outcome_tables(results: list[dict]) -> tuple[str, str]:
    """Per method, before and after training (mean ± std over seeds); and per seed, after training."""
    from benchmarks._report import markdown_table

    rows, per_seed = [], []
    for method in METHODS:
        runs = [r for r in results if r["method"] == method]
        first = [r["curve"][0] for r in runs]
        last = [r["curve"][-1] for r in runs]
        rows.append(
            [
                method,
                mean_std([f["greedy"] for f in first]),
                mean_std([f["greedy"] for f in last]),
                mean_std([f["pass@1"] for f in first]),
                mean_std([f["pass@1"] for f in last]),
                mean_std([f["pass@k"] for f in first]) + " → " + mean_std([f["pass@k"] for f in last]),
                mean_std([f["maj@k"] for f in first]) + " → " + mean_std([f["maj@k"] for f in last]),
                mean_std([f["entropy"] for f in first]) + " → " + mean_std([f["entropy"] for f in last]),
                mean_std([r["draft_refine_before"]["draft"] for r in runs]) + " → "
                + mean_std([r["draft_refine_before"]["refinement"] for r in runs]),
                mean_std([r["draft_refine"]["draft"] for r in runs]) + " → "
                + mean_std([r["draft_refine"]["refinement"] for r in runs]),
                mean_std([r["seconds_per_step"] for r in runs], 2),
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
    seeds_table = markdown_table(
        ["method", "seed", "greedy after", f"pass@1 after (k={CHAINED_SAMPLES})", "draft → refine (greedy)"],
        per_seed,
    )
    return table, seeds_table


def _curve_table(results: list[dict]) -> str:
    """Held-out greedy and sampled pass@1 at every evaluated step, mean over seeds."""
    from benchmarks._report import markdown_table

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
    return curve_table


def _signal_table(results: list[dict]) -> str:
    """What the runs trained on: the completions' reward, the best draft's, and the groups without a gradient."""
    from benchmarks._report import markdown_table

    signal_rows = []
    for method in METHODS:
        runs = [r for r in results if r["method"] == method]
        best_draft = [statistics.mean(r["draft_reward"][:5]) for r in runs if r["draft_reward"][0] is not None]
        signal_rows.append(
            [
                method,
                mean_std([statistics.mean(r["reward"][:5]) for r in runs], 2) + " → "
                + mean_std([statistics.mean(r["reward"][-5:]) for r in runs], 2),
                mean_std(best_draft, 2) if best_draft else "-",
                mean_std([statistics.mean(v for v in r["zero_std_frac"] if v is not None) for r in runs], 2),
            ]
        )  # fmt: skip
    signal_table = markdown_table(
        ["method", "trained completions' reward, first 5 → last 5 steps", "best draft's reward, first 5 steps",
         "groups with zero reward spread (no gradient)"],
        signal_rows,
    )  # fmt: skip
    return signal_table


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
            plot_mean_band(axis, steps, values, style, method)
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


def main(argv: list[str] | None = None) -> None:
    """The chained benchmark's command line: the flags of ``igrpo_vs_grpo.py``, with ``--task chained``."""
    args = build_parser(__doc__.splitlines()[0], task="chained").parse_args(argv)
    if args.worker:
        print(json.dumps(run_one(json.loads(args.worker))))
        return
    args.task = "chained"
    fill_task_defaults(args)
    run_benchmark(args)


if __name__ == "__main__":
    main()
