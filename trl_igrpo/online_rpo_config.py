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

    For every prompt's k samples to land in the same micro-batch, keep `per_device_train_batch_size` a multiple of
    `num_generations` and `steps_per_generation=1`; otherwise the loss uses whichever samples of a prompt share a
    micro-batch (pairs are never formed across prompts).
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
        super().__post_init__()
        validate_rpo_loss_settings(
            self.rpo_loss_type,
            self.rpo_loss_weights,
            self.beta,
            self.eta,
            self.rpo_pairing,
            "rpo_loss_type",
            sft_normalization=self.sft_normalization,
        )
        if self.num_generations is not None and self.num_generations < 2:
            raise ValueError("Online RPO compares samples of a prompt: `num_generations` must be >= 2.")
        if self.rpo_round_steps is not None:
            if self.rpo_round_steps < 1:
                raise ValueError(f"`rpo_round_steps` must be >= 1, got {self.rpo_round_steps}.")
            self.sync_ref_model = True
            self.ref_model_mixup_alpha = 1.0
            self.ref_model_sync_steps = self.rpo_round_steps
