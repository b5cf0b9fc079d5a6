"""Online RPO sees whole prompt groups: every micro-batch the loss sees holds all k samples of each of its prompts.

GRPO shuffles each generation batch and splits it into ``steps_per_generation`` micro-batches, and accelerate shards the
global batch across ranks; `OnlineRPOConfig` constrains the layout so neither can split a prompt's k samples. The
two-process test launches itself with ``accelerate launch --multi_gpu --num_processes 2`` and ``use_cpu=True`` (gloo).
"""

import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import two_rank_results


def _assert_whole_groups(micro_batch: list[tuple[int, str]], group_size: int) -> None:
    """Each prompt of the micro-batch appears exactly ``group_size`` times, and its rows carry one group id of their own
    (the ids `OnlineRPOTrainer` groups by partition the rows exactly as the prompts do)."""
    prompt_counts = Counter(prompt for _, prompt in micro_batch)
    assert set(prompt_counts.values()) == {group_size}, f"split groups: {prompt_counts}"
    ids_per_prompt = {prompt: {group for group, p in micro_batch if p == prompt} for prompt in prompt_counts}
    assert all(len(ids) == 1 for ids in ids_per_prompt.values()), ids_per_prompt
    assert len({next(iter(ids)) for ids in ids_per_prompt.values()}) == len(prompt_counts), ids_per_prompt


def _recording_trainer(model_dir, args, num_prompts):
    from trl_igrpo.demo.rpo_preferences import (
        build_synthetic_prompt_dataset,
        synthetic_answer_reward,
        synthetic_digit_reward,
    )
    from trl_igrpo.rpo.online_trainer import OnlineRPOTrainer

    class Recording(OnlineRPOTrainer):
        def _compute_loss(self, model, inputs):
            prompts = [
                self.processing_class.decode(ids[mask.bool()], skip_special_tokens=True)
                for ids, mask in zip(inputs["prompt_ids"], inputs["prompt_mask"], strict=True)
            ]
            self.seen.append(list(zip(inputs["rpo_group_ids"].tolist(), prompts, strict=True)))
            return super()._compute_loss(model, inputs)

    trainer = Recording(
        model=model_dir,
        reward_funcs=[synthetic_digit_reward, synthetic_answer_reward],
        args=args,
        train_dataset=build_synthetic_prompt_dataset(num_prompts),
    )
    trainer.seen = []
    return trainer


def _online_config(tmp_path, **overrides):
    from trl_igrpo.rpo.online_config import OnlineRPOConfig
    from trl_igrpo.testing import cpu_training_kwargs

    values = dict(per_device_train_batch_size=4, num_generations=2, max_completion_length=6, beta=0.1)
    return OnlineRPOConfig(output_dir=str(tmp_path), **cpu_training_kwargs(), **{**values, **overrides})


def test_config_defaults_to_one_generation_per_micro_step(tmp_path):
    config = _online_config(tmp_path, gradient_accumulation_steps=3)
    assert config.steps_per_generation == 1 and config.generation_batch_size == 4  # TRL's default: 3 and 12
    assert _online_config(tmp_path, steps_per_generation=1).steps_per_generation == 1
    assert _online_config(tmp_path, generation_batch_size=4).steps_per_generation == 1


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (
            dict(per_device_train_batch_size=2, num_generations=4),
            ["`per_device_train_batch_size` (2)", "`num_generations` (4)"],
        ),
        (dict(per_device_train_batch_size=6, num_generations=4), ["`per_device_train_batch_size` (6)", "e.g. 4"]),
        (
            dict(steps_per_generation=2),
            ["`steps_per_generation=1` (got 2, from `steps_per_generation`)", "gradient_accumulation_steps"],
        ),
        (dict(generation_batch_size=8), ["(got 2, from `generation_batch_size`)", "steps_per_generation"]),
        (
            dict(eval_strategy="steps", per_device_eval_batch_size=3),
            ["`per_device_eval_batch_size` (3)", "`num_generations` (2)"],
        ),
        (
            dict(eval_strategy="steps", per_device_eval_batch_size=4, num_generations_eval=3),
            ["`per_device_eval_batch_size` (4)", "`num_generations_eval` (3)"],
        ),
    ],
)
def test_layouts_that_split_groups_fail_at_construction_naming_the_fields(tmp_path, overrides, named):
    with pytest.raises(ValueError) as error:
        _online_config(tmp_path, **overrides)
    for text in named:
        assert text in str(error.value)


