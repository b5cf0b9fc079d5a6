"""Supervised fine-tuning with a Tied-LoRA adapter (arXiv 2311.09578) through TRL's SFTTrainer.

Runs with no arguments, offline: TL6 (tied A and B, per-layer u and v, all trained) at rank 8 on the fused q/k/v
projections of a freshly built tiny random model, trained on a small synthetic arithmetic SFT set. Real runs pass a
model, a dataset and any SFTConfig flag, or a YAML file via ``--config``::

    python examples/train_tied_lora.py
    python examples/train_tied_lora.py --tied_lora_configuration TL5 --tied_lora_r 16
    python examples/train_tied_lora.py --tied_lora_target_modules q_proj k_proj v_proj o_proj --no_fuse_qkv
    python examples/train_tied_lora.py --model_name_or_path ./my-model --dataset_name ./my-sft-data \\
        --output_dir out --learning_rate 1e-3 --merge_adapter --export_lora

The saved adapter reloads with ``PeftModel.from_pretrained`` once ``trl_igrpo.tied_lora`` is imported.
``--merge_adapter`` additionally saves the merged full model to ``<output_dir>/merged`` (what vLLM serves), and
``--export_lora`` writes the equal standard LoRA adapter into ``<dir>/lora`` at every save (plain PEFT and vLLM load it
without trl-igrpo; ``--push_to_hub`` uploads it with the Tied-LoRA adapter).
Without ``--output_dir`` the demo writes to ``outputs/tied-lora-demo`` (printed); ``--resume_from_checkpoint
true|PATH`` resumes, as in the ``trl-igrpo`` training commands.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from datasets import Dataset  # noqa: E402
from trl import ModelConfig, ScriptArguments, SFTConfig, SFTTrainer, TrlParser  # noqa: E402

from trl_igrpo.hub import hub_id_or_none, write_model_card  # noqa: E402
from trl_igrpo.scripts import (  # noqa: E402
    RunDirArguments,
    device_defaults,
    main_process_print,
    start_run,
    word_negated_flags,
)
from trl_igrpo.testing import cpu_training_kwargs  # noqa: E402
from trl_igrpo.tied_lora import FUSED_QKV, TiedLoraConfig  # noqa: E402
from trl_igrpo.utils.distributed import end_distributed_run  # noqa: E402

# Small, CPU-friendly settings used when no output_dir is given (the no-argument demo).
DEMO_DEFAULTS = dict(
    **cpu_training_kwargs(),
    output_dir="outputs/tied-lora-demo",
    per_device_train_batch_size=8,
    max_steps=10,
    learning_rate=2e-2,
    max_length=64,
)
#: The demo's tiny random model, built once and reused.
DEMO_MODEL_DIR = "outputs/tied-lora-tiny-model"


@dataclass
class TiedLoraScriptArguments(RunDirArguments, ScriptArguments):
    """Script arguments; `dataset_name` defaults to a built-in synthetic arithmetic SFT set."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A .jsonl/.json/.csv/.parquet file, a save_to_disk folder or a Hub id; default: synthetic."},
    )
    num_examples: int = field(default=64, metadata={"help": "Synthetic data: number of examples."})
    tied_lora_configuration: str = field(
        default="TL6", metadata={"help": "Paper configuration: TL6 (train A, B, u, v) or TL5 (train A, B)."}
    )
    tied_lora_r: int = field(default=8, metadata={"help": "Rank of the tied A/B."})
    tied_lora_alpha: float | None = field(default=None, metadata={"help": "Scaling alpha / r; default alpha = r."})
    tied_lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter input."})
    tied_lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules to adapt; default q_proj k_proj v_proj (the paper's scope)."}
    )
    fuse_qkv: bool = field(
        default=True,
        metadata={"help": "Group q/k/v as the paper's fused QKV (shared A and u). --no_fuse_qkv: by shape."},
    )
    merge_adapter: bool = field(default=False, metadata={"help": "Also save the merged model to <output_dir>/merged."})
    export_lora: bool = field(
        default=False,
        metadata={
            "help": "Write a standard LoRA export (loads in plain PEFT and vLLM) into <dir>/lora beside every saved "
            "adapter: each checkpoint-N, the final output_dir, and what --push_to_hub uploads."
        },
    )


