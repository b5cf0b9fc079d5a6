"""Where an optimizer step's time goes: GRPO (G = 8) vs iGRPO (N = 4, G = 4) at a matched rollout budget, per phase.

Each run trains one method for a few steps in its own subprocess (so peak resident memory belongs to that run alone);
runs alternate (GRPO, iGRPO, GRPO, ...) so machine noise hits every variant alike. Inside a run, the trainer's own
methods are wrapped (benchmark-side only) to time each phase in wall and process-CPU time and to count tokens:

- **Stage-1 generation / reward**: iGRPO's draft round (``_generate_single_turn`` / ``_calculate_rewards``, 1st call);
- **generation / reward**: GRPO's round, iGRPO's Stage 2 (the last call);
- **prompt building**: chat templating and tokenization (``_tokenize_prompts``, iGRPO's draft check included);
- **log-prob forward (no grad)**: old/reference log-probs, when TRL computes them;
- **loss forward**: the policy forward inside ``_compute_loss``;
- **backward + optimizer + rest**: what remains of the step (backward, optimizer, scheduler, logging, gathers).

Tokens: *prefill* = prompt tokens fed to generation, *decoded* = generated tokens, *trained* = completion tokens in
the loss. ``--model warm-start`` (default) is the demo's shipped warm-started tiny Qwen2 (well-formed drafts that stop
at EOS, as a trained model's do); ``--model random`` is a random tiny Qwen2, whose completions always run to the length
cap and whose garbage drafts re-tokenize into about 1.5x as many tokens: a pessimistic case for iGRPO.

    .venv/bin/python -m benchmarks.step_profile                       # 16 prompts x 64 tokens, writes docs/
    .venv/bin/python -m benchmarks.step_profile --repeats 1 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if (
    str(ROOT) not in sys.path
):  # also runnable as a file (python benchmarks/step_profile.py), not only with -m from the root
    sys.path.insert(0, str(ROOT))
PHASES = (
    "Stage-1 generation",
    "Stage-1 reward",
    "generation",
    "reward",
    "prompt building",
    "log-prob forward (no grad)",
    "loss forward",
    "backward + optimizer + rest",
)
VARIANTS = {
    "GRPO G=8 (TRL)": {"method": "grpo"},
    "GRPO G=8 (shared prefill)": {"method": "grpo_shared"},
    "iGRPO N=4 G=4 (0.1: draft as assistant turn, no shared prefill)": {
        "method": "igrpo",
        "share_prompt_prefill": False,
        "conversational_draft_style": "assistant_turn",
    },
    "iGRPO N=4 G=4 (no shared prefill)": {"method": "igrpo", "share_prompt_prefill": False},
    "iGRPO N=4 G=4": {"method": "igrpo"},
    "iGRPO N=4 G=4, prefetch": {"method": "igrpo", "prefetch_drafts": True},
}


class _Clock:
    """Accumulates wall and process-CPU seconds and token counts per phase for the current optimizer step."""

    def __init__(self):
        self.step = defaultdict(lambda: [0.0, 0.0])
        self.tokens = defaultdict(int)
        self.calls = defaultdict(int)

    def wrap(self, obj, name, phase_of, count=None):
        original = getattr(obj, name)

        def timed(*args, **kwargs):
            phase = phase_of(args, kwargs)
            wall, cpu = time.perf_counter(), time.process_time()
            result = original(*args, **kwargs)
            self.step[phase][0] += time.perf_counter() - wall
            self.step[phase][1] += time.process_time() - cpu
            if count is not None:
                for key, value in count(phase, args, result).items():
                    self.tokens[key] += value
            return result

        setattr(obj, name, timed)


def run_one(spec: dict) -> dict:
    """Train one variant and return per-step phase times. Runs inside a worker subprocess."""
    import resource

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from trl_igrpo import IGRPOConfig, IGRPOTrainer
    from trl_igrpo.demo.arithmetic import make_arithmetic_examples
    from trl_igrpo.rewards import math_accuracy_reward, think_answer_format_reward
    from trl_igrpo.testing import build_tiny_model, cpu_training_kwargs

    torch.set_num_threads(spec["threads"])
    if spec["model"] == "random":
        model_dir = build_tiny_model(spec["model_dir"])
    else:
        from trl_igrpo.demo.warm_start import SHIPPED_WARM_START

        model_dir = str(SHIPPED_WARM_START)
    prompts, tokens = spec["prompts"], spec["tokens"]
    data = Dataset.from_list(make_arithmetic_examples(prompts * (spec["steps"] + 2), seed=0, max_operand=12))
    common = dict(
        output_dir=spec["output_dir"],
        **cpu_training_kwargs(),
        max_completion_length=tokens,
        max_steps=spec["steps"],
        learning_rate=1e-5,
        seed=0,
        disable_tqdm=True,
        loss_type="grpo",
    )
    if spec["method"] == "grpo":  # TRL's GRPOTrainer as shipped
        args = GRPOConfig(**common, num_generations=8, per_device_train_batch_size=prompts * 8)
        trainer_cls = GRPOTrainer
    elif (
        spec["method"] == "grpo_shared"
    ):  # GRPO on the package's base trainer: the same shared prompt prefill as iGRPO
        from trl_igrpo import CurriculumGRPOConfig, CurriculumGRPOTrainer

        args = CurriculumGRPOConfig(**common, num_generations=8, per_device_train_batch_size=prompts * 8)
        trainer_cls = CurriculumGRPOTrainer
    else:
        options = ("prefetch_drafts", "share_prompt_prefill", "conversational_draft_style")
        extra = {key: spec[key] for key in options if key in spec}
        args = IGRPOConfig(**common, num_drafts=4, num_generations=4, per_device_train_batch_size=prompts * 4, **extra)
        trainer_cls = IGRPOTrainer
    trainer = trainer_cls(
        model=model_dir,
        reward_funcs=[math_accuracy_reward, think_answer_format_reward],
        args=args,
        train_dataset=data,
    )
    clock = _Clock()
    igrpo = spec["method"] == "igrpo"  # only iGRPO has a Stage 1

    def in_stage1() -> bool:  # iGRPO generates drafts under a max_draft_length budget, scores them outside a rollout
        return igrpo and trainer._max_new_tokens_field == "max_draft_length"

    def generation_phase(args_, kwargs_):
        return "Stage-1 generation" if in_stage1() else "generation"

    def reward_phase(args_, kwargs_):
        return "reward" if not igrpo or trainer._capturing_rollout_rewards else "Stage-1 reward"

    def count_generation(phase, args_, result):
        prompt_ids, completion_ids = args_[0], result[0]
        ride_along = getattr(trainer.draft_source, "ride_along", None) if igrpo else None
        riders = ride_along["prompt_ids"] if ride_along is not None else []
        counts = {
            "prefill/stage1" if phase.startswith("Stage-1") else "prefill/final": sum(len(p) for p in prompt_ids),
            "decoded/stage1" if phase.startswith("Stage-1") else "decoded/final": sum(len(c) for c in completion_ids),
        }
        if riders:  # prefetch: the next batch's drafts rode along in this call (their tokens count as Stage 1)
            counts["prefill/stage1"] = sum(len(p) for p in riders)
            counts["decoded/stage1"] = sum(len(c) for c in ride_along["completion_ids"] or [])
        return counts

    def count_loss(phase, args_, result):
        return {"trained": int(args_[1]["completion_mask"].sum())} if phase == "_compute_loss" else {}

    clock.wrap(trainer, "_generate_single_turn", generation_phase, count_generation)
    clock.wrap(trainer, "_calculate_rewards", reward_phase)
    clock.wrap(trainer, "_tokenize_prompts", lambda a, k: "prompt building")
    clock.wrap(
        trainer,
        "_get_per_token_logps_and_entropies",
        lambda a, k: "loss forward" if torch.is_grad_enabled() else "log-prob forward (no grad)",
    )
    clock.wrap(trainer, "_compute_loss", lambda a, k: "_compute_loss", count_loss)

    steps = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *args, **kwargs):
            clock.step.clear()
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def on_step_end(self, *args, **kwargs):
            wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
            phases = {name: list(values) for name, values in clock.step.items()}
            phases.pop("_compute_loss", None)  # only timed to count trained tokens; its forward is its own phase
            phases["backward + optimizer + rest"] = [
                wall - sum(v[0] for v in phases.values()),
                cpu - sum(v[1] for v in phases.values()),
            ]
            steps.append({"wall": wall, "cpu": cpu, "phases": phases})

    trainer.add_callback(StepTimer())
    trainer.train()
    tokens_per_step = {key: value / spec["steps"] for key, value in clock.tokens.items()}
    return {
        "steps": steps[spec["warmup"] :],
        "tokens": tokens_per_step,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _worker_main(path: str) -> None:
    spec = json.loads(Path(path).read_text())
    Path(spec["result"]).write_text(json.dumps(run_one(spec)))


def _median(values):
    return statistics.median(values) if values else 0.0


def summarize(results: dict[str, list[dict]]) -> dict:
    summary = {}
    for variant, runs in results.items():
        steps = [step for run in runs for step in run["steps"]]
        phases = {
            phase: (
                _median([s["phases"].get(phase, [0.0, 0.0])[0] for s in steps]),
                _median([s["phases"].get(phase, [0.0, 0.0])[1] for s in steps]),
            )
            for phase in PHASES
        }
        summary[variant] = {
            "wall": _median([s["wall"] for s in steps]),
            "cpu": _median([s["cpu"] for s in steps]),
            "phases": phases,
            "tokens": runs[0]["tokens"],
            "peak_rss_mb": _median([run["peak_rss_mb"] for run in runs]),
            "steps": len(steps),
        }
    return summary


def render(summary: dict, spec: dict, load: tuple[float, float]) -> str:
    from benchmarks._report import machine_description, markdown_table

    names = list(summary)
    base = summary[names[0]]
    headers = ["phase"] + [f"{n} wall / CPU s" for n in names]
    rows = []
    for phase in PHASES:
        rows.append(
            [phase] + [f"{summary[n]['phases'][phase][0]:.3f} / {summary[n]['phases'][phase][1]:.3f}" for n in names]
        )
    rows.append(["**step (median)**"] + [f"**{summary[n]['wall']:.3f} / {summary[n]['cpu']:.3f}**" for n in names])
    fair = summary.get("GRPO G=8 (shared prefill)")
    if fair is not None:
        rows.append(
            ["ratio to GRPO with shared prefill, wall / CPU"]
            + [f"{summary[n]['wall'] / fair['wall']:.2f}x / {summary[n]['cpu'] / fair['cpu']:.2f}x" for n in names]
        )
    rows.append(
        ["**ratio to TRL's GRPO, wall / CPU**"]
        + [f"**{summary[n]['wall'] / base['wall']:.2f}x / {summary[n]['cpu'] / base['cpu']:.2f}x**" for n in names]
    )
    rows.append(
        ["peak RSS (MB)"]
        + [f"{summary[n]['peak_rss_mb']:.0f} ({summary[n]['peak_rss_mb'] / base['peak_rss_mb']:.3f}x)" for n in names]
    )
    token_keys = ["prefill/stage1", "decoded/stage1", "prefill/final", "decoded/final", "trained"]
    token_rows = [[key] + [f"{summary[n]['tokens'].get(key, 0):.0f}" for n in names] for key in token_keys]
    return "\n".join(
        [
            f"## Step profile ({spec['model']} model): where iGRPO's extra time goes (`benchmarks/step_profile.py`)",
            "",
            f"{spec['prompts']} prompts per step x at most {spec['tokens']} new tokens, model: "
            f"{'the shipped warm-started tiny Qwen2' if spec['model'] == 'warm-start' else 'a random tiny Qwen2 (runs to the cap)'}, matched budget (GRPO G=8 vs iGRPO N=4 G=4), transformers generation, {spec['threads']} "
            f"torch thread(s), medians over {base['steps']} steps x runs after {spec['warmup']} warm-up step(s); "
            f"runs alternated across variants, each in its own process. Machine: {machine_description()}; load "
            f"average {load[0]:.2f} before and {load[1]:.2f} after.",
            "",
            markdown_table(headers, rows),
            "",
            "Tokens per step (prefill = prompt tokens fed to generation, decoded = generated, trained = completion "
            "tokens in the loss):",
            "",
            markdown_table(["tokens"] + names, token_rows),
        ]
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", choices=("warm-start", "random"), default="warm-start")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--workdir", default=str(ROOT / "outputs" / "step_profile"))
    options = parser.parse_args(argv)
    workdir = Path(options.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    spec_base = {
        key: getattr(options, key) for key in ("prompts", "tokens", "steps", "warmup", "threads", "model")
    } | {"model_dir": str(workdir / "tiny-model")}
    load_before = os.getloadavg()[0]
    results: dict[str, list[dict]] = {name: [] for name in options.variants}
    for repeat in range(options.repeats):
        for name in options.variants:
            spec = {**spec_base, **VARIANTS[name], "output_dir": str(workdir / "run")}
            spec["result"] = str(workdir / f"result-{repeat}.json")
            spec_path = workdir / "spec.json"
            spec_path.write_text(json.dumps(spec))
            env = {**os.environ, "OMP_NUM_THREADS": str(options.threads)}
            subprocess.run(
                [sys.executable, "-m", "benchmarks.step_profile", "--worker", str(spec_path)],
                cwd=ROOT,
                env=env,
                check=True,
            )
            results[name].append(json.loads(Path(spec["result"]).read_text()))
            print(
                f"[{repeat + 1}/{options.repeats}] {name}: {statistics.median(s['wall'] for s in results[name][-1]['steps']):.3f} s/step",
                flush=True,
            )
    summary = summarize(results)
    markdown = render(summary, spec_base, (load_before, os.getloadavg()[0]))
    print(markdown)
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not options.no_write:
        from benchmarks._report import update_section

        update_section(f"step_profile_{options.model.replace('-', '_')}", markdown)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2])
    else:
        main()
