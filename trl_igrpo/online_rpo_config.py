"""Configuration for online Reward-aware Preference Optimization (:class:`~trl_igrpo.OnlineRPOTrainer`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from .rpo_config import validate_rpo_loss_settings

__all__ = ["OnlineRPOConfig"]


@dataclass
class OnlineRPOConfig(GRPOConfig):
    r"""
    Configuration for [`OnlineRPOTrainer`]: sample k = `num_generations` responses per prompt from the current policy
    (TRL's GRPO generation: transformers, paged, or vLLM), score them with reward functions or a reward model, and
    apply an RPO loss over the k responses. Every [`~trl.GRPOConfig`] generation argument applies; GRPO's own loss
    arguments (`loss_type`, `epsilon`, `scale_rewards`, ...) are unused.

    Defaults follow Llama-Nemotron Super 49B's iterative online RPO (arXiv 2505.00949 section 6.2): beta 1e-5,
    eta 3.0, learning rate 4e-7, batch 64 prompts (set `per_device_train_batch_size` x processes x accumulation = 64 x
    `num_generations` rows yourself), 500 steps per round, 2 rounds (`rpo_round_steps=500`), reward model
    Llama-3.1-Nemotron-70B-Reward on HelpSteer2 prompts.

    Args:
        beta (`float`, defaults to `1e-5`):
            Implicit-reward scale. Must be > 0: it is also what makes GRPO load the reference model and compute its
            log-probs (`ref_per_token_logps`).
        eta (`float`, defaults to `3.0`):
            Explicit-reward scale; rewards are the weighted sum of the reward functions, used raw.
        rpo_loss_type (`list[str]`, defaults to `["rpo_bwd_kl"]`):
            `rpo_bwd_kl`, `rpo_fwd_kl`, `rpo_sq`, `dpo`, `ipo`, `rpo_listwise`, optionally plus `sft` (NLL on the
            best sample of each prompt), combined with `rpo_loss_weights`.
        rpo_loss_weights (`list[float]` or `None`): one weight per loss (default 1 each).
        rpo_pairing (`str`, defaults to `"best_vs_worst"`):
            Pairwise losses use the best and worst sample per prompt, or `"all_pairs"` (with `rpo_sq` this is the RLOO
            estimator).
        average_log_probs (`bool`, defaults to `False`): token-average the sequence log-ratios.
        rpo_round_steps (`int` or `None`, defaults to `None`):
            Length of an RPO round in optimizer steps: at the end of each round the reference model is re-anchored on
            the current policy (TRL's `sync_ref_model` with `ref_model_mixup_alpha=1.0`). Not supported with PEFT.

        sft_normalization (`str`, defaults to `"sequence_sum"`):
            Reduction of the `"sft"` term, as in [`RPOConfig`]: `"sequence_sum"` (NeMo-Aligner: per-sequence
            log-prob sum, mean over prompts), `"sequence_mean"` or `"token_mean"`.

    Whole prompt groups (enforced here). The RPO losses compare the k samples of a prompt, so the loss must see all k
    in one micro-batch on one rank. TRL shuffles each generation batch and splits it into `steps_per_generation`
    micro-batches, and accelerate hands each rank `per_device_train_batch_size` contiguous rows; either would split a
    group. So this config sets `steps_per_generation=1` when neither it nor `generation_batch_size` is given (each
    micro-step generates its own prompts; gradient accumulation still works), and raises when
    `per_device_train_batch_size` is not a multiple of `num_generations` or when `steps_per_generation` (set directly
    or through `generation_batch_size`) is not 1. The cost: with accumulation, generation runs once per micro-step on
    `per_device_train_batch_size` rows instead of once per optimizer step on a larger batch. The same rule applies to
    `per_device_eval_batch_size` and `num_generations_eval` when evaluation is on.
    """

    beta: float = field(default=1e-5, metadata={"help": "Implicit-reward scale (Llama-Nemotron online RPO: 1e-5)."})
    learning_rate: float = field(default=4e-7, metadata={"help": "Llama-Nemotron online RPO: 4e-7."})
    eta: float = field(default=3.0, metadata={"help": "Explicit-reward scale (Llama-Nemotron online RPO: 3.0)."})
    rpo_loss_type: list[str] = field(
        default_factory=lambda: ["rpo_bwd_kl"],
        metadata={"help": "RPO losses: rpo_bwd_kl, rpo_fwd_kl, rpo_sq, dpo, ipo, rpo_listwise; may add 'sft'."},
    )
    rpo_loss_weights: list[float] | None = field(default=None, metadata={"help": "Weights of `rpo_loss_type`."})
    rpo_pairing: str = field(default="best_vs_worst", metadata={"help": "'best_vs_worst' or 'all_pairs'."})
    average_log_probs: bool = field(default=False, metadata={"help": "Token-average the sequence log-ratios."})
    rpo_round_steps: int | None = field(
        default=None, metadata={"help": "Re-anchor the reference on the policy every this many steps."}
    )
    sft_normalization: str = field(
        default="sequence_sum",
        metadata={"help": "'sft' term reduction: 'sequence_sum' (NeMo-Aligner), 'sequence_mean' or 'token_mean'."},
    )

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
        validate_rpo_loss_settings(
            self.rpo_loss_type,
            self.rpo_loss_weights,
            self.beta,
            self.eta,
            self.rpo_pairing,
            "rpo_loss_type",
            sft_normalization=self.sft_normalization,
        )
        if self.rpo_round_steps is not None:
            if self.rpo_round_steps < 1:
                raise ValueError(f"`rpo_round_steps` must be >= 1, got {self.rpo_round_steps}.")
            self.sync_ref_model = True
            self.ref_model_mixup_alpha = 1.0
            self.ref_model_sync_steps = self.rpo_round_steps


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
