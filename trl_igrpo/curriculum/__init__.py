"""Pass-rate curriculum (Llama-Nemotron progressive batching), pass-rate estimation and DAPO dynamic sampling.

The pieces here are pure functions and helper objects, below the trainers: :class:`~trl_igrpo.core.GRPOBaseTrainer`
switches them on from config fields (:class:`CurriculumConfigMixin`), and plain GRPO with them is
:class:`~trl_igrpo.grpo.CurriculumGRPOTrainer`.

- :mod:`~trl_igrpo.curriculum.config`: the config fields;
- :mod:`~trl_igrpo.curriculum.schedule`: the Gaussian over pass-rate bins and how its centre moves;
- :mod:`~trl_igrpo.curriculum.sampler`: the progressive batch sampler (TRL's ``RepeatSampler`` layout);
- :mod:`~trl_igrpo.curriculum.dynamic_sampling`: dropping constant-reward groups and refilling the batch;
- :mod:`~trl_igrpo.curriculum.pass_rate`: estimating each prompt's pass rate (``trl-igrpo pass-rate``).
"""

from .config import CurriculumConfigMixin
from .dynamic_sampling import DynamicSampler, informative_group_mask, merge_rollout_outputs, plan_row_selection
from .pass_rate import compute_pass_rates, filter_by_pass_rate
from .sampler import ProgressiveBatchSampler, build_progressive_sampler, curriculum_batch_index, read_pass_rates
from .schedule import allocate_batch_counts, gaussian_bin_weights, plan_progressive_batches, schedule_mean

__all__ = [
    "CurriculumConfigMixin",
    "DynamicSampler",
    "ProgressiveBatchSampler",
    "allocate_batch_counts",
    "build_progressive_sampler",
    "compute_pass_rates",
    "curriculum_batch_index",
    "filter_by_pass_rate",
    "gaussian_bin_weights",
    "informative_group_mask",
    "merge_rollout_outputs",
    "plan_progressive_batches",
    "plan_row_selection",
    "read_pass_rates",
    "schedule_mean",
]
