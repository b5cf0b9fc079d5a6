"""Dynamic sampling (drop constant-reward groups, refill) and progressive batching inside a real GRPO training loop."""

import math

import pytest
import torch
from datasets import Dataset

from trl_igrpo.curriculum import informative_group_mask, merge_rollout_outputs, plan_row_selection
from trl_igrpo.grpo import CurriculumGRPOConfig, CurriculumGRPOTrainer
from trl_igrpo.testing import cpu_training_kwargs

NAN = math.nan


def test_informative_groups_sum_then_normalize_uses_weighted_sum_and_ignores_unscorable():
    rewards = torch.tensor(
        [
            [1.0, 0.0], [1.0, 0.0],  # constant                                  -> dropped
            [1.0, 0.0], [0.0, 1.0],  # functions vary but weighted sum 1 = 1      -> dropped
            [1.0, NAN], [0.0, NAN],  # varies                                    -> kept
            [NAN, NAN], [1.0, 0.0],  # one scorable row only                       -> dropped
            [0.5, 0.0], [0.5, 0.2],  # varies through the second function          -> kept
        ]
    )  # fmt: skip
    mask = informative_group_mask(rewards, torch.tensor([1.0, 1.0]), 2, "sum_then_normalize")
    assert mask.tolist() == [False, False, True, False, True]
    gdpo = informative_group_mask(rewards, torch.tensor([1.0, 1.0]), 2, "normalize_then_sum")
    assert gdpo.tolist() == [False, True, True, False, True]  # GDPO normalises each function: group 1 has signal
    with pytest.raises(ValueError, match="groups of 3"):
        informative_group_mask(rewards, torch.ones(2), 3)


def test_plan_row_selection_prefers_kept_rows_then_fillers():
    keep_round_0 = torch.tensor([True, True, False, False])
    keep_round_1 = torch.tensor([False, True, True, True])
    selections, fillers = plan_row_selection([keep_round_0, keep_round_1], 4)
    assert [s.tolist() for s in selections] == [[0, 1], [1, 2]] and not torch.cat(fillers).any()
    selections, fillers = plan_row_selection([keep_round_0, torch.tensor([False, False, False, True])], 4)
    assert [s.tolist() for s in selections] == [[0, 1, 2], [3]]
    assert [f.tolist() for f in fillers] == [[False, False, True], [False]]


