"""Configuration for offline Reward-aware Preference Optimization (:class:`~trl_igrpo.RPOTrainer`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trl import DPOConfig

from .losses import RPO_LOSS_TYPES, RPO_PAIRINGS, SFT_NORMALIZATIONS

__all__ = ["RPO_EXTRA_LOSS_TYPES", "RPOConfig", "RPOSharedConfigMixin", "validate_rpo_loss_settings"]

# Loss types an RPO loss can be combined with inside the RPO loss loop (besides the RPO family itself).
RPO_EXTRA_LOSS_TYPES = ("sft",)


def validate_rpo_loss_settings(
    loss_types: list[str],
    loss_weights: list[float] | None,
    beta: float,
    eta: float,
    pairing: str,
    field_name: str,
    *,
    sft_normalization: str = "sequence_sum",
) -> None:
    """Shared checks for :class:`RPOConfig` and :class:`~trl_igrpo.OnlineRPOConfig`; raises ``ValueError``."""
    allowed = (*RPO_LOSS_TYPES, *RPO_EXTRA_LOSS_TYPES)
    unknown = [name for name in loss_types if name not in allowed]
    if unknown:
        raise ValueError(
            f"`{field_name}` contains {unknown}, which RPO does not know. Allowed: {list(allowed)}. (TRL's `rpo_alpha` "
            "is an unrelated method; for plain DPO losses use trl.DPOTrainer.)"
        )
    if not any(name in RPO_LOSS_TYPES for name in loss_types):
        raise ValueError(f"`{field_name}`={loss_types} needs at least one RPO loss from {list(RPO_LOSS_TYPES)}.")
    if loss_weights is not None and len(loss_weights) != len(loss_types):
        raise ValueError(f"Got {len(loss_weights)} loss weights for {len(loss_types)} loss types in `{field_name}`.")
    if not (beta > 0 and math.isfinite(beta)):
        raise ValueError(f"`beta` must be a positive finite number (the implicit-reward scale), got {beta}.")
    if not (eta > 0 and math.isfinite(eta)):
        raise ValueError(f"`eta` must be a positive finite number (the explicit-reward scale), got {eta}.")
    if pairing not in RPO_PAIRINGS:
        raise ValueError(f"`rpo_pairing` must be one of {RPO_PAIRINGS}, got {pairing!r}.")
    if sft_normalization not in SFT_NORMALIZATIONS:
        raise ValueError(
            f"`sft_normalization` must be one of {SFT_NORMALIZATIONS}, got {sft_normalization!r}. 'sequence_sum' is "
            "NeMo-Aligner's (use it with NeMo-calibrated SFT weights); 'token_mean' is TRL's `sft` loss."
        )


@dataclass
class RPOSharedConfigMixin:
    r"""
    Configuration fields the offline ([`~trl_igrpo.RPOConfig`]) and online ([`~trl_igrpo.OnlineRPOConfig`]) RPO
    configs share (a dataclass mixin). RPO: Reward-aware Preference Optimization
    ([Nemotron-4 340B](https://huggingface.co/papers/2406.11704);
    [Sun et al.](https://huggingface.co/papers/2502.00203)).

    Parameters:
        > Parameters that control the RPO loss

        eta (`float`, *optional*, defaults to `1.0`):
            Explicit-reward scale (NeMo-Aligner `gt_reward_scale`). Rewards are used raw, without normalisation; tune
            eta to the reward model's scale (the RPO author used 1).
        average_log_probs (`bool`, *optional*, defaults to `False`):
            Token-average the sequence log-ratios instead of summing them (NeMo-Aligner
            `preference_average_log_probs`). Set `True` to make `"ipo"` equal TRL's `ipo`.
        rpo_pairing (`str`, *optional*, defaults to `"best_vs_worst"`):
            How pairwise losses see k > 2 responses: `"best_vs_worst"` (one pair per prompt) or `"all_pairs"` (with
            `rpo_sq` this is the RLOO estimator).
        sft_normalization (`str`, *optional*, defaults to `"sequence_sum"`):
            Reduction of the `"sft"` term over the target responses' tokens. `"sequence_sum"`: sum each response's
            token log-probs, mean over examples (NeMo-Aligner `sft_loss_func`, so NeMo-calibrated SFT weights such as
            0.05 carry over). `"sequence_mean"`: token-average each response, mean over examples (NeMo-Aligner
            `sft_average_log_probs=True`). `"token_mean"`: mean over all target tokens of the batch (TRL's `sft`);
            it equals `"sequence_sum"` divided by the batch's mean target length.

        > Parameters that control the reference model

        rpo_round_steps (`int` or `None`, *optional*, defaults to `None`):
            Re-anchor the reference model on the current policy every this many optimizer steps (Nemotron-4 /
            Llama-Nemotron iterative RPO rounds). Sets TRL's `sync_ref_model=True`, `ref_model_mixup_alpha=1.0` and
            `ref_model_sync_steps`. Incompatible with `precompute_ref_log_probs` and with PEFT.
    """

    eta: float = field(default=1.0, metadata={"help": "Explicit-reward scale eta (NeMo-Aligner default 1.0)."})
    average_log_probs: bool = field(
        default=False, metadata={"help": "Token-average sequence log-ratios instead of summing them."}
    )
    rpo_pairing: str = field(
        default="best_vs_worst", metadata={"help": "Pairing of k > 2 responses: 'best_vs_worst' or 'all_pairs'."}
    )
    rpo_round_steps: int | None = field(
        default=None, metadata={"help": "Re-anchor the reference on the policy every this many steps."}
    )
    sft_normalization: str = field(
        default="sequence_sum",
        metadata={"help": "'sft' term reduction: 'sequence_sum' (NeMo-Aligner), 'sequence_mean' or 'token_mean'."},
    )

    def _validate_rpo(self, loss_types: list[str], loss_weights: list[float] | None, field_name: str) -> None:
        """Check the RPO fields and switch on TRL's reference re-anchoring for ``rpo_round_steps`` (call from
        ``__post_init__``, after the TRL config's own)."""
        validate_rpo_loss_settings(
            loss_types,
            loss_weights,
            self.beta,  # type: ignore[attr-defined]  # from the TRL config this mixin is combined with
            self.eta,
            self.rpo_pairing,
            field_name,
            sft_normalization=self.sft_normalization,
        )
        if self.rpo_round_steps is not None:
            if self.rpo_round_steps < 1:
                raise ValueError(f"`rpo_round_steps` must be >= 1, got {self.rpo_round_steps}.")
            # fields of the TRL config this mixin is combined with (DPOConfig / GRPOConfig)
            self.sync_ref_model = True  # type: ignore[attr-defined]
            self.ref_model_mixup_alpha = 1.0  # type: ignore[attr-defined]
            self.ref_model_sync_steps = self.rpo_round_steps  # type: ignore[attr-defined]


@dataclass
class RPOConfig(RPOSharedConfigMixin, DPOConfig):
    r"""
    Configuration class for the [`~trl_igrpo.RPOTrainer`]: offline Reward-aware Preference Optimization.

    RPO ([Nemotron-4 340B](https://huggingface.co/papers/2406.11704);
    [Sun et al.](https://huggingface.co/papers/2502.00203); NeMo-Aligner) trains the implicit reward gap
    `a = beta * (rho_chosen - rho_rejected)` to match the explicit reward gap `b = eta * (r_chosen - r_rejected)` under
    the distance named in `loss_type`. All [`~trl.DPOConfig`] arguments apply; the ones below are added or have
    RPO-specific defaults. The shared fields `eta`, `average_log_probs`, `rpo_pairing`, `rpo_round_steps` and
    `sft_normalization` are those of [`~trl_igrpo.rpo.config.RPOSharedConfigMixin`].

    Published settings (see `docs/rpo.md`):

    | Setting | beta | eta | learning rate | batch |
    |---|---|---|---|---|
    | NeMo-Aligner defaults (`gpt_dpo.yaml`), used here as defaults | 0.2 | 1.0 | 9e-6 | 64 |
    | Llama-Nemotron Nano 8B, 2 rounds of offline RPO on on-policy data (arXiv 2505.00949) | 3e-2 | n/a | 7e-7 | 512 |
    | Llama-Nemotron Super 49B, 2 rounds of online RPO (see [`~trl_igrpo.OnlineRPOConfig`]) | 1e-5 | 3.0 | 4e-7 | 64 |
    | Nemotron-4 340B: 1 DPO then 3 RPO (`rpo_bwd_kl`) iterations, each re-anchored on the last | n/a | n/a | n/a | n/a |
    | NeMo-Aligner multi-response PR #311 (listwise) | 0.2 | 0.2 | n/a | n/a |

    Parameters:
        > Parameters that control the loss

        loss_type (`list[str]`, *optional*, defaults to `["rpo_bwd_kl"]`):
            Losses to combine with `loss_weights`. RPO family: `"rpo_bwd_kl"` (KL(Bern(sigmoid(b)) || Bern(sigmoid(a))),
            the Nemotron-4 loss), `"rpo_fwd_kl"`, `"rpo_sq"` ((a - b)^2), `"dpo"`, `"ipo"` (in the same frame) and
            `"rpo_listwise"` (KL(softmax(eta r) || softmax(beta rho)) over k responses; equals `rpo_bwd_kl` at k = 2).
            Can be combined with `"sft"`: NLL of the labelled `chosen` response (pairwise data) or of the
            highest-reward response (k-response data), reduced as `sft_normalization` says.
        beta (`float`, *optional*, defaults to `0.2`):
            Implicit-reward scale (NeMo-Aligner `ref_policy_kl_penalty`, default 0.2).

        > Parameters that control where the explicit rewards come from

        chosen_reward_column (`str`, *optional*, defaults to `"chosen_reward"`):
            Scalar reward column of the chosen response in a pairwise dataset (`prompt`, `chosen`, `rejected`).
        rejected_reward_column (`str`, *optional*, defaults to `"rejected_reward"`):
            Scalar reward column of the rejected response in a pairwise dataset.
        responses_column (`str`, *optional*, defaults to `"responses"`):
            Column of a k-response dataset holding a list of k completions per prompt (the NeMo-Aligner PR #311
            format). All rows must have the same k.
        rewards_column (`str`, *optional*, defaults to `"rewards"`):
            Column of a k-response dataset holding the k rewards of `responses_column`, in the same order.
        default_chosen_reward (`float` or `None`, *optional*, defaults to `None`):
            NeMo-Aligner's fallback chosen reward (1.0) when the reward columns are absent and no reward function is
            given. `None` makes a missing column an error instead.
        default_rejected_reward (`float` or `None`, *optional*, defaults to `None`):
            The matching fallback rejected reward (NeMo-Aligner: 0.0).
    """

    loss_type: list[str] = field(
        default_factory=lambda: ["rpo_bwd_kl"],
        metadata={"help": "RPO losses: rpo_bwd_kl, rpo_fwd_kl, rpo_sq, dpo, ipo, rpo_listwise; may add 'sft'."},
    )
    beta: float = field(default=0.2, metadata={"help": "Implicit-reward scale beta (NeMo-Aligner default 0.2)."})
    chosen_reward_column: str = field(default="chosen_reward", metadata={"help": "Reward column of `chosen`."})
    rejected_reward_column: str = field(default="rejected_reward", metadata={"help": "Reward column of `rejected`."})
    responses_column: str = field(default="responses", metadata={"help": "k-response datasets: completions column."})
    rewards_column: str = field(default="rewards", metadata={"help": "k-response datasets: rewards column."})
    default_chosen_reward: float | None = field(
        default=None, metadata={"help": "Fallback chosen reward when the column is absent (NeMo-Aligner: 1.0)."}
    )
    default_rejected_reward: float | None = field(
        default=None, metadata={"help": "Fallback rejected reward when the column is absent (NeMo-Aligner: 0.0)."}
    )

    def __post_init__(self):
        super().__post_init__()
        self._validate_rpo(self.loss_type, self.loss_weights, "loss_type")
        for name in ("chosen_reward_column", "rejected_reward_column", "responses_column", "rewards_column"):
            if not getattr(self, name):
                raise ValueError(f"`{name}` must be a non-empty column name.")
        if self.ld_alpha is not None or self.f_divergence_type != "reverse_kl" or self.use_weighting:
            raise ValueError(
                "RPO losses support neither `ld_alpha`, a non-default `f_divergence_type`, nor `use_weighting`."
            )
