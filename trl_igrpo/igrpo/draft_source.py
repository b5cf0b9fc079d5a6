"""Stage 1 of iGRPO behind one question: "the N drafts of these prompts" (arXiv 2602.09000, §3.2, Stage 1).

:meth:`IGRPOTrainer._rollout <trl_igrpo.igrpo.IGRPOTrainer._rollout>` asks its draft source once per rollout and gets
:class:`Drafts`; everything after (rank, condition, refine) is the trainer's. A source decides *how* drafts come about:

- :class:`DraftSource` (the default) samples them now, with TRL's own generation (vLLM or transformers) capped at
  ``max_draft_length``, from the same policy as the refinements, as the paper does;
- :class:`~trl_igrpo.igrpo.prefetch.PrefetchingDraftSource` (``prefetch_drafts=True``) samples the *next* batch's
  drafts inside this batch's Stage-2 generation call and hands them out one generation later; it holds all prefetch
  state and is the only place that knows about it.

A source takes part in the rest of a training step only through the hooks below, which do nothing here: the Stage-2
generation call (:meth:`DraftSource.refining`, :meth:`DraftSource.generate`, :meth:`DraftSource.generated`), the
Stage-2 result (:meth:`DraftSource.refined`), the data loader (:meth:`DraftSource.next_batches`) and resuming
(:meth:`DraftSource.restore`). Another Stage 1 is another subclass returning :class:`Drafts`: multi-turn drafts
through TRL's tool loop are :class:`~trl_igrpo.igrpo.agents.TrajectoryDraftSource`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..core.decoding import decode_completions

__all__ = ["DraftSource", "Drafts"]


@dataclass
class Drafts:
    """The N drafts of each prompt row of a rollout, in row order (row 0's N drafts first).

    ``completions`` is what reward functions receive (TRL's decoding: text, or ``[message]`` with reasoning and tool
    calls parsed), ``texts`` the literal text each draft puts into q'. ``policy_lag`` counts the optimizer steps
    between the policy that sampled them and the current one (0: sampled now). Multi-turn sources
    (:mod:`~trl_igrpo.igrpo.agents`) also give ``rows`` (the rows reward functions receive with each draft: a
    ``rollout_func``'s extra fields merged), ``trajectories`` (what q' shows instead of ``texts``) and
    ``model_tokens`` (tokens the model generated per draft, tool results excluded).
    """

    prompts: list
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    completions: list
    texts: list[str]
    policy_lag: int = 0
    rows: list[dict[str, Any]] | None = None
    trajectories: list | None = None
    model_tokens: list[int] | None = None


def draft_prompts(prompt_rows: list[dict[str, Any]], num_drafts: int) -> list:
    """Each row's prompt, ``num_drafts`` times, as copies (TRL tokenizes deep copies of the prompts it is given)."""
    return [copy.deepcopy(row["prompt"]) for row in prompt_rows for _ in range(num_drafts)]


class DraftSource:
    """Samples each rollout's drafts when the rollout asks, with the trainer's own (TRL) generation.

    ``trainer`` is the :class:`~trl_igrpo.igrpo.IGRPOTrainer` whose rollout asks; the source uses its tokenization
    (``_tokenize_prompts``, which also checks the context budget), its generation (``_generate_single_turn``) under
    the draft budget, and TRL's decoding (:func:`~trl_igrpo.core.decoding.decode_completions`).
    """

    def __init__(self, trainer) -> None:
        self.trainer = trainer

    def drafts(self, prompt_rows: list[dict[str, Any]], training: bool) -> Drafts:
        """The N drafts of each of ``prompt_rows`` (one row per prompt group), sampled now."""
        trainer = self.trainer
        prompts = draft_prompts(prompt_rows, trainer.args.num_drafts)
        with trainer._completion_budget(trainer._draft_budget(), "max_draft_length"):
            prompt_ids, images, multimodal_fields = trainer._tokenize_prompts(prompts)
            draft_ids, _ = trainer._generate_single_turn(
                prompt_ids, images, multimodal_fields, trainer.args.num_drafts
            )
        return self.decoded(prompts, prompt_ids, draft_ids)

    def decoded(self, prompts: list, prompt_ids: list[list[int]], draft_ids: list[list[int]], lag: int = 0) -> Drafts:
        """:class:`Drafts` from sampled ids: reward functions see drafts exactly as they see refinements, q' gets the
        literal decoded text."""
        trainer = self.trainer
        completions = decode_completions(trainer, prompts, prompt_ids, draft_ids)
        texts = trainer._tokenizer.batch_decode(draft_ids, skip_special_tokens=True)
        return Drafts(prompts, prompt_ids, draft_ids, completions, list(texts), policy_lag=lag)

    # ------------------------------------------------------------------------------------------------------------------
    # Hooks into the rest of a training step (nothing to do for drafts sampled on demand).
    @contextlib.contextmanager
    def refining(self, inputs: list[dict[str, Any]], training: bool) -> Iterator[None]:
        """Stage 2 of ``inputs`` (the rollout's rows) runs inside this block."""
        yield

    def generate(self, generate: Callable, prompt_ids, images, multimodal_fields, num_generations, **kwargs):
        """TRL's ``_generate_single_turn`` (``generate``) for one generation call of the trainer."""
        return generate(prompt_ids, images, multimodal_fields, num_generations, **kwargs)

    def generated(self, prompts: list, output: tuple) -> tuple:
        """What TRL's ``_generate(prompts)`` returned, on its way back to TRL (unchanged here)."""
        return output

    def refined(self, output: dict[str, Any], drafts: list, mode: str) -> None:
        """Stage 2's rollout ``output`` for the chosen ``drafts`` (nothing to log here)."""

    def next_batches(self, epoch_iterator, num_batches: int) -> list | None:
        """The micro-batches of an optimizer step if the source fetches them itself; None: Trainer's own fetch."""
        return None

    def restore(self, resume_from_checkpoint: str | bool | None) -> None:
        """Before a run's first step (``train(resume_from_checkpoint=...)``; True: the latest checkpoint): restore what
        the source saved in the checkpoint (nothing here)."""
