"""Draft prefetching (``IGRPOConfig(prefetch_drafts=True)``): the next batch's drafts ride along in the current
Stage-2 generation call, are one optimizer step old when used, survive a resume, and leave the default untouched."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from datasets import Dataset
from helpers import snapshot_trainable, two_rank_results, unchanged_parameters, varied_reward

from trl_igrpo import IGRPOConfig, IGRPOTrainer
from trl_igrpo.demo.arithmetic import make_arithmetic_examples
from trl_igrpo.igrpo.draft_source import DraftSource
from trl_igrpo.igrpo.prefetch import DataLookahead, batch_fingerprint
from trl_igrpo.testing import cpu_training_kwargs


def _args(tmp_path, **overrides):
    settings = dict(per_device_train_batch_size=4, num_drafts=2, num_generations=2, max_completion_length=8)
    settings["max_steps"] = overrides.pop("max_steps", 3)
    return IGRPOConfig(
        output_dir=str(tmp_path), **cpu_training_kwargs(learning_rate=1e-2, seed=0, **settings, **overrides)
    )


def _dataset(n=32):
    return Dataset.from_list(make_arithmetic_examples(n, seed=3))


def test_lookahead_hands_out_what_is_asked_and_finds_the_next_generation_batch():
    stream = iter([["a"], ["b"], ["c"], ["d"], ["e"]])
    lookahead = DataLookahead(distance=2)
    first = lookahead.take(stream, 2)
    assert first == [["a"], ["b"]] and lookahead.buffer == [["c"], ["d"]]
    assert lookahead.next_generation_batch(first[0]) == ["c"]  # two micro-batches later
    assert lookahead.next_generation_batch(["z"]) is None  # not from this stream (e.g. a dynamic-sampling refill)
    second = lookahead.take(stream, 2)
    assert second == [["c"], ["d"]] and lookahead.buffer == [["e"]]
    assert lookahead.next_generation_batch(second[0]) == ["e"]
    assert lookahead.next_generation_batch(second[1]) is None  # past the end of the epoch
    assert lookahead.take(iter([["x"]]), 1) == [["x"]]  # a new epoch iterator starts over


def test_lookahead_finds_the_successor_of_every_batch_an_optimizer_step_fetches():
    """Gradient accumulation 4 with a generation every micro-batch (distance 1): each of the 4 has its successor."""
    stream = iter([[name] for name in "abcdefghij"])
    lookahead = DataLookahead(distance=1)
    for expected in ("abcd", "efgh"):
        batches = lookahead.take(stream, 4)
        assert [b[0] for b in batches] == list(expected)
        successors = [lookahead.next_generation_batch(b) for b in batches]
        assert [s[0] for s in successors] == [chr(ord(c) + 1) for c in expected]


def test_fingerprint_depends_on_every_column():
    rows = [{"prompt": "q", "solution": "1"}]
    assert batch_fingerprint(rows) == batch_fingerprint([dict(rows[0])])
    assert batch_fingerprint(rows) != batch_fingerprint([{"prompt": "q", "solution": "2"}])


def test_prefetch_refuses_drafts_longer_than_the_shared_generation_call(tmp_path):
    with pytest.raises(ValueError, match="max_draft_length .* cannot exceed"):
        _args(tmp_path, prefetch_drafts=True, max_draft_length=16)


@pytest.mark.slow
def test_next_batch_drafts_ride_along_and_are_one_step_old(tiny_model_dir, tmp_path):
    trainer = IGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=[varied_reward],
        args=_args(tmp_path, prefetch_drafts=True, max_steps=4),
        train_dataset=_dataset(),
    )
    calls, used = [], []
    rollout = trainer._rollout

    def record_rollout(inputs):
        rows = inputs[:: trainer.num_generations]
        prompts = [row["prompt"] for row in rows for _ in range(trainer.args.num_drafts)]
        ids, _, _ = trainer._tokenize_prompts(prompts)
        used.append({"step": trainer.state.global_step, "draft_prompt_ids": ids})
        return rollout(inputs)

    generate = trainer._generate_single_turn

    def record_generate(prompt_ids, *args, **kwargs):
        ride_along = trainer.draft_source.ride_along
        riders = ride_along["prompt_ids"] if ride_along else []
        calls.append({"step": trainer.state.global_step, "riders": riders})
        return generate(prompt_ids, *args, **kwargs)

    trainer._rollout, trainer._generate_single_turn = record_rollout, record_generate
    trainer.train()
    lags = [
        entry["igrpo/draft_policy_lag"] for entry in trainer.state.log_history if "igrpo/draft_policy_lag" in entry
    ]
    assert lags == [0.0, 1.0, 1.0, 1.0]  # step 0 samples its drafts itself; every later step uses prefetched ones
    assert [call["step"] for call in calls] == [0, 0, 1, 2, 3]  # one generation call per step after the first
    for step in range(3):  # the drafts a step conditions on were sampled in the previous step's generation call
        rider = next(call["riders"] for call in calls if call["step"] == step and call["riders"])
        assert rider == used[step + 1]["draft_prompt_ids"]


@pytest.mark.slow
def test_prefetch_off_is_the_default_and_changes_nothing(tiny_model_dir, tmp_path):
    weights = []
    for overrides in ({}, {"prefetch_drafts": False}):
        trainer = IGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=[varied_reward],
            args=_args(tmp_path / str(len(weights)), **overrides),
            train_dataset=_dataset(),
        )
        assert type(trainer.draft_source) is DraftSource  # samples on demand: no prefetch state at all
        trainer.train()
        assert not any("igrpo/draft_policy_lag" in entry for entry in trainer.state.log_history)
        weights.append(snapshot_trainable(trainer.model))
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


@pytest.mark.slow
def test_resume_restores_the_prefetched_drafts(tiny_model_dir, tmp_path):
    def run(output_dir, max_steps, resume=False):
        args = _args(  # a constant learning rate, so the interrupted run (max_steps=2) follows the same schedule
            output_dir,
            prefetch_drafts=True,
            max_steps=max_steps,
            save_strategy="steps",
            save_steps=2,
            lr_scheduler_type="constant",
        )
        trainer = IGRPOTrainer(model=tiny_model_dir, reward_funcs=[varied_reward], args=args, train_dataset=_dataset())
        trainer.train(resume_from_checkpoint=resume or None)
        return trainer

    straight = run(tmp_path / "straight", 4)
    interrupted = run(tmp_path / "resumed", 2)
    assert (tmp_path / "resumed" / "checkpoint-2" / "igrpo_prefetched_drafts_rank0.json").is_file()
    resumed = run(tmp_path / "resumed", 4, resume=True)
    lags = [e["igrpo/draft_policy_lag"] for e in resumed.state.log_history if "igrpo/draft_policy_lag" in e]
    assert lags[-2:] == [1.0, 1.0]  # the first resumed step used the saved drafts, not fresh ones
    assert interrupted.state.global_step == 2 and resumed.state.global_step == 4
    before, after = snapshot_trainable(straight.model), snapshot_trainable(resumed.model)
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "expected_lag"),
    [
        ({"steps_per_generation": 2, "gradient_accumulation_steps": 2}, 1.0),  # one generation per optimizer step
        ({"steps_per_generation": 2}, 2.0),  # a generation every 2 optimizer steps: drafts are 2 updates old
        ({"dynamic_sampling": True, "dynamic_sampling_max_extra_rounds": 2}, 1.0),
    ],
)
def test_prefetch_with_other_batch_layouts(tiny_model_dir, tmp_path, overrides, expected_lag):
    trainer = IGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=[varied_reward],
        args=_args(tmp_path, prefetch_drafts=True, max_steps=4, **overrides),
        train_dataset=_dataset(64),
    )
    before = snapshot_trainable(trainer.model)
    trainer.train()
    lags = [e["igrpo/draft_policy_lag"] for e in trainer.state.log_history if "igrpo/draft_policy_lag" in e]
    assert lags[0] == 0.0 and expected_lag in lags[1:] and set(lags[1:]) <= {0.0, expected_lag}
    assert unchanged_parameters(trainer.model, before) == []


@pytest.mark.slow
@pytest.mark.parametrize("accumulation", [1, 2, 4])
def test_every_rollout_after_the_first_uses_prefetched_drafts_for_any_accumulation(
    tiny_model_dir, tmp_path, accumulation
):
    """Issue #25 item 5: with gradient_accumulation_steps > steps_per_generation * num_iterations an optimizer step
    generates several times; each generation must find (and ride along) the drafts of the next one."""
    trainer = IGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=[varied_reward],
        args=_args(
            tmp_path,
            prefetch_drafts=True,
            max_steps=2,
            steps_per_generation=1,
            gradient_accumulation_steps=accumulation,
        ),
        train_dataset=_dataset(),
    )
    used = []
    take = trainer.draft_source.take_pending

    def record(prompt_rows):
        pending = take(prompt_rows)
        used.append(pending is not None)
        return pending

    trainer.draft_source.take_pending = record
    trainer.train()
    assert len(used) == 2 * accumulation  # one rollout per micro-batch
    assert used == [False] + [True] * (2 * accumulation - 1)  # only the first rollout samples its own drafts


def _worker(model_dir: str, out_dir: str) -> None:
    from trl_igrpo.utils.distributed import end_distributed_run

    trainer = IGRPOTrainer(
        model=model_dir,
        reward_funcs=[varied_reward],
        args=_args(out_dir, prefetch_drafts=True, max_steps=3),
        train_dataset=_dataset(),
    )
    trainer.train()
    lags = [e["igrpo/draft_policy_lag"] for e in trainer.state.log_history if "igrpo/draft_policy_lag" in e]
    total = sum(float(p.detach().double().sum()) for p in trainer.model.parameters())
    rank = trainer.accelerator.process_index
    with open(f"{out_dir}/rank{rank}.json", "w") as handle:
        json.dump({"lags": lags, "total": total}, handle)
    end_distributed_run(trainer.accelerator)


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.timeout(600)
def test_two_processes_prefetch_together(tiny_model_dir, tmp_path):
    ranks = two_rank_results(__file__, tiny_model_dir, tmp_path)
    assert ranks[0]["lags"] == ranks[1]["lags"] == [0.0, 1.0, 1.0]
    assert ranks[0]["total"] == ranks[1]["total"]


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
