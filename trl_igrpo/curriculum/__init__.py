"""Pass-rate curriculum (Llama-Nemotron progressive batching), pass-rate estimation and DAPO dynamic sampling."""

from .config import CurriculumConfigMixin, CurriculumGRPOConfig
from .dynamic_sampling import DynamicSamplingMixin, informative_group_mask, merge_rollout_outputs, plan_row_selection
from .pass_rate import compute_pass_rates, filter_by_pass_rate
from .sampler import ProgressiveBatchingMixin, ProgressiveBatchSampler, read_pass_rates
from .schedule import allocate_batch_counts, gaussian_bin_weights, plan_progressive_batches, schedule_mean
from .trainer import CurriculumGRPOTrainer

__all__ = [
    "CurriculumConfigMixin",
    "CurriculumGRPOConfig",
    "CurriculumGRPOTrainer",
    "DynamicSamplingMixin",
    "ProgressiveBatchSampler",
    "ProgressiveBatchingMixin",
    "allocate_batch_counts",
    "compute_pass_rates",
    "filter_by_pass_rate",
    "gaussian_bin_weights",
    "informative_group_mask",
    "merge_rollout_outputs",
    "plan_progressive_batches",
    "plan_row_selection",
    "read_pass_rates",
    "schedule_mean",
]
