"""iGRPO for agents: Stage 1 runs N whole trajectories through TRL's own rollout, Stage 2 sees the best one whole.

With ``tools``, ``environment_factory`` or ``rollout_func`` a draft is a trajectory. :class:`AgentStages` is the
trainer's helper for it:

1. **Stage 1** (:meth:`AgentStages.sample_drafts`): the prompt rows, each repeated N times, go through TRL's own
   ``GRPOTrainer._generate_and_score_completions`` up to the end of generation: TRL draws one environment per
   trajectory from its pool, builds the per-trajectory tool dicts, calls ``reset(**row)`` (appending the observation
   to the prompt), then ``_generate`` runs the tool loop (or ``rollout_func``, called with the draft prompts and the
   trainer, as in GRPO). The trainer's ``_generate`` hands the result to :meth:`AgentStages.after_generate`, which
   stops TRL's rollout there (:class:`DraftsGenerated`): drafts need neither log-probs nor advantages. The
   trajectories are scored by the training scalar: ``_calculate_rewards`` with those environments, so
   environment-owned rewards (``get_reward``) count, and ``rollout_func`` extra fields reach the reward functions.
2. q' renders the selected trajectory (:mod:`~trl_igrpo.igrpo.trajectories`); Stage 2 is TRL's rollout on q', with
   fresh environments reset from the same rows, the tool loop and ``tool_mask`` as in GRPO.
3. **The guard** (:meth:`AgentStages.after_generate` in Stage 2): every turn, tool call and tool result of the selected
   trajectory must appear, in order, in the decoded Stage-2 ``prompt_ids`` (the ids the model was given, whoever
   tokenized them: TRL or ``rollout_func``), or the step raises.

During Stage 1 three attributes TRL reads inside ``_generate``, its tool loop and a user's ``rollout_func`` are
swapped (:meth:`AgentStages._stage_one`): ``num_generations`` / ``num_generations_eval`` (N: a rollout function and
vLLM server mode group the prompts by it) and ``max_completion_length`` (the tool loop's trajectory budget,
``max_draft_length``). A swap is the only way to give TRL's methods N and the draft budget without copying them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from trl import GRPOTrainer

from ..rewards.aggregation import group_ranking_scores, weighted_reward_sum
from .trajectories import count_tool_calls, missing_trajectory_pieces, trajectory_pieces, trajectory_token_counts

__all__ = ["AgentStages", "DraftTrajectories", "DraftsGenerated"]

#: Metric families TRL's ``_generate`` logs; during Stage 1 they are moved under ``igrpo/drafts/``.
_GENERATION_METRICS = ("completions/", "tools/")


class DraftsGenerated(Exception):
    """Raised by :meth:`AgentStages.after_generate` to stop TRL's rollout once the Stage-1 trajectories exist."""

    def __init__(self, prompts: list, generated: tuple):
        super().__init__("Stage-1 trajectories generated")
        self.prompts = prompts
        self.generated = generated


@dataclass
class DraftTrajectories:
    """Stage 1's result for this process: N trajectories per prompt (prompt-major) and their ranking scores."""

    completions: list
    scores: torch.Tensor  # (prompts, N), this process's rows
    rewards: torch.Tensor  # (all processes' drafts,), weighted reward sum, gathered
    completion_masks: torch.Tensor  # (drafts, T)
    tool_masks: torch.Tensor | None  # (drafts, T), 1 for model tokens


def _padded(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max((len(row) for row in rows), default=0)
    return torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long).view(len(rows), width)