def test_merge_pads_prompts_left_and_completions_right():
    round_a = {
        "prompt_ids": torch.tensor([[5, 6], [7, 8]]),
        "prompt_mask": torch.ones(2, 2, dtype=torch.long),
        "completion_ids": torch.tensor([[1, 2, 3], [4, 0, 0]]),
        "completion_mask": torch.tensor([[1, 1, 1], [1, 0, 0]]),
        "old_per_token_logps": torch.full((2, 3), -1.0),
        "advantages": torch.tensor([0.5, -0.5]),
        "num_items_in_batch": torch.tensor(4),
    }
    round_b = {
        "prompt_ids": torch.tensor([[9, 9, 9]]),
        "prompt_mask": torch.ones(1, 3, dtype=torch.long),
        "completion_ids": torch.tensor([[2]]),
        "completion_mask": torch.tensor([[1]]),
        "old_per_token_logps": torch.full((1, 1), -2.0),
        "advantages": torch.tensor([1.0]),
        "num_items_in_batch": torch.tensor(1),
    }
    merged = merge_rollout_outputs([round_a, round_b], [torch.tensor([1]), torch.tensor([0])], pad_token_id=0)
    assert merged["prompt_ids"].tolist() == [[0, 7, 8], [9, 9, 9]]
    assert merged["prompt_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert merged["completion_ids"].tolist() == [[4, 0, 0], [2, 0, 0]]
    assert merged["completion_mask"].tolist() == [[1, 0, 0], [1, 0, 0]]
    assert merged["old_per_token_logps"].tolist() == [[-1.0, -1.0, -1.0], [-2.0, 0.0, 0.0]]
    assert merged["advantages"].tolist() == [-0.5, 1.0]
    assert "num_items_in_batch" not in merged
    with pytest.raises(NotImplementedError, match="pixel_values"):
        merge_rollout_outputs([{**round_a, "pixel_values": torch.zeros(2, 3)}], [torch.tensor([0])], 0)


def _config(tmp_path, **overrides):
    base = dict(
        output_dir=str(tmp_path),
        **cpu_training_kwargs(),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        learning_rate=1e-2,
        seed=0,
    )
    base.update(overrides)
    return CurriculumGRPOConfig(**base)


def _prompts_dataset():
    prompts = [f"const {i}: say hi" for i in range(6)] + [f"vary {i}: say hi" for i in range(6)]
    return Dataset.from_dict({"prompt": prompts, "pass_rate": [0.625] * 6 + [0.0] * 6})


def group_position_reward(prompts, completions, **kwargs):
    """Constant 1.0 for 'const' prompts; 0, 1, 0, 1 ... (so every group of 2 varies) for the others."""
    return [1.0 if p.startswith("const") else float(i % 2) for i, p in enumerate(prompts)]


class LossRecordingTrainer(CurriculumGRPOTrainer):
    """Records, for every loss computation, the prompt text of each row that has completion tokens in the loss."""

    def _compute_loss(self, model, inputs):
        tokenizer = self.processing_class
        for ids, p_mask, c_mask in zip(inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_mask"]):
            if c_mask.sum() > 0:
                self.loss_prompts.append(tokenizer.decode(ids[p_mask.bool()], skip_special_tokens=True))
            else:
                self.masked_rows += 1
        return super()._compute_loss(model, inputs)


@pytest.mark.slow
def test_constant_groups_never_reach_the_loss_and_batches_are_refilled(tiny_model_dir, tmp_path):
    config = _config(tmp_path, max_steps=4, dynamic_sampling=True, dynamic_sampling_max_extra_rounds=6)
    trainer = LossRecordingTrainer(
        model=tiny_model_dir, reward_funcs=group_position_reward, args=config, train_dataset=_prompts_dataset()
    )
    trainer.loss_prompts, trainer.masked_rows = [], 0
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert len(trainer.loss_prompts) == 4 * 4  # every step trains on a full batch of 4 rows
    assert trainer.masked_rows == 0
    assert all(p.startswith("vary") for p in trainer.loss_prompts), trainer.loss_prompts
    logs = [entry for entry in trainer.state.log_history if "dynamic_sampling/rounds" in entry]
    assert len(logs) == 4
    dropped = [entry["dynamic_sampling/dropped_fraction"] for entry in logs]
    rounds = [entry["dynamic_sampling/rounds"] for entry in logs]
    assert any(d > 0 for d in dropped) and any(r > 1 for r in rounds)
    assert all(entry["dynamic_sampling/masked_fraction"] == 0 for entry in logs)
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


@pytest.mark.slow
def test_shortfall_masks_fillers_or_raises(tiny_model_dir, tmp_path):
    only_constant = Dataset.from_dict({"prompt": [f"const {i}: hi" for i in range(4)]})
    config = _config(tmp_path, max_steps=1, dynamic_sampling=True, dynamic_sampling_max_extra_rounds=1)
    trainer = LossRecordingTrainer(
        model=tiny_model_dir, reward_funcs=group_position_reward, args=config, train_dataset=only_constant
    )
    trainer.loss_prompts, trainer.masked_rows = [], 0
    trainer.train()
    assert trainer.loss_prompts == [] and trainer.masked_rows == 4
    log = next(entry for entry in trainer.state.log_history if "dynamic_sampling/rounds" in entry)
    assert log["dynamic_sampling/rounds"] == 2 and log["dynamic_sampling/dropped_fraction"] == 1.0
    assert log["dynamic_sampling/masked_fraction"] == 1.0

    config = _config(tmp_path, max_steps=1, dynamic_sampling=True, dynamic_sampling_max_extra_rounds=1,
                     dynamic_sampling_shortfall="raise")  # fmt: skip
    trainer = CurriculumGRPOTrainer(
        model=tiny_model_dir, reward_funcs=group_position_reward, args=config, train_dataset=only_constant
    )
    with pytest.raises(RuntimeError, match="dynamic_sampling_max_extra_rounds"):
        trainer.train()


class PromptRecorder:
    __name__ = "prompt_recorder"

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, completions, trainer_state=None, **kwargs):
        self.calls.append((trainer_state.global_step, list(prompts)))
        return [float(i % 2) for i in range(len(prompts))]


@pytest.mark.slow
def test_progressive_batching_in_trainer_is_easy_first_and_resumes_identically(tiny_model_dir, tmp_path):
    prompts = [f"q{i}" for i in range(16)]
    rates = [0.625 - 0.625 * (i // 4) / 3 for i in range(16)]  # four bins: 5/8, ~0.42, ~0.21, 0
    dataset = Dataset.from_dict({"prompt": prompts, "pass_rate": rates})
    rate_of = dict(zip(prompts, rates))

    def run(output_dir, resume=None, max_steps=4):
        recorder = PromptRecorder()
        config = _config(output_dir, max_steps=max_steps, progressive_batching=True, curriculum_sigma=0.1,
                         save_strategy="steps", save_steps=2, remove_unused_columns=True)  # fmt: skip
        trainer = CurriculumGRPOTrainer(
            model=tiny_model_dir, reward_funcs=recorder, args=config, train_dataset=dataset
        )
        trainer.train(resume_from_checkpoint=resume)
        return recorder.calls

    full = run(tmp_path / "full")
    assert len(full) == 4
    batch_means = [sum(rate_of[p] for p in batch) / len(batch) for _, batch in full]
    assert batch_means == sorted(batch_means, reverse=True) and batch_means[0] > batch_means[-1] + 0.3
    interrupted = tmp_path / "interrupted"
    run(interrupted, max_steps=2)
    resumed = run(interrupted, resume=str(interrupted / "checkpoint-2"))
    assert [batch for _, batch in resumed] == [batch for _, batch in full[2:]]


def test_progressive_batching_without_column_fails_before_training(tiny_model_dir, tmp_path):
    dataset = Dataset.from_dict({"prompt": ["a", "b"]})
    with pytest.raises(ValueError, match="'pass_rate'"):
        CurriculumGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=group_position_reward,
            args=_config(tmp_path, progressive_batching=True),
            train_dataset=dataset,
        )
