"""IGRPOTrainer: iterative GRPO with best-draft self-conditioning (Hatamizadeh et al., arXiv 2602.09000).

Design: a refined prompt is just a longer prompt. The trainer overrides a single TRL method,
``GRPOTrainer._generate_and_score_completions``: it runs Stage 1 (N drafts per unique prompt, scored with the training
rewards, one selected), rewrites each row's ``prompt`` into q' = Concat(q, d̂), and hands the rows back to TRL. Padding,
old/reference log-probs, rewards, group advantages, every loss type, KL, vLLM importance sampling, buffering across
``steps_per_generation``/``num_iterations`` and logging are TRL's own, all conditioned on q'; only refinement tokens
are trained (the draft is prompt).

Deviations and choices where the paper is silent (see docs/igrpo.md): the join text between q and d̂ is configurable;
ties go to the first best draft; evaluation is single-pass unless ``two_stage_eval=True``.

Semi-private TRL methods used (hence ``trl>=1.16,<1.17``): ``_tokenize_prompts``, ``_generate_single_turn``,
``_calculate_rewards``, ``_log_completion_extra``, and the ``_pending_extra_logs``/``_pending_metrics``/``_metrics``
buffers.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
from trl import GRPOTrainer

from .curriculum.dynamic_sampling import DynamicSamplingMixin
from .curriculum.sampler import ProgressiveBatchingMixin
from .hub import HubMixin
from .igrpo_config import IGRPOConfig
from .igrpo_utils import (
    build_refinement_prompt,
    combine_reward_columns,
    is_conversational_prompt,
    select_drafts,
    strip_think,
)
from .vllm_sync import VLLMCPUSyncMixin

_CITATION = """\
@article{hatamizadeh2026igrpo,
    title        = {{iGRPO: Self-Feedback-Driven LLM Reasoning}},
    author       = {Ali Hatamizadeh and Shrimai Prabhumoye and Igor Gitman and Ximing Lu and Seungju Han and Wei Ping and Yejin Choi and Jan Kautz},
    year         = 2026,
    eprint       = {arXiv:2602.09000}
}"""


class IGRPORolloutMixin:
    """The two-stage rollout of iGRPO as a mixin over ``GRPOTrainer``: overrides ``_generate_and_score_completions``."""

    # ------------------------------------------------------------------------------------------------------------------
    # The single TRL override.
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, torch.Tensor | Any]:
        mode = "train" if self.model.training else "eval"
        if mode == "eval" and not self.args.two_stage_eval:
            return super()._generate_and_score_completions(inputs)  # paper: single-pass inference
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        refined_inputs = self._build_refined_inputs(inputs, group_size, mode)
        output = super()._generate_and_score_completions(refined_inputs)
        self._log_refinement_metrics(output, mode)
        return output

    # ------------------------------------------------------------------------------------------------------------------
    # Stage 1.
    def _build_refined_inputs(self, inputs: list[dict[str, Any]], group_size: int, mode: str) -> list[dict[str, Any]]:
        """Sample N drafts per unique prompt, pick one, and return the rows with ``prompt`` replaced by q'."""
        if len(inputs) % group_size != 0:
            raise RuntimeError(
                f"iGRPO received {len(inputs)} rows, not a multiple of the group size {group_size}; check the batch "
                "arithmetic in IGRPOConfig."
            )
        num_drafts = self.args.num_drafts
        unique_rows = inputs[::group_size]
        draft_rows = [row for row in unique_rows for _ in range(num_drafts)]
        draft_prompts = [copy.deepcopy(row["prompt"]) for row in draft_rows]
        conversational = is_conversational_prompt(draft_prompts[0])

        prompt_ids, images, multimodal_fields = self._tokenize_prompts(draft_prompts)
        with self._draft_generation_length():
            draft_ids, _ = self._generate_single_turn(prompt_ids, images, multimodal_fields, num_drafts)
        draft_texts = self._tokenizer.batch_decode(draft_ids, skip_special_tokens=True)
        completions = [[{"role": "assistant", "content": t}] for t in draft_texts] if conversational else draft_texts

        # Score with the training reward functions and weights. The result is gathered over processes.
        rewards_per_func = self._calculate_rewards(draft_rows, draft_prompts, completions, draft_ids)
        # Reward functions may have logged table columns/metrics for the drafts: keep them out of Stage 2's table.
        self._pending_extra_logs.clear()
        self._pending_metrics.clear()
        weights = self.reward_weights.to(rewards_per_func.device)
        all_scores = combine_reward_columns(rewards_per_func, weights)  # (world * local drafts,)
        rank = self.accelerator.process_index
        local_scores = all_scores[rank * len(draft_rows) : (rank + 1) * len(draft_rows)].view(-1, num_drafts)
        chosen = select_drafts(local_scores.cpu(), self.args.draft_selection, generator=self._draft_generator)

        selected_texts = [draft_texts[i * num_drafts + int(c)] for i, c in enumerate(chosen)]
        if self.args.strip_draft_think:
            selected_texts = [strip_think(text) for text in selected_texts]

        refined_inputs = []
        for index, row in enumerate(inputs):
            draft = selected_texts[index // group_size]
            refined_prompt = build_refinement_prompt(
                row["prompt"],
                draft,
                template=self.args.refinement_template,
                instruction=self.args.refinement_instruction,
                conversational_style=self.args.conversational_draft_style,
            )
            refined_inputs.append({**row, "prompt": refined_prompt, "original_prompt": row["prompt"], "draft": draft})
        # The completions table shows, next to each refinement, the draft it was conditioned on.
        self._log_completion_extra("draft", [row["draft"] for row in refined_inputs])

        self._log_draft_metrics(all_scores.view(-1, num_drafts), draft_ids, mode)
        return refined_inputs

    @contextlib.contextmanager
    def _draft_generation_length(self):
        """Temporarily cap new tokens at ``max_draft_length`` for every generation backend."""
        length = self.args.max_draft_length
        if length is None or length == self.max_completion_length:
            yield
            return
        saved = []
        targets = [(getattr(self, "generation_config", None), "max_new_tokens")]
        targets.append((getattr(self, "vllm_generation", None), "max_completion_length"))
        for obj, attribute in targets:
            if obj is not None and hasattr(obj, attribute):
                saved.append((obj, attribute, getattr(obj, attribute)))
                setattr(obj, attribute, length)
        kwargs = getattr(self, "generation_kwargs", None)
        saved_kwarg = kwargs.get("max_new_tokens") if isinstance(kwargs, dict) else None
        if isinstance(kwargs, dict):
            kwargs["max_new_tokens"] = length
        try:
            yield
        finally:
            for obj, attribute, value in saved:
                setattr(obj, attribute, value)
            if isinstance(kwargs, dict):
                kwargs["max_new_tokens"] = saved_kwarg

    # ------------------------------------------------------------------------------------------------------------------
    # Metrics.
    def _log_draft_metrics(self, scores: torch.Tensor, draft_ids: list[list[int]], mode: str) -> None:
        """Stage-1 metrics over all processes: ``scores`` is already gathered, (num_prompts_global, N)."""
        metrics = self._metrics[mode]
        finite = torch.where(torch.isnan(scores), torch.full_like(scores, float("-inf")), scores)
        best = finite.max(dim=1).values
        best = torch.where(torch.isinf(best), torch.full_like(best, float("nan")), best)
        self._last_best_draft_reward = torch.nanmean(best).item()
        metrics["igrpo/draft_reward_mean"].append(torch.nanmean(scores).item())
        metrics["igrpo/best_draft_reward_mean"].append(self._last_best_draft_reward)
        succeeded = (finite > self.args.draft_success_threshold).any(dim=1)
        metrics["igrpo/all_drafts_failed_frac"].append((~succeeded).float().mean().item())
        lengths = torch.tensor([len(ids) for ids in draft_ids], dtype=torch.float32, device=self.accelerator.device)
        lengths = self.accelerator.gather(lengths)
        metrics["igrpo/draft_mean_length"].append(lengths.mean().item())
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


class IGRPOTrainer(
    HubMixin, VLLMCPUSyncMixin, DynamicSamplingMixin, ProgressiveBatchingMixin, IGRPORolloutMixin, GRPOTrainer
):
    """GRPO with a draft stage: every step, condition the GRPO group on the best of N self-generated drafts.

    Takes exactly the arguments of [`~trl.GRPOTrainer`] with an [`IGRPOConfig`]. Reward functions are used for both
    stages; Stage-2 calls also receive the columns ``draft`` (the selected draft text) and ``original_prompt``.

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

    _tag_names = ["trl", "grpo", "igrpo", "trl-igrpo"]
    _name = "iGRPO"
    _paper = {"title": "iGRPO: Self-Feedback-Driven LLM Reasoning", "id": "2602.09000", "citation": _CITATION}

    def __init__(self, model, reward_funcs=None, args: IGRPOConfig | None = None, train_dataset=None, **kwargs):
        if args is None:
            model_name = model if isinstance(model, str) else model.config._name_or_path
            args = IGRPOConfig(f"{model_name.split('/')[-1]}-iGRPO")
        if not isinstance(args, IGRPOConfig):
            raise TypeError(f"IGRPOTrainer needs an IGRPOConfig, got {type(args).__name__}.")
        for unsupported in ("tools", "rollout_func", "environment_factory"):
            if kwargs.get(unsupported) is not None:
                raise ValueError(
                    f"IGRPOTrainer does not support `{unsupported}`: the two-stage rollout is single-turn text only."
                )
        if reward_funcs is None or (isinstance(reward_funcs, (list, tuple)) and len(reward_funcs) == 0):
            raise ValueError("IGRPOTrainer needs reward_funcs: Stage 1 ranks the drafts with them.")
        self._check_dataset(train_dataset, "train_dataset")
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset, **kwargs)
        self._draft_generator = torch.Generator().manual_seed(args.seed + 1_000_003 * self.accelerator.process_index)

    @staticmethod
    def _check_dataset(dataset, name: str) -> None:
        if dataset is None or not hasattr(dataset, "column_names"):
            return
        columns = dataset.column_names
        if isinstance(columns, dict):  # DatasetDict
            return
        if "prompt" not in columns:
            raise ValueError(f"{name} needs a 'prompt' column (str or list of messages); found columns {columns}.")
        reserved = {"draft", "original_prompt"} & set(columns)
        if reserved:
            raise ValueError(
                f"{name} has column(s) {sorted(reserved)}, which IGRPOTrainer adds to Stage-2 rows; rename them."
            )
