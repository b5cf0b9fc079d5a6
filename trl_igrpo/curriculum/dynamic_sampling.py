"""DAPO-style dynamic sampling for GRPO-family trainers: drop prompt groups whose rewards are all equal, refill the batch.

DAPO (arXiv 2503.14476, Eq. 11) keeps only groups with 0 < #correct < G: when every completion of a prompt gets the same
reward, the group-relative advantage is zero and the group only dilutes the loss. :class:`DynamicSampler` takes the
trainer's rollout as a function: it scores a generation batch with it, drops the constant groups, and rolls out fresh
prompts from the training set (at most ``dynamic_sampling_max_extra_rounds`` times) until every process holds a full
local batch of rows from informative groups. Each round's advantages were already computed over complete groups, so
kept rows can be combined across rounds as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..rewards.aggregation import weighted_reward_sum
from ..utils.seeds import mix_seed

# Output keys padded like TRL pads them in `_generate_and_score_completions`.
PROMPT_ALIGNED_PAD = {"prompt_ids": None, "prompt_mask": 0}  # None: the tokenizer's pad id; left padding
COMPLETION_ALIGNED_PAD = {"completion_ids": None, "completion_mask": 0, "tool_mask": 1}  # right padding; others pad 0
UNSUPPORTED_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "pixel_attention_mask",
    "spatial_shapes",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
    "num_images",
    "num_tiles",
)


def informative_group_mask(
    rewards_per_func: torch.Tensor,
    reward_weights: torch.Tensor,
    num_generations: int,
    aggregation: str = "sum_then_normalize",
    atol: float = 1e-6,
) -> torch.Tensor:
    """Which prompt groups carry a learning signal, shape ``(num_rows // num_generations,)``.

    ``rewards_per_func`` is the gathered ``(rows, num_funcs)`` reward matrix of GRPO (NaN = function not applicable).
    A group is informative when the rewards that drive its advantage differ inside the group by more than ``atol``:

    * ``sum_then_normalize`` (TRL default): the weighted NaN-aware sum over functions, as GRPO computes it (rows where
      every function is NaN are ignored);
    * ``normalize_then_sum`` (GDPO): any single reward function varies inside the group.

    A group with fewer than two scorable rows is not informative.
    """
    if rewards_per_func.dim() != 2 or rewards_per_func.size(0) % num_generations:
        raise ValueError(
            f"rewards of shape {tuple(rewards_per_func.shape)} do not split into groups of {num_generations}"
        )
    if aggregation == "sum_then_normalize":
        columns = weighted_reward_sum(rewards_per_func, reward_weights).view(-1, num_generations, 1)
    elif aggregation == "normalize_then_sum":
        columns = rewards_per_func.view(-1, num_generations, rewards_per_func.size(1))
    else:
        raise ValueError(f"unknown multi_objective_aggregation {aggregation!r}")
    valid = ~torch.isnan(columns)
    high = torch.where(valid, columns, torch.full_like(columns, -torch.inf)).amax(dim=1)
    low = torch.where(valid, columns, torch.full_like(columns, torch.inf)).amin(dim=1)
    spread = torch.where(valid.sum(dim=1) >= 2, high - low, torch.zeros_like(high))
    return (spread > atol).any(dim=1)


def plan_row_selection(
    local_keep_masks: list[torch.Tensor], target: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Pick ``target`` local rows across rounds: kept rows first (in round order), then dropped rows as fillers.

    Returns, per round, the selected local row indices and a boolean marking which of them are fillers (rows of dropped
    groups, used only when the extra rounds could not provide enough informative rows; the caller masks them out).
    """
    selections, fillers = [], []
    needed = target
    for keep in local_keep_masks:
        chosen = torch.nonzero(keep, as_tuple=False).flatten()[:needed]
        selections.append(chosen)
        needed -= len(chosen)
    filler_needed = needed
    for i, keep in enumerate(local_keep_masks):
        extra = torch.nonzero(~keep, as_tuple=False).flatten()[:filler_needed]
        filler_needed -= len(extra)
        fillers.append(
            torch.cat([torch.zeros(len(selections[i]), dtype=torch.bool), torch.ones(len(extra), dtype=torch.bool)])
        )
        selections[i] = torch.cat([selections[i], extra])
    if filler_needed:
        raise ValueError(f"cannot select {target} rows from {sum(len(k) for k in local_keep_masks)} generated rows")
    return selections, fillers


def _pad_to(tensor: torch.Tensor, width: int, value, side: str) -> torch.Tensor:
    missing = width - tensor.size(1)
    if missing <= 0:
        return tensor
    padding = tensor.new_full((tensor.size(0), missing, *tensor.shape[2:]), value)
    return torch.cat([padding, tensor] if side == "left" else [tensor, padding], dim=1)


def merge_rollout_outputs(
    outputs: list[dict],
    selections: list[torch.Tensor],
    pad_token_id: int,
    sequence_level_keys: tuple[str, ...] = (),
) -> dict:
    """Concatenate the selected rows of several ``_generate_and_score_completions`` outputs into one output dict.

    Prompt tensors are left-padded and completion-aligned tensors (second dimension equal to that round's completion
    length: ids, masks, old/ref/sampling log-probs, token-level advantages, token-level IS ratios) right-padded to the widest
    round, with the values TRL pads with. ``num_items_in_batch`` is dropped: the caller recomputes it for the kept rows.
    """
    merged: dict[str, torch.Tensor | None] = {}
    for key in outputs[0]:
        if key == "num_items_in_batch":
            continue
        if key in UNSUPPORTED_KEYS:
            raise NotImplementedError(f"dynamic sampling does not support multimodal batches (output key {key!r})")
        values = [output[key] for output in outputs]
        if any(value is None for value in values):
            if all(value is None for value in values):
                merged[key] = None
                continue
            raise ValueError(f"output key {key!r} is None in some generation rounds only")
        if not all(isinstance(value, torch.Tensor) and value.dim() >= 1 for value in values):
            raise NotImplementedError(f"dynamic sampling cannot merge output key {key!r} of type {type(values[0])}")
        if key in PROMPT_ALIGNED_PAD:
            pad_value = pad_token_id if PROMPT_ALIGNED_PAD[key] is None else PROMPT_ALIGNED_PAD[key]
            width = max(value.size(1) for value in values)
            values = [_pad_to(value, width, pad_value, "left") for value in values]
        elif key not in sequence_level_keys and all(
            value.dim() >= 2 and value.size(1) == output["completion_ids"].size(1)
            for value, output in zip(values, outputs)
        ):
            pad_value = COMPLETION_ALIGNED_PAD.get(key, 0)
            pad_value = pad_token_id if pad_value is None else pad_value
            width = max(value.size(1) for value in values)
            values = [_pad_to(value, width, pad_value, "right") for value in values]
        elif len({tuple(value.shape[1:]) for value in values}) != 1:
            raise NotImplementedError(f"dynamic sampling cannot align output key {key!r} across rounds")
        merged[key] = torch.cat([value[selection.to(value.device)] for value, selection in zip(values, selections)])
    return merged


#: One rollout round: rows in, (TRL's rollout output, the gathered rewards of its rows, shape (rows, functions)) out.
ScoredRollout = Callable[[list[dict]], tuple[dict, torch.Tensor | None]]


@dataclass(frozen=True)
class RefillPosition:
    """Where in training a generation batch is refilled: what seeds its refill draws, and the curriculum batch whose
    Gaussian they follow when progressive batching is on (``curriculum`` has a ``sample_refill`` method)."""

    global_step: int
    accumulation_position: int
    curriculum: Any = None
    curriculum_batch: int = 0


class DynamicSampler:
    """DAPO dynamic sampling as a helper object: constant-reward groups never reach the loss.

    :class:`~trl_igrpo.core.GRPOBaseTrainer` calls :meth:`fill` instead of one rollout round when
    ``dynamic_sampling=True`` (training only), passing its rollout as a function. Per generation batch:

    1. ``rollout(inputs)`` runs one round (for iGRPO: both stages) and returns TRL's output with the gathered rewards of
       its final rollouts.
    2. Groups are judged on the *gathered* rewards, so every process reaches the same decision and makes the same
       number of collective calls. A process needs as many informative rows as its local batch holds.
    3. While some process is short and fewer than ``dynamic_sampling_max_extra_rounds`` extra rounds ran, a refill
       batch is drawn from the training set with the layout of TRL's sampler (each prompt repeated G times, cut into
       contiguous per-process slices) and rolled out again. Prompts come uniformly from the dataset, or from the
       curriculum's current Gaussian when progressive batching is on. The draw is seeded by ``(seed, global_step,
       accumulation position, round)``: identical on all processes and after a resume.
    4. The kept rows (earliest rounds first) are merged with the padding TRL uses, and ``num_items_in_batch`` is
       recomputed. If rows are still missing, ``dynamic_sampling_shortfall="mask"`` fills the gap with dropped rows
       whose completion mask and advantage are zero; ``"raise"`` errors.

    Metrics (returned by :meth:`fill` for the trainer to log): ``dynamic_sampling/dropped_fraction`` (constant groups
    / groups generated, all rounds), ``dynamic_sampling/rounds`` (1 = no refill), ``dynamic_sampling/masked_fraction``
    (masked filler rows / rows).
    """

    def __init__(self, args, train_dataset, accelerator, reward_weights: torch.Tensor, pad_token_id: int):
        if train_dataset is None or not hasattr(train_dataset, "__getitem__") or not hasattr(train_dataset, "__len__"):
            raise ValueError("`dynamic_sampling=True` needs a map-style train dataset to refill batches from")
        self.args = args
        self.train_dataset = train_dataset
        self.accelerator = accelerator
        self.reward_weights = reward_weights
        self.pad_token_id = pad_token_id

    def refill_rows(self, template_inputs: list[dict], round_index: int, position: RefillPosition) -> list[dict]:
        """This process's slice of a fresh global generation batch, laid out like TRL's ``RepeatSampler`` output."""
        group_size = self.args.num_generations
        local_rows = len(template_inputs)
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        num_prompts = local_rows * world // group_size
        seed = mix_seed(self.args.seed, position.global_step, position.accumulation_position, round_index)
        generator = torch.Generator().manual_seed(seed)
        if position.curriculum is not None:
            prompts = position.curriculum.sample_refill(num_prompts, position.curriculum_batch, generator)
        else:
            prompts = torch.randint(len(self.train_dataset), (num_prompts,), generator=generator).tolist()
        global_rows = [index for index in prompts for _ in range(group_size)]
        local = global_rows[rank * local_rows : (rank + 1) * local_rows]
        keys = list(template_inputs[0].keys())
        rows = [self.train_dataset[index] for index in local]
        return [{key: row[key] for key in keys if key in row} for row in rows]

    def fill(
        self, inputs: list[dict], rollout: ScoredRollout, position: RefillPosition
    ) -> tuple[dict, dict[str, float]]:
        """Roll out ``inputs`` (and refills) until every process holds a full batch of informative rows; returns the
        merged output and the metrics of this batch."""
        group_size = self.args.num_generations
        local_rows = len(inputs)
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        outputs, local_keep_masks = [], []
        kept_per_rank = torch.zeros(world, dtype=torch.long)
        groups_seen = groups_dropped = 0
        round_inputs = inputs
        for round_index in range(1 + self.args.dynamic_sampling_max_extra_rounds):
            if round_index > 0:
                round_inputs = self.refill_rows(inputs, round_index, position)
            output, rewards = rollout(round_inputs)
            outputs.append(output)
            if rewards is None or rewards.size(0) != local_rows * world:
                raise RuntimeError(
                    "dynamic sampling could not find the gathered rewards of the final rollouts: `_rollout` must end "
                    "with `super()._rollout(rows)` (TRL's generation and scoring of the rows it returns)"
                )
            informative = informative_group_mask(
                rewards.detach().float().cpu(),
                self.reward_weights.float().cpu(),
                group_size,
                self.args.multi_objective_aggregation,
            )
            groups_seen += informative.numel()
            groups_dropped += int((~informative).sum())
            row_keep = informative.repeat_interleave(group_size).view(world, local_rows)
            local_keep_masks.append(row_keep[rank])
            kept_per_rank += row_keep.sum(dim=1)
            if int(kept_per_rank.min()) >= local_rows:
                break
        rounds = len(outputs)
        if int(kept_per_rank.min()) < local_rows and self.args.dynamic_sampling_shortfall == "raise":
            raise RuntimeError(
                f"dynamic sampling: after {rounds} generation rounds a process has only {int(kept_per_rank.min())} of "
                f"{local_rows} rows from groups with varying rewards; raise `dynamic_sampling_max_extra_rounds` or set "
                "`dynamic_sampling_shortfall='mask'`"
            )
        output, filler_count = self._merge(outputs, local_keep_masks, local_rows)
        metrics = {
            "dynamic_sampling/dropped_fraction": groups_dropped / groups_seen,
            "dynamic_sampling/rounds": float(rounds),
            "dynamic_sampling/masked_fraction": filler_count / (local_rows * world),
        }
        return output, metrics

    def _merge(self, outputs: list[dict], local_keep_masks: list[torch.Tensor], local_rows: int) -> tuple[dict, int]:
        """The selected rows of every round in one output (fillers masked out), and the number of fillers overall."""
        selections, fillers = plan_row_selection(local_keep_masks, local_rows)
        sequence_level_keys: tuple[str, ...] = ()
        if str(self.args.vllm_importance_sampling_mode).startswith("sequence"):
            sequence_level_keys = ("importance_sampling_ratio",)
        output = merge_rollout_outputs(outputs, selections, self.pad_token_id, sequence_level_keys)
        filler = torch.cat(fillers).to(output["completion_mask"].device)
        if filler.any():
            completion_mask = output["completion_mask"]
            output["completion_mask"] = completion_mask * (~filler).unsqueeze(1).to(completion_mask)
            advantages = output["advantages"]
            output["advantages"] = advantages.masked_fill(filler.view(-1, *([1] * (advantages.dim() - 1))), 0.0)
        loss_mask = output["completion_mask"]
        if output.get("tool_mask") is not None:
            loss_mask = loss_mask * output["tool_mask"]
        output["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        filler_count = self.accelerator.gather(filler.sum().to(loss_mask.device)).sum().item()
        return output, int(filler_count)
