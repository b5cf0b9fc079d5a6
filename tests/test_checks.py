"""Runs that would train on garbage stop early with a message naming the problem and the fix (issue: no silent failure).

Pure checks first (no model), then the same cases through real trainers.
"""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset, IterableDataset
from helpers import varied_reward

from trl_igrpo import CurriculumGRPOConfig, CurriculumGRPOTrainer, IGRPOConfig, IGRPOTrainer, UnscorableRewardsError
from trl_igrpo.core.checks import UnscorableBatchCounter, check_dataset_fills_a_batch
from trl_igrpo.demo.arithmetic import make_arithmetic_examples
from trl_igrpo.testing import cpu_training_kwargs
from trl_igrpo.utils.context import check_context_budget

nan = float("nan")


def test_empty_and_too_small_datasets_are_refused():
    with pytest.raises(ValueError, match=r"train_dataset is empty \(0 rows\)"):
        check_dataset_fills_a_batch(Dataset.from_list([]), 2)
    with pytest.raises(ValueError, match="has 3 rows but one generation batch draws 4 distinct prompts"):
        check_dataset_fills_a_batch(Dataset.from_list([{"prompt": "q"}] * 3), 4)
    check_dataset_fills_a_batch(Dataset.from_list([{"prompt": "q"}] * 4), 4)


def test_unscorable_batches_raise_past_the_limit_and_report_the_fraction():
    counter = UnscorableBatchCounter(limit=1)
    assert counter.check(torch.tensor([[1.0, nan], [nan, nan]]), ["acc", "fmt"]) == 0.5
    assert counter.count == 0
    assert counter.check(torch.full((2, 2), nan), ["acc", "fmt"]) == 1.0  # first one tolerated
    with pytest.raises(UnscorableRewardsError) as error:
        counter.check(torch.full((3, 2), nan), ["acc", "fmt"], stage="drafts")
    message = str(error.value)
    for fragment in (
        "(acc, fmt)",
        "all 3 completions",
        "(drafts)",
        "unscorable batch 2",
        "max_unscorable_reward_batches=1",
    ):
        assert fragment in message
    with pytest.raises(ValueError, match=">= 0"):
        UnscorableBatchCounter(-1)


def test_context_budget_names_every_term():
    check_context_budget(64, 20, 24, draft_length=20)
    with pytest.raises(ValueError) as error:
        check_context_budget(64, 21, 24, draft_length=20, where="The policy's context (max_position_embeddings=64)")
    assert "max_position_embeddings=64" in str(error.value) and "prompt 21 + draft 20" in str(error.value)
    assert "= 65" in str(error.value)


# ----------------------------------------------------------------------------------------------------------------------
# Through the trainers.
def _dataset(n=8):
    return Dataset.from_list(make_arithmetic_examples(n, seed=0))


def _igrpo_args(tmp_path, **overrides):
    settings = dict(per_device_train_batch_size=4, num_drafts=2, num_generations=2, max_completion_length=8)
    return IGRPOConfig(output_dir=str(tmp_path), **cpu_training_kwargs(max_steps=2), **{**settings, **overrides})


def none_reward(completions, **kwargs):
    return [None] * len(completions)


def nan_reward(completions, **kwargs):
    return [math.nan] * len(completions)


@pytest.mark.parametrize("trainer_cls", [IGRPOTrainer, CurriculumGRPOTrainer])
def test_empty_dataset_fails_at_construction(tiny_model_dir, tmp_path, trainer_cls):
    args = (
        _igrpo_args(tmp_path)
        if trainer_cls is IGRPOTrainer
        else CurriculumGRPOConfig(
            output_dir=str(tmp_path), **cpu_training_kwargs(), per_device_train_batch_size=4, num_generations=2
        )
    )
    empty = Dataset.from_dict({"prompt": [], "solution": []})
    with pytest.raises(ValueError, match="empty"):
        trainer_cls(model=tiny_model_dir, reward_funcs=[varied_reward], args=args, train_dataset=empty)
    with pytest.raises(ValueError, match="one generation batch draws 2 distinct prompts"):
        trainer_cls(model=tiny_model_dir, reward_funcs=[varied_reward], args=args, train_dataset=_dataset(1))


