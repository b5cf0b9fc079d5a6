r"""The evaluation protocol of the iGRPO paper (§4.1, evaluated with NeMo-Skills), for any causal LM.

Per problem, k samples at temperature 0.6 and top-p 0.95 from the original prompt (single pass, the paper's inference
mode), graded by the package's math reward (math-verify in worker processes with hard per-item timeouts,
:class:`~trl_igrpo.rewards.MathAccuracyReward`). Reported: pass@1 averaged over the k samples, unbiased pass@k, maj@k,
mean generated length, and the fractions of unparseable and truncated samples, overall and per breakdown column
(:mod:`trl_igrpo.eval.metrics` defines each). ``mode="draft_refine"`` is a diagnostic: each sample is a draft followed
by a refinement conditioned on it, built exactly like iGRPO's Stage-2 prompt; the refinements are scored, and the
drafts' own metrics are reported beside them.

Gold answers are checked before any generation: a gold answer math-verify cannot parse, or one that does not even
match itself, stops the run with the rows named (``on_bad_gold="skip"`` drops them instead and lists them in the
results), so it never silently counts as a wrong answer.

This module runs the protocol (:class:`EvalSettings` in, :class:`~trl_igrpo.eval.results.EvalResult` out);
grading lives in :mod:`~trl_igrpo.eval.grading`, the written results in :mod:`~trl_igrpo.eval.results`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .data import DEFAULT_PROMPT_TEMPLATE, BenchmarkProblem, DataError, build_prompt
from .grading import GoldAnswerError as GoldAnswerError  # importable from here as before
from .grading import check_gold_answers, grade_samples
from .metrics import nemo_skills_metrics, summarize, summarize_by_group
from .results import EvalResult
from .results import format_markdown as format_markdown  # importable from here as before
from .results import write_results as write_results  # importable from here as before

__all__ = ["EVAL_MODES", "EvalSettings", "apply_reasoning", "evaluate", "transformers_backend"]

EVAL_MODES = ("single", "draft_refine")
#: ``generate(prompts, num_samples, description) -> per prompt, num_samples GeneratedSample``.
Generate = Callable[[list[Any], int, str], list[list[Any]]]


@dataclass
class EvalSettings:
    r"""
    Configuration of one evaluation: the protocol of the [iGRPO paper](https://huggingface.co/papers/2602.09000)
    (§4.1, evaluated with NeMo-Skills) by default. Every field is a `trl-igrpo eval` flag of the same name.

    Parameters:
        > Parameters that control sampling

        num_samples (`int`, *optional*, defaults to `8`):
            k, samples per problem (the paper: 64 on AIME, 8 elsewhere).
        temperature (`float`, *optional*, defaults to `0.6`):
            Sampling temperature (the paper: 0.6); 0 decodes greedily and needs `num_samples=1`.
        top_p (`float`, *optional*, defaults to `0.95`):
            Nucleus sampling (the paper: 0.95).
        max_new_tokens (`int`, *optional*, defaults to `32768`):
            Generation budget per sample (the paper's NeMo-Skills runs allowed 65,000).
        batch_size (`int`, *optional*, defaults to `16`):
            Sequences per `generate` call (transformers backend).
        seed (`int`, *optional*, defaults to `0`):
            Seeds sampling.

        > Parameters that control the prompts

        prompt_template (`str`, *optional*, defaults to `DEFAULT_PROMPT_TEMPLATE`):
            The user message, with `{problem}` ([`~trl_igrpo.eval.data.DEFAULT_PROMPT_TEMPLATE`]).
        system_prompt (`str` or `None`, *optional*, defaults to `None`):
            An optional system message.
        reasoning (`str` or `None`, *optional*, defaults to `None`):
            `"on"`/`"off"` applies the Llama-Nemotron toggle (`detailed thinking on|off` or `enable_thinking`,
            whichever the chat template implements); `None` leaves the prompts as they are.
        reasoning_style (`str` or `None`, *optional*, defaults to `None`):
            Force `"system_prompt"` or `"enable_thinking"` instead of detecting it from the chat template.

        > Parameters that control the protocol

        mode (`str`, *optional*, defaults to `"single"`):
            `"single"` (the paper's inference: one pass from the original prompt) or `"draft_refine"` (a diagnostic:
            a draft, then a refinement conditioned on it, built like iGRPO's Stage-2 prompt).
        strip_draft_think (`bool`, *optional*, defaults to `False`):
            In `"draft_refine"` mode, drop the draft's `<think>` block before appending it.
        on_bad_gold (`str`, *optional*, defaults to `"error"`):
            `"error"` stops at gold answers the grader cannot use, naming the rows; `"skip"` leaves those problems
            out and lists them in the results.
    """

    num_samples: int = 8
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 32768
    mode: str = "single"
    reasoning: str | None = None
    reasoning_style: str | None = None
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    system_prompt: str | None = None
    batch_size: int = 16
    seed: int = 0
    on_bad_gold: str = "error"
    strip_draft_think: bool = False

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot be run or would waste compute."""
        if self.num_samples < 1:
            raise ValueError(f"--num_samples must be >= 1, got {self.num_samples}.")
        if self.temperature < 0:
            raise ValueError(f"--temperature must be >= 0, got {self.temperature}.")
        if self.temperature == 0 and self.num_samples > 1:
            raise ValueError(
                f"--temperature 0 decodes greedily, so the {self.num_samples} samples would be identical; pass "
                "--num_samples 1 (greedy) or a temperature > 0 (the paper's protocol: 0.6)."
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"--top_p must be in (0, 1], got {self.top_p}.")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        if self.mode not in EVAL_MODES:
            raise ValueError(f"--mode must be one of {EVAL_MODES}, got {self.mode!r}.")
        if self.reasoning not in (None, "on", "off"):
            raise ValueError(f"--reasoning must be on, off or none, got {self.reasoning!r}.")
        if self.on_bad_gold not in ("error", "skip"):
            raise ValueError(f"--on_bad_gold must be error or skip, got {self.on_bad_gold!r}.")
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {self.batch_size}.")


def _make_grader():
    from ..rewards.math import MathAccuracyReward

    return MathAccuracyReward()


def apply_reasoning(
    prompts: Sequence[Any], tokenizer, mode: str | None, style: str | None = None
) -> tuple[list[Any], dict[str, Any]]:
    """Prompts with the reasoning toggle applied and the ``chat_template_kwargs`` to render them with.

    ``mode=None`` changes nothing. ``"on"``/``"off"`` use :func:`trl_igrpo.reasoning.apply_reasoning_mode` in the
    tokenizer's style (``detailed thinking on|off`` system line, or ``enable_thinking``). Plain-text prompts (a
    tokenizer without a chat template) cannot carry the toggle: ``ValueError``.
    """
    if mode is None:
        return list(prompts), {}
    from ..reasoning.conversations import apply_reasoning_mode
    from ..reasoning.modes import resolve_reasoning_style

    if any(isinstance(prompt, str) for prompt in prompts):
        raise ValueError(
            "--reasoning needs chat prompts, but the tokenizer has no chat template; use --reasoning none or a "
            "tokenizer with a chat template."
        )
    style = resolve_reasoning_style(tokenizer, style)
    kwargs: dict[str, Any] = {}
    applied = []
    for prompt in prompts:
        messages, kwargs = apply_reasoning_mode(prompt, mode, style)
        applied.append(messages)
    return applied, kwargs


def transformers_backend(
    model, tokenizer, settings: EvalSettings, chat_template_kwargs: dict | None = None, progress: bool = True
) -> Generate:
    """A ``generate(prompts, num_samples, description)`` over ``model.generate`` with the protocol's sampler."""
    from .generation import generate_samples

    def generate(prompts, num_samples, description):
        return generate_samples(
            model,
            tokenizer,
            prompts,
            num_samples=num_samples,
            max_new_tokens=settings.max_new_tokens,
            batch_size=settings.batch_size,
            temperature=settings.temperature,
            top_p=settings.top_p,
            chat_template_kwargs=chat_template_kwargs,
            progress=progress,
            description=description,
        )

    return generate


def evaluate(
    model,
    tokenizer,
    problems: Sequence[BenchmarkProblem],
    settings: EvalSettings | None = None,
    generate: Generate | None = None,
    grader=None,
    progress: bool = True,
) -> EvalResult:
    """Run the protocol on ``problems`` and return the metrics and per-sample records.

    ``generate`` defaults to :func:`transformers_backend` on ``model``; pass another backend (vLLM) to use it
    (``model`` may then be ``None``; the tokenizer still renders prompts). ``grader`` defaults to a
    :class:`~trl_igrpo.rewards.MathAccuracyReward`, closed at the end.
    """
    import torch

    settings = settings or EvalSettings()
    settings.validate()
    own_grader = grader is None
    grader = _make_grader() if own_grader else grader
    try:
        problems, skipped = check_gold_answers(problems, grader, settings.on_bad_gold)
        conversational = bool(getattr(tokenizer, "chat_template", None))
        prompts = [
            build_prompt(p.problem, settings.prompt_template, settings.system_prompt, conversational) for p in problems
        ]
        if not conversational and any(not isinstance(p, str) for p in prompts):
            raise DataError("the problems are chat messages, but the tokenizer has no chat template to render them.")
        prompts, chat_template_kwargs = apply_reasoning(
            prompts, tokenizer, settings.reasoning, settings.reasoning_style
        )
        if generate is None:
            generate = transformers_backend(model, tokenizer, settings, chat_template_kwargs, progress)
        torch.manual_seed(settings.seed)
        k = settings.num_samples
        if settings.mode == "single":
            samples = generate(prompts, k, "single pass")
            drafts = None
        else:
            drafts = generate(prompts, k, "drafts")
            samples = _refine(prompts, drafts, generate, settings)
        problem_results, records, string_only = grade_samples(problems, samples, grader)
        results: dict[str, Any] = {
            "protocol": {key: value for key, value in asdict(settings).items()},
            "metrics": summarize(problem_results),
            "nemo_skills": nemo_skills_metrics(problem_results),
        }
        group_columns = sorted({column for p in problems for column in p.groups})
        if group_columns:
            results["by_group"] = summarize_by_group(problem_results, group_columns)
        if drafts is not None:
            draft_results, draft_records, _ = grade_samples(problems, drafts, grader)
            results["drafts"] = summarize(draft_results)
            results["refinement_minus_draft_pass@1"] = results["metrics"]["pass@1"] - results["drafts"]["pass@1"]
            for per_problem, per_draft in zip(records, draft_records):
                for record, draft in zip(per_problem, per_draft):
                    record["draft"] = draft["completion"]
                    record["draft_correct"] = draft["correct"]
        results["skipped_problems"] = skipped
        results["grading"] = {
            "grader": "trl_igrpo.rewards.MathAccuracyReward (math-verify, hard timeouts)",
            "hard_timeouts": getattr(grader, "num_hard_timeouts", 0),
            "majority_vote_string_only_problems": string_only,
        }
        return EvalResult(results, [record for per_problem in records for record in per_problem])
    finally:
        if own_grader:
            grader.close()


def _refine(prompts, drafts, generate: Generate, settings: EvalSettings):
    from ..igrpo.drafts import build_refinement_prompt
    from ..reasoning.think import strip_reasoning

    refinement_prompts = [
        build_refinement_prompt(prompt, strip_reasoning(draft.text) if settings.strip_draft_think else draft.text)
        for prompt, per_prompt in zip(prompts, drafts)
        for draft in per_prompt
    ]
    refined = generate(refinement_prompts, 1, "refinements")
    k = settings.num_samples
    flat = [per_prompt[0] for per_prompt in refined]
    return [flat[i * k : (i + 1) * k] for i in range(len(prompts))]
