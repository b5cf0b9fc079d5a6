# Copyright 2026 The trl-igrpo developers. Apache-2.0.
"""Train a tool-using agent with iGRPO (arXiv 2602.09000): drafts are whole trajectories through TRL's tool loop.

With no arguments it runs offline on CPU in a few minutes: the inventory lookup (``trl_igrpo.demo.inventory``: the
answer is in an environment only the ``locate`` tool reaches), a tiny Qwen3 warm-started on Qwen3's tool-call format
(built once, about two CPU minutes, then cached), held-out accuracy and tool-call rate before and after training.

    python examples/train_igrpo_agent.py
    python examples/train_igrpo_agent.py --max_steps 2
    accelerate launch examples/train_igrpo_agent.py --num_drafts 2 --num_generations 2

Every IGRPOConfig / GRPOConfig flag works (``--max_tool_calling_iterations``, ``--conversational_draft_style``,
``--trajectory_template``, ``--max_draft_length``, ...), and ``--config recipe.yaml``. ``--model_name_or_path`` trains
another model with a tool-calling chat template (Qwen3's, as TRL ships it) on the same task.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from trl import ModelConfig, TrlParser, get_peft_config

from trl_igrpo import IGRPOConfig, IGRPOTrainer
from trl_igrpo.demo.inventory import InventoryEnv, inventory_accuracy_reward, make_inventory_dataset
from trl_igrpo.demo.inventory_warm_start import default_inventory_warm_start
from trl_igrpo.scripts import RunDirArguments, device_defaults, finish_run, start_run

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # TRL flags environment_factory as experimental


@dataclass
class AgentScriptArguments(RunDirArguments):
    """The task's size, where the default model is cached, and the output-folder flags of every script
    (``--overwrite_output_dir``; ``--resume_from_checkpoint`` is TRL's)."""

    num_train_examples: int = field(default=256, metadata={"help": "Training rows of the inventory task."})
    num_eval_examples: int = field(default=64, metadata={"help": "Held-out rows for the before/after evaluation."})
    warm_start_dir: str | None = field(
        default=None, metadata={"help": "Cache directory of the default warm start (default: ~/.cache/trl_igrpo)."}
    )


def demo_defaults() -> dict:
    """Defaults for a laptop CPU (bf16 only with a GPU); every one can be overridden by a flag."""
    return dict(
        **device_defaults(), output_dir="outputs/igrpo-agent", gradient_checkpointing=False,
        per_device_train_batch_size=8,  # 2 prompts x G=4 refinements (plus 2 x N=4 drafts) per step
        num_drafts=4, num_generations=4, max_completion_length=80, max_tool_calling_iterations=2, max_steps=20,
        learning_rate=3e-4, lr_scheduler_type="constant", per_device_eval_batch_size=32, num_generations_eval=1,
        logging_steps=1, save_strategy="no", report_to="none", seed=0,
    )  # fmt: skip


def main(script_args: AgentScriptArguments, training_args: IGRPOConfig, model_args: ModelConfig) -> IGRPOTrainer:
    """Evaluate, train iGRPO with the inventory environment, evaluate again, print the summary, save."""
    checkpoint = start_run(script_args, training_args)  # --resume_from_checkpoint, the --output_dir guard
    model = model_args.model_name_or_path or default_inventory_warm_start(script_args.warm_start_dir)
    trainer = IGRPOTrainer(
        model=model,
        reward_funcs=inventory_accuracy_reward,
        args=training_args,
        train_dataset=make_inventory_dataset(script_args.num_train_examples, seed=1),
        eval_dataset=make_inventory_dataset(script_args.num_eval_examples, seed=2),
        environment_factory=InventoryEnv,
        peft_config=get_peft_config(model_args),
    )
    before = trainer.evaluate()
    trainer.train(resume_from_checkpoint=checkpoint)
    after = trainer.evaluate()
    finish_run(trainer, training_args, None, lambda trainer: print_summary(trainer, before, after))
    return trainer


def print_summary(trainer: IGRPOTrainer, before: dict, after: dict) -> None:
    """Held-out accuracy and tool-call rate before/after; per-stage metrics at the first and last step."""
    history = [entry for entry in trainer.state.log_history if "igrpo/best_draft_reward_mean" in entry]
    print("\n=== iGRPO with tools: summary ===")
    print(f"{'metric':44s} {'before':>10s} {'after':>10s}")
    for key, name in (
        ("eval_reward", "held-out accuracy"),
        ("eval_inventory/tool_call_rate", "held-out tool-call rate"),
    ):
        print(f"{name:44s} {before[key]:10.3f} {after[key]:10.3f}")
    print(f"\n{'training metric':44s} {'first step':>10s} {'last step':>10s}")
    for key in ("igrpo/draft_reward_mean", "igrpo/best_draft_reward_mean", "igrpo/refinement_reward_mean",
                "igrpo/drafts/tools/call_frequency", "tools/call_frequency", "igrpo/drafts/turns",
                "igrpo/refinements/turns", "igrpo/refinements/tool_tokens"):  # fmt: skip
        if history and key in history[0]:
            print(f"{key:44s} {history[0][key]:10.3f} {history[-1][key]:10.3f}")


def make_parser() -> TrlParser:
    parser = TrlParser((AgentScriptArguments, IGRPOConfig, ModelConfig))
    parser.set_defaults(**demo_defaults())
    return parser


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
    sys.exit(0)
