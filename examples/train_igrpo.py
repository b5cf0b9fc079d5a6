# Copyright 2026 The trl-igrpo developers. Apache-2.0.
"""Train with iGRPO (arXiv 2602.09000), TRL-script style.

With no arguments it runs offline on CPU in a few minutes: a tiny model from the package's factory and a built-in
synthetic arithmetic set, rewarded by math accuracy + the <think>/<answer> format.

    accelerate launch examples/train_igrpo.py
    accelerate launch examples/train_igrpo.py --max_steps 3

A real run (MATH-style data with `problem`/`solution` columns; see examples/recipes for the paper's settings):

    accelerate launch examples/train_igrpo.py \
        --model_name_or_path Qwen/Qwen2.5-Math-1.5B --dataset_name EleutherAI/hendrycks_math --dataset_config algebra \
        --num_drafts 4 --num_generations 4 --max_completion_length 4096 --learning_rate 1e-6 \
        --lr_scheduler_type cosine_with_min_lr --lr_scheduler_kwargs '{"min_lr_rate": 0.1}' --warmup_steps 0.1 \
        --use_vllm --bf16 --push_to_hub

YAML works too: `--config recipe.yaml` (command-line flags override it).

The logic lives in ``trl_igrpo.scripts.igrpo`` (also ``trl-igrpo igrpo``); this file is a thin wrapper.
"""

import sys

from trl_igrpo.scripts.igrpo import *  # noqa: F403  (make_parser, main, print_summary, demo_defaults, ...)
from trl_igrpo.scripts.igrpo import cli

if __name__ == "__main__":
    cli()
    sys.exit(0)
