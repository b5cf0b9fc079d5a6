"""Online Reward-aware Preference Optimization (RPO): GRPO's sampling and scoring, an RPO loss over each prompt's k
samples (pairwise best-vs-worst or all pairs, or listwise). Iterative rounds that re-anchor the reference on the
previous round's policy (Nemotron-4 340B, Llama-Nemotron) reuse TRL's ``SyncRefModelCallback`` with mixup alpha 1.

Built on :class:`~trl_igrpo.core.GRPOBaseTrainer` (checks, vLLM sync, curriculum sampler, Hub cards). Overridden: the
base's rollout hook ``_rollout`` (attaches each row's raw reward and prompt-group id, which survive GRPO's shuffle) and
TRL's ``_compute_loss``. The loss needs all k samples of a prompt in one micro-batch: rather than override
``_prepare_inputs`` (whose shuffle and split sit between generation and loss), ``OnlineRPOConfig`` constrains the layout
(``steps_per_generation=1``, per-device batch a multiple of k) and ``_compute_loss`` raises on an incomplete group. The
``"sft"`` term is reduced by ``sft_normalization`` exactly as in ``RPOTrainer``.
"""

from __future__ import annotations

import torch

from ..core.trainer import GRPOBaseTrainer
from ..hub.citations import RPO
from ..rewards.aggregation import weighted_reward_sum
from .collator import REWARDS_KEY
from .explicit_rewards import load_reward_funcs
from .losses import group_rows, sequence_logps, sft_nll
from .objective import compute_rpo_objective, log_rpo_gap_metrics
from .online_config import OnlineRPOConfig

__all__ = ["OnlineRPOTrainer"]

_GROUP_KEY = "rpo_group_ids"


class OnlineRPOTrainer(GRPOBaseTrainer):
    """Online RPO: sample k responses per prompt, score them, train the implicit reward gaps to match the explicit ones.

    Same constructor as [`~trl.GRPOTrainer`] with an [`OnlineRPOConfig`]; ``reward_funcs`` may also be a local path to
    a sequence-classification reward model (loaded with ``AutoModelForSequenceClassification``).
    """

    args: OnlineRPOConfig
    _tag_names = ["trl", "grpo", "rpo", "online-rpo", "trl-igrpo"]
    _name = "Online RPO"
    _paper = RPO.as_trl_paper()
    config_class = OnlineRPOConfig

    def __init__(self, model, reward_funcs=None, args: OnlineRPOConfig | None = None, **kwargs):
        if not reward_funcs:
            raise ValueError("Online RPO needs `reward_funcs` (reward functions or a reward model) to score samples.")
        if isinstance(reward_funcs, str) or (
            isinstance(reward_funcs, (list, tuple)) and any(isinstance(f, str) and "/" in f for f in reward_funcs)
        ):
            reward_funcs, processing = load_reward_funcs(reward_funcs, kwargs.pop("reward_processing_classes", None))
            kwargs["reward_processing_classes"] = processing
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, **kwargs)

    def _rollout(self, inputs):
        """TRL's rollout, plus each row's explicit reward (weighted sum; NaN if unscorable) and prompt-group id."""
        output = super()._rollout(inputs)
        rewards = weighted_reward_sum(self.last_rollout_rewards, self.reward_weights)  # gathered: (global rows,)
        num_local = output["completion_ids"].size(0)
        start = self.accelerator.process_index * num_local
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        device = output["completion_ids"].device
        output[REWARDS_KEY] = rewards[start : start + num_local].to(device)
        # GRPO groups rows globally by index // num_generations; the ids let us regroup after the shuffle.
        output[_GROUP_KEY] = torch.arange(start, start + num_local, device=device) // group_size
        return output

    def _compute_loss(self, model, inputs):
        mode = "train" if self.model.training else "eval"
        args = self.args
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], completion_mask], dim=1)
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        per_token_logps, _, aux_loss = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1), compute_aux_loss=self.aux_loss_enabled
        )
        policy_logps = sequence_logps(per_token_logps, mask, args.average_log_probs)
        ref_logps = sequence_logps(inputs["ref_per_token_logps"], mask, args.average_log_probs)
        logratios = policy_logps - ref_logps

        rewards = inputs[REWARDS_KEY].to(logratios.dtype)
        scored = torch.isfinite(rewards)
        row_index = torch.arange(rewards.numel(), device=rewards.device, dtype=logratios.dtype)
        grouped_logratios, grouped_rewards, grouped_rows, grouped_scored, present = group_rows(
            logratios, inputs[_GROUP_KEY], torch.nan_to_num(rewards, nan=0.0), row_index, scored.to(logratios.dtype)
        )
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        sizes = present.sum(dim=1)
        if not bool((sizes == group_size).all()):
            raise RuntimeError(
                f"Online RPO got a micro-batch with incomplete prompt groups (samples per group: {sizes.tolist()}, "
                f"expected {group_size} each), so its loss would compare only some of a prompt's samples. Keep "
                "`steps_per_generation=1` and `per_device_train_batch_size` (and `per_device_eval_batch_size`) a "
                "multiple of `num_generations`, as OnlineRPOConfig enforces, and keep each group's rows together."
            )
        group_mask = present & grouped_scored.bool()

        def sft_loss():  # highest-reward scored sample of each group with one
            best_slot = grouped_rewards.masked_fill(~group_mask, -torch.inf).argmax(dim=1)
            has_any = group_mask.any(dim=1)
            best_rows = grouped_rows.gather(1, best_slot[:, None]).squeeze(1)[has_any].long()
            return sft_nll(per_token_logps[best_rows], mask[best_rows], args.sft_normalization)

        loss, stats = compute_rpo_objective(
            args.rpo_loss_type,
            args.rpo_loss_weights or [1.0] * len(args.rpo_loss_type),
            grouped_logratios,
            grouped_rewards,
            args.beta,
            args.eta,
            args.rpo_pairing,
            mask=group_mask,
            sft_loss=sft_loss,
        )
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * aux_loss
        if mode == "train":  # GRPOTrainer.loss_is_scaled_for_ga: the trainer scales for accumulation itself
            loss = loss / self.current_gradient_accumulation_steps

        metrics = self._metrics[mode]
        metrics["rpo/groups"].append(float(group_mask.any(dim=1).sum().item()))
        metrics["rpo/pairs"].append(float(stats["implicit"].numel()))
        log_rpo_gap_metrics(metrics, self.accelerator, stats["implicit"], stats["explicit"])
        return loss
