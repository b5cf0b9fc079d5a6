"""RPOTrainer / OnlineRPOTrainer on the offline tiny model: construction errors, special cases, training steps."""

import math

import pytest
import torch
from datasets import Dataset
from helpers import snapshot_trainable, unchanged_parameters
from trl import DPOConfig, DPOTrainer

from trl_igrpo.demo.rpo_preferences import (
    build_synthetic_preference_dataset,
    build_synthetic_prompt_dataset,
    synthetic_answer_reward,
    synthetic_digit_reward,
)
from trl_igrpo.rpo import DataCollatorForRPO, RPOTrainer
from trl_igrpo.rpo.config import RPOConfig
from trl_igrpo.rpo.online_config import OnlineRPOConfig
from trl_igrpo.rpo.online_trainer import OnlineRPOTrainer
from trl_igrpo.testing import cpu_training_kwargs

CPU = cpu_training_kwargs()
OFFLINE = dict(CPU, max_length=64, per_device_train_batch_size=4, learning_rate=1e-3)


def _config(tmp_path, **overrides):
    return RPOConfig(output_dir=str(tmp_path), **{**OFFLINE, **overrides})


def _train_and_assert_all_params_change(trainer):
    before = snapshot_trainable(trainer.model)
    trainer.train()
    unchanged = unchanged_parameters(trainer.model, before)
    assert not unchanged, f"parameters did not change: {unchanged}"
    return trainer.state.log_history


# --- config and construction errors (no training) -------------------------------------------------------------------


def test_config_defaults_and_validation(tmp_path):
    config = RPOConfig(output_dir=str(tmp_path), **CPU)
    assert config.loss_type == ["rpo_bwd_kl"] and config.beta == 0.2 and config.eta == 1.0
    with pytest.raises(ValueError, match="rpo_alpha"):
        RPOConfig(output_dir=str(tmp_path), loss_type=["hinge"], **CPU)
    with pytest.raises(ValueError, match="eta"):
        RPOConfig(output_dir=str(tmp_path), eta=-1.0, **CPU)
    rounds = RPOConfig(output_dir=str(tmp_path), rpo_round_steps=7, **CPU)
    assert rounds.sync_ref_model and rounds.ref_model_mixup_alpha == 1.0 and rounds.ref_model_sync_steps == 7
    online = OnlineRPOConfig(output_dir=str(tmp_path), **CPU)
    assert (online.beta, online.eta, online.learning_rate) == (1e-5, 3.0, 4e-7)


@pytest.mark.parametrize("column", ["chosen_reward", "rejected_reward"])
def test_missing_reward_column_fails_at_construction(tiny_model_dir, tmp_path, column):
    dataset = build_synthetic_preference_dataset(8).remove_columns(column)
    with pytest.raises(ValueError, match=f"no reward column '{column}'"):
        RPOTrainer(model=tiny_model_dir, args=_config(tmp_path), train_dataset=dataset)


def test_nan_reward_fails_at_construction_naming_column(tiny_model_dir, tmp_path):
    rows = build_synthetic_preference_dataset(8).to_list()
    rows[3]["rejected_reward"] = math.nan
    with pytest.raises(ValueError, match=r"reward column 'rejected_reward'.*rows \[3\]"):
        RPOTrainer(model=tiny_model_dir, args=_config(tmp_path), train_dataset=Dataset.from_list(rows))


def test_custom_reward_column_names_and_k_response_bad_rewards(tiny_model_dir, tmp_path):
    dataset = build_synthetic_preference_dataset(8).rename_columns({"chosen_reward": "score_a"})
    trainer = RPOTrainer(
        model=tiny_model_dir, args=_config(tmp_path, chosen_reward_column="score_a"), train_dataset=dataset
    )
    assert [pair[0] for pair in trainer.train_dataset["rpo_rewards"]] == dataset["score_a"]
    rows = build_synthetic_preference_dataset(4, num_responses=3).to_list()
    rows[1]["rewards"] = [0.0, None, 1.0]
    with pytest.raises(ValueError, match="column 'rewards' row 1"):
        RPOTrainer(model=tiny_model_dir, args=_config(tmp_path), train_dataset=Dataset.from_list(rows))


def test_rewards_from_reward_functions_when_columns_absent(tiny_model_dir, tmp_path):
    dataset = build_synthetic_preference_dataset(8, with_rewards=False)
    trainer = RPOTrainer(
        model=tiny_model_dir, args=_config(tmp_path), train_dataset=dataset, reward_funcs=synthetic_answer_reward
    )
    expected = build_synthetic_preference_dataset(8)
    stored = trainer.train_dataset["rpo_rewards"]
    assert stored == [[c, r] for c, r in zip(expected["chosen_reward"], expected["rejected_reward"])]


