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
