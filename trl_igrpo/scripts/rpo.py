"""Reward-aware Preference Optimization (RPO), offline or online, in TRL style.

Runs with no arguments: offline RPO (``rpo_bwd_kl``) on a freshly built tiny random model and the built-in synthetic
arithmetic preference set with graded rewards. ``--online`` switches to online RPO (k samples per prompt from the
policy, scored by the synthetic reward functions). Real runs pass a model, a dataset and any RPOConfig/OnlineRPOConfig
flag, or a YAML file via ``--config``::

    trl-igrpo rpo
    trl-igrpo rpo --online
    trl-igrpo rpo --k_responses 4 --loss_type rpo_listwise
    trl-igrpo rpo --model_name_or_path ./my-model --dataset_name ./my-prefs --beta 0.03 --eta 1.0

Offline datasets: ``prompt``, ``chosen``, ``rejected``, ``chosen_reward``, ``rejected_reward`` (names configurable),
or ``prompt``, ``responses`` (k), ``rewards`` (k). Without reward columns pass ``--reward_model_path``.
Online datasets: ``prompt`` plus any columns the reward functions read.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from trl import ModelConfig, ScriptArguments, TrlParser  # noqa: E402

from trl_igrpo.rpo.config import RPOConfig, RPOSharedConfigMixin  # noqa: E402
from trl_igrpo.rpo.online_config import OnlineRPOConfig  # noqa: E402
from trl_igrpo.scripts import (  # noqa: E402
    SCRIPT_USAGE,
    RunDirArguments,
    check_run,
    device_defaults,
    finish_run,
    group_flags,
    main_process_print,
    own_fields,
    start_run,
    word_negated_flags,
)
from trl_igrpo.testing import cpu_training_kwargs  # noqa: E402

__all__ = [
    "DEMO_DEFAULTS",
    "RPOScriptArguments",
    "build_trainer",
    "device_defaults",
    "load_training_data",
    "main",
    "make_parser",
    "parser_for",
    "preflight",
]

# Small, CPU-friendly settings used when no output_dir is given (the no-argument demo).
DEMO_DEFAULTS = dict(
    **cpu_training_kwargs(),
    per_device_train_batch_size=4,
    max_steps=4,
    learning_rate=1e-4,
)
#: Where the no-argument demo writes (printed at the start and the end of the run).
DEMO_OUTPUT_DIR = {False: "outputs/rpo-demo", True: "outputs/online-rpo-demo"}
#: The demo's tiny random model, built once and reused.
DEMO_MODEL_DIR = "outputs/rpo-tiny-model"


@dataclass
class RPOScriptArguments(RunDirArguments, ScriptArguments):
    """Script arguments; `dataset_name` defaults to the built-in synthetic set."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "A .jsonl/.json/.csv/.parquet file, a save_to_disk folder or a Hub dataset; default: synthetic. "
            "A 'problem' column becomes the 'prompt' as in `trl-igrpo igrpo`."
        },
    )
    online: bool = field(default=False, metadata={"help": "Run online RPO (sample from the policy)."})
    k_responses: int = field(default=2, metadata={"help": "Synthetic offline data: responses per prompt (2-4)."})
    num_prompts: int = field(default=32, metadata={"help": "Synthetic data: number of prompts."})
    reward_model_path: str | None = field(
        default=None, metadata={"help": "Local sequence-classification reward model, when rewards are not columns."}
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "A system message before every chat prompt built from a 'problem' column."}
    )


def _demo(argv: list[str]) -> bool:
    return not any(arg.startswith("--output_dir") for arg in argv) and "--config" not in argv


def _is_online(argv: list[str]) -> bool:
    """`--online` on the command line, or `online: true` in the `--config` YAML."""
    if "--online" in argv:
        return True
    if "--config" in argv and argv.index("--config") + 1 < len(argv):
        import yaml

        with open(argv[argv.index("--config") + 1]) as handle:
            return bool((yaml.safe_load(handle) or {}).get("online", False))
    return False


def make_parser(online: bool = False, prog: str | None = None, demo: bool = False) -> TrlParser:
    """The parser over (script args, RPOConfig or OnlineRPOConfig, ModelConfig); `online` picks the config class,
    `demo` presets the small CPU settings of the no-argument demo (:data:`DEMO_DEFAULTS`). The device defaults
    (:func:`device_defaults`) are always preset, so any run parses on a CPU-only machine; flags and ``--config``
    override all of them. ``--help`` lists the RPO flags first."""
    config_class = OnlineRPOConfig if online else RPOConfig
    parser = TrlParser(
        (RPOScriptArguments, config_class, ModelConfig),
        prog=prog,
        usage=SCRIPT_USAGE,
        description=f"Train with {'online ' if online else ''}reward-aware preference optimization (RPO). Its flags "
        f"come first; the general options after them are TRL's {'GRPOConfig' if online else 'DPOConfig'} / "
        "TrainingArguments, ModelConfig and ScriptArguments flags.",
    )
    parser.set_defaults(**device_defaults())
    if demo:
        parser.set_defaults(
            **DEMO_DEFAULTS,
            output_dir=DEMO_OUTPUT_DIR[online],
            **({"beta": 0.1, "max_completion_length": 12, "num_generations": 4} if online else {"max_length": 64}),
        )
    word_negated_flags(parser)
    # The RPO flags: the config's own plus the offline/online shared ones, not those of its TRL or package base.
    bases = [base for base in config_class.__bases__ if base is not RPOSharedConfigMixin]
    group_flags(
        parser,
        [
            (f"{'online ' if online else ''}RPO options ({config_class.__name__})", own_fields(config_class, *bases)),
            ("script options (data, synthetic demo, reward model)", own_fields(RPOScriptArguments, ScriptArguments)),
        ],
    )
    return parser


