"""Offline Reward-aware Preference Optimization (RPO) as a :class:`trl.DPOTrainer` subclass.

What changes relative to DPO (see ``docs/rpo.md``):

- Each example carries explicit rewards: pairwise rows (``prompt``, ``chosen``, ``rejected`` plus two scalar reward
  columns) or k-response rows (``prompt``, a list of k ``responses`` and a list of k ``rewards``), or rewards scored at
  construction by reward functions/models (:mod:`~trl_igrpo.rpo.explicit_rewards`).
- Internally every example becomes k responses with a ``rpo_rewards`` list (k = 2 for pairwise data), collated
  response-major (:mod:`~trl_igrpo.rpo.collator`), so for k = 2 the batch is exactly TRL's ``[chosen...; rejected...]``
  layout and TRL's reference machinery (``ref_model``, PEFT adapter switching, ``precompute_ref_log_probs``,
  ``sync_ref_model``) is reused as is.
- ``_compute_loss`` computes the RPO objective (:mod:`~trl_igrpo.rpo.objective`) on the sequence log-ratios.

Overridden DPOTrainer methods: ``_prepare_dataset`` (k-response tokenisation only), ``_set_signature_columns_if_needed``
and ``_compute_loss``; plus the Hub methods of :class:`~trl_igrpo.hub.HubMixin`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from datasets import Dataset, IterableDataset
from trl import DPOTrainer
from trl.data_utils import _tokenize, common_prefix_length, is_conversational

from ..core.checks import check_dataset_fills_a_batch
from ..core.run_logging import use_compact_console
from ..hub.citations import RPO
from ..hub.mixin import HubMixin
from ..utils.distributed import check_requested_engine
from ..utils.model_path import check_model_path, default_output_dir
from .collator import RESPONSES_IDS_KEY, REWARDS_KEY, SFT_TARGET_KEY, DataCollatorForRPO
from .config import RPOConfig
from .explicit_rewards import attach_rewards, is_k_response, load_reward_funcs
from .losses import sequence_logps, sft_nll
from .objective import compute_rpo_objective, log_rpo_gap_metrics

__all__ = ["RPOTrainer"]


class RPOTrainer(HubMixin, DPOTrainer):
    """Offline reward-aware preference optimization (Nemotron-4 340B; arXiv 2502.00203) on top of TRL's DPOTrainer.

    Args (besides [`~trl.DPOTrainer`]'s):
        args ([`RPOConfig`]): losses, ``beta``, ``eta``, column names and rounds.
        reward_funcs (callable, ``nn.Module``, path, or a list of them, *optional*):
            Used only when the reward columns are absent: TRL reward functions (``prompts``, ``completions``,
            ``**columns``) or sequence-classification reward models (a path loads
            ``AutoModelForSequenceClassification``). Rewards are scored once, at construction.
        reward_processing_classes: tokenizers for reward models (loaded from the model path when omitted).
        reward_weights (list of float, *optional*): weights of the reward functions (default 1 each).
    """

    args: RPOConfig
    _tag_names = ["trl", "dpo", "rpo", "trl-igrpo"]
    _name = "RPO"
    _paper = RPO.as_trl_paper()

    def __init__(
        self,
        model,
        ref_model=None,
        args: RPOConfig | None = None,
        data_collator=None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset=None,
        processing_class=None,
        reward_funcs=None,
        reward_processing_classes=None,
        reward_weights: Sequence[float] | None = None,
        **kwargs,
    ):
        model = check_model_path(model)  # a missing local directory: one line naming it, not a Hub-id error
        if args is None:
            args = RPOConfig(output_dir=default_output_dir(model, "RPO"))
        elif not isinstance(args, RPOConfig):
            raise TypeError(f"`args` must be an RPOConfig, got {type(args).__name__}.")
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")
        check_dataset_fills_a_batch(train_dataset, 1)  # an empty dataset would train 0 steps and exit 0
        funcs, processing = load_reward_funcs(reward_funcs, reward_processing_classes)
        train_dataset = attach_rewards(train_dataset, args, "train_dataset", funcs, processing, reward_weights)
        eval_dataset = attach_rewards(eval_dataset, args, "eval_dataset", funcs, processing, reward_weights)
        datasets = [train_dataset, *(eval_dataset.values() if isinstance(eval_dataset, dict) else [eval_dataset])]
        if args.precompute_ref_log_probs and any(
            d is not None and is_k_response(d.column_names, args) for d in datasets
        ):
            raise ValueError(
                "`precompute_ref_log_probs=True` supports pairwise RPO data only; k-response data computes the "
                "reference log-probs on the fly."
            )
        self.reward_funcs, self.reward_processing_classes = funcs, processing
        super().__init__(
            model,
            ref_model=ref_model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        check_requested_engine(self.accelerator)  # FSDP/DeepSpeed requested but DDP set up: stop, naming the fix
        self.data_collator = DataCollatorForRPO(
            pad_token_id=self._tokenizer.pad_token_id,
            base_collator=self.data_collator,
            max_length=args.max_length,
            truncation_mode=args.truncation_mode,
            pad_to_multiple_of=int(args.pad_to_multiple_of) if args.pad_to_multiple_of is not None else None,
        )
        use_compact_console(self)  # one line per logging step instead of transformers' dict

    # --- data -----------------------------------------------------------------------------------------------------

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """Pairwise data goes through TRL unchanged; k-response data is tokenised here the same way."""
        columns = dataset.column_names
        if not is_k_response(columns, args) or RESPONSES_IDS_KEY in (columns or []):
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        tokenizer = self._tokenizer
        responses_column = args.responses_column

        def tokenize(example):
            kwargs = dict(example.get("chat_template_kwargs") or {})
            if is_conversational({"prompt": example["prompt"]}):
                prompt_ids = _tokenize(processing_class, example["prompt"], add_generation_prompt=True, **kwargs)
                full = [
                    _tokenize(processing_class, example["prompt"] + r, **kwargs) for r in example[responses_column]
                ]
            else:
                prompt_ids = _tokenize(processing_class, example["prompt"])
                eos = tokenizer.eos_token
                full = [
                    _tokenize(processing_class, example["prompt"] + (r if r.endswith(eos) else r + eos))
                    for r in example[responses_column]
                ]
            prompt_ids, full = prompt_ids["input_ids"], [item["input_ids"] for item in full]
            prompt_len = min(common_prefix_length(prompt_ids, ids) for ids in full)
            return {"prompt_ids": prompt_ids[:prompt_len], RESPONSES_IDS_KEY: [ids[prompt_len:] for ids in full]}

        map_kwargs = {"num_proc": args.dataset_num_proc} if isinstance(dataset, Dataset) else {}
        dataset = dataset.map(tokenize, **map_kwargs)
        if args.max_length is not None and args.truncation_mode == "keep_start":
            dataset = dataset.filter(lambda example: len(example["prompt_ids"]) < args.max_length, **map_kwargs)
        return dataset

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        for column in (REWARDS_KEY, RESPONSES_IDS_KEY):
            if column not in self._signature_columns:
                self._signature_columns.append(column)

    # --- loss -----------------------------------------------------------------------------------------------------

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        inputs = dict(inputs)
        rewards = inputs.pop(REWARDS_KEY)
        sft_target = inputs.pop(SFT_TARGET_KEY)
        num_examples, k = rewards.shape
        non_model_keys = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}
        model_kwargs = {key: value for key, value in inputs.items() if key not in non_model_keys}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        completion_mask = inputs["completion_mask"]
        shift_mask = completion_mask[:, 1:]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        per_token_logps = outputs.log_probs[:, -shift_mask.size(1) :]
        average = self.args.average_log_probs
        policy_logps = sequence_logps(per_token_logps, shift_mask, average)

        if self.precompute_ref_logps:
            ref_logps = torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]]).to(policy_logps)
        else:
            ref_model = self.ref_model if self.ref_model is not None else self.model
            ref_logps = torch.cat(self.compute_ref_log_probs(ref_model, inputs)).to(policy_logps)
        if average:  # TRL returns token sums; the division is linear so it can be applied afterwards
            ref_logps = ref_logps / shift_mask.sum(dim=1).clamp_min(1).to(ref_logps)

        # Response-major rows -> (examples, k)
        logratios = (policy_logps - ref_logps).view(k, num_examples).T
        grouped_logps = policy_logps.detach().view(k, num_examples).T
        rewards = rewards.to(logratios.device)
        best = rewards.argmax(dim=1)

        def sft_loss():  # response-major rows: response j of example i is row j * num_examples + i
            rows = sft_target.to(per_token_logps.device) * num_examples + torch.arange(
                num_examples, device=per_token_logps.device
            )
            return sft_nll(per_token_logps[rows], shift_mask[rows], self.args.sft_normalization)

        loss, stats = compute_rpo_objective(
            self.loss_types,
            self.loss_weights,
            logratios,
            rewards,
            self.beta,
            self.args.eta,
            self.args.rpo_pairing,
            sft_loss=sft_loss,
        )
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss

        self._log_rpo_metrics(mode, logratios.detach(), grouped_logps, rewards, best, stats)
        if return_outputs:
            with torch.no_grad():
                outputs = model(**{key: value for key, value in model_kwargs.items() if key != "output_router_logits"})
            return loss, outputs
        return loss

    def _log_rpo_metrics(self, mode, logratios, logps, rewards, best, stats) -> None:
        """TRL's DPO reward metrics (chosen = highest reward, rejected = lowest) plus the RPO gap metrics."""
        metrics, gather = self._metrics[mode], self.accelerator.gather
        rows = torch.arange(rewards.size(0), device=rewards.device)
        worst = rewards.argmin(dim=1)
        chosen_rewards, rejected_rewards = self.beta * logratios[rows, best], self.beta * logratios[rows, worst]
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(gather(logps[rows, best]).mean().item())
        metrics["logps/rejected"].append(gather(logps[rows, worst]).mean().item())
        if rewards.size(1) > 2:
            top1 = (logratios.argmax(dim=1) == best).float()
            metrics["rpo/top1_accuracy"].append(gather(top1).mean().item())
        log_rpo_gap_metrics(metrics, self.accelerator, stats["implicit"], stats["explicit"])
