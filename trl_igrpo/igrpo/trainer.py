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
``two_stage_eval=True``. With ``tools``, ``environment_factory`` or ``rollout_func`` a draft is a whole trajectory
through TRL's tool loop (:mod:`~trl_igrpo.igrpo.agents`, docs/agents.md).
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
from .agents import TrajectoryDraftSource, stage_two_prompt
from .config import IGRPOConfig
from .draft_source import Drafts, DraftSource
from .draft_text import ControlTokens, encode_as_text, encode_marked, mark_draft, special_token_frame, strip_marks
from .drafts import build_refinement_prompt, drafts_dropped_by_template, drafts_missing_from_prompts, select_drafts
from .prefetch import PrefetchingDraftSource
from .trajectories import TrajectoryDraft

__all__ = ["IGRPOTrainer", "largest_generation_call"]

#: Dataset columns the trainer adds to Stage-2 rows (reward functions receive them).
RESERVED_COLUMNS = ("draft", "original_prompt")


def largest_generation_call(rows: int, num_drafts: int, num_generations: int, prefetch: bool) -> int:
    """Sequences in iGRPO's largest generation call for a generation batch of ``rows`` completions: Stage 1 samples
    ``rows / G * N`` drafts, Stage 2 ``rows`` refinements, and with ``prefetch_drafts`` the next batch's drafts ride
    along in the Stage-2 call (``rows + rows / G * N``)."""
    drafts = rows // num_generations * num_drafts
    return rows + drafts if prefetch else max(rows, drafts)


def _prompt_key(prompt) -> tuple[str, str]:
    """A prompt's content as a dict key (TRL tokenizes deep copies, so identity cannot be used)."""
    if isinstance(prompt, str):
        return ("text", prompt)
    return ("chat", json.dumps(prompt, sort_keys=True, ensure_ascii=False, default=str))


