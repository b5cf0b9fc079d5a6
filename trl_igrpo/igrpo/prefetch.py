"""Draft prefetching for iGRPO (``IGRPOConfig(prefetch_drafts=True)``): Stage 1 of the *next* generation batch rides
along in the current batch's Stage-2 generation call, so each step runs one generation round instead of two. All of it
is one object, the trainer's draft source :class:`PrefetchingDraftSource`.

Semantics. Drafts of generation batch t+1 are sampled together with the refinements of batch t, i.e. from the policy
that generates batch t's refinements (π_old of step t). They are used at the next generation, after the optimizer
step(s) in between: drafts are one policy update older than the refinements they condition (``igrpo/draft_policy_lag``
logs the number of optimizer steps; 1 with the default batch layout). Refinements, their log-probs, rewards and the
update stay on-policy. The paper samples both stages from the same π_old, so this is off by default.

Where the next batch comes from. Trainer fetches the micro-batches of an optimizer step with ``get_batch_samples``
(which asks the source first: :meth:`PrefetchingDraftSource.next_batches`); the :class:`DataLookahead` keeps ``generate_every`` more items of the same epoch iterator in a buffer, so the batch that
the next generation will use is known one generation ahead. At the end of an epoch (or right after a resume without a
saved prefetch) there is nothing to look ahead to, and Stage 1 runs synchronously as usual (lag 0).

Resume. The pending prefetch (draft ids and their prompt ids) is saved into each checkpoint (one file per rank) and
restored by ``train(resume_from_checkpoint=...)``, so a resumed run conditions on the same drafts as the
uninterrupted one. Drafts are matched to a generation batch by a fingerprint of its prompt rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback

from .draft_source import Drafts, DraftSource, draft_prompts

__all__ = ["DataLookahead", "PendingDrafts", "PrefetchingDraftSource", "batch_fingerprint", "load_pending_drafts"]

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


class PrefetchingDraftSource(DraftSource):
    """The draft source of ``prefetch_drafts=True``: hands each rollout the drafts sampled for it one generation
    earlier, and samples the next batch's drafts inside this batch's Stage-2 generation call.

    Its state: :attr:`pending` (the prefetched drafts waiting for their batch, saved into every checkpoint),
    :attr:`ride_along` (the next batch's tokenized draft prompts while Stage 2 generates) and :attr:`lookahead` (the
    buffered micro-batches). Every decision is AND-ed over processes, because it changes collective generation calls.
    """

    def __init__(self, trainer) -> None:
        super().__init__(trainer)
        args = trainer.args
        if trainer.use_vllm and args.vllm_mode == "server" and args.num_drafts != trainer.num_generations:
            raise ValueError(
                "prefetch_drafts=True with vllm_mode='server' needs num_drafts == num_generations: the server "
                f"de-duplicates one generation call with a single stride (got N={args.num_drafts}, "
                f"G={trainer.num_generations})."
            )
        self.lookahead = DataLookahead(distance=args.steps_per_generation * trainer.num_iterations)
        self.pending: PendingDrafts | None = None
        self.ride_along: dict[str, Any] | None = None
        trainer.add_callback(SavePendingDraftsCallback(self))

    def drafts(self, prompt_rows: list[dict[str, Any]], training: bool) -> Drafts:
        """The prefetched drafts of ``prompt_rows`` when every process has them, else drafts sampled now (lag 0)."""
        pending = self.take_pending(prompt_rows) if training else None
        if pending is None:
            return super().drafts(prompt_rows, training)
        prompts = draft_prompts(prompt_rows, self.trainer.args.num_drafts)
        lag = self.trainer.state.global_step - pending.generated_at_step
        return self.decoded(prompts, pending.prompt_ids, pending.draft_ids, lag=lag)

    def take_pending(self, prompt_rows: list[dict[str, Any]]) -> PendingDrafts | None:
        """The prefetched drafts for these prompts, if every process has them (else every process samples now)."""
        pending = self.pending
        matches = pending is not None and pending.fingerprint == batch_fingerprint(prompt_rows)
        if not self._on_every_process(matches):
            return None
        self.pending = None
        return pending

    @contextlib.contextmanager
    def refining(self, inputs: list[dict[str, Any]], training: bool) -> Iterator[None]:
        """While Stage 2 of ``inputs`` runs, the next generation batch's draft prompts ride along in its generation
        call; afterwards their drafts wait in :attr:`pending` for that batch."""
        self.ride_along = self._next_batch_draft_prompts(inputs) if training else None
        try:
            yield
        finally:
            ride_along, self.ride_along = self.ride_along, None
        if ride_along is not None:
            self.pending = PendingDrafts(
                fingerprint=ride_along["fingerprint"],
                prompt_ids=ride_along["prompt_ids"],
                draft_ids=ride_along["completion_ids"],
                generated_at_step=self.trainer.state.global_step,
            )

    def generate(self, generate: Callable, prompt_ids, images, multimodal_fields, num_generations, **kwargs):
        """TRL's generation; in the Stage-2 call, with the next batch's draft prompts appended (one generation round
        per step instead of two). Drafts are cut at ``max_draft_length`` afterwards, which samples exactly as a
        generation capped there would."""
        ride_along = self.ride_along
        if ride_along is None or ride_along["completion_ids"] is not None:
            return generate(prompt_ids, images, multimodal_fields, num_generations, **kwargs)
        own = len(prompt_ids)
        completion_ids, logprobs = generate(
            list(prompt_ids) + list(ride_along["prompt_ids"]), images, multimodal_fields, num_generations, **kwargs
        )
        budget = self.trainer._draft_budget()
        ride_along["completion_ids"] = [list(ids[:budget]) for ids in completion_ids[own:]]
        return completion_ids[:own], (logprobs[:own] if logprobs is not None else None)

    def next_batches(self, epoch_iterator, num_batches: int) -> list:
        """An optimizer step's micro-batches, with the next generation's kept buffered (:class:`DataLookahead`)."""
        return self.lookahead.take(epoch_iterator, num_batches)

    def restore(self, resume_from_checkpoint: str | bool | None) -> None:
        """The drafts prefetched before the checkpoint was saved, so the resumed run conditions on the same drafts as
        an uninterrupted one."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            from transformers.trainer_utils import get_last_checkpoint

            checkpoint = get_last_checkpoint(self.trainer.args.output_dir)
        if checkpoint:
            self.pending = load_pending_drafts(str(checkpoint), self.trainer.accelerator.process_index)

    def _next_batch_draft_prompts(self, inputs: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Tokenized Stage-1 prompts of the next generation batch, to ride along in this Stage-2 generation call."""
        trainer = self.trainer
        upcoming = self.lookahead.next_generation_batch(inputs)
        if not self._on_every_process(upcoming is not None):
            return None
        prompt_rows = upcoming[:: trainer.num_generations]
        with trainer._completion_budget(trainer._draft_budget(), "max_draft_length"):
            prompt_ids, _, _ = trainer._tokenize_prompts(draft_prompts(prompt_rows, trainer.args.num_drafts))
        return {"fingerprint": batch_fingerprint(prompt_rows), "prompt_ids": prompt_ids, "completion_ids": None}

    def _on_every_process(self, flag: bool) -> bool:
        """``flag`` AND-ed over processes: prefetch decisions change collective generation calls, so all agree."""
        accelerator = self.trainer.accelerator
        if accelerator.num_processes == 1:
            return flag
        return bool(accelerator.gather(torch.tensor([int(flag)], device=accelerator.device)).min())


class SavePendingDraftsCallback(TrainerCallback):
    """Writes the pending prefetched drafts into every checkpoint (one file per rank), for an exact resume."""

    def __init__(self, source: PrefetchingDraftSource):
        self.source = source

    def on_save(self, args, state, control, **kwargs):
        """Called after Trainer saved ``checkpoint-<global_step>``."""
        pending = self.source.pending
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        path = os.path.join(folder, PREFETCH_FILE.format(rank=self.source.trainer.accelerator.process_index))
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
