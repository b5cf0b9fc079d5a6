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

import os
from collections.abc import Callable

from trl_igrpo.distributed import end_distributed_run

__all__ = ["finish_run", "parse_and_run"]


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
