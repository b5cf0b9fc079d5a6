"""Stage 1 is one seam: the rollout asks its draft source once for the drafts of a batch, ranks what the source
returns with the training rewards, and conditions Stage 2 on the chosen draft's text. A source that returns whole
trajectories (a tool call, its result, the answer), as a multi-turn Stage 1 would, plugs in without touching the
trainer."""

from __future__ import annotations

import pytest
from datasets import Dataset

from trl_igrpo import IGRPOConfig, IGRPOTrainer
from trl_igrpo.igrpo.draft_source import Drafts, DraftSource, draft_prompts
from trl_igrpo.testing import cpu_training_kwargs


def _trajectory(prompt_index: int, draft_index: int) -> list[dict]:
    call = {"type": "function", "function": {"name": "add", "arguments": {"x": draft_index}}}
    return [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "name": "add", "content": str(draft_index)},
        {"role": "assistant", "content": f"ANSWER-{prompt_index}-{draft_index}"},
    ]


class TrajectoryDrafts(DraftSource):
    """N scripted trajectories per prompt; q' gets a one-line rendering of each."""

    def __init__(self, trainer) -> None:
        super().__init__(trainer)
        self.asked: list[int] = []

    def drafts(self, prompt_rows, training):
        self.asked.append(len(prompt_rows))
        num_drafts = self.trainer.args.num_drafts
        pairs = [(i, j) for i in range(len(prompt_rows)) for j in range(num_drafts)]
        ids = [[7, 8, 9]] * len(pairs)
        return Drafts(
            prompts=draft_prompts(prompt_rows, num_drafts),
            prompt_ids=ids,
            completion_ids=ids,
            completions=[_trajectory(i, j) for i, j in pairs],
            texts=[f"add({j}) returned {j}; ANSWER-{i}-{j}" for i, j in pairs],
        )


@pytest.mark.slow
def test_a_draft_source_of_trajectories_is_asked_once_ranked_by_its_completions_and_conditions_stage2(
    tiny_model_dir, tmp_path
):
    seen_by_stage1 = []

    def tool_result_reward(completions, **kwargs):
        if "draft" in kwargs:  # Stage 2 rows carry the draft column
            return [1.0] * len(completions)
        seen_by_stage1.extend(completions)
        return [float(completion[1]["content"]) for completion in completions]  # the tool's result

    rows = [{"prompt": [{"role": "user", "content": f"Add {i}."}]} for i in range(8)]
    args = IGRPOConfig(
        output_dir=str(tmp_path), **cpu_training_kwargs(), per_device_train_batch_size=4, num_drafts=3,
        num_generations=2, max_completion_length=8, max_steps=1,
    )  # fmt: skip
    trainer = IGRPOTrainer(
        model=tiny_model_dir, reward_funcs=[tool_result_reward], args=args, train_dataset=Dataset.from_list(rows)
    )
    trainer.draft_source = source = TrajectoryDrafts(trainer)
    stage2_prompts = []
    eos = trainer.processing_class.eos_token_id

    def stage2_generation(prompt_ids, images, multimodal_fields, num_generations, **kwargs):
        stage2_prompts.extend(trainer.processing_class.decode(ids) for ids in prompt_ids)
        return [[eos]] * len(prompt_ids), None

    trainer._generate_single_turn = stage2_generation  # the test source never generates; Stage 2 is scripted
    trainer.model.train()
    trainer._generate_and_score_completions([row for row in rows[:2] for _ in range(2)])

    assert source.asked == [2]  # one question per rollout, one row per prompt group
    assert seen_by_stage1 == [_trajectory(i, j) for i in range(2) for j in range(3)]  # whole trajectories
    assert len(stage2_prompts) == 4
    for index, prompt in enumerate(stage2_prompts):  # the best trajectory (tool result 2) of each prompt
        group = index // 2
        assert f"add(2) returned 2; ANSWER-{group}-2" in prompt
        assert f"ANSWER-{group}-0" not in prompt and f"ANSWER-{group}-1" not in prompt
