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

from trl_igrpo.distributed import end_distributed_run

__all__ = ["SCRIPT_USAGE", "finish_run", "group_flags", "own_fields", "parse_and_run"]

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


def finish_run(trainer, training_args, dataset_name: str | None, report: Callable | None = None) -> None:
    """The end of every script: save to ``output_dir``, report on the main process (`report(trainer)`; default: the
    step count and where the model went), push to the Hub when ``push_to_hub`` is set, then end the run on every rank
    with :func:`~trl_igrpo.distributed.end_distributed_run`, so that a finished multi-process run on CPU (gloo) cannot
    abort or hang on its way out."""
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        if report is not None:
            report(trainer)
        print(f"optimizer steps done: {trainer.state.global_step}\nmodel saved to {training_args.output_dir}")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=dataset_name)
    end_distributed_run(trainer.accelerator)


def parse_and_run(parser, main: Callable, argv: list[str] | None = None):
    """Parse `argv` (flags and/or ``--config file.yaml``) with `parser` and call ``main(script, training, model)``."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return main(*parser.parse_args_and_config(args=argv))
