"""Configuration of the pass-rate curriculum (progressive batching) and of dynamic sampling: the dataclass mixin
:class:`CurriculumConfigMixin`, which :class:`~trl_igrpo.core.GRPOBaseConfig` includes."""

from __future__ import annotations

from dataclasses import dataclass, field

from .schedule import SCHEDULES

SHORTFALL_POLICIES = ("mask", "raise")


@dataclass
class CurriculumConfigMixin:
    r"""
    Configuration fields of the pass-rate curriculum (progressive batching of
    [Llama-Nemotron](https://huggingface.co/papers/2505.00949), §5) and of dynamic sampling
    ([DAPO](https://huggingface.co/papers/2503.14476), Eq. 11). A dataclass mixin that
    [`~trl_igrpo.core.GRPOBaseConfig`] includes, so every GRPO-based config of the package has these fields; every one
    has a default and everything is off by default.

    Progressive batching (paper: "a Gaussian centred on a difficulty that moves from high pass rates (easy) in early
    batches to low pass rates (hard) in later batches"). The paper gives no sigma, schedule or end points; the defaults
    below are `trl-igrpo` choices: sigma 0.15 (about one 1/8 pass-rate bin either side keeps most of the mass, so
    neighbouring bins mix without the batch collapsing onto one bin), a linear schedule from the highest observed pass
    rate to the lowest over one pass of the data (the curriculum restarts each epoch), and pool balancing (see
    [`~trl_igrpo.curriculum.schedule.balanced_batch_targets`]) so sampling without replacement does not leave the
    easiest prompts for the end.

    Dynamic sampling (DAPO, "0 < |{o_i | is_equivalent(a, o_i)}| < G"): groups whose G rewards are all equal have zero
    advantage and give no learning signal; they are dropped and the batch is refilled.

    Parameters:
        > Parameters that control the pass-rate curriculum (progressive batching)

        progressive_batching (`bool`, *optional*, defaults to `False`):
            Order the training prompts by the pass-rate curriculum. Needs a pre-computed pass rate per prompt
            (`trl-igrpo pass-rate`, [`~trl_igrpo.curriculum.compute_pass_rates`]).
        pass_rate_column (`str`, *optional*, defaults to `"pass_rate"`):
            Dataset column with each prompt's pass rate in [0, 1].
        curriculum_start (`float` or `None`, *optional*, defaults to `None`):
            Centre of the pass-rate Gaussian for the first batch, in [0, 1]. `None`: the highest pass rate present.
        curriculum_end (`float` or `None`, *optional*, defaults to `None`):
            Centre of the pass-rate Gaussian for the last batch of an epoch, in [0, 1]. `None`: the lowest pass rate
            present.
        curriculum_sigma (`float`, *optional*, defaults to `0.15`):
            Standard deviation of the pass-rate Gaussian (> 0; not given by the paper, 0.1-0.2 is sensible).
        curriculum_schedule (`str`, *optional*, defaults to `"linear"`):
            How the Gaussian's centre moves from `curriculum_start` to `curriculum_end` over an epoch: `"linear"` or
            `"cosine"`.
        curriculum_balance_pool (`bool`, *optional*, defaults to `True`):
            Rescale the Gaussian targets (Sinkhorn) so each pass-rate bin is used up evenly over the epoch; without it
            the easiest leftover prompts pile up in the last batches.

        > Parameters that control dynamic sampling

        dynamic_sampling (`bool`, *optional*, defaults to `False`):
            Drop prompt groups whose rewards are all equal and refill the batch with new prompts.
        dynamic_sampling_max_extra_rounds (`int`, *optional*, defaults to `3`):
            At most this many extra generation rounds per batch to refill the dropped groups (>= 0).
        dynamic_sampling_shortfall (`str`, *optional*, defaults to `"mask"`):
            What happens when the extra rounds cannot fill the batch: `"mask"` fills the gap with dropped rows whose
            completion mask and advantage are zeroed (they add nothing to the loss), `"raise"` stops training with an
            error.
    """

    progressive_batching: bool = field(
        default=False,
        metadata={"help": "Order training prompts by the pass-rate curriculum (Llama-Nemotron progressive batching)."},
    )
    pass_rate_column: str = field(
        default="pass_rate",
        metadata={"help": "Dataset column with each prompt's pre-computed pass rate in [0, 1]."},
    )
    curriculum_start: float | None = field(
        default=None,
        metadata={
            "help": "Centre of the pass-rate Gaussian for the first batch. None: the highest pass rate present."
        },
    )
    curriculum_end: float | None = field(
        default=None,
        metadata={"help": "Centre of the pass-rate Gaussian for the last batch. None: the lowest pass rate present."},
    )
    curriculum_sigma: float = field(
        default=0.15,
        metadata={
            "help": "Standard deviation of the pass-rate Gaussian (not given by the paper; 0.1-0.2 is sensible)."
        },
    )
    curriculum_schedule: str = field(
        default="linear",
        metadata={"help": "How the Gaussian centre moves from start to end over an epoch: 'linear' or 'cosine'."},
    )
    curriculum_balance_pool: bool = field(
        default=True,
        metadata={
            "help": "Rescale the Gaussian targets (Sinkhorn) so each pass-rate bin is used up evenly over the epoch; "
            "without it the easiest leftover prompts pile up in the last batches."
        },
    )
    dynamic_sampling: bool = field(
        default=False,
        metadata={
            "help": "Drop prompt groups whose rewards are all equal and refill the batch (DAPO dynamic sampling)."
        },
    )
    dynamic_sampling_max_extra_rounds: int = field(
        default=3,
        metadata={"help": "At most this many extra generation rounds per batch to refill dropped groups."},
    )
    dynamic_sampling_shortfall: str = field(
        default="mask",
        metadata={
            "help": "When the extra rounds cannot fill the batch: 'mask' fills the gap with dropped rows whose completion "
            "mask and advantage are zeroed (they add nothing to the loss), 'raise' stops training with an error."
        },
    )

    def _validate_curriculum(self) -> None:
        """Check the curriculum and dynamic-sampling fields; call from ``__post_init__``."""
        for name in ("curriculum_start", "curriculum_end"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` is a pass rate and must lie in [0, 1], got {value}")
        if not self.curriculum_sigma > 0.0:
            raise ValueError(f"`curriculum_sigma` must be > 0, got {self.curriculum_sigma}")
        if self.curriculum_schedule not in SCHEDULES:
            raise ValueError(f"`curriculum_schedule` must be one of {SCHEDULES}, got {self.curriculum_schedule!r}")
        if not isinstance(self.pass_rate_column, str) or not self.pass_rate_column:
            raise ValueError(f"`pass_rate_column` must be a non-empty column name, got {self.pass_rate_column!r}")
        if not isinstance(self.dynamic_sampling_max_extra_rounds, int) or self.dynamic_sampling_max_extra_rounds < 0:
            raise ValueError(
                f"`dynamic_sampling_max_extra_rounds` must be an integer >= 0, got {self.dynamic_sampling_max_extra_rounds!r}"
            )
        if self.dynamic_sampling_shortfall not in SHORTFALL_POLICIES:
            raise ValueError(
                f"`dynamic_sampling_shortfall` must be one of {SHORTFALL_POLICIES}, got {self.dynamic_sampling_shortfall!r}"
            )
