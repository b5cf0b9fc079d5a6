"""Pure-tensor tests of the reward-aware preference optimization (RPO) losses; no model is needed."""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from trl.trainer.dpo_trainer import DPOTrainer

from trl_igrpo.rpo.losses import (
    RPO_PAIRWISE_LOSSES,
    dpo,
    group_pairs,
    group_rows,
    implicit_ranking_accuracy,
    ipo,
    pearson_correlation,
    rpo_bwd_kl,
    rpo_fwd_kl,
    rpo_listwise,
    rpo_pairwise_loss,
    rpo_sq,
    sequence_logps,
    sft_nll,
)

RPO_DISTANCES = {"rpo_sq": rpo_sq, "rpo_bwd_kl": rpo_bwd_kl, "rpo_fwd_kl": rpo_fwd_kl}


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _bern_kl(p_logit: float, q_logit: float) -> float:
    p, q = _sigmoid(p_logit), _sigmoid(q_logit)
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


# beta = 0.5, eta = 2: a = beta * logratio_gap, b = eta * reward_gap
BETA, ETA = 0.5, 2.0
LOGRATIO_GAP = torch.tensor([2.0, -1.0, 0.0, 3.0], dtype=torch.float64)
REWARD_GAP = torch.tensor([0.25, 0.5, -1.0, 0.75], dtype=torch.float64)