def test_k_response_collator_layout():
    collator = DataCollatorForRPO(pad_token_id=0)
    batch = collator(
        [
            {"prompt_ids": [1, 2], "rpo_responses_ids": [[3], [4, 5], [6]], "rpo_rewards": [0.0, 1.0, 2.0]},
            {"prompt_ids": [7], "rpo_responses_ids": [[8], [9], [10, 11]], "rpo_rewards": [3.0, 4.0, 5.0]},
        ]
    )
    assert batch["input_ids"].tolist() == [
        [1, 2, 3, 0],
        [7, 8, 0, 0],
        [1, 2, 4, 5],
        [7, 9, 0, 0],
        [1, 2, 6, 0],
        [7, 10, 11, 0],
    ]
    assert batch["completion_mask"][2].tolist() == [0, 0, 1, 1]
    assert batch["rpo_rewards"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    with pytest.raises(ValueError, match="Non-finite"):
        collator([{"prompt_ids": [1], "rpo_responses_ids": [[2], [3]], "rpo_rewards": [0.0, math.nan]}])


# --- special cases on the real model -------------------------------------------------------------------------------


def test_trainer_bwd_kl_with_huge_reward_gap_equals_trl_dpo_loss(tiny_model_dir, tmp_path):
    """Same model, same batch: RPOTrainer's rpo_bwd_kl with eta * reward gap -> inf equals DPOTrainer's sigmoid loss."""
    rows = build_synthetic_preference_dataset(4).to_list()
    for row in rows:
        row["chosen_reward"], row["rejected_reward"] = 1e6, 0.0
    dataset = Dataset.from_list(rows)
    dpo = DPOTrainer(
        model=tiny_model_dir,
        args=DPOConfig(output_dir=str(tmp_path / "dpo"), beta=0.5, **{**OFFLINE, "learning_rate": 1e-6}),
        train_dataset=dataset,
    )
    rpo = RPOTrainer(model=tiny_model_dir, args=_config(tmp_path / "rpo", beta=0.5), train_dataset=dataset)
    # Make the policy differ from the reference so the loss is not log 2.
    with torch.no_grad():
        for trainer in (dpo, rpo):
            for p in trainer.model.parameters():
                p.add_(torch.sin(torch.arange(p.numel(), dtype=p.dtype)).view_as(p) * 0.02)
    batch_dpo = next(iter(dpo.get_train_dataloader()))
    batch_rpo = next(iter(rpo.get_train_dataloader()))
    assert torch.equal(batch_dpo["input_ids"], batch_rpo["input_ids"])
    with torch.no_grad():
        loss_dpo = dpo.compute_loss(dpo.model, batch_dpo)
        loss_rpo = rpo.compute_loss(rpo.model, batch_rpo)
    assert abs(loss_dpo.item() - math.log(2)) > 1e-3
    torch.testing.assert_close(loss_rpo, loss_dpo, rtol=1e-5, atol=1e-6)


# --- training ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_offline_pairwise_training_changes_every_parameter(tiny_model_dir, tmp_path):
    trainer = RPOTrainer(
        model=tiny_model_dir,
        args=_config(tmp_path, loss_type=["rpo_bwd_kl", "sft"], loss_weights=[1.0, 0.05], max_steps=3),
        train_dataset=build_synthetic_preference_dataset(12),
    )
    logs = _train_and_assert_all_params_change(trainer)
    for key in (
        "rpo/implicit_gap",
        "rpo/explicit_gap",
        "rpo/gap_correlation",
        "rpo/ranking_accuracy",
        "rewards/margins",
    ):
        assert any(key in entry for entry in logs), key
    assert all(entry["rpo/explicit_gap"] > 0 for entry in logs if "rpo/explicit_gap" in entry)
    assert "rpo" in trainer._tag_names and trainer._paper["id"] == "2502.00203"


@pytest.mark.slow
def test_offline_k_response_listwise_training_changes_every_parameter(tiny_model_dir, tmp_path):
    trainer = RPOTrainer(
        model=tiny_model_dir,
        args=_config(tmp_path, loss_type=["rpo_listwise"], max_steps=3),
        train_dataset=build_synthetic_preference_dataset(12, num_responses=4),
    )
    logs = _train_and_assert_all_params_change(trainer)
    assert any("rpo/top1_accuracy" in entry for entry in logs)


@pytest.mark.slow
def test_offline_precomputed_reference_with_rpo_sq(tiny_model_dir, tmp_path):
    trainer = RPOTrainer(
        model=tiny_model_dir,
        args=_config(tmp_path, loss_type=["rpo_sq"], precompute_ref_log_probs=True, max_steps=2),
        train_dataset=build_synthetic_preference_dataset(8),
    )
    assert trainer.ref_model is None and "ref_chosen_logps" in trainer.train_dataset.column_names
    _train_and_assert_all_params_change(trainer)


def _online_config(tmp_path, **overrides):
    values = dict(
        CPU,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=10,
        learning_rate=1e-3,
        beta=0.1,
        max_steps=2,
    )
    values.update(overrides)
    return OnlineRPOConfig(output_dir=str(tmp_path), **values)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("loss_type", "pairing"), [(["rpo_bwd_kl", "sft"], "best_vs_worst"), (["rpo_listwise"], "all_pairs")]
)
def test_online_training_changes_every_parameter_and_reanchors_reference(tiny_model_dir, tmp_path, loss_type, pairing):
    trainer = OnlineRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=[synthetic_digit_reward, synthetic_answer_reward],
        args=_online_config(tmp_path, rpo_loss_type=loss_type, rpo_pairing=pairing, rpo_round_steps=2),
        train_dataset=build_synthetic_prompt_dataset(4),
    )
    logs = _train_and_assert_all_params_change(trainer)
    assert any(entry.get("rpo/pairs", 0) > 0 for entry in logs)
    # End of round 1 (step 2): the reference was re-anchored on the current policy.
    for ref_param, param in zip(trainer.ref_model.parameters(), trainer.model.parameters(), strict=True):
        assert torch.equal(ref_param, param)


