"""Every recipe in examples/recipes parses with its script's parser and trains one step on CPU.

Only the model, data, device, lengths and batch sizes are overridden (offline tiny model, built-in data, one step); the
assertions check that the recipe's own method hyperparameters reached the trainer.
"""

from pathlib import Path

import pytest
import yaml
from helpers import snapshot_trainable, unchanged_parameters, varied_reward

RECIPES = Path(__file__).resolve().parents[1] / "examples" / "recipes"

# CPU overrides shared by every recipe (flags override the YAML, as on the command line).
CPU_FLAGS = [
    "--use_cpu", "true", "--bf16", "false", "--use_vllm", "false", "--gradient_checkpointing", "false",
    "--max_steps", "1", "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
    "--dtype", "float32",
    "--max_completion_length", "8", "--gradient_accumulation_steps", "1", "--dataloader_num_workers", "0",
]  # fmt: skip


def _flags(model_dir, output_dir, extra):
    return [*CPU_FLAGS, "--model_name_or_path", str(model_dir), "--output_dir", str(output_dir), *extra]


def _parse(parser, recipe, flags):
    script_args, training_args, model_args = parser.parse_args_and_config(["--config", str(recipe), *flags])
    script_args.dataset_name = None  # built-in data (argparse cannot set None from a flag)
    model_args.attn_implementation = None  # flash_attention_2 needs CUDA
    return script_args, training_args, model_args


def varying_accuracy_stand_in(completions, **kwargs):
    """Stands in for `math_accuracy` under its name: a random tiny model never solves a problem, so the real reward is
    all zeros and GRPO's advantages (and gradients) would vanish."""
    return varied_reward(completions, **kwargs)


varying_accuracy_stand_in.__name__ = "math_accuracy_reward"


def _assert_trained_one_step(trainer, before):
    assert trainer.state.global_step == 1
    assert len(unchanged_parameters(trainer.model, before)) < len(before), "no trainable parameter changed"


def test_every_recipe_is_tested():
    assert {p.name for p in RECIPES.glob("*.yaml")} == {
        "igrpo_math_7b.yaml",
        "llama_nemotron_reasoning_grpo.yaml",
        "online_rpo_rounds.yaml",
    }


@pytest.mark.slow
def test_igrpo_math_7b_recipe_trains_one_step(tiny_model_dir, tmp_path, monkeypatch):
    from trl_igrpo.scripts import igrpo

    monkeypatch.setitem(igrpo.REWARD_FUNCS, "math_accuracy", varying_accuracy_stand_in)
    recipe = RECIPES / "igrpo_math_7b.yaml"
    values = yaml.safe_load(recipe.read_text())
    _, recipe_args, _ = _parse(igrpo.make_parser(), recipe, _flags(tiny_model_dir, tmp_path, []))
    assert recipe_args.warmup_steps == values["warmup_steps"] == 0.1
    # A 10 % warm-up of a one-step run is the whole run (learning rate 0), so the training run drops it.
    flags = _flags(
        tiny_model_dir,
        tmp_path,
        ["--per_device_train_batch_size", "4", "--num_train_examples", "8", "--warmup_steps", "0"],
    )
    script_args, training_args, model_args = _parse(igrpo.make_parser(), recipe, flags)
    train_dataset, _ = igrpo.load_training_data(script_args)
    trainer = igrpo.build_trainer(script_args, training_args, model_args, train_dataset)

    args = trainer.args
    assert (args.num_drafts, args.num_generations) == (values["num_drafts"], values["num_generations"]) == (4, 4)
    assert args.loss_type == values["loss_type"] == "grpo"
    assert args.beta == values["beta"] == 0.0
    assert args.temperature == values["temperature"] == 0.7
    assert args.learning_rate == values["learning_rate"] == 1e-6
    assert args.lr_scheduler_type.value == "cosine_with_min_lr"
    assert args.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    assert args.reward_weights == [1.0, 1.0]
    assert trainer.reward_funcs == [varying_accuracy_stand_in, igrpo.REWARD_FUNCS["think_answer_format"]]
    assert trainer.ref_model is None  # beta 0: no reference model, as in the paper

    before = snapshot_trainable(trainer.model)
    trainer.train()
    _assert_trained_one_step(trainer, before)


