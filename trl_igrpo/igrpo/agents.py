"""iGRPO for agents: Stage 1 runs N whole trajectories through TRL's own rollout, Stage 2 sees the best one whole.

With ``tools``, ``environment_factory`` or ``rollout_func`` a draft is a trajectory, and the trainer's draft source
(:mod:`~trl_igrpo.igrpo.draft_source`) is :class:`TrajectoryDraftSource`:

1. **Stage 1** (:meth:`TrajectoryDraftSource.drafts`): the prompt rows, each repeated N times, go through TRL's own
   ``GRPOTrainer._generate_and_score_completions`` up to the end of generation: TRL draws one environment per
   trajectory from its pool, builds the per-trajectory tool dicts, calls ``reset(**row)`` (appending the observation
   to the prompt), then ``_generate`` runs the tool loop (or ``rollout_func``, called with the draft prompts and the
   trainer, as in GRPO). The trainer's ``_generate`` hands the result to :meth:`TrajectoryDraftSource.generated`,
   which stops TRL's rollout there (:class:`DraftsGenerated`): drafts need neither log-probs nor advantages. The
   rows carry ``rollout_func``'s extra fields and TRL's ``environments`` stay those of the trajectories, so the
   trainer scores them exactly as GRPO scores completions (environment-owned rewards included).
2. q' renders the selected trajectory (:class:`~trl_igrpo.igrpo.trajectories.TrajectoryDraft`); Stage 2 is TRL's
   rollout on q', with fresh environments reset from the same rows, the tool loop and ``tool_mask`` as in GRPO.
3. **The guards**: before Stage 2, every turn, tool call and tool result of the selected trajectory must appear, in
   order, in q' as the template renders it and as it is tokenized (:meth:`TrajectoryDraftSource.verify`); after
   Stage-2 generation, in the decoded ``prompt_ids`` the model was given, whoever tokenized them (TRL or a
   ``rollout_func``; :meth:`TrajectoryDraftSource.generated`).

During Stage 1 three attributes TRL reads inside ``_generate``, its tool loop and a user's ``rollout_func`` are
swapped (:meth:`TrajectoryDraftSource._stage_one`): ``num_generations`` / ``num_generations_eval`` (N: a rollout
function and vLLM server mode group the prompts by it) and ``max_completion_length`` (the tool loop's trajectory
budget, ``max_draft_length``). TRL offers no argument for them; the alternative is a copy of those methods.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from trl import GRPOTrainer

from .draft_source import Drafts, DraftSource
from .draft_text import strip_marks
from .trajectories import TrajectoryDraft, count_tool_calls, missing_trajectory_pieces, trajectory_token_counts

__all__ = ["DraftsGenerated", "TrajectoryDraftSource"]

#: Metric families TRL's ``_generate`` logs; during Stage 1 they are moved under ``igrpo/drafts/``.
_GENERATION_METRICS = ("completions/", "tools/")
#: The prompt TRL uses for a row without one (the environment supplies the task from ``reset``).
EMPTY_PROMPT = [{"role": "user", "content": ""}]


class DraftsGenerated(Exception):
    """Raised by :meth:`TrajectoryDraftSource.generated` to stop TRL's rollout once the Stage-1 trajectories exist."""

    def __init__(self, prompts: list, generated: tuple):
        super().__init__("Stage-1 trajectories generated")
        self.prompts = prompts
        self.generated = generated


def _padded(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max((len(row) for row in rows), default=0)
    return torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long).view(len(rows), width)


