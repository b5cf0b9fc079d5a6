"""Offline Reward-aware Preference Optimization (RPO) as a :class:`trl.DPOTrainer` subclass.

What changes relative to DPO (see ``docs/rpo.md`` and ``rpo_losses.py``):

- Each example carries explicit rewards: pairwise rows (``prompt``, ``chosen``, ``rejected`` plus two scalar reward
  columns) or k-response rows (``prompt``, a list of k ``responses`` and a list of k ``rewards``). When the columns are
  absent, rewards come from TRL-style reward functions or sequence-classification reward models, scored once at
  construction. Missing or NaN rewards fail at construction, naming the column.
- Internally every example becomes k responses with a ``rpo_rewards`` list (k = 2 for pairwise data), collated
  response-major, so for k = 2 the batch is exactly TRL's ``[chosen...; rejected...]`` layout and TRL's reference
  machinery (``ref_model``, PEFT adapter switching, ``precompute_ref_log_probs``, ``sync_ref_model``) is reused as is.
- ``_compute_loss`` computes the RPO loss family on the sequence log-ratios and logs implicit vs explicit reward gaps,
  their correlation and the implicit ranking accuracy. The ``"sft"`` term is the NLL of the labelled chosen response
  (pairwise data) or the highest-reward response (k-response data), reduced by ``sft_normalization`` (NeMo-Aligner's
  per-sequence sum, mean over examples, by default).

Overridden DPOTrainer methods: ``_prepare_dataset`` (k-response tokenisation only), ``_set_signature_columns_if_needed``
and ``_compute_loss``. The collator wraps TRL's ``DataCollatorForPreference``.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from accelerate.utils import gather_object
from datasets import Dataset, IterableDataset
from transformers.data.data_collator import DataCollatorMixin
from trl import DPOTrainer
from trl.data_utils import _tokenize, common_prefix_length, extract_prompt, is_conversational
from trl.trainer.utils import pad

from .hub import HubMixin
from .rpo_config import RPOConfig
from .rpo_data import score_completions
from .rpo_losses import (
    RPO_LISTWISE_LOSS,
    group_pairs,
    implicit_ranking_accuracy,
    pearson_correlation,
    rpo_listwise,
    rpo_pairwise_loss,
    sequence_logps,
    sft_nll,
)

__all__ = ["DataCollatorForRPO", "RPOTrainer", "RPO_PAPER", "compute_rpo_objective", "load_reward_funcs"]

REWARDS_KEY = "rpo_rewards"
RESPONSES_IDS_KEY = "rpo_responses_ids"
SFT_TARGET_KEY = "rpo_sft_target"

RPO_PAPER = {
    "title": "Reward-aware Preference Optimization: A Unified Mathematical Framework for Model Alignment",
    "id": "2502.00203",
    # docstyle-ignore
    "citation": textwrap.dedent("""\
        @article{sun2025rpo,
            title        = {{Reward-aware Preference Optimization: A Unified Mathematical Framework for Model Alignment}},
            author       = {Shengyang Sun and others},
            year         = 2025,
            eprint       = {arXiv:2502.00203},
        }"""),
}


def load_reward_funcs(
    reward_funcs: Callable | torch.nn.Module | str | Sequence | None,
    reward_processing_classes: Any | Sequence | None,
) -> tuple[list, list]:
    """Normalise reward functions: a string is a local path to an ``AutoModelForSequenceClassification`` reward model.

    Returns ``(funcs, processing_classes)`` with one processing class (or ``None``) per function.
    """
    if reward_funcs is None:
        return [], []
    funcs = list(reward_funcs) if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
    if reward_processing_classes is None:
        processing = [None] * len(funcs)
    elif isinstance(reward_processing_classes, (list, tuple)):
        processing = list(reward_processing_classes)
    else:
        processing = [reward_processing_classes]
    if len(processing) != len(funcs):
        raise ValueError(f"Got {len(processing)} reward_processing_classes for {len(funcs)} reward functions.")
    for index, func in enumerate(funcs):
        if isinstance(func, str):
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            funcs[index] = AutoModelForSequenceClassification.from_pretrained(
                func, num_labels=1, trust_remote_code=False, use_safetensors=True
            ).eval()
            if processing[index] is None:
                processing[index] = AutoTokenizer.from_pretrained(func)
        if isinstance(funcs[index], torch.nn.Module):
            tokenizer = processing[index]
            if tokenizer is None:
                from transformers import AutoTokenizer

                tokenizer = processing[index] = AutoTokenizer.from_pretrained(funcs[index].config._name_or_path)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
        elif not callable(funcs[index]):
            raise TypeError(f"reward_funcs[{index}] must be a callable, an nn.Module or a path, got {type(func)}.")
    return funcs, processing


def _is_k_response(columns: Sequence[str] | None, args: RPOConfig) -> bool:
    return columns is not None and (args.responses_column in columns or RESPONSES_IDS_KEY in columns)


def _bad_reward_rows(values: Sequence) -> list[int]:
    return [
        index
        for index, value in enumerate(values)
        if value is None or not isinstance(value, (int, float)) or not math.isfinite(value)
    ]


def _attach_rewards(dataset, args: RPOConfig, name: str, reward_funcs, reward_processing_classes, reward_weights):
    """Validate or compute the explicit rewards and store them as the internal ``rpo_rewards`` list column.

    Fails before any training compute, naming the offending column.
    """
    if dataset is None:
        return None
    if isinstance(dataset, dict):
        return {
            key: _attach_rewards(
                value, args, f"{name}[{key!r}]", reward_funcs, reward_processing_classes, reward_weights
            )
            for key, value in dataset.items()
        }
    columns = dataset.column_names
    if isinstance(dataset, IterableDataset):
        # Streaming data cannot be scanned up front; the collator checks every batch instead.
        if columns is None or REWARDS_KEY in columns:
            return dataset
        if _is_k_response(columns, args):
            return dataset.map(lambda ex: {REWARDS_KEY: ex[args.rewards_column]})
        return dataset.map(lambda ex: {REWARDS_KEY: [ex[args.chosen_reward_column], ex[args.rejected_reward_column]]})
    if REWARDS_KEY in columns:
        return dataset
    extra_columns = lambda ds, skip: {c: ds[c] for c in ds.column_names if c not in skip}  # noqa: E731

    if _is_k_response(columns, args):
        responses = dataset[args.responses_column]
        sizes = {len(item) for item in responses}
        if len(sizes) != 1 or min(sizes) < 2:
            raise ValueError(
                f"{name}: every row of column {args.responses_column!r} must hold the same number k >= 2 of responses; "
                f"found sizes {sorted(sizes)}."
            )
        if args.rewards_column in columns:
            rewards = dataset[args.rewards_column]
            for row, (items, values) in enumerate(zip(responses, rewards, strict=True)):
                if values is None or len(values) != len(items) or _bad_reward_rows(values):
                    raise ValueError(
                        f"{name}: column {args.rewards_column!r} row {row} must hold {len(items)} finite rewards "
                        f"(one per response in {args.responses_column!r}), got {values!r}."
                    )
        elif reward_funcs:
            if "prompt" not in columns:
                raise ValueError(f"{name}: k-response data needs a 'prompt' column to be scored by reward functions.")
            k = len(responses[0])
            prompts = [prompt for prompt in dataset["prompt"] for _ in range(k)]
            flat = [item for items in responses for item in items]
            others = extra_columns(dataset, {"prompt", args.responses_column})
            others = {key: [value for value in values for _ in range(k)] for key, values in others.items()}
            scores = score_completions(
                reward_funcs, prompts, flat, reward_processing_classes, reward_weights, **others
            )
            _raise_unscored(scores, name, args.rewards_column)
            rewards = [scores[i * k : (i + 1) * k] for i in range(len(dataset))]
        else:
            raise ValueError(
                f"{name} has no reward column {args.rewards_column!r} (k-response data in {args.responses_column!r}). "
                "Add it, set `rewards_column`, or pass `reward_funcs` to score the responses."
            )
        return dataset.add_column(REWARDS_KEY, [list(map(float, row)) for row in rewards])

    if "chosen" not in columns or "rejected" not in columns:
        raise ValueError(
            f"{name} must be pairwise ('chosen', 'rejected' and reward columns) or k-response "
            f"({args.responses_column!r}, {args.rewards_column!r}); got columns {columns}."
        )
    reward_columns = (args.chosen_reward_column, args.rejected_reward_column)
    missing = [column for column in reward_columns if column not in columns]
    if not missing:
        for column in reward_columns:
            bad = _bad_reward_rows(dataset[column])
            if bad:
                raise ValueError(
                    f"{name}: reward column {column!r} has missing or non-finite values (None/NaN/inf) in rows "
                    f"{bad[:10]}{'...' if len(bad) > 10 else ''}. Fix or drop those rows."
                )
        rewards = list(zip(dataset[reward_columns[0]], dataset[reward_columns[1]], strict=True))
    elif reward_funcs:
        if "prompt" not in columns:
            dataset = dataset.map(extract_prompt)
        others = extra_columns(dataset, {"prompt", "chosen", "rejected", *reward_columns})
        scored = []
        for completion_column, reward_column in zip(("chosen", "rejected"), reward_columns, strict=True):
            scores = score_completions(
                reward_funcs,
                dataset["prompt"],
                dataset[completion_column],
                reward_processing_classes,
                reward_weights,
                **others,
            )
            _raise_unscored(scores, name, reward_column)
            scored.append(scores)
        rewards = list(zip(*scored, strict=True))
    elif args.default_chosen_reward is not None and args.default_rejected_reward is not None:
        rewards = [(args.default_chosen_reward, args.default_rejected_reward)] * len(dataset)
    else:
        raise ValueError(
            f"{name} has no reward column {missing[0]!r} (expected {list(reward_columns)}). Add the column, set "
            "`chosen_reward_column`/`rejected_reward_column`, pass `reward_funcs` to score the completions, or set "
            "`default_chosen_reward`/`default_rejected_reward` (NeMo-Aligner's 1.0/0.0 fallback)."
        )
    return dataset.add_column(REWARDS_KEY, [[float(c), float(r)] for c, r in rewards])


def _raise_unscored(scores: list[float], name: str, column: str) -> None:
    bad = _bad_reward_rows(scores)
    if bad:
        raise ValueError(f"{name}: reward functions left {column!r} unscored (None/NaN) for rows {bad[:10]}.")


@dataclass
class DataCollatorForRPO(DataCollatorMixin):
    """Collates RPO examples: TRL's preference collator for pairs, response-major k-response batches otherwise.

    Adds ``rpo_rewards`` (float, shape ``(B, k)``) and ``rpo_sft_target`` (long, shape ``(B,)``): which response the
    ``"sft"`` term trains on, the labelled chosen one (0) for pairwise data as in NeMo-Aligner, the highest-reward one
    for k-response data as in NeMo-Aligner PR #311 (first on ties). For k responses the rows are ``[response 0 of every
    example; response 1 of every example; ...]`` with right padding, which for k = 2 is TRL's ``[chosen; rejected]``
    layout. Raises ``ValueError`` on a non-finite reward (the only check possible for streaming datasets).
    """

    pad_token_id: int
    base_collator: Callable | None = None
    max_length: int | None = None
    truncation_mode: str = "keep_start"
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Collate `examples` into TRL's preference batch plus ``rpo_rewards`` of shape ``(B, k)`` (see the class)."""
        rewards = torch.tensor([example[REWARDS_KEY] for example in examples], dtype=torch.float32)
        if not torch.isfinite(rewards).all():
            raise ValueError(f"Non-finite explicit reward in batch ({REWARDS_KEY}={rewards.tolist()}).")
        if RESPONSES_IDS_KEY not in examples[0]:
            output = self.base_collator(examples)
            output[REWARDS_KEY] = rewards
            output[SFT_TARGET_KEY] = torch.zeros(len(examples), dtype=torch.long)
            return output
        k = len(examples[0][RESPONSES_IDS_KEY])
        sequences, masks = [], []
        for index in range(k):
            for example in examples:
                prompt, response = example["prompt_ids"], example[RESPONSES_IDS_KEY][index]
                sequences.append(prompt + response)
                masks.append([0] * len(prompt) + [1] * len(response))
        if self.max_length is not None:
            window = (
                slice(None, self.max_length) if self.truncation_mode == "keep_start" else slice(-self.max_length, None)
            )
            sequences = [ids[window] for ids in sequences]
            masks = [mask[window] for mask in masks]
        padding = {"padding_side": "right", "pad_to_multiple_of": self.pad_to_multiple_of}
        return {
            "input_ids": pad([torch.tensor(ids) for ids in sequences], padding_value=self.pad_token_id, **padding),
            "attention_mask": pad(
                [torch.ones(len(ids), dtype=torch.long) for ids in sequences], padding_value=0, **padding
            ),
            "completion_mask": pad(
                [torch.tensor(mask, dtype=torch.long) for mask in masks], padding_value=0, **padding
            ),
            REWARDS_KEY: rewards,
            SFT_TARGET_KEY: rewards.argmax(dim=1),
        }


