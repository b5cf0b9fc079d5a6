# Copyright 2026 The trl-igrpo developers. Apache-2.0.
"""Train with iGRPO (arXiv 2602.09000), TRL-script style.

With no arguments it runs offline on CPU in a few minutes: a tiny model from the package's factory and a built-in
synthetic arithmetic set, rewarded by math accuracy + the <think>/<answer> format.

    trl-igrpo igrpo
    accelerate launch -m trl_igrpo.scripts.igrpo --max_steps 3

A real run (MATH-style data with `problem`/`solution` columns; see examples/recipes for the paper's settings):

    trl-igrpo igrpo --config examples/recipes/igrpo_math_7b.yaml --accelerate_config multi_gpu

YAML works too: `--config recipe.yaml` (command-line flags override it).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from trl import GRPOConfig, ModelConfig, ScriptArguments, TrlParser

from trl_igrpo.core.config import GRPOBaseConfig
from trl_igrpo.curriculum.config import CurriculumConfigMixin
from trl_igrpo.demo.warm_start import DEFAULT_SFT_STEPS, DEMO_MAX_OPERAND
from trl_igrpo.igrpo.config import IGRPOConfig
from trl_igrpo.rewards import math_accuracy_reward, think_answer_format_reward
from trl_igrpo.scripts import (
    SCRIPT_USAGE,
    RunDirArguments,
    check_run,
    device_defaults,
    finish_run,
    group_flags,
    main_process_print,
    own_fields,
    parse_and_run,
    resolve_rewards,
    start_run,
    word_negated_flags,
)

__all__ = [
    "REWARD_FUNCS",
    "GRPOScriptArguments",
    "build_trainer",
    "demo_defaults",
    "load_training_data",
    "main",
    "make_parser",
    "preflight",
    "print_summary",
    "resolve_default_model",
]

REWARD_FUNCS = {"math_accuracy": math_accuracy_reward, "think_answer_format": think_answer_format_reward}
#: Measured wall time of one demo step on a quiet 2-core machine (for the line the demo prints up front).
DEMO_SECONDS_PER_STEP = 2


@dataclass
class GRPOScriptArguments(RunDirArguments, ScriptArguments):
    """The script arguments of the GRPO-based training scripts (``trl-igrpo igrpo`` and ``trl-igrpo grpo``), on top of
    TRL's (`dataset_name`, `dataset_config`, `dataset_train_split`, ...)."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "A .jsonl/.json/.csv/.parquet file, a save_to_disk folder (e.g. from `trl-igrpo pass-rate`) or a "
            "Hub dataset, with a 'prompt' (or 'problem') and a 'solution' column; None: built-in arithmetic."
        },
    )
    system_prompt: str | None = field(
        default=None,
        metadata={
            "help": "A system message put before every chat prompt built from --dataset_name ('igrpo': the paper's "
            "training system prompt). `trl-igrpo pass-rate --system-prompt` builds the same prompts."
        },
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["math_accuracy", "think_answer_format"],
        metadata={"help": f"Reward functions: {sorted(REWARD_FUNCS)} or dotted paths 'pkg.module.func'."},
    )
    tiny_model_architecture: str = field(
        default="qwen2", metadata={"help": "Default offline model: qwen2, llama or nemotron_h."}
    )
    tiny_model_dir: str = field(
        default="outputs/warm-start-model", metadata={"help": "Where the default (warm-started) model is cached."}
    )
    warm_start_steps: int = field(
        default=DEFAULT_SFT_STEPS,
        metadata={"help": "SFT steps of the default model's offline warm start (0: a random tiny model)."},
    )
    num_train_examples: int = field(default=512, metadata={"help": "Built-in dataset size."})
    num_eval_examples: int = field(
        default=64,
        metadata={
            "help": "Held-out prompts for the before/after single-pass accuracy, split off the training rows (never "
            "trained on); 0: no held-out accuracy."
        },
    )
    max_operand: int = field(
        default=DEMO_MAX_OPERAND, metadata={"help": "Built-in dataset and warm start: largest operand."}
    )


