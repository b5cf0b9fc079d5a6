"""The progressive-batching sampler (Llama-Nemotron pass-rate curriculum) and the helpers the base trainer uses."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from ..utils.seeds import mix_seed
from .schedule import batch_progress, gaussian_bin_weights, plan_progressive_batches, schedule_mean


def read_pass_rates(dataset, column: str) -> np.ndarray:
    """The ``column`` of a map-style dataset as a float array, with a clear error for missing or invalid values."""
    column_names = getattr(dataset, "column_names", None)
    if column_names is None:
        raise TypeError(
            f"progressive batching needs a map-style `datasets.Dataset` with a {column!r} column, got {type(dataset).__name__}"
        )
    if column not in column_names:
        raise ValueError(
            f"progressive batching needs a {column!r} column in the train dataset (set `pass_rate_column`); "
            f"columns are {column_names}. Compute it with `python -m trl_igrpo.curriculum.pass_rate`."
        )
    values = dataset[column]
    bad = [i for i, v in enumerate(values) if v is None or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(
            f"column {column!r} must hold pass rates in [0, 1]; row {bad[0]} has {values[bad[0]]!r} ({len(bad)} bad rows)"
        )
    return np.asarray(values, dtype=np.float64)


class ProgressiveBatchSampler(Sampler[int]):
    """Sampler over dataset indices whose batches follow a Gaussian pass-rate target moving from easy to hard.

    It is a drop-in replacement for TRL's ``RepeatSampler`` with the same layout: each batch holds ``batch_size`` unique
    prompts, each prompt index is yielded ``mini_repeat_count`` (= G) times in a row, and each batch is yielded
    ``repeat_count`` (= num_iterations × steps_per_generation) times. Like ``RepeatSampler`` it yields the *global* stream;
    Accelerate's ``BatchSamplerShard`` cuts each global generation batch into contiguous per-process slices.

    One epoch is one pass over the data without replacement, planned by
    :func:`~trl_igrpo.curriculum.schedule.plan_progressive_batches`: batch b of B has target mean
    mu_b = schedule_mean(b / (B - 1), start, end). The plan of epoch e depends only on ``(seed, e)``, so a fresh sampler
    given ``set_epoch(e)`` (which the Trainer calls every epoch, also after resuming) replays the same batches, and
    ``skip_first_batches`` on resume lands on the same position as an uninterrupted run.
    """

    def __init__(
        self,
        pass_rates: Sequence[float] | np.ndarray,
        mini_repeat_count: int,
        batch_size: int = 1,
        repeat_count: int = 1,
        sigma: float = 0.15,
        start: float | None = None,
        end: float | None = None,
        schedule: str = "linear",
        seed: int = 0,
        balance_pool: bool = True,
    ):
        self.pass_rates = np.asarray(pass_rates, dtype=np.float64)
        if len(self.pass_rates) < batch_size:
            raise ValueError(f"the dataset has {len(self.pass_rates)} prompts, fewer than one batch of {batch_size}")
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.sigma = sigma
        self.bin_values, self.bin_of_sample = np.unique(np.round(self.pass_rates, 9), return_inverse=True)
        self.start = float(self.bin_values.max()) if start is None else float(start)
        self.end = float(self.bin_values.min()) if end is None else float(end)
        self.schedule = schedule
        self.seed = seed
        self.balance_pool = balance_pool
        self.epoch = 0
        self.num_batches = len(self.pass_rates) // batch_size
        self._plans: dict[int, list[list[int]]] = {}

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batch plan ``__iter__`` yields next (each epoch's plan is seeded from ``seed`` and the epoch)."""
        self.epoch = epoch

    def target_mean(self, batch_index: int) -> float:
        """Centre mu_b of the pass-rate Gaussian for batch ``batch_index`` of an epoch."""
        return schedule_mean(batch_progress(batch_index, self.num_batches), self.start, self.end, self.schedule)

    def plan(self, epoch: int | None = None) -> list[list[int]]:
        """Batches of unique prompt indices for ``epoch`` (default: the current one), cached."""
        epoch = self.epoch if epoch is None else epoch
        if epoch not in self._plans:
            self._plans = {
                epoch: plan_progressive_batches(
                    self.pass_rates,
                    self.batch_size,
                    sigma=self.sigma,
                    start=self.start,
                    end=self.end,
                    schedule=self.schedule,
                    seed=mix_seed(self.seed, epoch),
                    balance_pool=self.balance_pool,
                )
            }
        return self._plans[epoch]

    def __iter__(self) -> Iterator[int]:
        for batch in self.plan():
            for _ in range(self.repeat_count):
                for index in batch:
                    for _ in range(self.mini_repeat_count):
                        yield index

    def __len__(self) -> int:
        return self.num_batches * self.batch_size * self.mini_repeat_count * self.repeat_count

    def sample_refill(self, num_prompts: int, batch_index: int, generator: torch.Generator) -> list[int]:
        """Draw ``num_prompts`` prompt indices (with replacement) from the target Gaussian of batch ``batch_index``.

        Used by dynamic sampling to refill a batch with prompts of the difficulty the curriculum currently targets:
        a bin is drawn with the Gaussian weights over all bins, then a prompt uniformly inside that bin.
        """
        weights = gaussian_bin_weights(
            self.bin_values, self.target_mean(batch_index % max(self.num_batches, 1)), self.sigma
        )
        bins = torch.multinomial(torch.as_tensor(weights, dtype=torch.float64), num_prompts, True, generator=generator)
        members = [np.flatnonzero(self.bin_of_sample == k) for k in range(len(self.bin_values))]
        picks = []
        for k in bins.tolist():
            position = int(torch.randint(len(members[k]), (1,), generator=generator))
            picks.append(int(members[k][position]))
        return picks


def build_progressive_sampler(args, dataset, num_generations: int, num_iterations: int) -> ProgressiveBatchSampler:
    """The curriculum sampler for a GRPO-style trainer, laid out like TRL's ``RepeatSampler``: each prompt repeated
    ``num_generations`` times, each generation batch repeated ``num_iterations * steps_per_generation`` times.

    ``args`` carries the fields of :class:`~trl_igrpo.curriculum.CurriculumConfigMixin`; the pass rates are read from
    ``dataset`` (the full training set, before ``remove_unused_columns`` could drop the column).
    """
    return ProgressiveBatchSampler(
        read_pass_rates(dataset, args.pass_rate_column),
        mini_repeat_count=num_generations,
        batch_size=args.generation_batch_size // num_generations,
        repeat_count=num_iterations * args.steps_per_generation,
        sigma=args.curriculum_sigma,
        start=args.curriculum_start,
        end=args.curriculum_end,
        schedule=args.curriculum_schedule,
        seed=args.seed,
        balance_pool=args.curriculum_balance_pool,
    )


def curriculum_batch_index(
    global_step: int, args, num_iterations: int, sampler: ProgressiveBatchSampler | None
) -> int:
    """Index (within the epoch) of the sampler batch that optimizer step ``global_step`` trains on."""
    micro_steps_per_batch = num_iterations * args.steps_per_generation
    micro_step = global_step * args.gradient_accumulation_steps
    return (micro_step // micro_steps_per_batch) % max(1, sampler.num_batches if sampler else 1)


__all__ = ["ProgressiveBatchSampler", "build_progressive_sampler", "curriculum_batch_index", "read_pass_rates"]