def compute_rpo_objective(
    loss_types: Sequence[str],
    loss_weights: Sequence[float],
    logratios: torch.Tensor,
    rewards: torch.Tensor,
    beta: float,
    eta: float,
    pairing: str,
    mask: torch.Tensor | None = None,
    sft_loss: Callable[[], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of RPO losses on grouped log-ratios/rewards of shape ``(N, k)``; returns ``(loss, stats)``.

    k = 2 groups are used as given (column 0 = chosen) for ``dpo``/``ipo``; k > 2 groups are paired with ``pairing``,
    oriented so the higher reward comes first. ``sft_loss`` is called for the ``"sft"`` term. ``stats`` holds the local
    implicit (``a = beta * gap``) and explicit (``b = eta * reward gap``) gaps of the pairs for logging.
    """
    if mask is None and logratios.size(1) == 2:
        logratio_gap, reward_gap = logratios[:, 0] - logratios[:, 1], rewards[:, 0] - rewards[:, 1]
    else:
        logratio_gap, reward_gap = group_pairs(logratios, rewards, pairing, mask)
    loss = logratios.new_zeros(())
    for loss_type, weight in zip(loss_types, loss_weights, strict=True):
        if loss_type == "sft":
            term = sft_loss()
        elif loss_type == RPO_LISTWISE_LOSS:
            term = rpo_listwise(logratios, rewards.to(logratios.dtype), beta, eta, mask).mean()
        elif logratio_gap.numel() == 0:
            term = logratios.sum() * 0.0  # no pair in this batch: keep the graph, contribute nothing
        else:
            term = rpo_pairwise_loss(loss_type, logratio_gap, reward_gap.to(logratio_gap.dtype), beta, eta).mean()
        loss = loss + weight * term
    return loss, {"implicit": (beta * logratio_gap).detach(), "explicit": (eta * reward_gap).detach()}


def log_rpo_gap_metrics(metrics: dict, accelerator, implicit: torch.Tensor, explicit: torch.Tensor) -> None:
    """Log implicit vs explicit reward gaps, their Pearson correlation and the implicit ranking accuracy."""
    implicit = torch.tensor(gather_object(implicit.float().cpu().tolist()))
    explicit = torch.tensor(gather_object(explicit.float().cpu().tolist()))
    if implicit.numel() == 0:
        return
    metrics["rpo/implicit_gap"].append(implicit.mean().item())
    metrics["rpo/explicit_gap"].append(explicit.mean().item())
    metrics["rpo/gap_abs_error"].append((implicit - explicit).abs().mean().item())
    correlation = pearson_correlation(implicit, explicit)
    if not math.isnan(correlation):
        metrics["rpo/gap_correlation"].append(correlation)
    accuracy = implicit_ranking_accuracy(implicit, explicit)
    if not math.isnan(accuracy):
        metrics["rpo/ranking_accuracy"].append(accuracy)


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

    _tag_names = ["trl", "dpo", "rpo", "trl-igrpo"]
    _name = "RPO"
    _paper = RPO_PAPER

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
        if args is None:
            model_name = model if isinstance(model, str) else model.config._name_or_path
            args = RPOConfig(f"{str(model_name).rstrip('/').split('/')[-1]}-RPO")
        elif not isinstance(args, RPOConfig):
            raise TypeError(f"`args` must be an RPOConfig, got {type(args).__name__}.")
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")
        funcs, processing = load_reward_funcs(reward_funcs, reward_processing_classes)
        train_dataset = _attach_rewards(train_dataset, args, "train_dataset", funcs, processing, reward_weights)
        eval_dataset = _attach_rewards(eval_dataset, args, "eval_dataset", funcs, processing, reward_weights)
        datasets = [train_dataset, *(eval_dataset.values() if isinstance(eval_dataset, dict) else [eval_dataset])]
        if args.precompute_ref_log_probs and any(
            d is not None and _is_k_response(d.column_names, args) for d in datasets
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
        self.data_collator = DataCollatorForRPO(
            pad_token_id=self._tokenizer.pad_token_id,
            base_collator=self.data_collator,
            max_length=args.max_length,
            truncation_mode=args.truncation_mode,
            pad_to_multiple_of=args.pad_to_multiple_of,
        )

    # --- data -----------------------------------------------------------------------------------------------------

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """Pairwise data goes through TRL unchanged; k-response data is tokenised here the same way."""
        columns = dataset.column_names
        if not _is_k_response(columns, args) or RESPONSES_IDS_KEY in (columns or []):
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