class TrajectoryDraftSource(DraftSource):
    """Stage 1 and the Stage-2 guards of :class:`~trl_igrpo.IGRPOTrainer` when the rollout is multi-turn."""

    def __init__(self, trainer) -> None:
        super().__init__(trainer)
        self._capturing = False
        self._expected: list[list[str]] | None = None  # Stage 2: pieces of each prompt group's selected trajectory

    # ------------------------------------------------------------------------------------------------------------------
    # Stage 1.
    def drafts(self, prompt_rows: list[dict[str, Any]], training: bool) -> Drafts:
        """N whole trajectories per prompt row, generated as GRPO's rollouts are (see the module docstring)."""
        trainer, num_drafts = self.trainer, self.trainer.args.num_drafts
        mode = "train" if training else "eval"
        rows = [dict(row) for row in prompt_rows for _ in range(num_drafts)]
        with self._stage_one(num_drafts, trainer._draft_budget(), mode):
            try:
                GRPOTrainer._generate_and_score_completions(trainer, rows)
            except DraftsGenerated as done:
                prompts, generated = done.prompts, done.generated
            else:  # pragma: no cover - TRL always generates before it scores
                raise RuntimeError("TRL's rollout finished without generating the Stage-1 trajectories.")
        prompt_ids, completion_ids, tool_mask, completions, _, extra_fields = generated[:6]
        for i, row in enumerate(rows):  # rollout_func's extra fields reach the rewards, as in GRPO
            for key, values in extra_fields.items():
                row[key] = values[i] if isinstance(values, list) and i < len(values) else values
        keep = not trainer.args.strip_draft_think
        trajectories = [TrajectoryDraft(completion, keep) for completion in completions]
        counts = trajectory_token_counts(
            _padded([[1] * len(ids) for ids in completion_ids], 0),
            _padded([list(mask) for mask in tool_mask], 1) if tool_mask is not None else None,
        )
        self._log_counts("igrpo/drafts", counts, mode)
        return Drafts(
            prompts, prompt_ids, completion_ids, completions, [strip_marks(t.transcript) for t in trajectories],
            rows=rows, trajectories=trajectories, model_tokens=[int(n) for n in counts["model_tokens"].tolist()],
        )  # fmt: skip

    @contextlib.contextmanager
    def _stage_one(self, num_drafts: int, budget: int, mode: str) -> Iterator[None]:
        """Stage-1 generation: N per prompt, the draft budget, TRL's generation metrics moved under ``igrpo/drafts/``,
        the token counter (``num_input_tokens_seen``) left to the trained rollouts."""
        trainer = self.trainer
        metrics = trainer._metrics[mode]
        before = {name: len(values) for name, values in metrics.items()}
        saved_tokens, saved_num_tokens = trainer.state.num_input_tokens_seen, metrics.get("num_tokens")
        swaps = {"num_generations": num_drafts, "num_generations_eval": num_drafts, "max_completion_length": budget}
        saved = {name: getattr(trainer, name) for name in swaps}
        self._capturing = True
        try:
            for name, value in swaps.items():
                setattr(trainer, name, value)
            with trainer._completion_budget(budget, "max_draft_length"):
                yield
        finally:
            self._capturing = False
            for name, value in saved.items():
                setattr(trainer, name, value)
            trainer.state.num_input_tokens_seen = saved_tokens
            if saved_num_tokens is None:
                metrics.pop("num_tokens", None)
            else:
                metrics["num_tokens"] = saved_num_tokens
            for name in [n for n in metrics if n.startswith(_GENERATION_METRICS)]:
                new = metrics[name][before.get(name, 0) :]
                del metrics[name][before.get(name, 0) :]
                metrics[f"igrpo/drafts/{name}"].extend(new)
                if not metrics[name]:
                    del metrics[name]

    # ------------------------------------------------------------------------------------------------------------------
    # The guards.
    def verify(self, rendered: list[str], prompt_ids: list[list[int]], drafts: list[TrajectoryDraft]) -> None:
        """Raise unless each group's q', as the template renders it (``rendered``, marks removed) and as it is
        tokenized (``prompt_ids``), shows its whole trajectory in order; then arm the same check for the ids the
        Stage-2 generation is given (:meth:`generated`), which a ``rollout_func`` tokenizes itself."""
        for where, texts in (("as the chat template renders it", [strip_marks(text) for text in rendered]),
                             ("once tokenized", self._decoded(prompt_ids))):  # fmt: skip
            for text, draft in zip(texts, drafts, strict=True):
                self._check(text, draft.pieces(), where)
        self._expected = [draft.pieces() for draft in drafts]

    @contextlib.contextmanager
    def refining(self, inputs: list[dict[str, Any]], training: bool) -> Iterator[None]:
        """Stage 2 runs inside this block; the armed prompt-ids check does not outlive it."""
        try:
            yield
        finally:
            self._expected = None

    def generated(self, prompts: list, output: tuple) -> tuple:
        """What TRL's ``_generate`` returned, seen by the trainer's ``_generate``: ends Stage 1 (raises
        :class:`DraftsGenerated`) or, in Stage 2, checks the ``prompt_ids`` the model was given."""
        if self._capturing:
            raise DraftsGenerated(prompts, output)
        if self._expected is not None:
            expected, self._expected = self._expected, None
            group_size = max(1, len(output[0]) // len(expected))
            for row, text in enumerate(self._decoded(output[0])):
                self._check(text, expected[row // group_size], "in the prompt ids the model was given")
        return output

    def _decoded(self, prompt_ids: list[list[int]]) -> list[str]:
        return [self.trainer._tokenizer.decode(ids, skip_special_tokens=True) for ids in prompt_ids]

    def _check(self, text: str, pieces: list[str], where: str) -> None:
        missing = missing_trajectory_pieces(text, pieces)
        if not missing:
            return
        style = self.trainer.args.conversational_draft_style
        raise RuntimeError(
            f"The Stage-2 prompt does not show the whole selected trajectory {where}: {len(missing)} of its "
            f"{len(pieces)} turns, tool calls and tool results are missing (first: {pieces[missing[0]][:200]!r}), so "
            f"Stage 2 would condition on a trajectory the model never sees. The prompt reads {text[-600:]!r}. With "
            f"conversational_draft_style={style!r}: reasoning templates (Qwen3, DeepSeek-R1, Nemotron 3, ...) delete "
            "the reasoning of earlier assistant turns, use 'append_to_user' (the default) or strip_draft_think=True; "
            "a rollout_func must tokenize the prompt it is given; verify_draft_in_prompt=False turns this check off."
        )

    # ------------------------------------------------------------------------------------------------------------------
    # Metrics.
    def refined(self, output: dict[str, Any], drafts: list, mode: str) -> None:
        """Per-trajectory counts of Stage 2 from TRL's masks, and the tool calls of the selected drafts."""
        counts = trajectory_token_counts(output["completion_mask"], output.get("tool_mask"))
        self._log_counts("igrpo/refinements", counts, mode)
        calls = torch.tensor([float(count_tool_calls(draft.completion)) for draft in drafts])
        self.trainer._metrics[mode]["igrpo/best_draft/tool_calls"].append(self._gathered_mean(calls))

    def _log_counts(self, prefix: str, counts: dict[str, torch.Tensor], mode: str) -> None:
        for name, values in counts.items():
            self.trainer._metrics[mode][f"{prefix}/{name}"].append(self._gathered_mean(values))

    def _gathered_mean(self, values: torch.Tensor) -> float:
        accelerator = self.trainer.accelerator
        return accelerator.gather(values.float().to(accelerator.device)).mean().item()


def stage_two_prompt(row: dict[str, Any]) -> Any:
    """A Stage-2 row's original prompt: the row's ``prompt``, or TRL's empty user message when the environment owns the
    data (no ``prompt`` column)."""
    return copy.deepcopy(row["prompt"]) if "prompt" in row else copy.deepcopy(EMPTY_PROMPT)