@pytest.mark.slow
def test_llama_nemotron_reasoning_grpo_recipe_trains_one_step(tiny_model_dir, tmp_path, monkeypatch):
    from trl_igrpo.grpo import CurriculumGRPOTrainer
    from trl_igrpo.scripts import grpo, igrpo

    monkeypatch.setitem(grpo.REWARD_FUNCS, "math_accuracy", varying_accuracy_stand_in)
    recipe = RECIPES / "llama_nemotron_reasoning_grpo.yaml"
    values = yaml.safe_load(recipe.read_text())
    flags = _flags(
        tiny_model_dir,
        tmp_path,
        ["--per_device_train_batch_size", "4", "--num_generations", "4", "--generation_batch_size", "4"],
    )
    script_args, training_args, model_args = _parse(grpo.make_parser(), recipe, flags)
    script_args.num_train_examples = 8
    train_dataset, _ = igrpo.load_training_data(script_args)
    # progressive batching reads a pre-computed pass rate (trl-igrpo pass-rate); any values in [0, 1] do here.
    train_dataset = train_dataset.add_column("pass_rate", [(i % 8) / 8 for i in range(len(train_dataset))])
    trainer = igrpo.build_trainer(
        script_args, training_args, model_args, train_dataset, CurriculumGRPOTrainer, registry=grpo.REWARD_FUNCS
    )

    args = trainer.args
    assert args.progressive_batching is values["progressive_batching"] is True
    assert args.temperature == args.top_p == 1.0
    assert args.loss_type == "grpo" and args.beta == 0.0
    assert args.max_steps == 1  # the override won; the recipe's 500 steps are in the YAML
    assert trainer.reward_funcs == [varying_accuracy_stand_in, grpo.REWARD_FUNCS["reasoning_format_on"]]
    assert values["num_generations"] == 16 and values["generation_batch_size"] == 72 * 16

    before = snapshot_trainable(trainer.model)
    trainer.train()
    _assert_trained_one_step(trainer, before)


@pytest.mark.slow
def test_online_rpo_rounds_recipe_trains_one_step(tiny_model_dir, tmp_path):
    from trl_igrpo import OnlineRPOConfig, OnlineRPOTrainer
    from trl_igrpo.scripts import rpo

    recipe = RECIPES / "online_rpo_rounds.yaml"
    values = yaml.safe_load(recipe.read_text())
    argv = ["--config", str(recipe)]
    assert rpo._is_online(argv)  # `online: true` in the YAML picks OnlineRPOConfig
    flags = _flags(tiny_model_dir, tmp_path, ["--per_device_train_batch_size", "4", "--num_prompts", "4"])
    script_args, training_args, model_args = _parse(rpo.make_parser(online=True), recipe, flags)
    assert isinstance(training_args, OnlineRPOConfig)
    train_dataset = rpo.load_training_data(script_args, online=True)
    trainer = rpo.build_trainer(script_args, training_args, model_args, train_dataset, model_args.model_name_or_path)
    assert isinstance(trainer, OnlineRPOTrainer)

    args = trainer.args
    assert args.beta == values["beta"] == 1e-5
    assert args.eta == values["eta"] == 3.0
    assert args.learning_rate == values["learning_rate"] == 4e-7
    assert args.rpo_round_steps == 500
    # rounds re-anchor the reference: TRL's sync_ref_model with a full copy every round
    assert args.sync_ref_model and args.ref_model_mixup_alpha == 1.0 and args.ref_model_sync_steps == 500
    assert args.rpo_loss_type == ["rpo_bwd_kl"] and args.num_generations == 4

    before = snapshot_trainable(trainer.model)
    trainer.train()
    _assert_trained_one_step(trainer, before)
