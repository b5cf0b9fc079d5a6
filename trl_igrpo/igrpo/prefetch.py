"""Draft prefetching for iGRPO (``IGRPOConfig(prefetch_drafts=True)``): Stage 1 of the *next* generation batch rides
along in the current batch's Stage-2 generation call, so each step runs one generation round instead of two.

Semantics. Drafts of generation batch t+1 are sampled together with the refinements of batch t, i.e. from the policy
that generates batch t's refinements (π_old of step t). They are used at the next generation, after the optimizer
step(s) in between: drafts are one policy update older than the refinements they condition (``igrpo/draft_policy_lag``
logs the number of optimizer steps; 1 with the default batch layout). Refinements, their log-probs, rewards and the
update stay on-policy. The paper samples both stages from the same π_old, so this is off by default.

Where the next batch comes from. Trainer fetches the micro-batches of an optimizer step with ``get_batch_samples``; the
:class:`DataLookahead` keeps ``generate_every`` more items of the same epoch iterator in a buffer, so the batch that
the next generation will use is known one generation ahead. At the end of an epoch (or right after a resume without a
saved prefetch) there is nothing to look ahead to, and Stage 1 runs synchronously as usual (lag 0).

Resume. The pending prefetch (draft ids and their prompt ids) is saved into each checkpoint (one file per rank) and
restored by ``train(resume_from_checkpoint=...)``, so a resumed run conditions on the same drafts as the
uninterrupted one. Drafts are matched to a generation batch by a fingerprint of its prompt rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback

__all__ = ["DataLookahead", "PendingDrafts", "batch_fingerprint"]

PREFETCH_FILE = "igrpo_prefetched_drafts_rank{rank}.json"


def batch_fingerprint(prompt_rows: list[dict[str, Any]]) -> str:
    """A content hash of a generation batch's unique rows (prompt and every other column)."""
    payload = json.dumps(prompt_rows, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class PendingDrafts:
    """Drafts sampled ahead of time for one generation batch: what Stage 1 of that batch would have produced."""

    fingerprint: str
    prompt_ids: list[list[int]]
    draft_ids: list[list[int]]
    generated_at_step: int

    def to_json(self) -> str:
        """The drafts as a JSON object (saved into checkpoints)."""
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> PendingDrafts:
        """The inverse of :meth:`to_json`."""
        return cls(**json.loads(text))


@dataclass
class DataLookahead:
    """Wraps Trainer's epoch iterator: hands out the micro-batches an optimizer step asks for, and keeps ``distance``
    more buffered so the batch of the next generation can be read before it is trained on."""

    distance: int
    iterator: Any = None
    handed_out: list = field(default_factory=list)  # every batch of the last fetch (and earlier ones), oldest first
    buffer: list = field(default_factory=list)

    def take(self, epoch_iterator, count: int) -> list:
        """The next ``count`` micro-batches of ``epoch_iterator`` (fewer at the end of the epoch)."""
        if epoch_iterator is not self.iterator:  # a new epoch (or a resumed one): start over
            self.iterator, self.handed_out, self.buffer = epoch_iterator, [], []
        batches: list = []
        while len(batches) < count:
            if self.buffer:
                batches.append(self.buffer.pop(0))
                continue
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        while len(self.buffer) < self.distance:
            try:
                self.buffer.append(next(epoch_iterator))
            except StopIteration:
                break
        # Keep every batch of this fetch: with gradient_accumulation_steps > distance, one optimizer step generates
        # for several of them, and each must find its successor (not only the last `distance` ones).
        self.handed_out = (self.handed_out + batches)[-(self.distance + len(batches)) :]
        return batches

    def next_generation_batch(self, current) -> Any | None:
        """The micro-batch ``distance`` items after ``current`` (the batch being generated for), if buffered."""
        window = self.handed_out + self.buffer
        for position, item in enumerate(window):
            if item is current:
                target = position + self.distance
                return window[target] if target < len(window) else None
        return None


class SavePendingDraftsCallback(TrainerCallback):
    """Writes the pending prefetched drafts into every checkpoint (one file per rank), for an exact resume."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        """Called after Trainer saved ``checkpoint-<global_step>``."""
        pending = self.trainer._pending_drafts
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        path = os.path.join(folder, PREFETCH_FILE.format(rank=self.trainer.accelerator.process_index))
        if pending is not None and os.path.isdir(folder):
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(pending.to_json())


def load_pending_drafts(checkpoint: str, rank: int) -> PendingDrafts | None:
    """The prefetch saved in ``checkpoint`` for ``rank``, or None."""
    path = os.path.join(checkpoint, PREFETCH_FILE.format(rank=rank))
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return PendingDrafts.from_json(handle.read())