@pytest.mark.slow
def test_gradient_accumulation_micro_batches_hold_whole_groups(tiny_model_dir, tmp_path):
    """GA 2, k = 2, 4 rows per micro-batch. TRL's default layout (one generation of 8 rows, shuffled, split in 2)
    splits groups in almost every step; each micro-batch must instead hold 2 whole groups."""
    from trl_igrpo.rpo.online_config import OnlineRPOConfig
    from trl_igrpo.testing import cpu_training_kwargs

    args = OnlineRPOConfig(
        output_dir=str(tmp_path), **cpu_training_kwargs(), per_device_train_batch_size=4, num_generations=2,
        gradient_accumulation_steps=2, max_completion_length=6, max_steps=3, beta=0.1, learning_rate=1e-3, seed=0,
        rpo_loss_type=["rpo_listwise", "sft"],
    )  # fmt: skip
    assert args.steps_per_generation == 1  # chosen by OnlineRPOConfig (TRL's default would be 2 = GA)
    trainer = _recording_trainer(tiny_model_dir, args, num_prompts=12)
    trainer.train()
    assert len(trainer.seen) == 6  # 3 optimizer steps x 2 micro-batches
    for micro_batch in trainer.seen:
        assert len(micro_batch) == 4
        _assert_whole_groups(micro_batch, 2)
    # Each micro-step generates its own prompts (one epoch of 12 distinct prompts): none is split across micro-batches.
    prompts = [prompt for micro_batch in trainer.seen for prompt in {p for _, p in micro_batch}]
    assert len(prompts) == len(set(prompts)) == 12


def _worker(model_dir: str, out_dir: str) -> None:
    from trl_igrpo.rpo.online_config import OnlineRPOConfig
    from trl_igrpo.testing import cpu_training_kwargs
    from trl_igrpo.utils.distributed import end_distributed_run

    # 2 ranks x 4 rows, k = 2, GA 2. TRL's default layout would generate 8 local rows once per optimizer step and
    # split them after a shuffle; here every rank generates 2 whole groups per micro-step.
    args = OnlineRPOConfig(
        output_dir=out_dir, **cpu_training_kwargs(), per_device_train_batch_size=4, num_generations=2,
        gradient_accumulation_steps=2, max_completion_length=6, max_steps=2, beta=0.1, learning_rate=1e-3, seed=0,
    )  # fmt: skip
    trainer = _recording_trainer(model_dir, args, num_prompts=16)
    assert trainer.accelerator.num_processes == int(os.environ.get("WORLD_SIZE", 1)) == 2
    trainer.train()
    rank = trainer.accelerator.process_index
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"seen": trainer.seen}))
    end_distributed_run(trainer.accelerator)  # without it a rank can abort or hang on exit (pytorch#190489)


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.timeout(600)
def test_two_processes_each_rank_sees_whole_groups(tiny_model_dir, tmp_path):
    ranks = [rank["seen"] for rank in two_rank_results(__file__, tiny_model_dir, tmp_path)]
    for seen in ranks:
        assert len(seen) == 4  # 2 optimizer steps x 2 micro-batches
        for micro_batch in seen:
            assert len(micro_batch) == 4
            _assert_whole_groups([tuple(row) for row in micro_batch], 2)
    # One epoch of 16 distinct prompts (2 ranks x 4 micro-batches x 2 groups): no prompt's samples are split between
    # the ranks or between micro-batches.
    prompts = [prompt for seen in ranks for micro_batch in seen for prompt in {p for _, p in micro_batch}]
    assert len(prompts) == len(set(prompts)) == 16


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
