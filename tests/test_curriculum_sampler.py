"""Progressive batching: pure schedule math, the sampler's layout, sharding, determinism and resume (no model needed)."""

import math

import numpy as np
import pytest
from accelerate.data_loader import BatchSamplerShard, skip_first_batches
from datasets import Dataset
from torch.utils.data import BatchSampler, DataLoader

from trl_igrpo.curriculum import (
    ProgressiveBatchSampler,
    allocate_batch_counts,
    gaussian_bin_weights,
    plan_progressive_batches,
    read_pass_rates,
    schedule_mean,
)
from trl_igrpo.curriculum.schedule import balanced_batch_targets, expected_batch_pass_rate
from trl_igrpo.grpo import CurriculumGRPOConfig

BINS = np.arange(6) / 8  # pass rates kept by the paper's filter with 8 samples: 0 .. 5/8


def skewed_pass_rates(n=600, seed=0):
    """Mostly hard prompts, as after dropping pass rate >= 0.75."""
    return np.random.default_rng(seed).choice(BINS, n, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])


def test_schedule_mean_linear_and_cosine():
    assert schedule_mean(0.0, 0.6, 0.1) == pytest.approx(0.6)
    assert schedule_mean(1.0, 0.6, 0.1) == pytest.approx(0.1)
    assert schedule_mean(0.5, 0.6, 0.1) == pytest.approx(0.35)
    assert schedule_mean(0.25, 0.6, 0.1, "cosine") == pytest.approx(0.6 - 0.5 * (1 - math.cos(math.pi / 4)) / 2)
    with pytest.raises(ValueError, match="curriculum_schedule"):
        schedule_mean(0.5, 0.6, 0.1, "exponential")


def test_gaussian_bin_weights_hand_computed():
    weights = gaussian_bin_weights([0.0, 0.25, 0.5], mean=0.25, sigma=0.25, available=[True, True, False])
    edge = math.exp(-0.5)
    assert weights == pytest.approx([edge / (1 + edge), 1 / (1 + edge), 0.0])
    # Underflow: mean far from every available bin with a tiny sigma -> the nearest available bin takes everything.
    assert gaussian_bin_weights([0.0, 0.5, 1.0], 0.9, 1e-4, [True, True, False]).tolist() == [0.0, 1.0, 0.0]


def test_allocate_batch_counts_rounding_caps_and_topup():
    # Largest remainder: 10 * [0.45, 0.35, 0.2] = 4.5, 3.5, 2 -> floors 4, 3, 2 and one extra to the first tie.
    assert allocate_batch_counts(np.array([0.45, 0.35, 0.2]), 10, np.array([99, 99, 99])).tolist() == [5, 3, 2]
    # Targets 8, 1, 1 but bin 0 holds 2; the 6 left go one at a time to the largest remaining pool:
    # pools (after 2, 1, 1) are 0, 4, 8 -> bin 2 four times (pool 4 = 4, tie -> lower index) -> bin 1 -> bin 2.
    assert allocate_batch_counts(np.array([0.8, 0.1, 0.1]), 10, np.array([2, 5, 9])).tolist() == [2, 2, 6]
    with pytest.raises(ValueError, match="remain"):
        allocate_batch_counts(np.array([1.0]), 10, np.array([3]))


def test_balanced_targets_use_each_bin_once():
    counts = np.array([240, 120, 90, 60, 60, 30])
    means = [schedule_mean(b / 49, 0.625, 0.0) for b in range(50)]
    weights = balanced_batch_targets(BINS, counts, means, 0.15)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(weights.sum(axis=0) * 12, counts * 50 * 12 / counts.sum(), rtol=1e-3)


@pytest.mark.parametrize("balance_pool", [True, False])
def test_plan_is_a_partition_of_unique_prompts(balance_pool):
    rates = skewed_pass_rates(603)
    plan = plan_progressive_batches(rates, 12, 0.15, seed=1, balance_pool=balance_pool)
    assert len(plan) == 603 // 12 and all(len(batch) == 12 for batch in plan)
    flat = [i for batch in plan for i in batch]
    assert len(set(flat)) == len(flat)  # without replacement within the epoch


@pytest.mark.parametrize("seed", [0, 1])
def test_batch_pass_rates_track_the_schedule(seed):
    """Empirical batch means follow the target (balanced Gaussian) means, which move from easy to hard."""
    rates = skewed_pass_rates(seed=seed)
    sampler = ProgressiveBatchSampler(rates, mini_repeat_count=4, batch_size=12, seed=seed)
    plan = sampler.plan()
    bins, counts = np.unique(rates, return_counts=True)
    mus = np.array([sampler.target_mean(b) for b in range(len(plan))])
    targets = balanced_batch_targets(bins, counts, mus, sampler.sigma)
    target_means = np.array([expected_batch_pass_rate(bins, w) for w in targets])
    empirical = np.array([rates[batch].mean() for batch in plan])
    assert mus[0] == pytest.approx(0.625) and mus[-1] == pytest.approx(0.0)
    assert np.abs(empirical - target_means).mean() < 0.03
    assert np.abs(empirical - target_means)[:-1].max() < 0.06  # the last batch takes the rounding leftovers
    assert np.corrcoef(empirical, target_means)[0, 1] > 0.95
    assert np.corrcoef(empirical, mus)[0, 1] > 0.9
    quarter = len(plan) // 4
    assert empirical[:quarter].mean() > empirical[-quarter:].mean() + 0.25


