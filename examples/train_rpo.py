"""Reward-aware Preference Optimization (RPO), offline or online, in TRL style.

Runs with no arguments: offline RPO (``rpo_bwd_kl``) on a freshly built tiny random model and the built-in synthetic
arithmetic preference set with graded rewards. ``--online`` switches to online RPO (k samples per prompt from the
policy, scored by the synthetic reward functions). Real runs pass a model, a dataset and any RPOConfig/OnlineRPOConfig
flag, or a YAML file via ``--config``::

    python examples/train_rpo.py
    python examples/train_rpo.py --online
    python examples/train_rpo.py --k_responses 4 --loss_type rpo_listwise
    python examples/train_rpo.py --model_name_or_path ./my-model --dataset_name ./my-prefs --beta 0.03 --eta 1.0

Offline datasets: ``prompt``, ``chosen``, ``rejected``, ``chosen_reward``, ``rejected_reward`` (names configurable),
or ``prompt``, ``responses`` (k), ``rewards`` (k). Without reward columns pass ``--reward_model_path``.
Online datasets: ``prompt`` plus any columns the reward functions read.

The logic lives in ``trl_igrpo.scripts.rpo`` (also ``trl-igrpo rpo``); this file is a thin wrapper.
"""

from trl_igrpo.scripts.rpo import *  # noqa: F403  (make_parser, main, DEMO_DEFAULTS, ...)
from trl_igrpo.scripts.rpo import main

if __name__ == "__main__":
    main()