def test_hand_computed_values_every_distance():
    a = [BETA * x for x in LOGRATIO_GAP.tolist()]
    b = [ETA * x for x in REWARD_GAP.tolist()]
    expected = {
        "rpo_sq": [(ai - bi) ** 2 for ai, bi in zip(a, b)],
        "rpo_bwd_kl": [_bern_kl(bi, ai) for ai, bi in zip(a, b)],
        "rpo_fwd_kl": [_bern_kl(ai, bi) for ai, bi in zip(a, b)],
        "dpo": [-_log_sigmoid(ai) for ai in a],
        "ipo": [(x - 1 / (2 * BETA)) ** 2 for x in LOGRATIO_GAP.tolist()],
    }
    # Spot-check a few closed forms by hand: (1 - 0.5)^2, -log sigma(1), (2 - 1)^2.
    assert expected["rpo_sq"][0] == pytest.approx(0.25)
    assert expected["dpo"][0] == pytest.approx(math.log(1 + math.exp(-1)))
    assert expected["ipo"][0] == pytest.approx(1.0)
    for name, values in expected.items():
        got = rpo_pairwise_loss(name, LOGRATIO_GAP, REWARD_GAP, BETA, ETA)
        torch.testing.assert_close(got, torch.tensor(values, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_bwd_kl_closed_forms():
    # a = 0 (model indifferent), b = +inf (hard label): KL(Bern(1) || Bern(1/2)) = log 2.
    zero = torch.zeros(1, dtype=torch.float64)
    assert rpo_bwd_kl(zero, torch.tensor([math.inf], dtype=torch.float64), 1.0, 1.0).item() == pytest.approx(
        math.log(2)
    )
    # b = 0 (tie): KL(Bern(1/2) || Bern(sigma(a))) = -log(2) - (log sigma(a) + log sigma(-a)) / 2
    a = torch.tensor([1.3], dtype=torch.float64)
    expected = -math.log(2) - 0.5 * (_log_sigmoid(1.3) + _log_sigmoid(-1.3))
    assert rpo_bwd_kl(a, zero, 1.0, 1.0).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", list(RPO_DISTANCES))
def test_rpo_losses_nonnegative_and_zero_when_matched(name):
    torch.manual_seed(0)
    logratio_gap = torch.randn(1000, dtype=torch.float64) * 20
    reward_gap = torch.randn(1000, dtype=torch.float64) * 5
    loss = RPO_DISTANCES[name](logratio_gap, reward_gap, BETA, ETA)
    assert torch.isfinite(loss).all()
    assert (loss >= 0).all()
    # a == b exactly: beta * gap == eta * reward_gap
    matched = RPO_DISTANCES[name](logratio_gap, BETA * logratio_gap / ETA, BETA, ETA)
    torch.testing.assert_close(matched, torch.zeros_like(matched), atol=1e-12, rtol=0)
    # and strictly positive away from it
    assert (RPO_DISTANCES[name](logratio_gap, BETA * logratio_gap / ETA + 1.0, BETA, ETA) > 0).all()


@pytest.mark.parametrize("name", list(RPO_DISTANCES))
def test_rpo_losses_symmetric_under_swap(name):
    torch.manual_seed(1)
    logratio_gap = torch.randn(64, dtype=torch.float64) * 4
    reward_gap = torch.randn(64, dtype=torch.float64)
    fn = RPO_DISTANCES[name]
    # Swapping chosen/rejected together with their rewards negates both gaps.
    torch.testing.assert_close(fn(logratio_gap, reward_gap, BETA, ETA), fn(-logratio_gap, -reward_gap, BETA, ETA))


@pytest.mark.parametrize("name", list(RPO_PAIRWISE_LOSSES))
def test_gradcheck_float64(name):
    torch.manual_seed(2)
    logratio_gap = (torch.randn(6, dtype=torch.float64) * 3).requires_grad_()
    reward_gap = torch.randn(6, dtype=torch.float64).requires_grad_(name.startswith("rpo"))
    assert torch.autograd.gradcheck(
        lambda x, y: rpo_pairwise_loss(name, x, y, BETA, ETA), (logratio_gap, reward_gap), eps=1e-6, atol=1e-7
    )


def test_gradcheck_listwise_float64():
    torch.manual_seed(3)
    logratios = (torch.randn(4, 3, dtype=torch.float64) * 3).requires_grad_()
    rewards = torch.randn(4, 3, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, r: rpo_listwise(x, r, BETA, ETA), (logratios, rewards))


def test_bwd_kl_gradient_is_soft_label_dpo_gradient():
    # d/da KL(Bern(sigma(b)) || Bern(sigma(a))) = sigma(a) - sigma(b)  (rpo.md section 2.1)
    a = torch.tensor([0.3, -2.0, 4.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0, 0.5, -3.0], dtype=torch.float64)
    rpo_bwd_kl(a, b, 1.0, 1.0).sum().backward()
    torch.testing.assert_close(a.grad, torch.sigmoid(a.detach()) - torch.sigmoid(b))


def test_infinite_reward_gap_is_finite_and_differentiable():
    logratio_gap = torch.tensor([0.5, -30.0, 60.0], dtype=torch.float64, requires_grad=True)
    loss = rpo_bwd_kl(logratio_gap, torch.full((3,), math.inf, dtype=torch.float64), 0.1, 1.0)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logratio_gap.grad).all()


def test_listwise_hand_computed_k3():
    logratios = torch.tensor([[1.0, 0.0, -2.0]], dtype=torch.float64)
    rewards = torch.tensor([[0.5, 1.0, 0.0]], dtype=torch.float64)
    t = [ETA * r for r in rewards[0].tolist()]
    s = [BETA * x for x in logratios[0].tolist()]
    zt, zs = math.log(sum(map(math.exp, t))), math.log(sum(map(math.exp, s)))
    expected = sum(math.exp(ti - zt) * ((ti - zt) - (si - zs)) for ti, si in zip(t, s))
    assert rpo_listwise(logratios, rewards, BETA, ETA).item() == pytest.approx(expected, rel=1e-12)


def test_listwise_k2_equals_bwd_kl():
    torch.manual_seed(4)
    logratios = torch.randn(32, 2, dtype=torch.float64) * 5
    rewards = torch.randn(32, 2, dtype=torch.float64)
    listwise = rpo_listwise(logratios, rewards, BETA, ETA)
    pairwise = rpo_bwd_kl(logratios[:, 0] - logratios[:, 1], rewards[:, 0] - rewards[:, 1], BETA, ETA)
    torch.testing.assert_close(listwise, pairwise, rtol=1e-10, atol=1e-12)


def test_listwise_mask_ignores_padding_and_matches_smaller_group():
    torch.manual_seed(5)
    logratios = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    rewards = torch.randn(3, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    loss = rpo_listwise(logratios, rewards, BETA, ETA, mask=mask)
    reference = rpo_listwise(logratios[1:2, :2], rewards[1:2, :2], BETA, ETA)
    torch.testing.assert_close(loss[1:2], reference)
    loss.sum().backward()
    assert torch.isfinite(logratios.grad).all() and (logratios.grad[~mask] == 0).all()


def test_listwise_shift_invariant_in_rewards():
    logratios = torch.randn(5, 4, dtype=torch.float64)
    rewards = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(
        rpo_listwise(logratios, rewards, BETA, ETA), rpo_listwise(logratios, rewards + 7.0, BETA, ETA)
    )


def test_ipo_is_scaled_rpo_sq_with_constant_half_gap():
    gap = torch.randn(10, dtype=torch.float64)
    half = torch.full_like(gap, 0.5)
    torch.testing.assert_close(ipo(gap, beta=BETA), rpo_sq(gap, half, BETA, 1.0) / BETA**2)


def test_sequence_logps_sum_and_average():
    per_token = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]])
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    torch.testing.assert_close(sequence_logps(per_token, mask), torch.tensor([-3.0, -0.5]))
    torch.testing.assert_close(sequence_logps(per_token, mask, average=True), torch.tensor([-1.5, -0.25]))