class AgentStages:
    """Stage 1 and the Stage-2 guard of :class:`~trl_igrpo.IGRPOTrainer` when the rollout is multi-turn."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer
        self._capturing = False
        self._guard: list[list[str]] | None = None  # pieces of each prompt group's selected trajectory
        self._group_size = 1

    # ------------------------------------------------------------------------------------------------------------------
    # Stage 1.
    def sample_drafts(
        self, prompt_rows: list[dict[str, Any]], num_drafts: int, budget: int, mode: str
    ) -> DraftTrajectories:
        """N whole trajectories per prompt row, generated and scored exactly as GRPO's rollouts (see module doc)."""
        trainer = self.trainer
        draft_rows = [dict(row) for row in prompt_rows for _ in range(num_drafts)]
        with self._stage_one(num_drafts, budget, mode):
            try:
                GRPOTrainer._generate_and_score_completions(trainer, draft_rows)
            except DraftsGenerated as done:
                prompts, generated = done.prompts, done.generated
            else:  # pragma: no cover - TRL always generates before scoring
                raise RuntimeError("TRL's rollout finished without generating the Stage-1 trajectories.")
        prompt_ids, completion_ids, tool_mask, completions, _, extra_fields = generated[:6]
        for i, row in enumerate(draft_rows):  # rollout_func's extra fields reach the rewards, as in GRPO
            for key, values in extra_fields.items():
                row[key] = values[i] if isinstance(values, list) and i < len(values) else values
        rewards_per_func = trainer._calculate_rewards(draft_rows, prompts, completions, completion_ids)  # gathered
        trainer._pending_extra_logs.clear()  # reward functions' logs for the drafts stay out of Stage 2's table
        trainer._pending_metrics.clear()
        scores = group_ranking_scores(
            rewards_per_func, trainer.reward_weights, num_drafts, trainer.multi_objective_aggregation
        )
        rank = trainer.accelerator.process_index
        local = scores[rank * len(draft_rows) : (rank + 1) * len(draft_rows)].view(-1, num_drafts)
        return DraftTrajectories(
            completions=completions,
            scores=local,
            rewards=weighted_reward_sum(rewards_per_func, trainer.reward_weights),
            completion_masks=_padded([[1] * len(ids) for ids in completion_ids], 0),
            tool_masks=_padded([list(mask) for mask in tool_mask], 1) if tool_mask is not None else None,
        )

    @contextlib.contextmanager
    def _stage_one(self, num_drafts: int, budget: int, mode: str):
        """Stage-1 generation: N per prompt, the draft budget, TRL's generation metrics relabelled ``igrpo/drafts/``,
        the token counter (``num_input_tokens_seen``) left to the trained rollouts."""
        trainer = self.trainer
        metrics = trainer._metrics[mode]
        before = {name: len(values) for name, values in metrics.items()}
        saved_tokens = trainer.state.num_input_tokens_seen
        saved_num_tokens = list(metrics.get("num_tokens", []))
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
            if saved_num_tokens:
                metrics["num_tokens"] = saved_num_tokens
            else:
                metrics.pop("num_tokens", None)
            for name in [n for n in metrics if n.startswith(_GENERATION_METRICS)]:
                new = metrics[name][before.get(name, 0) :]
                del metrics[name][before.get(name, 0) :]
                metrics[f"igrpo/drafts/{name}"].extend(new)
                if not metrics[name]:
                    del metrics[name]

    # ------------------------------------------------------------------------------------------------------------------
    # The hook in the trainer's ``_generate``.
    def guard_stage_two(self, completions: list, group_size: int, keep_reasoning: bool) -> None:
        """Arm the guard for the next ``_generate`` call: each group of ``group_size`` rows must show its trajectory."""
        self._guard = [trajectory_pieces(completion, keep_reasoning) for completion in completions]
        self._group_size = group_size

    def disarm(self) -> None:
        self._guard = None

    def after_generate(self, prompts: list, generated: tuple) -> None:
        """Called by the trainer's ``_generate`` with what TRL's ``_generate`` returned: ends Stage 1 (raises
        :class:`DraftsGenerated`) or, in Stage 2, checks the Stage-2 ``prompt_ids`` (raises ``RuntimeError``)."""
        if self._capturing:
            raise DraftsGenerated(prompts, generated)
        if self._guard is None:
            return
        guard, self._guard = self._guard, None
        self._check_prompts(generated[0], guard)

    def _check_prompts(self, prompt_ids: list[list[int]], guard: list[list[str]]) -> None:
        trainer = self.trainer
        for row, ids in enumerate(prompt_ids):
            pieces = guard[row // self._group_size]
            rendered = trainer._tokenizer.decode(ids, skip_special_tokens=True)
            missing = missing_trajectory_pieces(rendered, pieces)
            if missing:
                style = trainer.args.conversational_draft_style
                raise RuntimeError(
                    f"The Stage-2 prompt does not show the whole selected trajectory: {len(missing)} of its "
                    f"{len(pieces)} turns, tool calls and tool results are missing from the prompt ids (first: "
                    f"{pieces[missing[0]][:200]!r}), so Stage 2 would condition on a trajectory the model never sees. "
                    f"The prompt was rendered as {rendered[-600:]!r}. With conversational_draft_style={style!r}: "
                    "reasoning templates (Qwen3, DeepSeek-R1, Nemotron 3, ...) delete the reasoning of earlier "
                    "assistant turns, use 'append_to_user' (the default) or strip_draft_think=True; a rollout_func "
                    "must tokenize the prompt it is given; verify_draft_in_prompt=False turns this check off."
                )

    # ------------------------------------------------------------------------------------------------------------------
    # Metrics.
    def log_draft_metrics(self, drafts: DraftTrajectories, chosen: list, mode: str) -> None:
        """Per-trajectory counts of Stage 1 (all processes): turns, model and tool tokens, tool calls of the chosen."""
        trainer = self.trainer
        metrics = trainer._metrics[mode]
        counts = trajectory_token_counts(drafts.completion_masks, drafts.tool_masks)
        for name, values in counts.items():
            metrics[f"igrpo/drafts/{name}"].append(self._gathered_mean(values))
        calls = torch.tensor([float(count_tool_calls(completion)) for completion in chosen])
        metrics["igrpo/best_draft/tool_calls"].append(self._gathered_mean(calls))

    def log_refinement_metrics(self, output: dict[str, Any], mode: str) -> None:
        """Per-trajectory counts of Stage 2 from TRL's masks (``tool_mask`` marks the tokens the model produced)."""
        counts = trajectory_token_counts(output["completion_mask"], output.get("tool_mask"))
        metrics = self.trainer._metrics[mode]
        for name, values in counts.items():
            metrics[f"igrpo/refinements/{name}"].append(self._gathered_mean(values))

    def _gathered_mean(self, values: torch.Tensor) -> float:
        accelerator = self.trainer.accelerator
        return accelerator.gather(values.float().to(accelerator.device)).mean().item()
