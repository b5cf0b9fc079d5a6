"""The RPO batch: TRL's preference collator for pairs, response-major k-response batches otherwise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers.data.data_collator import DataCollatorMixin
from trl.trainer.utils import pad

__all__ = ["DataCollatorForRPO", "RESPONSES_IDS_KEY", "REWARDS_KEY", "SFT_TARGET_KEY"]

REWARDS_KEY = "rpo_rewards"

RESPONSES_IDS_KEY = "rpo_responses_ids"

SFT_TARGET_KEY = "rpo_sft_target"


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
            if self.base_collator is None:
                raise ValueError("pairwise RPO batches need the base preference collator (base_collator)")
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
        padding: dict[str, Any] = {"padding_side": "right", "pad_to_multiple_of": self.pad_to_multiple_of}
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