def load_training_data(script_args, hold_out: bool = True, seed: int = 0):
    """(training rows, held-out rows or None). Built-in arithmetic by default (held-out problems generated apart);
    otherwise `dataset_name` through the package's one loader (:func:`trl_igrpo.data.load_data`: local files,
    save_to_disk folders, Hub ids) with the prompt every command builds (:func:`trl_igrpo.data.add_prompt_column`).

    With `hold_out`, ``num_eval_examples`` rows are split off a custom dataset (seeded, shuffled) and never trained on.
    """
    if script_args.dataset_name is None:
        from trl_igrpo.demo.arithmetic import make_arithmetic_dataset

        count = max(0, script_args.num_eval_examples)
        data = make_arithmetic_dataset(
            script_args.num_train_examples + count,
            seed=0,
            max_operand=getattr(script_args, "max_operand", DEMO_MAX_OPERAND),
        )
        if count == 0:
            return data, None
        split = data.train_test_split(test_size=count, seed=0, shuffle=False)
        return split["train"], (split["test"] if hold_out else None)
    from trl_igrpo.data import DataError, add_prompt_column, load_data

    data = load_data(
        script_args.dataset_name,
        script_args.dataset_config,
        split=script_args.dataset_train_split,
        flag="--dataset_train_split",
    )
    data = add_prompt_column(data, getattr(script_args, "system_prompt", None))
    if "solution" not in data.column_names:
        raise DataError(f"Dataset needs a 'solution' column with the gold answers; found {data.column_names}.")
    count = script_args.num_eval_examples if hold_out else 0
    if count <= 0:
        return data, None
    if count >= len(data):
        raise DataError(
            f"--num_eval_examples {count} would hold out all {len(data)} rows of {script_args.dataset_name}; lower it "
            "(0: no held-out accuracy)."
        )
    split = data.train_test_split(test_size=count, seed=seed, shuffle=True)
    return split["train"], split["test"]


def demo_defaults() -> dict:
    """The defaults of the offline demo (a run with no flags): small batches and steps that finish in minutes on a
    laptop CPU, plus :func:`~trl_igrpo.scripts.device_defaults` (bf16 only with a GPU); every one can be overridden by
    a flag."""
    return dict(
        output_dir="outputs/igrpo-demo",
        **device_defaults(),
        gradient_checkpointing=False,
        per_device_train_batch_size=64,  # 16 unique prompts x G=4 refinements (plus 16 x N=4 drafts) per step
        num_drafts=4,
        num_generations=4,
        max_completion_length=40,
        max_steps=40,
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        beta=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
    )


def resolve_default_model(script_args) -> str:
    """Path of the model used when no `--model_name_or_path` is given: the offline warm-started tiny model.

    Built once (see :func:`trl_igrpo.demo.warm_start.build_warm_started_model`) and cached in `tiny_model_dir`.
    """
    from trl_igrpo.demo.warm_start import build_warm_started_model

    return build_warm_started_model(
        script_args.tiny_model_dir,
        architecture=script_args.tiny_model_architecture,
        sft_steps=script_args.warm_start_steps,
        max_operand=script_args.max_operand,
    )


def _set_model_init_kwargs(training_args, model_args) -> None:
    # No remote code: model_init_kwargs keeps transformers' trust_remote_code=False default.
    model_init_kwargs = {"revision": model_args.model_revision, "attn_implementation": model_args.attn_implementation}
    if model_args.dtype not in (None, "auto"):
        model_init_kwargs["dtype"] = model_args.dtype
    model_init_kwargs = {k: v for k, v in model_init_kwargs.items() if v is not None}
    training_args.model_init_kwargs = {**(training_args.model_init_kwargs or {}), **model_init_kwargs}


def build_trainer(script_args, training_args, model_args, train_dataset, trainer_class=None, registry=None):
    """The trainer a run uses (default ``IGRPOTrainer``): model from `model_args` (the default model when unset),
    rewards by name, PEFT.

    A `model_name_or_path` that looks like a local path but does not exist raises ``FileNotFoundError`` naming it
    (:func:`~trl_igrpo.utils.model_path.check_model_path`) before anything is loaded."""
    from trl import get_peft_config

    from trl_igrpo.utils.model_path import check_model_path

    if trainer_class is None:
        from trl_igrpo.igrpo.trainer import IGRPOTrainer as trainer_class
    model_args.model_name_or_path = check_model_path(model_args.model_name_or_path)
    reward_funcs = resolve_rewards(script_args.reward_funcs, REWARD_FUNCS if registry is None else registry)
    if model_args.model_name_or_path is None:
        model_args.model_name_or_path = resolve_default_model(script_args)
    _set_model_init_kwargs(training_args, model_args)
    return trainer_class(
        model=model_args.model_name_or_path,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        peft_config=get_peft_config(model_args),
    )