def test_sft_nll_hand_computed_each_normalization():
    # Row sums S = [-6, -1], lengths n = [3, 2]; the -100s are padding and must be ignored.
    per_token = torch.tensor([[-1.0, -2.0, -3.0, -100.0], [-0.5, -100.0, -0.5, -100.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 0]])
    assert sft_nll(per_token, mask, "sequence_sum").item() == pytest.approx(3.5)  # (6 + 1) / 2, NeMo-Aligner
    assert sft_nll(per_token, mask, "sequence_mean").item() == pytest.approx(1.25)  # (6/3 + 1/2) / 2
    assert sft_nll(per_token, mask, "token_mean").item() == pytest.approx(1.4)  # 7 / 5, TRL's sft
    # token mean = sequence-sum mean / mean length, for any lengths: 3.5 / 2.5
    assert sft_nll(per_token, mask, "token_mean").item() == pytest.approx(3.5 / 2.5)
    assert sft_nll(per_token, mask).item() == pytest.approx(3.5)  # the default is NeMo-Aligner's


def test_sft_nll_gradients_per_token():
    per_token = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -9.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    expected = {
        "sequence_sum": [[-0.5, -0.5, -0.5], [-0.5, -0.5, 0.0]],  # -1 / N
        "sequence_mean": [[-1 / 6, -1 / 6, -1 / 6], [-0.25, -0.25, 0.0]],  # -1 / (N n_i)
        "token_mean": [[-0.2, -0.2, -0.2], [-0.2, -0.2, 0.0]],  # -1 / sum n_i
    }
    for normalization, grad in expected.items():
        (gradient,) = torch.autograd.grad(sft_nll(per_token, mask, normalization), per_token)
        torch.testing.assert_close(gradient, torch.tensor(grad))


def test_sft_nll_no_rows_is_zero_with_graph_and_unknown_name_raises():
    empty = torch.zeros(0, 3, requires_grad=True)
    loss = sft_nll(empty, torch.zeros(0, 3), "sequence_sum")
    assert loss.item() == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match="Unknown SFT normalization 'sum'"):
        sft_nll(torch.zeros(1, 2), torch.ones(1, 2), "sum")


def test_group_pairs_best_vs_worst_and_all_pairs():
    logratios = torch.tensor([[1.0, 2.0, 4.0], [0.0, 5.0, 7.0]])
    rewards = torch.tensor([[0.0, 3.0, 1.0], [2.0, 2.0, 9.0]])
    gap, rgap = group_pairs(logratios, rewards, "best_vs_worst")
    torch.testing.assert_close(gap, torch.tensor([1.0, 7.0]))  # (2 - 1), (7 - 0)
    torch.testing.assert_close(rgap, torch.tensor([3.0, 7.0]))
    gap, rgap = group_pairs(logratios, rewards, "all_pairs")
    assert gap.numel() == 6 and (rgap >= 0).all()
    # pair (0, 1) of prompt 0 is flipped so the higher reward comes first: logratio 2 - 1, reward 3 - 0
    assert (gap[0].item(), rgap[0].item()) == (1.0, 3.0)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    gap, rgap = group_pairs(logratios, rewards, "best_vs_worst", mask=mask)
    torch.testing.assert_close(gap, torch.tensor([1.0]))  # the second prompt has one response: no pair


def test_group_rows_regroups_shuffled_rows():
    values = torch.tensor([10.0, 20.0, 11.0, 21.0, 12.0])
    group_ids = torch.tensor([5, 7, 5, 7, 5])
    grouped_values, grouped_ids, mask = group_rows(values, group_ids, group_ids.float())
    torch.testing.assert_close(grouped_values, torch.tensor([[10.0, 11.0, 12.0], [20.0, 21.0, 0.0]]))
    assert mask.tolist() == [[True, True, True], [True, True, False]]
    assert grouped_ids[0, 0].item() == 5.0 and grouped_ids[1, 0].item() == 7.0


def test_metrics_helpers():
    assert pearson_correlation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0])) == pytest.approx(1.0)
    assert math.isnan(pearson_correlation(torch.tensor([1.0]), torch.tensor([1.0])))
    accuracy = implicit_ranking_accuracy(torch.tensor([1.0, -1.0, 2.0, 5.0]), torch.tensor([1.0, 1.0, 0.0, 2.0]))
    assert accuracy == pytest.approx(2 / 3)


# --- Special cases against TRL's own DPOTrainer loss code -------------------------------------------------------------


class _FakeAccelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather(x):
        return x

    gather_for_metrics = gather