def test_pool_balancing_keeps_easy_prompts_out_of_the_last_batch():
    """With uniform bins, the literal Gaussian under-uses the easiest bin, which then fills the final batch."""
    rates = np.tile(BINS, 100)
    literal = plan_progressive_batches(rates, 12, 0.15, seed=0, balance_pool=False)
    balanced = plan_progressive_batches(rates, 12, 0.15, seed=0, balance_pool=True)
    assert rates[literal[-1]].mean() > 0.5
    assert rates[balanced[-1]].mean() < 0.15
    assert rates[balanced[0]].mean() > 0.5


def test_sampler_repeat_layout_matches_repeat_sampler_semantics():
    rates = skewed_pass_rates(50)
    sampler = ProgressiveBatchSampler(rates, mini_repeat_count=3, batch_size=4, repeat_count=2, seed=0)
    stream = list(sampler)
    assert len(stream) == len(sampler) == (50 // 4) * 4 * 3 * 2
    block = 4 * 3
    for b, batch in enumerate(sampler.plan()):
        chunk = stream[2 * b * block : 2 * (b + 1) * block]
        expected = [i for i in batch for _ in range(3)]
        assert chunk == expected * 2  # each prompt G times in a row, the batch repeat_count times


@pytest.mark.parametrize("per_device,steps_per_generation,num_generations", [(4, 1, 4), (4, 2, 2), (6, 1, 3)])
def test_each_rank_sees_disjoint_whole_groups(per_device, steps_per_generation, num_generations):
    """Accelerate's real sharding (BatchSamplerShard, 2 processes) over the sampler's global stream."""
    world = 2
    local_batch = per_device * steps_per_generation  # one dataloader batch = one local generation batch
    prompts_per_batch = local_batch * world // num_generations
    sampler = ProgressiveBatchSampler(
        skewed_pass_rates(200), mini_repeat_count=num_generations, batch_size=prompts_per_batch, seed=0
    )
    shards = [
        list(BatchSamplerShard(BatchSampler(sampler, local_batch, drop_last=False), world, rank, split_batches=False))
        for rank in range(world)
    ]
    plan = sampler.plan()
    assert len(shards[0]) == len(shards[1]) == len(plan)
    for step, batch in enumerate(plan):
        rank_prompts = []
        for rank in range(world):
            local = shards[rank][step]
            groups = [local[i : i + num_generations] for i in range(0, len(local), num_generations)]
            assert all(len(set(g)) == 1 for g in groups)  # whole groups only
            rank_prompts.append({g[0] for g in groups})
        assert not rank_prompts[0] & rank_prompts[1]
        assert rank_prompts[0] | rank_prompts[1] == set(batch)


def test_deterministic_for_a_seed_and_epoch():
    rates = skewed_pass_rates(120)
    a = ProgressiveBatchSampler(rates, 2, 6, seed=7)
    b = ProgressiveBatchSampler(rates, 2, 6, seed=7)
    assert list(a) == list(b) == list(a)  # re-iterating does not advance any hidden state
    a.set_epoch(1)
    assert list(a) != list(b)
    assert list(ProgressiveBatchSampler(rates, 2, 6, seed=8)) != list(b)


def test_resume_reproduces_the_batch_sequence():
    """Trainer resume path: fresh sampler + accelerate-prepared loader + skip_first_batches + set_epoch."""
    from accelerate import Accelerator

    rates = skewed_pass_rates(96)
    dataset = list(range(96))

    def loader():
        sampler = ProgressiveBatchSampler(rates, mini_repeat_count=2, batch_size=4, repeat_count=2, seed=3)
        return Accelerator(cpu=True).prepare(DataLoader(dataset, batch_size=8, sampler=sampler)), sampler

    uninterrupted = []
    for epoch in range(2):
        dl, _ = loader()
        dl.set_epoch(epoch)
        uninterrupted.append([b.tolist() for b in dl])
    dl, sampler = loader()
    resumed = skip_first_batches(dl, 5)
    resumed.set_epoch(1)
    assert sampler.epoch == 1
    assert [b.tolist() for b in resumed] == uninterrupted[1][5:]
    assert uninterrupted[0] != uninterrupted[1]


def test_read_pass_rates_errors_name_the_column():
    with pytest.raises(ValueError, match="'difficulty'"):
        read_pass_rates(Dataset.from_dict({"prompt": ["a"]}), "difficulty")
    with pytest.raises(ValueError, match="row 1"):
        read_pass_rates(Dataset.from_dict({"pass_rate": [0.5, 1.5]}), "pass_rate")
    with pytest.raises(TypeError, match="map-style"):
        read_pass_rates([0.1, 0.2], "pass_rate")


@pytest.mark.parametrize(
    "field,value",
    [
        ("curriculum_sigma", 0.0),
        ("curriculum_start", 1.5),
        ("curriculum_end", -0.1),
        ("curriculum_schedule", "step"),
        ("dynamic_sampling_max_extra_rounds", -1),
        ("dynamic_sampling_shortfall", "drop"),
    ],
)
def test_config_validation_names_the_field(field, value, tmp_path):
    with pytest.raises(ValueError, match=field):
        CurriculumGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", **{field: value})


def test_config_defaults_are_opt_in(tmp_path):
    config = CurriculumGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    assert not config.progressive_batching and not config.dynamic_sampling
    assert config.curriculum_sigma == 0.15 and config.curriculum_schedule == "linear"