def preflight(script_args, training_args, model_args, registry: dict | None = None) -> tuple[str | None, list[str]]:
    """What the command line checks before it runs anything (nothing is loaded or deleted): the reward names, then
    :func:`~trl_igrpo.scripts.check_run`. Raises :class:`~trl_igrpo.scripts.PreflightError`."""
    resolve_rewards(script_args.reward_funcs, REWARD_FUNCS if registry is None else registry)
    return check_run(script_args, training_args)


def main(script_args, training_args, model_args):
    """Score held-out single-pass accuracy, train iGRPO, score again, save, print the summary and plot; push when
    asked. Returns the trainer."""
    resolve_rewards(script_args.reward_funcs, REWARD_FUNCS)  # an unknown name fails before any data loads
    checkpoint = start_run(script_args, training_args)
    if model_args.model_name_or_path is None and script_args.dataset_name is None and training_args.max_steps > 0:
        main_process_print(
            f"trl-igrpo demo: iGRPO (N={training_args.num_drafts} drafts + G={training_args.num_generations} "
            f"refinements per prompt) on the shipped warm-started tiny model, {training_args.max_steps} steps of "
            f"{training_args.per_device_train_batch_size // training_args.num_generations} arithmetic prompts, "
            f"held-out accuracy before and after; about {DEMO_SECONDS_PER_STEP * training_args.max_steps // 60 + 1} "
            "min on 2 CPU cores."
        )
    train_dataset, held_out = load_training_data(script_args, seed=training_args.seed)
    held_out_source = _held_out_source(script_args, held_out)
    if held_out is not None:
        main_process_print(f"held-out accuracy: {held_out_source}; training on the other {len(train_dataset)} rows")
    trainer = build_trainer(script_args, training_args, model_args, train_dataset)
    accuracy_before = _held_out_accuracy(trainer, held_out, training_args)
    trainer.train(resume_from_checkpoint=checkpoint)
    accuracy_after = _held_out_accuracy(trainer, held_out, training_args)

    def report(trainer):
        print_summary(trainer, accuracy_before, accuracy_after, held_out_source)
        held_out_pair = None if accuracy_before is None else (accuracy_before, accuracy_after)
        plot_path = plot_draft_vs_refinement(
            trainer.state.log_history, Path(training_args.output_dir), held_out_pair, training_args.temperature
        )
        if plot_path is not None:
            print(
                f"draft vs refinement reward plot: {plot_path} (training rewards of sampled completions: noisy, and "
                "slower to move than the greedy held-out accuracy)"
            )

    finish_run(trainer, training_args, script_args.dataset_name, report)
    return trainer


def _held_out_source(script_args, held_out) -> str:
    if held_out is None:
        return "none (--num_eval_examples 0)"
    if script_args.dataset_name is None:
        return f"{len(held_out)} built-in problems generated apart from the training set"
    return f"{len(held_out)} rows split off {script_args.dataset_name} before training (never trained on)"


def _held_out_accuracy(trainer, held_out, training_args) -> float | None:
    if held_out is None:
        return None
    from trl_igrpo.eval.generation import evaluate_accuracy

    return evaluate_accuracy(
        trainer.model,
        trainer.processing_class,
        held_out,
        max_new_tokens=training_args.max_completion_length,
        chat_template_kwargs=training_args.chat_template_kwargs,
    )