# --- the "sft" term: NeMo-Aligner normalisation, hand-computed on a known batch ------------------------------------


def _next_token_logps(model, input_ids, attention_mask):
    """Per-token log-probs computed independently of the trainers: log_softmax of the logits at the next token."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def _hand_sft(sums, lengths, normalization):
    """The three reductions written out: per-sequence sums `sums` and lengths `lengths` of the SFT targets."""
    return {
        "sequence_sum": -sums.mean(),
        "sequence_mean": -(sums / lengths).mean(),
        "token_mean": -sums.sum() / lengths.sum(),
    }[normalization]


def test_sft_normalization_is_validated_at_construction(tmp_path):
    assert RPOConfig(output_dir=str(tmp_path), **CPU).sft_normalization == "sequence_sum"
    assert _online_config(tmp_path).sft_normalization == "sequence_sum"
    with pytest.raises(ValueError, match="`sft_normalization` must be one of .* got 'sum'"):
        RPOConfig(output_dir=str(tmp_path), sft_normalization="sum", **CPU)
    with pytest.raises(ValueError, match="`sft_normalization` must be one of .* got 'mean'"):
        _online_config(tmp_path, sft_normalization="mean")


@pytest.mark.parametrize("normalization", ["sequence_sum", "sequence_mean", "token_mean"])
def test_offline_pairwise_sft_term_is_labelled_chosen_with_hand_computed_normalization(
    tiny_model_dir, tmp_path, normalization
):
    rows = build_synthetic_preference_dataset(4).to_list()
    for index, row in enumerate(rows):  # unequal chosen lengths, so the three reductions differ
        row["chosen"][0]["content"] = "Let me add. " * index + row["chosen"][0]["content"]
    rows[1]["chosen_reward"], rows[1]["rejected_reward"] = 0.0, 5.0  # reward disagrees with the label
    args = _config(tmp_path, loss_type=["rpo_sq", "sft"], loss_weights=[0.0, 1.0], sft_normalization=normalization)
    trainer = RPOTrainer(model=tiny_model_dir, args=args, train_dataset=Dataset.from_list(rows))
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["rpo_sft_target"].tolist() == [0, 0, 0, 0]  # NeMo-Aligner: always the labelled chosen response
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
        token_logps = _next_token_logps(trainer.model, batch["input_ids"], batch["attention_mask"])
    mask = batch["completion_mask"][:, 1:].float()
    sums, lengths = (token_logps * mask).sum(dim=1), mask.sum(dim=1)
    chosen = slice(0, 4)  # [chosen; rejected] halves
    expected = _hand_sft(sums[chosen], lengths[chosen], normalization)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    # The highest-reward response would have given another value (row 1's rejected one): the target choice matters.
    highest = batch["rpo_rewards"].argmax(dim=1) * 4 + torch.arange(4)
    assert not torch.allclose(expected, _hand_sft(sums[highest], lengths[highest], normalization), atol=1e-3)
    assert lengths[chosen].unique().numel() == 4
    other_normalizations = {"sequence_sum", "sequence_mean", "token_mean"} - {normalization}
    for other in other_normalizations:  # the reductions are distinguishable on this batch
        assert not torch.allclose(expected, _hand_sft(sums[chosen], lengths[chosen], other), atol=1e-3)
    if normalization == "token_mean":  # token mean = sequence-sum mean / mean length (exact, any lengths)
        torch.testing.assert_close(
            loss * lengths[chosen].mean(), _hand_sft(sums[chosen], lengths[chosen], "sequence_sum")
        )


def test_offline_k_response_sft_term_is_highest_reward_response(tiny_model_dir, tmp_path):
    rows = build_synthetic_preference_dataset(4, num_responses=3).to_list()
    for row, best in zip(rows, (0, 2, 1, 2), strict=True):  # put the highest reward at varied positions
        row["rewards"] = [1.0 if index == best else -float(index) for index in range(3)]
    args = _config(tmp_path, loss_type=["rpo_sq", "sft"], loss_weights=[0.0, 1.0])
    trainer = RPOTrainer(model=tiny_model_dir, args=args, train_dataset=Dataset.from_list(rows))
    batch = next(iter(trainer.get_train_dataloader()))
    target = batch["rpo_sft_target"]
    assert sorted(target.tolist()) == [0, 1, 2, 2] and torch.equal(target, batch["rpo_rewards"].argmax(dim=1))
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
        token_logps = _next_token_logps(trainer.model, batch["input_ids"], batch["attention_mask"])
    mask = batch["completion_mask"][:, 1:].float()
    rows_of_target = target * 4 + torch.arange(4)  # response-major: response j of example i is row j * 4 + i
    sums = (token_logps * mask).sum(dim=1)[rows_of_target]
    torch.testing.assert_close(loss, -sums.mean(), rtol=1e-5, atol=1e-5)


def _online_sft_trainer(tiny_model_dir, tmp_path, **overrides):
    args = _online_config(
        tmp_path, num_generations=2, rpo_loss_type=["rpo_sq", "sft"], rpo_loss_weights=[0.0, 1.0], **overrides
    )
    trainer = OnlineRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=[synthetic_digit_reward],
        args=args,
        train_dataset=build_synthetic_prompt_dataset(4),
    )
    trainer.model.eval()  # eval mode: no division by the accumulation steps
    return trainer


def _online_batch(group_ids, rewards):
    """Four rows sharing a 3-token prompt, right-padded completions of lengths 3, 2, 4, 1 (no left padding)."""
    completion_ids = torch.tensor([[10, 11, 12, 0], [13, 14, 0, 0], [15, 16, 17, 18], [19, 0, 0, 0]])
    completion_mask = (torch.arange(4)[None, :] < torch.tensor([3, 2, 4, 1])[:, None]).long()
    return {
        "prompt_ids": torch.tensor([[5, 6, 7]] * 4),
        "prompt_mask": torch.ones(4, 3, dtype=torch.long),
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "ref_per_token_logps": torch.zeros(4, 4),
        "rpo_rewards": torch.tensor(rewards),
        "rpo_group_ids": torch.tensor(group_ids),
    }


@pytest.mark.parametrize("normalization", ["sequence_sum", "sequence_mean", "token_mean"])
def test_online_sft_term_is_best_sample_per_prompt_with_hand_computed_normalization(
    tiny_model_dir, tmp_path, normalization
):
    trainer = _online_sft_trainer(tiny_model_dir, tmp_path, sft_normalization=normalization)
    # Shuffled rows as GRPO leaves them: group 0 = rows 1 (0.9) and 2 (0.1); group 1 = rows 0 (0.3) and 3 (0.7).
    batch = _online_batch([1, 0, 0, 1], [0.3, 0.9, 0.1, 0.7])
    with torch.no_grad():
        loss = trainer._compute_loss(trainer.model, batch)
        input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        token_logps = _next_token_logps(trainer.model, input_ids, torch.ones_like(input_ids))[:, 2:]  # completions
    mask = batch["completion_mask"].float()
    sums, lengths = (token_logps * mask).sum(dim=1), mask.sum(dim=1)
    best = torch.tensor([1, 3])
    torch.testing.assert_close(loss, _hand_sft(sums[best], lengths[best], normalization), rtol=1e-5, atol=1e-5)


def test_online_loss_refuses_an_incomplete_group(tiny_model_dir, tmp_path):
    trainer = _online_sft_trainer(tiny_model_dir, tmp_path)
    batch = _online_batch([0, 0, 1, 2], [0.3, 0.9, 0.1, 0.7])  # groups 1 and 2 hold one of their 2 samples
    with pytest.raises(RuntimeError, match=r"incomplete prompt groups \(samples per group: \[2, 1, 1\], expected 2"):
        trainer._compute_loss(trainer.model, batch)
