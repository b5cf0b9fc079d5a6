"""Dynamic sampling composed with iGRPO: constant-reward groups never reach the loss and the batch is refilled."""

import random

import pytest
from datasets import Dataset

from trl_igrpo import IGRPOConfig, IGRPOTrainer
from trl_igrpo.testing import cpu_training_kwargs


@pytest.mark.slow
def test_constant_groups_are_dropped_and_refilled(tiny_model_dir, tmp_path):
    rows = [{"prompt": f"const question {i}", "kind": "const"} for i in range(8)]
    rows += [{"prompt": f"varied question {i}", "kind": "varied"} for i in range(8)]
    rng = random.Random(0)

    def reward(completions, kind, **kwargs):
        return [1.0 if k == "const" else rng.random() for k in kind]

    loss_rows = []

    class Recording(IGRPOTrainer):
        def _compute_loss(self, model, inputs):
            for ids, p_mask, c_mask in zip(inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_mask"]):
                if c_mask.sum() > 0:
                    loss_rows.append(self.processing_class.decode(ids[p_mask.bool()], skip_special_tokens=True))
            return super()._compute_loss(model, inputs)

    args = IGRPOConfig(
        output_dir=str(tmp_path), **cpu_training_kwargs(), per_device_train_batch_size=4, num_drafts=2,
        num_generations=2, max_completion_length=6, max_steps=3, seed=0, dynamic_sampling=True,
        dynamic_sampling_max_extra_rounds=6,
    )  # fmt: skip
    trainer = Recording(model=tiny_model_dir, reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(rows))
    trainer.train()
    assert loss_rows, "nothing reached the loss"
    # Stage-2 prompts embed the original prompt: none of the trained rows comes from a constant-reward prompt.
    assert all("const question" not in text for text in loss_rows)
    assert all("varied question" in text for text in loss_rows)
    logs = [e for e in trainer.state.log_history if any(k.startswith("dynamic_sampling/") for k in e)]
    assert logs and any(v > 0 for e in logs for k, v in e.items() if "dropped" in k)
    assert "igrpo/best_draft_reward_mean" in logs[0]
