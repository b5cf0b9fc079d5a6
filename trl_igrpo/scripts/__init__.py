"""Training scripts shipped with the package, in TRL's script style (``trl/scripts/grpo.py``).

Each module exposes ``make_parser(prog=None)`` (a :class:`~trl.TrlParser`, so ``--config recipe.yaml`` works) and a
``main`` entry point, and runs as a file, so all of these are equivalent::

    trl-igrpo igrpo --max_steps 3
    python -m trl_igrpo.scripts.igrpo --max_steps 3
    accelerate launch -m trl_igrpo.scripts.igrpo --max_steps 3

- :mod:`~trl_igrpo.scripts.igrpo`: iGRPO (arXiv 2602.09000).
- :mod:`~trl_igrpo.scripts.grpo`: plain GRPO with the Llama-Nemotron pass-rate curriculum and dynamic sampling.
- :mod:`~trl_igrpo.scripts.rpo`: offline or online reward-aware preference optimization (arXiv 2502.00203).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = [
    "SCRIPT_USAGE",
    "PreflightError",
    "RunDirArguments",
    "check_run",
    "device_defaults",
    "finish_run",
    "group_flags",
    "main_process_print",
    "own_fields",
    "parse_and_run",
    "resolve_rewards",
    "start_run",
    "word_negated_flags",
]

#: The usage line of the scripts' parsers: the full list of hundreds of flags is in the option groups below it.
SCRIPT_USAGE = "%(prog)s [--config RECIPE.yaml] [--FLAG VALUE ...]"


def own_fields(dataclass_type: type, *bases: type) -> list[str]:
    """Names of the fields of `dataclass_type` that none of `bases` has (its own flags), in declaration order;
    ``own_fields(C, *C.__bases__)`` gives the fields declared in ``C``'s own body."""
    inherited = {field.name for base in bases for field in dataclasses.fields(base)}
    return [field.name for field in dataclasses.fields(dataclass_type) if field.name not in inherited]


def group_flags(parser, groups: Iterable[tuple[str, Iterable[str]]]) -> None:
    """Show the flags of each ``(title, field names)`` in `groups` in their own ``--help`` section, listed in that
    order before the general options (TRL's and transformers' hundreds of flags), instead of mixed among them.

    Only the help layout changes: parsing, defaults and ``--config`` keys are the same. The flags of a boolean field
    (``--flag`` and ``--no_flag``) move together.
    """
    general = parser._optionals
    position = parser._action_groups.index(general)
    for title, names in groups:
        names = set(names)
        group = parser.add_argument_group(title)
        for action in [action for action in general._group_actions if action.dest in names]:
            general._group_actions.remove(action)
            group._group_actions.append(action)
        parser._action_groups.remove(group)
        parser._action_groups.insert(position, group)
        position += 1


def word_negated_flags(parser) -> None:
    """Give each ``--no_FLAG`` of a boolean field its own help. HfArgumentParser copies the positive flag's help (and
    ``default: False``) onto it, so ``--no_verify_draft_in_prompt`` read "Raise if ..."; it now reads "Turn off
    --verify_draft_in_prompt (on by default)". Call it after ``set_defaults``: the text names the current default."""
    import argparse

    for action in parser._actions:
        negated = [option for option in action.option_strings if option.startswith("--no_")]
        if not negated or action.const is not False:
            continue
        positive = next((a for a in parser._actions if a is not action and a.dest == action.dest), None)
        state = "on by default" if positive is not None and positive.default is True else "off by default"
        what = f" --{action.dest}: {positive.help}" if positive is not None and positive.help else ""
        action.help = f"Turn off --{action.dest} ({state}).{what}"
        action.default = argparse.SUPPRESS  # the positive flag sets the default; no "(default: False)" here


# ----------------------------------------------------------------------------------------------------------------------
# Start and end of a run


class PreflightError(ValueError):
    """A mistake in a run's arguments found before anything loads (one line: the problem and the fix)."""


