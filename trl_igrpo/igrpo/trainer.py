"""IGRPOTrainer: iterative GRPO with best-draft self-conditioning (Hatamizadeh et al., arXiv 2602.09000).

The only change to GRPO is the rollout (:meth:`IGRPOTrainer._rollout`), which reads top to bottom:

1. draft (Stage 1): N drafts per prompt from the current policy, decoded exactly as TRL decodes completions, asked once
   of the trainer's draft source (:mod:`~trl_igrpo.igrpo.draft_source`: sampled now, or prefetched);
2. rank: score them with the training reward functions and rank them by the scalar Stage 2's advantage is monotone in;
3. condition: build q' = Concat(q, d̂) with the best draft and check that the chat template kept the whole draft;
4. refine (Stage 2): TRL's own generation, rewards, advantages on G refinements of q' (``super()._rollout``).

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

from ..core.run_logging import log_answer_column
from ..core.trainer import GRPOBaseTrainer
from ..data.prompts import is_conversational_prompt
from ..hub.citations import IGRPO
from ..reasoning.think import strip_reasoning
from ..rewards.aggregation import group_ranking_scores, weighted_reward_sum
from ..utils.seeds import mix_seed
from .config import IGRPOConfig
from .draft_source import Drafts, DraftSource
from .draft_text import ControlTokens, encode_as_text, encode_marked, mark_draft, special_token_frame, strip_marks
from .drafts import build_refinement_prompt, drafts_dropped_by_template, drafts_missing_from_prompts, select_drafts
from .prefetch import PrefetchingDraftSource

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
    docstring lists the TRL methods it overrides for every GRPO-based trainer of the package). TRL methods overridden
    here on top of those, and why:

    - ``_tokenize_prompts``: the draft inside a Stage-2 prompt is encoded as text, so that a draft spelling a control
      token (``<|im_end|>``) cannot forge one (:mod:`~trl_igrpo.igrpo.draft_text`);
    - ``_generate_single_turn`` (TRL), ``get_batch_samples`` and ``train`` (transformers' Trainer): each hands over to
      the draft source (:attr:`draft_source`), and does nothing else unless ``prefetch_drafts=True``, where the next
      batch's draft prompts ride along in the Stage-2 generation call, the data loader looks one generation batch
      ahead, and a resumed run restores the pending drafts (:mod:`~trl_igrpo.igrpo.prefetch`).

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
        self._draft_rng_step, self._rollouts_this_step = -1, 0  # draft_selection="random": see _draft_rng
        self._marked_prompts: dict[tuple[str, str], Any] = {}  # Stage-2 prompts with marked drafts (_drafts_as_text)
        self._control: ControlTokens | None = None
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset, **kwargs)
        #: Where Stage 1's drafts come from (:mod:`~trl_igrpo.igrpo.draft_source`): sampled when the rollout asks,
        #: or prefetched one generation earlier (``prefetch_drafts=True``).
        self.draft_source = PrefetchingDraftSource(self) if self.args.prefetch_drafts else DraftSource(self)

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
        prompt_rows, training = inputs[::group_size], mode == "train"

        # 1. Draft: N drafts per prompt, sampled now or prefetched one generation earlier.
        drafts = self.draft_source.drafts(prompt_rows, training)
        # 2. Rank: score them with the training rewards and pick one per prompt (the best, or ``draft_selection``).
        chosen = self._select_drafts(prompt_rows, drafts, mode)
        # 3. Condition: q' = Concat(q, d̂) for every row of each prompt's group, the draft as text, checked whole.
        refined_inputs, refined_prompts = self._condition_on_drafts(inputs, prompt_rows, chosen)
        # 4. Refine: TRL's GRPO on G refinements of q' (a prefetching source samples the next drafts alongside).
        with self._drafts_as_text(prompt_rows, chosen, refined_prompts), self.draft_source.refining(inputs, training):
            output = super()._rollout(refined_inputs)
        self._log_refinement_metrics(output, mode)
        return output

    def _select_drafts(self, prompt_rows: list[dict[str, Any]], drafts: Drafts, mode: str) -> list[str]:
        """Score every draft with the training reward functions (as TRL scores completions), rank them by the scalar
        Stage 2's advantage is monotone in, and return the chosen draft's text per prompt (``<think>`` stripped with
        ``strip_draft_think``)."""
        num_drafts = self.args.num_drafts
        if self.args.prefetch_drafts:
            self._metrics[mode]["igrpo/draft_policy_lag"].append(float(drafts.policy_lag))
        draft_rows = [row for row in prompt_rows for _ in range(num_drafts)]
        rewards_per_func = self._calculate_rewards(
            draft_rows, drafts.prompts, drafts.completions, drafts.completion_ids
        )
        # Reward functions may have logged table columns/metrics for the drafts: keep them out of Stage 2's table.
        self._pending_extra_logs.clear()
        self._pending_metrics.clear()
        scores = group_ranking_scores(
            rewards_per_func, self.reward_weights, num_drafts, self.multi_objective_aggregation
        )
        rank = self.accelerator.process_index
        local = scores[rank * len(draft_rows) : (rank + 1) * len(draft_rows)].view(-1, num_drafts)  # gathered: ours
        self._log_draft_metrics(weighted_reward_sum(rewards_per_func, self.reward_weights), drafts.completion_ids)
        chosen = select_drafts(local.cpu(), self.args.draft_selection, generator=self._draft_rng())
        texts = [drafts.texts[i * num_drafts + int(column)] for i, column in enumerate(chosen)]
        if self.args.strip_draft_think:
            texts = [strip_reasoning(text) for text in texts]
        return [strip_marks(text) for text in texts]

    def _condition_on_drafts(
        self, inputs: list[dict[str, Any]], prompt_rows: list[dict[str, Any]], drafts: list[str]
    ) -> tuple[list[dict[str, Any]], list]:
        """The Stage-2 rows (q' = Concat(q, d̂) in every row of each prompt's group, with the ``draft`` and
        ``original_prompt`` columns) and each group's q'; with ``verify_draft_in_prompt``, raises when the template or
        the tokenizer lost part of a draft."""
        group_size = len(inputs) // len(prompt_rows)
        refined_prompts = [self._refinement_prompt(row["prompt"], draft) for row, draft in zip(prompt_rows, drafts)]
        if self.args.verify_draft_in_prompt:
            with self._drafts_as_text(prompt_rows, drafts, refined_prompts):
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
        return refined_inputs, refined_prompts

    def _draft_rng(self) -> torch.Generator:
        """The generator of ``draft_selection="random"``, seeded from (seed, process, optimizer step, rollout within
        the step): every process draws differently, and a resumed run draws exactly what the uninterrupted one drew
        (checkpoints fall between optimizer steps; TRL's micro-step counter is not restored, so it is not used)."""
        step = self.state.global_step
        self._rollouts_this_step = self._rollouts_this_step + 1 if self._draft_rng_step == step else 0
        self._draft_rng_step = step
        seed = mix_seed(self.args.seed, self.accelerator.process_index, step, self._rollouts_this_step)
        return torch.Generator().manual_seed(seed)

    def _draft_budget(self) -> int:
        """Tokens per draft: ``max_draft_length``, else ``max_completion_length``."""
        return int(self.args.max_draft_length or self.max_completion_length or 0)

    def _refinement_prompt(self, prompt, draft: str):
        return build_refinement_prompt(
            prompt,
            draft,
            template=self.args.refinement_template,
            instruction=self.args.refinement_instruction,
            conversational_style=self.args.conversational_draft_style,
        )

    # ------------------------------------------------------------------------------------------------------------------
    # TRL / transformers overrides the draft source takes part in (pass-throughs unless prefetch_drafts=True).
    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, **kwargs):
        """TRL's generation, through the draft source (prefetching: the next batch's draft prompts ride along in the
        Stage-2 call)."""
        generate = super()._generate_single_turn
        return self.draft_source.generate(generate, prompt_ids, images, multimodal_fields, num_generations, **kwargs)

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Trainer's fetch of an optimizer step's micro-batches, unless the draft source fetches them (prefetching:
        it keeps the next generation's batches buffered)."""
        batches = self.draft_source.next_batches(epoch_iterator, num_batches)
        if batches is None:
            return super().get_batch_samples(epoch_iterator, num_batches, device)
        return batches, self._get_num_items_in_batch(batches, device)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """Trainer's ``train``; a resumed run first restores what the draft source saved in the checkpoint
        (prefetching: the drafts prefetched before it, so it conditions on the same drafts as an uninterrupted run)."""
        self.draft_source.restore(resume_from_checkpoint)
        return super().train(resume_from_checkpoint, *args, **kwargs)

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