def build_synthetic_sft_dataset(num_examples: int) -> Dataset:
    """Conversational prompt/completion pairs: 'What is a + b?' -> the sum, with a short reasoning trace."""
    rows = []
    for i in range(num_examples):
        a, b = (7 * i) % 50, (11 * i + 3) % 50
        rows.append({
            "prompt": [{"role": "user", "content": f"What is {a} + {b}?"}],
            "completion": [{"role": "assistant", "content": f"<think> {a} plus {b} </think> <answer> {a + b} </answer>"}],
        })  # fmt: skip
    return Dataset.from_list(rows)


def tied_lora_config_from_args(script_args: TiedLoraScriptArguments) -> TiedLoraConfig:
    return TiedLoraConfig.from_configuration(
        script_args.tied_lora_configuration,
        r=script_args.tied_lora_r,
        alpha=script_args.tied_lora_alpha,
        dropout=script_args.tied_lora_dropout,
        target_modules=script_args.tied_lora_target_modules,
        fused_module_groups=[list(FUSED_QKV)] if script_args.fuse_qkv else None,
        task_type="CAUSAL_LM",
        export_lora=script_args.export_lora,
    )


def _demo(argv: list[str]) -> bool:
    return not any(arg.startswith("--output_dir") for arg in argv) and "--config" not in argv


def make_parser(demo: bool = False) -> TrlParser:
    """The parser over (script args, SFTConfig, ModelConfig). The device defaults (bf16 only on a GPU) always apply,
    so ``--output_dir X`` parses on a CPU; `demo` adds the small settings of the no-argument demo."""
    parser = TrlParser((TiedLoraScriptArguments, SFTConfig, ModelConfig))
    parser.set_defaults(**device_defaults())
    if demo:
        parser.set_defaults(**DEMO_DEFAULTS)
    word_negated_flags(parser)
    return parser


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else argv
    script_args, training_args, model_args = make_parser(demo=_demo(argv)).parse_args_and_config(args=argv)
    checkpoint = start_run(script_args, training_args)

    model_path = model_args.model_name_or_path
    if model_path is None:
        from trl_igrpo.testing import build_tiny_model

        model_path = build_tiny_model(DEMO_MODEL_DIR, architecture="qwen2")
        main_process_print(f"model: a tiny random model (built once in {os.path.abspath(model_path)})")
    if model_args.dtype not in (None, "auto"):
        training_args.model_init_kwargs = {**(training_args.model_init_kwargs or {}), "dtype": model_args.dtype}

    if script_args.dataset_name is None:
        train_dataset = build_synthetic_sft_dataset(script_args.num_examples)
    else:
        from trl_igrpo.data import load_data

        train_dataset = load_data(
            script_args.dataset_name,
            script_args.dataset_config,
            split=script_args.dataset_train_split,
            flag="--dataset_train_split",
        )

    trainer = SFTTrainer(
        model=model_path,
        args=training_args,
        train_dataset=train_dataset,
        peft_config=tied_lora_config_from_args(script_args),
    )
    from trl_igrpo.core.run_logging import use_compact_console

    use_compact_console(trainer)
    trainer.model.print_trainable_parameters()
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(training_args.output_dir)
    write_model_card(trainer, training_args.output_dir, script_args.dataset_name)
    if trainer.accelerator.is_main_process:
        from trl_igrpo.tied_lora.config import add_loading_note_to_model_card

        add_loading_note_to_model_card(training_args.output_dir)
    if script_args.merge_adapter:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(os.path.join(training_args.output_dir, "merged"))
        trainer.processing_class.save_pretrained(os.path.join(training_args.output_dir, "merged"))
    if trainer.accelerator.is_main_process:
        print(f"optimizer steps done: {trainer.state.global_step}")
        print(f"model saved to {os.path.abspath(training_args.output_dir)}")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=hub_id_or_none(script_args.dataset_name))
    end_distributed_run(trainer.accelerator)  # no rank may abort or hang on exit under accelerate launch
    return trainer


if __name__ == "__main__":
    main()