@pytest.mark.slow
def test_an_iterable_dataset_that_yields_nothing_fails_at_the_end(tiny_model_dir, tmp_path):
    empty = IterableDataset.from_generator(lambda: iter(()), features=_dataset(2).features)
    trainer = IGRPOTrainer(
        model=tiny_model_dir, reward_funcs=[varied_reward], args=_igrpo_args(tmp_path), train_dataset=empty
    )
    with pytest.raises(RuntimeError, match="without a single optimizer step"):
        trainer.train()


@pytest.mark.slow
@pytest.mark.parametrize("bad_reward", [none_reward, nan_reward])
def test_a_batch_no_reward_can_score_stops_before_the_update(tiny_model_dir, tmp_path, bad_reward):
    trainer = IGRPOTrainer(
        model=tiny_model_dir, reward_funcs=[bad_reward], args=_igrpo_args(tmp_path), train_dataset=_dataset()
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    with pytest.raises(UnscorableRewardsError, match=rf"\({bad_reward.__name__}\).*drafts"):
        trainer.train()
    assert all(torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
    assert trainer.state.global_step == 0


@pytest.mark.slow
def test_tolerated_unscorable_batches_are_counted_and_logged(tiny_model_dir, tmp_path):
    calls = {"n": 0}

    def broken_for_one_step(completions, **kwargs):
        calls["n"] += 1
        return [None] * len(completions) if calls["n"] == 3 else [float(i % 2) for i in range(len(completions))]

    args = _igrpo_args(tmp_path, max_unscorable_reward_batches=1)
    trainer = IGRPOTrainer(
        model=tiny_model_dir, reward_funcs=[broken_for_one_step], args=args, train_dataset=_dataset()
    )
    trainer.train()  # call 3 = step 2's drafts: tolerated
    logged = [
        entry["rewards/unscorable_batches"]
        for entry in trainer.state.log_history
        if "rewards/unscorable_batches" in entry
    ]
    assert logged == [0.0, 1.0]
    drafts_fraction = [
        e["rewards/drafts/unscorable_frac"] for e in trainer.state.log_history if "rewards/drafts/unscorable_frac" in e
    ]
    assert drafts_fraction == [0.0, 1.0]


@pytest.mark.slow
def test_prompts_beyond_the_model_context_fail_at_construction_and_per_batch(tiny_model_dir, tmp_path):
    long_prompt = [{"role": "user", "content": "What is " + " + ".join(["1"] * 60) + "?"}]
    rows = [{"prompt": long_prompt, "solution": "60"}] * 4
    # construction: the longest prompt + draft + completion does not fit a 64-token context
    with pytest.raises(ValueError) as error:
        IGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=[varied_reward],
            args=_igrpo_args(tmp_path, context_length=64),
            train_dataset=Dataset.from_list(rows),
        )
    message = str(error.value)
    assert "context_length=64" in message and "draft" in message and "max_completion_length" in message
    # per batch: rows beyond the first 2048 (here: a refill the construction check could not see) are checked too
    trainer = IGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=[varied_reward],
        args=_igrpo_args(tmp_path, context_length=2048),
        train_dataset=_dataset(),
    )
    trainer.context_length = 40
    with pytest.raises(ValueError, match=r"context_length=40\) holds 40 tokens but a rollout needs prompt"):
        trainer._generate_and_score_completions([row for row in rows[:2] for _ in range(2)])


@pytest.mark.parametrize("trainer", ["igrpo", "rpo"])
def test_a_missing_model_directory_is_named_in_one_line(tmp_path, trainer):
    from trl_igrpo import RPOConfig, RPOTrainer

    missing = str(tmp_path / "no-such-checkpoint")
    with pytest.raises(FileNotFoundError) as error:
        if trainer == "igrpo":
            IGRPOTrainer(
                model=missing, reward_funcs=[varied_reward], args=_igrpo_args(tmp_path), train_dataset=_dataset()
            )
        else:
            RPOTrainer(
                model=missing,
                args=RPOConfig(output_dir=str(tmp_path), **cpu_training_kwargs()),
                train_dataset=_dataset(),
            )
    message = str(error.value)
    assert f"model path {missing!r} does not exist" in message and "\n" not in message