def _trl_dpo_loss(loss_type, policy_token_logps, ref_chosen, ref_rejected, completion_mask, beta):
    """Run TRL 1.16's ``DPOTrainer._compute_loss`` on fixed per-token log-probs via a stub model.

    The stub returns our per-token log-probs as ``outputs.log_probs``; reference log-probs go in as precomputed
    columns, exactly as ``precompute_ref_log_probs=True`` feeds them.
    """
    num_rows, seq_len = completion_mask.shape
    shifted = completion_mask[:, 1:]

    def fake_model(**kwargs):
        return SimpleNamespace(
            log_probs=policy_token_logps,
            entropy=torch.zeros(num_rows, seq_len - 1),
            mean_logits=torch.zeros(num_rows, seq_len - 1),
            is_top1=torch.zeros(num_rows, seq_len - 1, dtype=torch.bool),
        )

    fake_trainer = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=_FakeAccelerator(),
        aux_loss_enabled=False,
        precompute_ref_logps=True,
        ld_alpha=None,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        use_weighting=False,
        label_smoothing=0.0,
        args=SimpleNamespace(discopop_tau=0.05),
        _metrics={"train": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {
        "input_ids": torch.zeros(num_rows, seq_len, dtype=torch.long),
        "attention_mask": torch.ones(num_rows, seq_len, dtype=torch.long),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }
    assert shifted.shape == policy_token_logps.shape
    return DPOTrainer._compute_loss(fake_trainer, fake_model, inputs, return_outputs=False)


def _fixed_batch():
    torch.manual_seed(6)
    batch, seq_len = 4, 7
    completion_mask = torch.zeros(2 * batch, seq_len, dtype=torch.long)
    lengths = [3, 5, 2, 6, 4, 1, 5, 3]
    for row, length in enumerate(lengths):
        completion_mask[row, seq_len - length :] = 1
    shifted = completion_mask[:, 1:]
    token_logps = -torch.rand(2 * batch, seq_len - 1) * 3 * shifted  # zero outside the completion, like TRL
    ref_chosen, ref_rejected = (-torch.rand(batch) * 10), (-torch.rand(batch) * 10)
    return token_logps, ref_chosen, ref_rejected, completion_mask


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_bwd_kl_with_infinite_reward_gap_equals_trl_sigmoid_loss(beta):
    token_logps, ref_chosen, ref_rejected, completion_mask = _fixed_batch()
    trl_loss = _trl_dpo_loss("sigmoid", token_logps, ref_chosen, ref_rejected, completion_mask, beta)
    logps = sequence_logps(token_logps, completion_mask[:, 1:])
    chosen, rejected = logps.chunk(2)
    gap = (chosen - ref_chosen) - (rejected - ref_rejected)
    ours = rpo_bwd_kl(gap, torch.full_like(gap, math.inf), beta, 1.0).mean()
    torch.testing.assert_close(ours, trl_loss, rtol=1e-6, atol=1e-7)
    # a very large finite gap approaches the same value
    near = rpo_bwd_kl(gap.double(), torch.full_like(gap.double(), 1e3), beta, 1.0).mean()
    assert near.item() == pytest.approx(trl_loss.item(), rel=1e-6)
    torch.testing.assert_close(dpo(gap, None, beta).mean(), trl_loss, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_ipo_equals_trl_ipo_loss(beta):
    token_logps, ref_chosen, ref_rejected, completion_mask = _fixed_batch()
    trl_loss = _trl_dpo_loss("ipo", token_logps, ref_chosen, ref_rejected, completion_mask, beta)
    # TRL's ipo divides the token-summed log-ratio by the completion length: average the reference the same way.
    shifted = completion_mask[:, 1:]
    lengths = completion_mask.sum(dim=1).float()
    policy = sequence_logps(token_logps, shifted)
    ref = torch.cat([ref_chosen, ref_rejected])
    logratios = (policy - ref) / lengths
    chosen, rejected = logratios.chunk(2)
    ours = ipo(chosen - rejected, None, beta).mean()
    torch.testing.assert_close(ours, trl_loss, rtol=1e-6, atol=1e-6)


def test_sft_token_mean_equals_trl_sft_loss_and_sequence_sum_is_mean_length_times_it():
    token_logps, ref_chosen, ref_rejected, completion_mask = _fixed_batch()
    trl_loss = _trl_dpo_loss("sft", token_logps, ref_chosen, ref_rejected, completion_mask, 0.1)
    chosen_logps, chosen_mask = token_logps.chunk(2)[0], completion_mask[:, 1:].chunk(2)[0]
    torch.testing.assert_close(sft_nll(chosen_logps, chosen_mask, "token_mean"), trl_loss)
    mean_length = chosen_mask.sum(dim=1).float().mean()
    torch.testing.assert_close(sft_nll(chosen_logps, chosen_mask, "sequence_sum"), trl_loss * mean_length)
