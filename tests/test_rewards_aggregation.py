"""The one reward-aggregation rule: weighted NaN-aware sums and GDPO group scores, checked against TRL's own code."""

import pytest
import torch

from trl_igrpo.rewards.aggregation import group_ranking_scores, unscorable_rows, weighted_reward_sum

nan = float("nan")


def test_weighted_sum_skips_none_and_marks_unscorable_rows():
    rewards = torch.tensor([[1.0, 1.0], [1.0, nan], [nan, nan], [0.0, 1.0]])
    combined = weighted_reward_sum(rewards, [2.0, 0.5])
    assert combined[:2].tolist() == [2.5, 2.0] and torch.isnan(combined[2]) and combined[3].item() == 0.5
    assert unscorable_rows(rewards).tolist() == [False, False, True, False]


def test_gdpo_scores_are_per_function_group_z_scores():
    # one group of 3: function 0 has values 0, 1, 2 (mean 1, std 1), function 1 is constant (z = 0)
    rewards = torch.tensor([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0]])
    scores = group_ranking_scores(rewards, [1.0, 3.0], 3, "normalize_then_sum")
    torch.testing.assert_close(scores, torch.tensor([-1.0, 0.0, 1.0]) / (1.0 + 1e-4))


def test_sum_then_normalize_ranks_by_the_weighted_sum():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert group_ranking_scores(rewards, [1.0, 2.0], 2).tolist() == [1.0, 2.0]


def test_the_two_aggregations_can_pick_different_drafts():
    # function 0 has a large spread, function 1 a small one: the sum prefers row 0, GDPO (z-scores) row 3
    rewards = torch.tensor([[10.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 0.9]])
    assert group_ranking_scores(rewards, [1.0, 1.0], 4).argmax().item() == 0
    assert group_ranking_scores(rewards, [1.0, 1.0], 4, "normalize_then_sum").argmax().item() == 3


def test_gdpo_scores_match_trl_advantages_up_to_its_monotone_batch_normalisation():
    """Recompute TRL 1.16's normalize_then_sum advantages from its own nanstd and compare rank and value."""
    from trl.trainer.utils import nanstd

    torch.manual_seed(0)
    rewards = torch.randint(0, 3, (12, 3)).float()
    rewards[4, 1] = nan
    rewards[7] = nan  # unscorable row
    weights = torch.tensor([1.0, 0.5, 2.0])
    scores = group_ranking_scores(rewards, weights, 4, "normalize_then_sum")
    # TRL: per-function group z-score, weighted nansum, unscorable -> NaN, batch z-score
    grouped = rewards.view(-1, 4, 3)
    z = (grouped - torch.nanmean(grouped, dim=1, keepdim=True)) / (nanstd(grouped, dim=1, keepdim=True) + 1e-4)
    trl_rewards = (z.view(-1, 3) * weights).nansum(dim=1)
    trl_rewards[torch.isnan(rewards).all(dim=1)] = nan
    advantages = (trl_rewards - torch.nanmean(trl_rewards)) / (nanstd(trl_rewards) + 1e-4)
    finite = ~torch.isnan(advantages)
    torch.testing.assert_close(scores[finite], trl_rewards[finite])
    assert torch.isnan(scores[7])
    for group in range(3):
        a, s = advantages.view(-1, 4)[group], scores.view(-1, 4)[group]
        assert torch.nan_to_num(a, -1e9).argmax() == torch.nan_to_num(s, -1e9).argmax()


def test_bad_shapes_and_names_are_refused():
    with pytest.raises(ValueError, match="do not split into groups of 4"):
        group_ranking_scores(torch.zeros(6, 1), [1.0], 4)
    with pytest.raises(ValueError, match="multi_objective_aggregation must be one of"):
        group_ranking_scores(torch.zeros(4, 1), [1.0], 4, "mean")
