"""Pass-rate curriculum (Llama-Nemotron progressive batching), pass-rate estimation and DAPO dynamic sampling.

The pieces here are pure functions and helper objects; :class:`~trl_igrpo.core.GRPOBaseTrainer` switches them on from
config fields. :class:`CurriculumGRPOTrainer` (plain GRPO with them) is imported lazily, because it builds on the base.
"""

from .config import CurriculumConfigMixin
from .dynamic_sampling import DynamicSampler, informative_group_mask, merge_rollout_outputs, plan_row_selection
from .pass_rate import compute_pass_rates, filter_by_pass_rate
from .sampler import ProgressiveBatchSampler, build_progressive_sampler, curriculum_batch_index, read_pass_rates
from .schedule import allocate_batch_counts, gaussian_bin_weights, plan_progressive_batches, schedule_mean

__all__ = [
    "CurriculumConfigMixin",
    "CurriculumGRPOConfig",
    "CurriculumGRPOTrainer",
    "DynamicSampler",
    "DynamicSamplingMixin",
    "ProgressiveBatchSampler",
    "ProgressiveBatchingMixin",
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

_LAZY = {  # module (relative to this package) that defines each lazily imported name
    "CurriculumGRPOConfig": ".grpo_config",
    "CurriculumGRPOTrainer": ".trainer",
    "DynamicSamplingMixin": "..core.compat",
    "ProgressiveBatchingMixin": "..core.compat",
}


def __getattr__(name: str):
    import importlib

    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)