def parser_for(argv: list[str], prog: str | None = None) -> TrlParser:
    """The parser `argv` needs: online or offline (``--online`` or ``online: true`` in the ``--config`` YAML), with
    the demo defaults when it names neither ``--output_dir`` nor ``--config``."""
    return make_parser(online=_is_online(argv), prog=prog, demo=_demo(argv))


def load_training_data(script_args, online: bool):
    """The built-in synthetic preference (offline) or prompt (online) set, or `dataset_name`'s train split through
    the package's one loader (:func:`trl_igrpo.data.load_data`). A ``problem`` column without ``prompt`` becomes the
    prompt as in ``trl-igrpo igrpo`` (:func:`trl_igrpo.data.add_prompt_column`); for offline data with text (not
    chat) responses it is copied as text, since TRL needs prompt and responses in one format."""
    from trl_igrpo.data import add_prompt_column, load_data

    if script_args.dataset_name is None:
        from trl_igrpo.demo.rpo_preferences import build_synthetic_preference_dataset, build_synthetic_prompt_dataset

        if online:
            return build_synthetic_prompt_dataset(script_args.num_prompts)
        return build_synthetic_preference_dataset(script_args.num_prompts, script_args.k_responses)
    data = load_data(
        script_args.dataset_name,
        script_args.dataset_config,
        split=script_args.dataset_train_split,
        flag="--dataset_train_split",
    )
    if not online and "prompt" not in data.column_names and "problem" in data.column_names:
        response = next((c for c in ("chosen", "responses") if c in data.column_names), None)
        sample = data[0][response] if response else None
        if isinstance(sample, list) and sample and isinstance(sample[0], list):
            sample = sample[0]  # k responses: the first one
        if not (isinstance(sample, list) and sample and isinstance(sample[0], dict)):
            return data.map(lambda row: {"prompt": row["problem"]})  # text responses: a text prompt
    return add_prompt_column(data, script_args.system_prompt)


def build_trainer(script_args, training_args, model_args, train_dataset, model_path: str):
    """RPOTrainer (offline) or OnlineRPOTrainer (online, chosen by the config class) on `model_path`."""
    from trl import get_peft_config

    from trl_igrpo.demo.rpo_preferences import synthetic_answer_reward, synthetic_digit_reward
    from trl_igrpo.rpo import RPOTrainer
    from trl_igrpo.rpo.online_trainer import OnlineRPOTrainer

    if model_args.dtype not in (None, "auto"):
        training_args.model_init_kwargs = {**(training_args.model_init_kwargs or {}), "dtype": model_args.dtype}
    reward_funcs = [script_args.reward_model_path] if script_args.reward_model_path else None
    if isinstance(training_args, OnlineRPOConfig):
        return OnlineRPOTrainer(
            model=model_path,
            reward_funcs=reward_funcs or [synthetic_answer_reward, synthetic_digit_reward],
            args=training_args,
            train_dataset=train_dataset,
            peft_config=get_peft_config(model_args),
        )
    return RPOTrainer(
        model=model_path,
        args=training_args,
        train_dataset=train_dataset,
        reward_funcs=reward_funcs,
        peft_config=get_peft_config(model_args),
    )


def preflight(script_args, training_args, model_args) -> tuple[str | None, list[str]]:
    """What the command line checks before it runs anything: packages, resume and ``--output_dir``."""
    return check_run(script_args, training_args)


def main(argv: list[str] | None = None):
    """Parse `argv` and train offline RPO (``--online``: online RPO); without `--output_dir` or `--config`, a tiny
    offline demo into ``outputs/rpo-demo`` (``outputs/online-rpo-demo``)."""
    from trl_igrpo.utils.model_path import check_model_path

    argv = sys.argv[1:] if argv is None else argv
    online = _is_online(argv)
    parser = parser_for(argv)
    script_args, training_args, model_args = parser.parse_args_and_config(args=argv)

    model_path = check_model_path(model_args.model_name_or_path)
    script_args.reward_model_path = check_model_path(script_args.reward_model_path, what="reward model path")
    checkpoint = start_run(script_args, training_args)
    if model_path is None:
        from trl_igrpo.testing import build_tiny_model

        model_path = build_tiny_model(DEMO_MODEL_DIR, architecture="qwen2")
        main_process_print(f"model: a tiny random model (built once in {os.path.abspath(model_path)})")
    train_dataset = load_training_data(script_args, online)
    trainer = build_trainer(script_args, training_args, model_args, train_dataset, model_path)
    trainer.train(resume_from_checkpoint=checkpoint)
    finish_run(trainer, training_args, script_args.dataset_name)
    return trainer


if __name__ == "__main__":
    main()
