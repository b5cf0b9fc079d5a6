"""IGRPOTrainer: iterative GRPO with best-draft self-conditioning (Hatamizadeh et al., arXiv 2602.09000).

The only change to GRPO is the rollout (:meth:`IGRPOTrainer._rollout`), which reads top to bottom:

1. Stage 1: sample N drafts per prompt from the current policy, decoded exactly as TRL decodes completions;
2. score them with the training reward functions and rank them by the scalar Stage 2's advantage is monotone in;
3. build q' = Concat(q, d̂) with the best draft and check that the chat template kept the whole draft;
4. Stage 2: TRL's own generation, rewards, advantages on G refinements of q' (``super()._rollout``).

Everything after the rollout (old/reference log-probs, every loss type, KL, vLLM importance sampling, buffering over
``steps_per_generation``/``num_iterations``) is TRL's, conditioned on q'; only refinement tokens are trained.

Deviations and choices where the paper is silent (docs/igrpo.md): the join text between q and d̂ is configurable and
goes into the last user message; ties go to the first best draft; evaluation is single-pass unless
``two_stage_eval=True``.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import torch

from ..citations import IGRPO
from ..core.decoding import decode_completions
from ..core.trainer import GRPOBaseTrainer
from ..reasoning.think import strip_reasoning
from ..rewards.aggregation import group_ranking_scores, weighted_reward_sum
from ..run_logging import log_answer_column
from .config import IGRPOConfig
from .draft_text import ControlTokens, encode_as_text, encode_marked, mark_draft, special_token_frame, strip_marks
from .drafts import (
    build_refinement_prompt,
    drafts_dropped_by_template,
    drafts_missing_from_prompts,
    is_conversational_prompt,
    select_drafts,
)
from .prefetch import (
    DataLookahead,
    PendingDrafts,
    SavePendingDraftsCallback,
    batch_fingerprint,
    load_pending_drafts,
)

__all__ = ["IGRPOTrainer"]

#: Dataset columns the trainer adds to Stage-2 rows (reward functions receive them).
RESERVED_COLUMNS = ("draft", "original_prompt")


def _prompt_key(prompt) -> tuple[str, str]:
    """A prompt's content as a dict key (TRL tokenizes deep copies, so identity cannot be used)."""
    if isinstance(prompt, str):
        return ("text", prompt)
    return ("chat", json.dumps(prompt, sort_keys=True, ensure_ascii=False, default=str))


