# Copyright 2026 The trl-igrpo developers. Apache-2.0.
"""Train with GRPO plus the Llama-Nemotron pass-rate curriculum and DAPO dynamic sampling, TRL-script style.

This is the reasoning-RL stage of Llama-Nemotron (arXiv 2505.00949 §5) on TRL's GRPOTrainer: prompts are ordered by
progressive batching over a pre-computed ``pass_rate`` column (``trl-igrpo pass-rate`` computes it), and
``dynamic_sampling`` can drop groups whose rewards are all equal. Same script arguments, rewards and offline defaults as
:mod:`trl_igrpo.scripts.igrpo` (no drafts: ``num_drafts`` does not exist here).

    trl-igrpo grpo --max_steps 3
    trl-igrpo pass-rate --model M --dataset data.jsonl --output scored --filtered-output kept
    trl-igrpo grpo --config examples/recipes/llama_nemotron_reasoning_grpo.yaml --dataset_name kept
"""

from __future__ import annotations

import sys

from trl import ModelConfig, ScriptArguments, TrlParser

from trl_igrpo.curriculum.config import CurriculumConfigMixin
from trl_igrpo.grpo.config import CurriculumGRPOConfig
from trl_igrpo.rewards import make_reasoning_format_reward, reasoning_format_reward
from trl_igrpo.scripts import (
    SCRIPT_USAGE,
    check_run,
    finish_run,
    group_flags,
    own_fields,
    parse_and_run,
    resolve_rewards,
    start_run,
    word_negated_flags,
)
from trl_igrpo.scripts.igrpo import REWARD_FUNCS as IGRPO_REWARD_FUNCS
from trl_igrpo.scripts.igrpo import GRPOScriptArguments, build_trainer, demo_defaults, load_training_data

__all__ = ["REWARD_FUNCS", "grpo_demo_defaults", "main", "make_parser", "preflight"]

#: iGRPO's rewards plus the Llama-Nemotron think-format reward: per-row mode (`reasoning_mode` column or a
#: "detailed thinking on|off" system prompt), or fixed to reasoning ON.
REWARD_FUNCS = {
    **IGRPO_REWARD_FUNCS,
    "reasoning_format": reasoning_format_reward,
    "reasoning_format_on": make_reasoning_format_reward(mode="on"),
}


def grpo_demo_defaults() -> dict:
    """The iGRPO demo defaults without the draft field."""
    defaults = demo_defaults()
    defaults.pop("num_drafts")
    defaults["output_dir"] = "outputs/grpo-demo"
    return defaults


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser over (script args, CurriculumGRPOConfig, ModelConfig), with the offline CPU defaults preset;
    ``--help`` lists the curriculum and script flags first."""
    parser = TrlParser(
        (GRPOScriptArguments, CurriculumGRPOConfig, ModelConfig),
        prog=prog,
        usage=SCRIPT_USAGE,
        description="Train with GRPO plus the Llama-Nemotron pass-rate curriculum and dynamic sampling. Their flags "
        "come first; the general options after them are TRL's GRPOConfig / TrainingArguments, ModelConfig and "
        "ScriptArguments flags.",
    )
    parser.set_defaults(**grpo_demo_defaults())
    word_negated_flags(parser)
    group_flags(
        parser,
        [
            ("pass-rate curriculum and dynamic sampling", own_fields(CurriculumConfigMixin)),
            ("script options (data, rewards, default model)", own_fields(GRPOScriptArguments, ScriptArguments)),
        ],
    )
    return parser


def preflight(script_args, training_args, model_args) -> tuple[str | None, list[str]]:
    """What the command line checks before it runs anything: reward names, packages, resume and ``--output_dir``."""
    resolve_rewards(script_args.reward_funcs, REWARD_FUNCS)
    return check_run(script_args, training_args)


def main(script_args, training_args, model_args):
    """Train plain GRPO (with the curriculum options) on the parsed arguments, save, and push when asked. Every row
    of `dataset_name` is trained on (``num_eval_examples`` only sizes the built-in set's held-out part)."""
    from trl_igrpo.grpo.trainer import CurriculumGRPOTrainer

    resolve_rewards(script_args.reward_funcs, REWARD_FUNCS)  # an unknown name fails before any data loads
    checkpoint = start_run(script_args, training_args)
    train_dataset, _ = load_training_data(script_args, hold_out=False)
    trainer = build_trainer(
        script_args, training_args, model_args, train_dataset, CurriculumGRPOTrainer, registry=REWARD_FUNCS
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    finish_run(trainer, training_args, script_args.dataset_name)
    return trainer


def cli(argv: list[str] | None = None) -> None:
    """Parse `argv` (flags and/or `--config file.yaml`) and train."""
    parse_and_run(make_parser(), main, argv)


if __name__ == "__main__":
    cli()
    sys.exit(0)