@dataclass
class RunDirArguments:
    """Script flags about the output folder (see :mod:`trl_igrpo.scripts.resume`)."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start a new run in an --output_dir that holds checkpoint-N folders by deleting them first "
            "(without it such a run refuses; --resume_from_checkpoint true continues the old run instead)."
        },
    )


def device_defaults() -> dict:
    """``bf16`` only where there is a GPU, ``use_cpu`` where there is none: TRL's configs default to bf16, which
    ``TrainingArguments`` rejects on a CPU-only machine ("doesn't support bf16/gpu"). Applied whether or not
    ``--output_dir`` is given; flags and ``--config`` override them."""
    import torch

    on_gpu = torch.cuda.is_available()
    return {"use_cpu": not on_gpu, "bf16": on_gpu}


def check_installed(training_args) -> None:
    """The packages the arguments need (vLLM, the ``report_to`` loggers) are installed; else :class:`PreflightError`
    naming the extra to install, before any model or data loads (:mod:`trl_igrpo.utils.extras`)."""
    from trl_igrpo.utils.extras import require_logger_packages, require_vllm_package

    try:
        if getattr(training_args, "use_vllm", False):
            require_vllm_package("--use_vllm")
        require_logger_packages(training_args.report_to)
    except ImportError as error:
        raise PreflightError(str(error)) from None


def resolve_rewards(names: list[str], registry: dict) -> list[Callable]:
    """The reward functions `names` name (short names of `registry` or dotted paths ``pkg.module.func``,
    :func:`~trl_igrpo.rewards.registry.load_reward_func`); one :class:`PreflightError` line with a did-you-mean for a
    name that does not resolve."""
    from trl_igrpo.rewards.registry import load_reward_func

    try:
        return [load_reward_func(name, registry) for name in names]
    except ValueError as error:
        raise PreflightError(str(error)) from None


def main_process_print(*lines: str) -> None:
    """Print on the first process only (before the trainer exists: ``RANK`` of ``accelerate launch``/torchrun)."""
    if os.environ.get("RANK", "0") == "0":
        for line in lines:
            print(line, flush=True)


def check_run(script_args, training_args, delete: bool = False) -> tuple[str | None, list[str]]:
    """The checks every training script runs before loading anything (the CLI runs them too, with ``delete=False``):
    the packages the flags need, ``--resume_from_checkpoint`` and the ``--output_dir`` guard of
    :mod:`trl_igrpo.scripts.resume`. Returns (the checkpoint to resume from or None, the notices to print)."""
    from trl_igrpo.scripts.resume import ResumeError, prepare_run_dir, resolve_checkpoint

    check_installed(training_args)
    try:
        checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
        notices = prepare_run_dir(
            training_args.output_dir, checkpoint, getattr(script_args, "overwrite_output_dir", False), delete=delete
        )
    except ResumeError as error:
        raise PreflightError(str(error)) from None
    return checkpoint, notices


def start_run(script_args, training_args) -> str | None:
    """:func:`check_run` for real (``--overwrite_output_dir`` deletes), then print the notices and where the run
    writes. Returns the checkpoint to pass to ``trainer.train(resume_from_checkpoint=...)``."""
    checkpoint, notices = check_run(script_args, training_args, delete=True)
    main_process_print(*notices, f"output dir: {os.path.abspath(training_args.output_dir)}")
    return checkpoint


def finish_run(trainer, training_args, dataset_name: str | None, report: Callable | None = None) -> None:
    """The end of every script: save to ``output_dir`` with a model card (:func:`~trl_igrpo.hub.write_model_card`),
    report on the main process (`report(trainer)`; then the step count and where the model went), push to the Hub
    when ``push_to_hub`` is set, then end the run on every rank with
    :func:`~trl_igrpo.utils.distributed.end_distributed_run`, so that a finished multi-process run on CPU (gloo) cannot
    abort or hang on its way out."""
    from trl_igrpo.hub import write_model_card
    from trl_igrpo.utils.distributed import end_distributed_run

    trainer.save_model(training_args.output_dir)
    write_model_card(trainer, training_args.output_dir, dataset_name)
    if trainer.accelerator.is_main_process:
        if report is not None:
            report(trainer)
        print(
            f"optimizer steps done: {trainer.state.global_step}\n"
            f"model saved to {os.path.abspath(training_args.output_dir)}"
        )
    if training_args.push_to_hub:
        from trl_igrpo.hub import hub_id_or_none

        trainer.push_to_hub(dataset_name=hub_id_or_none(dataset_name))
    end_distributed_run(trainer.accelerator)


def parse_and_run(parser, main: Callable, argv: list[str] | None = None):
    """Parse `argv` (flags and/or ``--config file.yaml``) with `parser` and call ``main(script, training, model)``."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return main(*parser.parse_args_and_config(args=argv))