class IGRPOTrainer(GRPOBaseTrainer):
    """GRPO with a draft stage: every step, condition the GRPO group on the best of N self-generated drafts.

    Takes exactly the arguments of [`~trl.GRPOTrainer`] with an [`IGRPOConfig`]. Reward functions are used for both
    stages; Stage-2 calls also receive the columns ``draft`` (the draft text placed in the prompt) and
    ``original_prompt``. ``tools``, ``rollout_func`` and ``environment_factory`` are refused (single-turn text only).

    The only change to GRPO is the rollout: :meth:`_rollout` (a hook of [`~trl_igrpo.core.GRPOBaseTrainer`], whose
    docstring lists the TRL methods it overrides for every GRPO-based trainer of the package), plus TRL's
    ``_tokenize_prompts``, which encodes the draft inside a Stage-2 prompt as text, so that a draft spelling a control
    token (``<|im_end|>``) cannot forge one (:mod:`~trl_igrpo.igrpo.draft_text`). The opt-in draft
    prefetching (``prefetch_drafts=True``) adds three pass-through overrides that do nothing when it is off:
    ``_generate_single_turn`` (TRL: the next batch's draft prompts ride along in the Stage-2 call), and
    ``get_batch_samples`` and ``train`` (transformers' Trainer: look one generation batch ahead; restore the pending
    drafts on resume).

    Example:

    ```python
    from trl_igrpo import IGRPOConfig, IGRPOTrainer
    from trl_igrpo.rewards import math_accuracy_reward, think_answer_format_reward

    trainer = IGRPOTrainer(
        model="Qwen/Qwen2.5-Math-1.5B",
        reward_funcs=[math_accuracy_reward, think_answer_format_reward],
        args=IGRPOConfig(output_dir="out", num_drafts=4, num_generations=4),
        train_dataset=dataset,  # columns: prompt, solution
    )
    trainer.train()
    ```
    """

    args: IGRPOConfig
    _tag_names = ["trl", "grpo", "igrpo", "trl-igrpo"]
    _name = "iGRPO"
    _paper = IGRPO.as_trl_paper()
    config_class = IGRPOConfig
    _answer_column = "refinement_answer"

    def __init__(self, model, reward_funcs=None, args: IGRPOConfig | None = None, train_dataset=None, **kwargs):
        for unsupported in ("tools", "rollout_func", "environment_factory"):
            if kwargs.get(unsupported) is not None:
                raise ValueError(
                    f"IGRPOTrainer does not support `{unsupported}`: the two-stage rollout is single-turn text only."
                )
        if reward_funcs is None or (isinstance(reward_funcs, (list, tuple)) and len(reward_funcs) == 0):
            raise ValueError("IGRPOTrainer needs reward_funcs: Stage 1 ranks the drafts with them.")
        self._framing_tokens: int | None = None
        self._pending_drafts: PendingDrafts | None = None  # prefetch_drafts: Stage 1 of the next generation batch
        self._ride_along: dict[str, Any] | None = None  # prefetch_drafts: prompts added to the Stage-2 generation call
        self._draft_rng_step, self._rollouts_this_step = -1, 0  # draft_selection="random": see _draft_rng
        self._marked_prompts: dict[tuple[str, str], Any] = {}  # Stage-2 prompts with marked drafts (_drafts_as_text)
        self._control: ControlTokens | None = None
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset, **kwargs)
        self._lookahead = None
        if self.args.prefetch_drafts:
            self._check_prefetch_supported()
            self._lookahead = DataLookahead(distance=self.args.steps_per_generation * self.num_iterations)
            self.add_callback(SavePendingDraftsCallback(self))

    # ------------------------------------------------------------------------------------------------------------------
    # The rollout: draft, rank, condition, refine.
    def _rollout(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        mode = "train" if self.model.training else "eval"
        if mode == "eval" and not self.args.two_stage_eval:
            return super()._rollout(inputs)  # paper: single-pass inference
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        if len(inputs) % group_size:
            raise RuntimeError(
                f"iGRPO received {len(inputs)} rows, not a multiple of the group size {group_size}; check the batch "
                "arithmetic in IGRPOConfig."
            )
        prompt_rows = inputs[::group_size]

        # Stage 1: N drafts per prompt (sampled now, or prefetched one generation earlier), decoded as TRL decodes
        # completions, ranked with the training rewards.
        draft_texts, draft_scores = self._sample_and_score_drafts(prompt_rows, mode)
        chosen = select_drafts(draft_scores.cpu(), self.args.draft_selection, generator=self._draft_rng())
        num_drafts = self.args.num_drafts
        drafts = [draft_texts[i * num_drafts + int(column)] for i, column in enumerate(chosen)]
        if self.args.strip_draft_think:
            drafts = [strip_reasoning(text) for text in drafts]

        # q' = Concat(q, d̂), for every row of each prompt's group, with the draft as text (it can never become a control
        # token); the guard checks that the template kept the whole draft.
        drafts = [strip_marks(text) for text in drafts]
        refined_prompts = [self._refinement_prompt(row["prompt"], draft) for row, draft in zip(prompt_rows, drafts)]
        with self._drafts_as_text(prompt_rows, drafts, refined_prompts):
            if self.args.verify_draft_in_prompt:
                self._verify_drafts_in_prompts(refined_prompts, drafts)
            refined_inputs = [
                {
                    **row,
                    "prompt": refined_prompts[i // group_size],
                    "original_prompt": row["prompt"],
                    "draft": drafts[i // group_size],
                }
                for i, row in enumerate(inputs)
            ]
            self._log_completion_extra("draft", [row["draft"] for row in refined_inputs])
            log_answer_column(self, "draft_answer", [row["draft"] for row in refined_inputs])

            # Stage 2: TRL's GRPO on G refinements of q' (with prefetch_drafts, the next batch's drafts ride along).
            self._ride_along = self._next_batch_draft_prompts(inputs) if mode == "train" else None
            try:
                output = super()._rollout(refined_inputs)
            finally:
                ride_along, self._ride_along = self._ride_along, None
        if ride_along is not None:
            self._pending_drafts = PendingDrafts(
                fingerprint=ride_along["fingerprint"],
                prompt_ids=ride_along["prompt_ids"],
                draft_ids=ride_along["completion_ids"],
                generated_at_step=self.state.global_step,
            )
        self._log_refinement_metrics(output, mode)
        return output

    # ------------------------------------------------------------------------------------------------------------------
    # Stage 1.
    def _sample_and_score_drafts(self, prompt_rows: list[dict[str, Any]], mode: str) -> tuple[list[str], torch.Tensor]:
        """N drafts per prompt and this process's ranking scores, shape (prompts, N)."""
        num_drafts = self.args.num_drafts
        draft_rows = [row for row in prompt_rows for _ in range(num_drafts)]
        prompts = [copy.deepcopy(row["prompt"]) for row in draft_rows]
        pending = self._take_pending_drafts(prompt_rows) if mode == "train" else None
        if pending is not None:
            prompt_ids, draft_ids = pending.prompt_ids, pending.draft_ids
            lag = self.state.global_step - pending.generated_at_step
        else:
            with self._completion_budget(self._draft_budget(), "max_draft_length"):
                prompt_ids, images, multimodal_fields = self._tokenize_prompts(prompts)
                draft_ids, _ = self._generate_single_turn(prompt_ids, images, multimodal_fields, num_drafts)
            lag = 0
        if self.args.prefetch_drafts:
            self._metrics[mode]["igrpo/draft_policy_lag"].append(float(lag))
        # Reward functions see drafts exactly as they see refinements; the prompt gets the literal decoded text.
        completions = decode_completions(self, prompts, prompt_ids, draft_ids)
        texts = self._tokenizer.batch_decode(draft_ids, skip_special_tokens=True)

        rewards_per_func = self._calculate_rewards(draft_rows, prompts, completions, draft_ids)  # gathered
        # Reward functions may have logged table columns/metrics for the drafts: keep them out of Stage 2's table.
        self._pending_extra_logs.clear()
        self._pending_metrics.clear()
        scores = group_ranking_scores(
            rewards_per_func, self.reward_weights, num_drafts, self.multi_objective_aggregation
        )
        rank = self.accelerator.process_index
        local = scores[rank * len(draft_rows) : (rank + 1) * len(draft_rows)].view(-1, num_drafts)
        self._log_draft_metrics(weighted_reward_sum(rewards_per_func, self.reward_weights), draft_ids)
        return texts, local

    def _draft_rng(self) -> torch.Generator:
        """The generator of ``draft_selection="random"``, seeded from (seed, process, optimizer step, rollout within
        the step): every process draws differently, and a resumed run draws exactly what the uninterrupted one drew
        (checkpoints fall between optimizer steps; TRL's micro-step counter is not restored, so it is not used)."""
        step = self.state.global_step
        self._rollouts_this_step = self._rollouts_this_step + 1 if self._draft_rng_step == step else 0
        self._draft_rng_step = step
        seed = 0
        for part in (self.args.seed, self.accelerator.process_index, step, self._rollouts_this_step):
            seed = (seed * 1_000_003 + int(part)) % (2**63)
        return torch.Generator().manual_seed(seed)

    def _draft_budget(self) -> int:
        return int(self.args.max_draft_length or self.max_completion_length or 0)

    # ------------------------------------------------------------------------------------------------------------------
    # Draft prefetching (prefetch_drafts=True; see trl_igrpo/igrpo/prefetch.py).
    def _take_pending_drafts(self, prompt_rows: list[dict[str, Any]]) -> PendingDrafts | None:
        """The prefetched drafts for these prompts, if every process has them (else every process samples now)."""
        pending = self._pending_drafts
        matches = pending is not None and pending.fingerprint == batch_fingerprint(prompt_rows)
        if not self.args.prefetch_drafts or not self._on_every_process(matches):
            return None
        self._pending_drafts = None
        return pending

    def _next_batch_draft_prompts(self, inputs: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Tokenized Stage-1 prompts of the next generation batch, to ride along in this Stage-2 generation call."""
        if self._lookahead is None:
            return None
        upcoming = self._lookahead.next_generation_batch(inputs)
        if not self._on_every_process(upcoming is not None):
            return None
        prompt_rows = upcoming[:: self.num_generations]
        prompts = [copy.deepcopy(row["prompt"]) for row in prompt_rows for _ in range(self.args.num_drafts)]
        with self._completion_budget(self._draft_budget(), "max_draft_length"):
            prompt_ids, _, _ = self._tokenize_prompts(prompts)
        return {"fingerprint": batch_fingerprint(prompt_rows), "prompt_ids": prompt_ids, "completion_ids": None}

    def _on_every_process(self, flag: bool) -> bool:
        """``flag`` AND-ed over processes: prefetch decisions change collective generation calls, so all agree."""
        if self.accelerator.num_processes == 1:
            return flag
        return bool(self.accelerator.gather(torch.tensor([int(flag)], device=self.accelerator.device)).min())

    def _check_prefetch_supported(self) -> None:
        args = self.args
        if self.use_vllm and args.vllm_mode == "server" and args.num_drafts != self.num_generations:
            raise ValueError(
                "prefetch_drafts=True with vllm_mode='server' needs num_drafts == num_generations: the server "
                f"de-duplicates one generation call with a single stride (got N={args.num_drafts}, "
                f"G={self.num_generations})."
            )

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, **kwargs):
        """TRL's generation; with ``prefetch_drafts``, the next batch's draft prompts ride along in the Stage-2 call
        (one generation round per step instead of two). Drafts are cut at ``max_draft_length`` afterwards, which
        samples exactly as a generation capped there would."""
        ride_along = self._ride_along
        if ride_along is None or ride_along["completion_ids"] is not None:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, **kwargs)
        own = len(prompt_ids)
        completion_ids, logprobs = super()._generate_single_turn(
            list(prompt_ids) + list(ride_along["prompt_ids"]), images, multimodal_fields, num_generations, **kwargs
        )
        budget = self._draft_budget()
        ride_along["completion_ids"] = [list(ids[:budget]) for ids in completion_ids[own:]]
        return completion_ids[:own], (logprobs[:own] if logprobs is not None else None)

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Trainer's fetch of an optimizer step's micro-batches; with ``prefetch_drafts`` it also keeps the batches of
        the next generation buffered (:class:`~trl_igrpo.igrpo.prefetch.DataLookahead`)."""
        if self._lookahead is None:
            return super().get_batch_samples(epoch_iterator, num_batches, device)
        batches = self._lookahead.take(epoch_iterator, num_batches)
        return batches, self._get_num_items_in_batch(batches, device)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """Trainer's ``train``; when resuming with ``prefetch_drafts``, the drafts prefetched before the checkpoint
        are restored first, so the resumed run conditions on the same drafts as an uninterrupted one."""
        if self.args.prefetch_drafts and resume_from_checkpoint:
            from transformers.trainer_utils import get_last_checkpoint

            checkpoint = resume_from_checkpoint
            if checkpoint is True:
                checkpoint = get_last_checkpoint(self.args.output_dir)
            if checkpoint:
                self._pending_drafts = load_pending_drafts(checkpoint, self.accelerator.process_index)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _refinement_prompt(self, prompt, draft: str):
        return build_refinement_prompt(
            prompt,
            draft,
            template=self.args.refinement_template,
            instruction=self.args.refinement_instruction,
            conversational_style=self.args.conversational_draft_style,
        )

    # ------------------------------------------------------------------------------------------------------------------
    # The draft in q': text, never control tokens (trl_igrpo/igrpo/draft_text.py), and whole (the guard).
    @contextlib.contextmanager
    def _drafts_as_text(self, prompt_rows: list[dict[str, Any]], drafts: list[str], refined_prompts: list):
        """Within the block, tokenizing one of ``refined_prompts`` encodes its draft as text: the same prompt is built
        with a marked draft (:func:`~trl_igrpo.igrpo.draft_text.mark_draft`), which :meth:`_tokenize_prompts` encodes.
        Keyed by content, because TRL deep-copies the prompts it tokenizes."""
        control = self._control_tokens()
        self._marked_prompts = {
            _prompt_key(refined): self._refinement_prompt(row["prompt"], mark_draft(draft, control))
            for row, draft, refined in zip(prompt_rows, drafts, refined_prompts)
        }
        try:
            yield
        finally:
            self._marked_prompts = {}

    def _tokenize_prompts(self, prompts: list):
        """TRL's tokenization, except that in a Stage-2 prompt the draft is encoded as text (the template's own
        control tokens stay tokens). Same contract: ``(prompt_ids, images, multimodal_fields)``."""
        marked = [self._marked_prompts.get(_prompt_key(prompt)) for prompt in prompts] if self._marked_prompts else []
        if all(prompt is None for prompt in marked):
            return super()._tokenize_prompts(prompts)
        prompt_ids = self._encode_marked_prompts([m if m is not None else p for m, p in zip(marked, prompts)])
        self._check_prompts_fit(prompt_ids)
        return prompt_ids, None, {}

    def _render_prompts(self, prompts: list) -> list[str]:
        """Prompts as text, rendered as TRL's ``_tokenize_prompts`` renders them before tokenizing (no ``tools``:
        IGRPOTrainer refuses them)."""
        if not is_conversational_prompt(prompts[0]):
            return list(prompts)
        template_kwargs: dict[str, Any] = dict(self.chat_template_kwargs or {})  # type: ignore[arg-type]
        rendered = self.processing_class.apply_chat_template(
            conversation=prompts, chat_template=self.chat_template, add_generation_prompt=True, tokenize=False,
            **template_kwargs,
        )  # fmt: skip
        return [str(text) for text in rendered]

    def _encode_marked_prompts(self, prompts: list) -> list[list[int]]:
        control = self._control_tokens()
        ids = [encode_marked(self._tokenizer, text, control) for text in self._render_prompts(prompts)]
        if is_conversational_prompt(prompts[0]):
            return ids  # the template writes the special tokens
        before, after = special_token_frame(self._tokenizer)  # TRL: processing_class(text=prompts)
        return [before + row + after for row in ids]

    def _control_tokens(self) -> ControlTokens:
        if self._control is None:
            self._control = ControlTokens.of(self._tokenizer)
        return self._control

    def _verify_drafts_in_prompts(self, refined_prompts: list, drafts: list[str]) -> None:
        """Raise before Stage-2 generation when a prompt group's q' lost any part of its draft: the template dropped or
        cut it (reasoning templates drop earlier assistant ``<think>``), or its tokens do not decode to it."""
        marked = [self._marked_prompts[_prompt_key(prompt)] for prompt in refined_prompts]
        rendered = self._render_prompts(marked)
        dropped = drafts_dropped_by_template(rendered, drafts)
        if dropped:
            index = dropped[0]
            style = self.args.conversational_draft_style
            raise RuntimeError(
                f"The Stage-2 prompt does not contain the selected draft ({len(dropped)} of {len(drafts)} prompt "
                f"groups): the chat template dropped part of it, so Stage 2 would condition on text the model never "
                f"sees. With conversational_draft_style={style!r} and strip_draft_think={self.args.strip_draft_think}, "
                f"draft {drafts[index][:200]!r} was rendered as {strip_marks(rendered[index])[-400:]!r}. Reasoning "
                "templates (DeepSeek-R1, Qwen3, Nemotron 3, ...) delete <think> from earlier assistant turns: use "
                "conversational_draft_style='append_to_user' (the default), or strip_draft_think=True to condition on "
                "the draft's answer only; verify_draft_in_prompt=False turns this check off."
            )
        # Like with like: q' ids and the draft's own text encoding, decoded the same way (special tokens skipped).
        prompt_ids, _, _ = self._tokenize_prompts(copy.deepcopy(refined_prompts))
        control = self._control_tokens()
        decoded = self._tokenizer.batch_decode(prompt_ids, skip_special_tokens=True)
        expected = self._tokenizer.batch_decode(
            [encode_as_text(self._tokenizer, draft, control) for draft in drafts], skip_special_tokens=True
        )
        lost = drafts_missing_from_prompts(decoded, expected)
        if lost:
            raise RuntimeError(
                f"The tokenized Stage-2 prompt does not decode to the selected draft ({len(lost)} of {len(drafts)} "
                f"prompt groups): draft {drafts[lost[0]][:200]!r} decodes from q' as {decoded[lost[0]][-400:]!r}. The "
                "draft is encoded as text (trl_igrpo.igrpo.draft_text), so the tokenizer cannot represent part of it; "
                "verify_draft_in_prompt=False turns this check off."
            )

    # ------------------------------------------------------------------------------------------------------------------
    # Hooks of GRPOBaseTrainer.
    def _extra_prompt_tokens(self) -> int:
        """A Stage-2 prompt is the dataset prompt + a draft (``max_draft_length``) + the template's framing text."""
        if self._framing_tokens is None:
            self._framing_tokens = self._measure_framing_tokens()
        return int(self.args.max_draft_length or self.args.max_completion_length or 0) + self._framing_tokens

    def _measure_framing_tokens(self) -> int:
        example = "What is 1 + 1?"
        prompt = [{"role": "user", "content": example}] if self._conversational_dataset() else example
        tokenizer = self._tokenizer
        plain, framed = (
            tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) if isinstance(p, list) else p
            for p in (prompt, self._refinement_prompt(prompt, ""))
        )
        return max(0, len(tokenizer(framed)["input_ids"]) - len(tokenizer(plain)["input_ids"]))

    def _conversational_dataset(self) -> bool:
        dataset = self.train_dataset
        if (
            dataset is None
            or not hasattr(dataset, "__getitem__")
            or not hasattr(dataset, "__len__")
            or not len(dataset)
        ):
            return False
        return is_conversational_prompt(dataset[0]["prompt"])

    def _check_train_dataset(self, dataset, args) -> None:
        super()._check_train_dataset(dataset, args)
        columns = getattr(dataset, "column_names", None)
        reserved = set(RESERVED_COLUMNS) & set(columns) if isinstance(columns, list) else set()
        if reserved:
            raise ValueError(
                f"train_dataset has column(s) {sorted(reserved)}, which IGRPOTrainer adds to Stage-2 rows; rename them."
            )

    # ------------------------------------------------------------------------------------------------------------------
    # Metrics.
    def _log_draft_metrics(self, rewards: torch.Tensor, draft_ids: list[list[int]]) -> None:
        """Stage-1 metrics over all processes; ``rewards`` is the gathered weighted reward sum of every draft."""
        mode = "train" if self.model.training else "eval"
        metrics = self._metrics[mode]
        scores = rewards.view(-1, self.args.num_drafts)
        finite = torch.where(torch.isnan(scores), torch.full_like(scores, float("-inf")), scores)
        best = finite.max(dim=1).values
        best = torch.where(torch.isinf(best), torch.full_like(best, float("nan")), best)
        self._last_best_draft_reward = torch.nanmean(best).item()
        metrics["igrpo/draft_reward_mean"].append(torch.nanmean(scores).item())
        metrics["igrpo/best_draft_reward_mean"].append(self._last_best_draft_reward)
        succeeded = (finite > self.args.draft_success_threshold).any(dim=1)
        metrics["igrpo/all_drafts_failed_frac"].append((~succeeded).float().mean().item())
        lengths = torch.tensor([len(ids) for ids in draft_ids], dtype=torch.float32, device=self.accelerator.device)
        metrics["igrpo/draft_mean_length"].append(self.accelerator.gather(lengths).mean().item())
        metrics["igrpo/num_drafts_per_prompt"].append(float(self.args.num_drafts))

    def _log_refinement_metrics(self, output: dict[str, Any], mode: str) -> None:
        metrics = self._metrics[mode]
        refinement_reward = metrics["reward"][-1] if metrics.get("reward") else float("nan")
        metrics["igrpo/refinement_reward_mean"].append(refinement_reward)
        metrics["igrpo/refinement_minus_best_draft"].append(refinement_reward - self._last_best_draft_reward)
        lengths = output["completion_mask"].sum(dim=1).float()
        metrics["igrpo/refinement_mean_length"].append(self.accelerator.gather(lengths).mean().item())
        prompt_lengths = output["prompt_mask"].sum(dim=1).float()
        metrics["igrpo/refinement_prompt_mean_length"].append(self.accelerator.gather(prompt_lengths).mean().item())