class IGRPOTrainer(GRPOBaseTrainer):
    """GRPO with a draft stage: every step, condition the GRPO group on the best of N self-generated drafts.

    Takes exactly the arguments of [`~trl.GRPOTrainer`] with an [`IGRPOConfig`], ``tools``, ``environment_factory``
    and ``rollout_func`` included, with GRPO's meaning: a draft is then a whole trajectory through TRL's tool loop
    (docs/agents.md). Reward functions (and environments' ``get_reward``) are used for both stages; Stage-2 calls also
    receive the columns ``draft`` (the draft text placed in the prompt, a transcript for a trajectory) and
    ``original_prompt``.

    The only change to GRPO is the rollout: :meth:`_rollout` (a hook of [`~trl_igrpo.core.GRPOBaseTrainer`], whose
    docstring lists the TRL methods it overrides for every GRPO-based trainer of the package). TRL methods overridden
    here on top of those, and why:

    - ``_tokenize_prompts``: the draft inside a Stage-2 prompt is encoded as text, so that a draft spelling a control
      token (``<|im_end|>``) cannot forge one (:mod:`~trl_igrpo.igrpo.draft_text`);
    - ``_generate_single_turn`` (TRL), ``get_batch_samples`` and ``train`` (transformers' Trainer): each hands over to
      the draft source (:attr:`draft_source`), and does nothing else unless ``prefetch_drafts=True``, where the next
      batch's draft prompts ride along in the Stage-2 generation call, the data loader looks one generation batch
      ahead, and a resumed run restores the pending drafts (:mod:`~trl_igrpo.igrpo.prefetch`);
    - ``_generate`` (TRL): hands its result to the draft source, which does nothing unless the rollout is multi-turn:
      there it ends Stage 1 once TRL's rollout has generated the trajectories, and checks the Stage-2 prompt ids
      (:mod:`~trl_igrpo.igrpo.agents`).
    - ``_make_vllm_generation`` (the package's hook): the colocated vLLM engine's ``max_num_seqs`` fits iGRPO's
      largest generation call (:func:`largest_generation_call`), not TRL's one generation batch.

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
        multi_turn = any(kwargs.get(name) for name in ("tools", "rollout_func", "environment_factory"))
        if not multi_turn and (reward_funcs is None or (isinstance(reward_funcs, (list, tuple)) and not reward_funcs)):
            raise ValueError("IGRPOTrainer needs reward_funcs: Stage 1 ranks the drafts with them.")
        if multi_turn and args is not None and getattr(args, "prefetch_drafts", False):
            raise ValueError(
                "prefetch_drafts=True samples the next drafts inside the refinement generation call, one turn only; "
                "with tools, environment_factory or rollout_func a draft is a whole trajectory. Turn it off."
            )
        self._multi_turn = multi_turn  # read by the framing measurement inside GRPOBaseTrainer.__init__
        self._framing_tokens: int | None = None
        self._draft_rng_step, self._rollouts_this_step = -1, 0  # draft_selection="random": see _draft_rng
        self._marked_prompts: dict[tuple[str, str], Any] = {}  # Stage-2 prompts with marked drafts (_drafts_as_text)
        self._unmarked_prompts: dict[int, Any] = {}  # id(marked prompt) -> its unmarked q'
        self._marked_ids: dict[tuple[str, str], list[int]] = {}  # their token ids, encoded once per prompt group
        self._control: ControlTokens | None = None
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset, **kwargs)
        if multi_turn and self._is_vlm:
            raise ValueError(
                "IGRPOTrainer cannot show a vision-language trajectory to Stage 2 as text; train tool-using VLMs with "
                "GRPOTrainer."
            )
        #: Where Stage 1's drafts come from (:mod:`~trl_igrpo.igrpo.draft_source`): sampled when the rollout asks,
        #: prefetched one generation earlier (``prefetch_drafts=True``), or whole trajectories through TRL's tool loop
        #: (``tools``, ``environment_factory``, ``rollout_func``).
        self.draft_source: DraftSource
        if multi_turn:
            self.draft_source = TrajectoryDraftSource(self)
        else:
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
        self.draft_source.refined(output, chosen, mode)
        return output

    def _select_drafts(self, prompt_rows: list[dict[str, Any]], drafts: Drafts, mode: str) -> list:
        """Score every draft with the training reward functions (as TRL scores completions), rank them by the scalar
        Stage 2's advantage is monotone in, and return the chosen draft per prompt: its text (``<think>`` stripped with
        ``strip_draft_think``), or the trajectory for multi-turn drafts."""
        num_drafts = self.args.num_drafts
        if self.args.prefetch_drafts:
            self._metrics[mode]["igrpo/draft_policy_lag"].append(float(drafts.policy_lag))
        draft_rows = drafts.rows or [row for row in prompt_rows for _ in range(num_drafts)]
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
        lengths = drafts.model_tokens or [len(ids) for ids in drafts.completion_ids]
        self._log_draft_metrics(weighted_reward_sum(rewards_per_func, self.reward_weights), lengths)
        chosen = select_drafts(local.cpu(), self.args.draft_selection, generator=self._draft_rng())
        if drafts.trajectories is not None:  # its reasoning already kept or dropped by strip_draft_think
            return [drafts.trajectories[i * num_drafts + int(column)] for i, column in enumerate(chosen)]
        texts = [drafts.texts[i * num_drafts + int(column)] for i, column in enumerate(chosen)]
        if self.args.strip_draft_think:
            texts = [strip_reasoning(text) for text in texts]
        return [strip_marks(text) for text in texts]

    def _condition_on_drafts(
        self, inputs: list[dict[str, Any]], prompt_rows: list[dict[str, Any]], drafts: list
    ) -> tuple[list[dict[str, Any]], list]:
        """The Stage-2 rows (q' = Concat(q, d̂) in every row of each prompt's group, with the ``draft`` and
        ``original_prompt`` columns) and each group's q'; with ``verify_draft_in_prompt``, raises when the template or
        the tokenizer lost part of a draft."""
        group_size = len(inputs) // len(prompt_rows)
        refined_prompts = [
            self._refinement_prompt(stage_two_prompt(row), draft) for row, draft in zip(prompt_rows, drafts)
        ]
        if self.args.verify_draft_in_prompt:
            with self._drafts_as_text(prompt_rows, drafts, refined_prompts):
                self._verify_drafts_in_prompts(refined_prompts, drafts)
        texts = [draft.transcript if isinstance(draft, TrajectoryDraft) else draft for draft in drafts]
        refined_inputs = [
            {
                **row,
                "prompt": refined_prompts[i // group_size],
                "original_prompt": stage_two_prompt(row),
                "draft": texts[i // group_size],
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

    def _refinement_prompt(self, prompt, draft: str | TrajectoryDraft, mark=None):
        """q' for a text draft (``refinement_template``) or a trajectory (``trajectory_template``); ``mark`` applies
        to the draft's text inside it."""
        args = self.args
        if isinstance(draft, TrajectoryDraft):
            return draft.prompt(prompt, args.trajectory_template, args.refinement_instruction,
                                args.conversational_draft_style, mark or (lambda text: text))  # fmt: skip
        return build_refinement_prompt(
            prompt,
            mark(draft) if mark else draft,
            template=args.refinement_template,
            instruction=args.refinement_instruction,
            conversational_style=args.conversational_draft_style,
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

    def _generate(self, prompts: list):
        """TRL's ``_generate``, its result handed to the draft source (multi-turn: the end of Stage 1, the Stage-2
        prompt-ids guard)."""
        return self.draft_source.generated(prompts, super()._generate(prompts))

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """Trainer's ``train``; a resumed run first restores what the draft source saved in the checkpoint
        (prefetching: the drafts prefetched before it, so it conditions on the same drafts as an uninterrupted run)."""
        self.draft_source.restore(resume_from_checkpoint)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _make_vllm_generation(self, **generation_kwargs):
        """The package's vLLM generation, with the colocated engine sized for iGRPO's largest call: TRL sizes
        ``max_num_seqs`` to one generation batch (B rows), but Stage 1 samples B/G*N drafts and a prefetching Stage-2
        call B + B/G*N sequences; a call over the limit runs in sequential waves (twice the decode steps for the
        prefetching call at N = G). Scheduling only: the same requests, seeds and sampling parameters reach the
        engine, and GRPO at the same budget (G = N + G rollouts) already runs B + B/G*N sequences at once."""
        rows = generation_kwargs.get("max_num_seqs")
        if rows:
            args = self.args
            generation_kwargs["max_num_seqs"] = largest_generation_call(
                rows, args.num_drafts, args.num_generations, args.prefetch_drafts
            )
        return super()._make_vllm_generation(**generation_kwargs)

    # ------------------------------------------------------------------------------------------------------------------
    # The draft in q': text, never control tokens (trl_igrpo/igrpo/draft_text.py), and whole (the guard).
    @contextlib.contextmanager
    def _drafts_as_text(self, prompt_rows: list[dict[str, Any]], drafts: list[str], refined_prompts: list):
        """Within the block, tokenizing one of ``refined_prompts`` encodes its draft as text: the same prompt is built
        with a marked draft (:func:`~trl_igrpo.igrpo.draft_text.mark_draft`), which :meth:`_tokenize_prompts` encodes.
        Keyed by content, because TRL deep-copies the prompts it tokenizes."""
        control = self._control_tokens()
        marked = [
            self._refinement_prompt(stage_two_prompt(row), draft, lambda t: mark_draft(t, control))
            for row, draft in zip(prompt_rows, drafts)
        ]
        self._marked_prompts = {_prompt_key(refined): m for refined, m in zip(refined_prompts, marked)}
        self._unmarked_prompts = {id(m): refined for refined, m in zip(refined_prompts, marked)}
        try:
            yield
        finally:
            self._marked_prompts, self._unmarked_prompts, self._marked_ids = {}, {}, {}

    def _tokenize_prompts(self, prompts: list):
        """TRL's tokenization, except that in a Stage-2 prompt the draft is encoded as text (the template's own
        control tokens stay tokens). Same contract: ``(prompt_ids, images, multimodal_fields)``. Single-turn, the G rows
        of a group carry the same q': it is rendered and encoded once, and its rows share the ids (a list per row);
        multi-turn rows are encoded one by one, because each may render with its own environment's tools."""
        marked = [self._marked_prompt(prompt) for prompt in prompts] if self._marked_prompts else []
        if all(prompt is None for prompt in marked):
            return super()._tokenize_prompts(prompts)
        prompts = [m if m is not None else p for m, p in zip(marked, prompts)]
        if self._multi_turn:
            prompt_ids = self._encode_marked_prompts(prompts)
        else:
            keys = [_prompt_key(prompt) for prompt in prompts]
            missing = {key: prompt for key, prompt in zip(keys, prompts) if key not in self._marked_ids}
            if missing:
                self._marked_ids.update(zip(missing, self._encode_marked_prompts(list(missing.values()))))
            prompt_ids = [list(self._marked_ids[key]) for key in keys]
        self._check_prompts_fit(prompt_ids)
        return prompt_ids, None, {}

    def _marked_prompt(self, prompt):
        """The marked version of a Stage-2 prompt, or None. An environment's ``reset`` observation, which TRL appends
        to the last message after q' was built, is appended to the marked version too."""
        marked = self._marked_prompts.get(_prompt_key(prompt))
        if (
            marked is not None
            or not is_conversational_prompt(prompt)
            or not isinstance(prompt[-1].get("content"), str)
        ):
            return marked
        head, last = _prompt_key(prompt[:-1]), prompt[-1]["content"]
        for candidate in self._marked_prompts.values():
            base = self._unmarked_prompts.get(id(candidate))
            if base is None or _prompt_key(base[:-1]) != head or not isinstance(base[-1].get("content"), str):
                continue
            if last.startswith(base[-1]["content"]):
                observation = last[len(base[-1]["content"]) :]
                return candidate[:-1] + [{**candidate[-1], "content": candidate[-1]["content"] + observation}]
        return None

    def _render_prompts(self, prompts: list) -> list[str]:
        """Prompts as text, rendered as TRL's ``_tokenize_prompts`` renders them before tokenizing: with the tools
        (each row's environment's, when the batch's environments are known), with TRL's training template for tools."""
        if not is_conversational_prompt(prompts[0]):
            return list(prompts)
        template_kwargs: dict[str, Any] = dict(self.chat_template_kwargs or {})  # type: ignore[arg-type]
        environments = getattr(self, "_batch_environments", None) if self.environment_factories is not None else None
        if environments is not None and len(environments) == len(prompts):
            tools = [self._env_tools[name] or None for name in environments]
        else:
            tools = [self.tools or None] * len(prompts)
        return [
            str(
                self.processing_class.apply_chat_template(
                    conversation=prompt,
                    tools=prompt_tools,
                    chat_template=self.chat_template,
                    add_generation_prompt=True,
                    tokenize=False,
                    **template_kwargs,
                )
            )  # fmt: skip
            for prompt, prompt_tools in zip(prompts, tools)
        ]

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

    def _verify_drafts_in_prompts(self, refined_prompts: list, drafts: list) -> None:
        """Raise before Stage-2 generation when a prompt group's q' lost any part of its draft: the template dropped or
        cut it (reasoning templates drop earlier assistant ``<think>``), or its tokens do not decode to it."""
        marked = [self._marked_prompts[_prompt_key(prompt)] for prompt in refined_prompts]
        rendered = self._render_prompts(marked)
        if isinstance(self.draft_source, TrajectoryDraftSource):  # every turn, tool call and result, in order
            prompt_ids, _, _ = self._tokenize_prompts(copy.deepcopy(refined_prompts))
            self.draft_source.verify(rendered, prompt_ids, drafts)
            return
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
            for p in (prompt, self._refinement_prompt(prompt, self._empty_draft()))
        )
        return max(0, len(tokenizer(framed)["input_ids"]) - len(tokenizer(plain)["input_ids"]))

    def _empty_draft(self) -> str | TrajectoryDraft:
        """An empty draft of the kind this trainer conditions on (for the framing-text measurement)."""
        return TrajectoryDraft([]) if self._multi_turn else ""

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
    def _log_draft_metrics(self, rewards: torch.Tensor, lengths: list[int]) -> None:
        """Stage-1 metrics over all processes; ``rewards`` is the gathered weighted reward sum of every draft,
        ``lengths`` this process's draft lengths (tokens the model generated)."""
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
        counts = torch.tensor(lengths, dtype=torch.float32, device=self.accelerator.device)
        metrics["igrpo/draft_mean_length"].append(self.accelerator.gather(counts).mean().item())
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