def plot_draft_vs_refinement(
    log_history: list[dict], output_dir: Path, held_out: tuple[float, float] | None = None, temperature: float = 1.0
) -> Path | None:
    """Save a PNG of the mean draft, best-draft and refinement rewards per step (thin) with their 5-step running means
    (thick), and a note on what they measure next to the held-out accuracy before/after; None without matplotlib/logs.

    Why the curves can look flat while the held-out accuracy jumps: they are the training reward (accuracy + format,
    so 0-2; the warm start already earns most of the format half) of completions *sampled* at `temperature` on one
    step's few prompts (noisy), while the held-out accuracy is *greedy*: it flips as soon as the right answer becomes
    the most likely one, long before most samples are right."""
    keys = {
        "igrpo/draft_reward_mean": "drafts (mean of N)",
        "igrpo/best_draft_reward_mean": "selected draft",
        "igrpo/refinement_reward_mean": "refinements (Stage 2)",
    }
    history = [entry for entry in log_history if "igrpo/refinement_reward_mean" in entry]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not history:
        return None
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    steps = [entry["step"] for entry in history]
    for key, label in keys.items():
        values = [entry[key] for entry in history]
        running = [sum(values[max(0, i - 4) : i + 1]) / len(values[max(0, i - 4) : i + 1]) for i in range(len(values))]
        (line,) = axis.plot(steps, values, linewidth=0.8, alpha=0.35)
        axis.plot(steps, running, color=line.get_color(), linewidth=2, label=f"{label}, 5-step mean")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("training reward (accuracy + format)")
    title = "iGRPO: draft vs refinement reward"
    if held_out is not None:
        title += f"; held-out greedy accuracy {held_out[0]:.2f} -> {held_out[1]:.2f}"
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    figure.text(
        0.01,
        0.01,
        f"Rewards of completions sampled at temperature {temperature:g} on each step's training prompts (noisy); "
        "held-out accuracy is greedy,\nso it rises as soon as the right answer becomes the most likely one, before "
        "most samples are right.",
        fontsize=7,
    )
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "draft_vs_refinement.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def print_summary(trainer, accuracy_before: float | None, accuracy_after: float | None, held_out: str) -> None:
    """Print the iGRPO metrics at the first and last logged step and the held-out accuracy before and after
    (`held_out` says which rows it was measured on)."""
    history = [entry for entry in trainer.state.log_history if "igrpo/best_draft_reward_mean" in entry]
    keys = [
        "igrpo/draft_reward_mean",
        "igrpo/best_draft_reward_mean",
        "igrpo/refinement_reward_mean",
        "igrpo/refinement_minus_best_draft",
        "igrpo/all_drafts_failed_frac",
        "entropy",
    ]
    print("\n=== iGRPO summary ===")
    print(f"{'metric':40s} {'first step':>12s} {'last step':>12s}")
    for key in keys:
        if history and key in history[0]:
            print(f"{key:40s} {history[0][key]:12.4f} {history[-1][key]:12.4f}")
    if accuracy_before is not None and accuracy_after is not None:
        print(f"{'held-out single-pass accuracy':40s} {accuracy_before:12.4f} {accuracy_after:12.4f}")
    print(f"held-out rows: {held_out}")


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser over (script args, IGRPOConfig, ModelConfig), with the offline demo defaults preset; ``--help``
    lists the iGRPO flags (IGRPOConfig's own fields) first, then the curriculum and script flags, then TRL's."""
    parser = TrlParser(
        (GRPOScriptArguments, IGRPOConfig, ModelConfig),
        prog=prog,
        usage=SCRIPT_USAGE,
        description="Train with iGRPO (arXiv 2602.09000). The iGRPO flags come first; the general options after them "
        "are TRL's GRPOConfig / transformers' TrainingArguments, ModelConfig and ScriptArguments flags.",
    )
    parser.set_defaults(**demo_defaults())
    word_negated_flags(parser)
    group_flags(
        parser,
        [
            ("iGRPO options (IGRPOConfig)", own_fields(IGRPOConfig, *IGRPOConfig.__bases__)),
            ("pass-rate curriculum and dynamic sampling", own_fields(CurriculumConfigMixin)),
            (
                "checks and vLLM weight sync (shared by the GRPO-based trainers)",
                own_fields(GRPOBaseConfig, CurriculumConfigMixin, GRPOConfig),
            ),
            ("script options (data, rewards, default model)", own_fields(GRPOScriptArguments, ScriptArguments)),
        ],
    )
    return parser


def cli(argv: list[str] | None = None) -> None:
    """Parse `argv` (flags and/or `--config file.yaml`) and train."""
    parse_and_run(make_parser(), main, argv)


if __name__ == "__main__":
    cli()
    sys.exit(0)
