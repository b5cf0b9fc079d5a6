"""Configuration for online Reward-aware Preference Optimization (:class:`~trl_igrpo.OnlineRPOTrainer`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.config import GRPOBaseConfig
from .config import RPOSharedConfigMixin

__all__ = ["OnlineRPOConfig"]


@dataclass
class OnlineRPOConfig(RPOSharedConfigMixin, GRPOBaseConfig):
    r"""
    Configuration class for the [`~trl_igrpo.OnlineRPOTrainer`]: sample k = `num_generations` responses per prompt
    from the current policy (TRL's GRPO generation: transformers, paged, or vLLM), score them with reward functions or
    a reward model, and apply an RPO loss over the k responses. Every [`~trl.GRPOConfig`] generation argument applies;
    GRPO's own loss arguments (`loss_type`, `epsilon`, `scale_rewards`, ...) are unused.

    Defaults follow Llama-Nemotron Super 49B's iterative online RPO
    ([Llama-Nemotron](https://huggingface.co/papers/2505.00949), §6.2): beta 1e-5, eta 3.0, learning rate 4e-7, batch
    64 prompts (set `per_device_train_batch_size` x processes x accumulation = 64 x `num_generations` rows yourself),
    500 steps per round, 2 rounds (`rpo_round_steps=500`), reward model Llama-3.1-Nemotron-70B-Reward on HelpSteer2
    prompts.

    The shared RPO fields (`average_log_probs`, `rpo_pairing`, `rpo_round_steps`, `sft_normalization`) are those of
    [`~trl_igrpo.rpo.config.RPOSharedConfigMixin`]; the checks, vLLM sync and curriculum fields those of
    [`~trl_igrpo.core.GRPOBaseConfig`] (`dynamic_sampling` is refused: dropping constant-reward groups changes which
    prompts the RPO loss sees, and a refill would mix prompt groups across rounds).

    Whole prompt groups (enforced here). The RPO losses compare the k samples of a prompt, so the loss must see all k
    in one micro-batch on one rank. TRL shuffles each generation batch and splits it into `steps_per_generation`
    micro-batches, and accelerate hands each rank `per_device_train_batch_size` contiguous rows; either would split a
    group. So this config sets `steps_per_generation=1` when neither it nor `generation_batch_size` is given (each
    micro-step generates its own prompts; gradient accumulation still works), and raises when
    `per_device_train_batch_size` is not a multiple of `num_generations` or when `steps_per_generation` (set directly
    or through `generation_batch_size`) is not 1. The cost: with accumulation, generation runs once per micro-step on
    `per_device_train_batch_size` rows instead of once per optimizer step on a larger batch. The same rule applies to
    `per_device_eval_batch_size` and `num_generations_eval` when evaluation is on.

    Parameters:
        > Parameters that control the RPO loss

        rpo_loss_type (`list[str]`, *optional*, defaults to `["rpo_bwd_kl"]`):
            `rpo_bwd_kl`, `rpo_fwd_kl`, `rpo_sq`, `dpo`, `ipo`, `rpo_listwise`, optionally plus `sft` (NLL on the
            best sample of each prompt), combined with `rpo_loss_weights`.
        rpo_loss_weights (`list[float]` or `None`, *optional*, defaults to `None`):
            One weight per loss of `rpo_loss_type`; `None` weighs each 1.
        beta (`float`, *optional*, defaults to `1e-5`):
            Implicit-reward scale. Must be > 0: it is also what makes GRPO load the reference model and compute its
            log-probs (`ref_per_token_logps`).
        eta (`float`, *optional*, defaults to `3.0`):
            Explicit-reward scale; rewards are the weighted sum of the reward functions, used raw.

        > Parameters whose defaults follow Llama-Nemotron instead of GRPOConfig

        learning_rate (`float`, *optional*, defaults to `4e-7`):
            Llama-Nemotron Super 49B's online RPO learning rate.
    """

    beta: float = field(default=1e-5, metadata={"help": "Implicit-reward scale (Llama-Nemotron online RPO: 1e-5)."})
    learning_rate: float = field(default=4e-7, metadata={"help": "Llama-Nemotron online RPO: 4e-7."})
    eta: float = field(default=3.0, metadata={"help": "Explicit-reward scale (Llama-Nemotron online RPO: 3.0)."})
    rpo_loss_type: list[str] = field(
        default_factory=lambda: ["rpo_bwd_kl"],
        metadata={"help": "RPO losses: rpo_bwd_kl, rpo_fwd_kl, rpo_sq, dpo, ipo, rpo_listwise; may add 'sft'."},
    )
    rpo_loss_weights: list[float] | None = field(default=None, metadata={"help": "Weights of `rpo_loss_type`."})

    def __post_init__(self):
        if isinstance(self.rpo_loss_type, str):
            self.rpo_loss_type = [self.rpo_loss_type]
        if self.num_generations is not None and self.num_generations < 2:
            raise ValueError("Online RPO compares samples of a prompt: `num_generations` must be >= 2.")
        if self.num_generations is not None:
            _require_whole_groups(
                self.per_device_train_batch_size, "per_device_train_batch_size", self.num_generations
            )
            if self.eval_strategy != "no":  # checked before GRPO's own (global) eval check so this message wins
                _require_whole_groups(
                    self.per_device_eval_batch_size,
                    "per_device_eval_batch_size",
                    self.num_generations_eval or self.num_generations,
                    "num_generations_eval" if self.num_generations_eval else "num_generations",
                )
        source = "generation_batch_size" if self.generation_batch_size is not None else "steps_per_generation"
        if self.steps_per_generation is None and self.generation_batch_size is None:
            self.steps_per_generation = 1  # TRL would default to gradient_accumulation_steps (see the class docstring)
        super().__post_init__()
        if self.steps_per_generation != 1:
            raise ValueError(
                f"Online RPO needs `steps_per_generation=1` (got {self.steps_per_generation}, from `{source}`): TRL "
                "shuffles a generation batch and splits it into `steps_per_generation` micro-batches, which separates "
                "the samples of a prompt that the RPO loss compares. Leave `steps_per_generation` and "
                "`generation_batch_size` unset (or set `steps_per_generation=1`); use `gradient_accumulation_steps` "
                "for a larger effective batch."
            )
        self._validate_rpo(self.rpo_loss_type, self.rpo_loss_weights, "rpo_loss_type")
        if self.dynamic_sampling:
            raise ValueError(
                "Online RPO does not support `dynamic_sampling`: constant-reward groups still carry a target (an "
                "implicit gap of 0), and refill rounds would mix prompt groups. Use progressive_batching to shape the "
                "prompt mix instead."
            )


def _require_whole_groups(
    batch_size: int, batch_field: str, group_size: int, group_field: str = "num_generations"
) -> None:
    """Raise unless a per-device batch holds whole prompt groups of ``group_size`` samples (see OnlineRPOConfig)."""
    if batch_size % group_size != 0:
        raise ValueError(
            f"Online RPO needs `{batch_field}` ({batch_size}) to be a multiple of `{group_field}` ({group_size}): "
            f"each rank's micro-batch must hold all {group_size} samples of each of its prompts, or the RPO loss "
            f"compares only some of them. Set `{batch_field}` to a multiple of {group_size} (e.g. "
            f"{max(group_size, batch_size - batch_size % group_size)}) or change `{group_field}`."
        )
