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
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .data import DEFAULT_PROMPT_TEMPLATE, BenchmarkProblem, DataError, build_prompt
from .metrics import (
    ProblemResult,
    cluster_answers,
    last_boxed_content,
    majority_vote_credit,
    nemo_skills_metrics,
    normalize_answer,
    summarize,
    summarize_by_group,
)

__all__ = [
    "EVAL_MODES",
    "EvalResult",
    "EvalSettings",
    "GoldAnswerError",
    "apply_reasoning",
    "check_gold_answers",
    "evaluate",
    "format_markdown",
    "grade_samples",
    "transformers_backend",
    "write_results",
]

EVAL_MODES = ("single", "draft_refine")
#: Above this many distinct wrong answers for one problem, maj@k groups wrong answers by string only (the pairwise
#: math-verify check grows quadratically); the number of such problems is reported.
MAX_WRONG_ANSWERS_FOR_EQUIVALENCE = 64

#: ``generate(prompts, num_samples, description) -> per prompt, num_samples GeneratedSample``.
Generate = Callable[[list[Any], int, str], list[list[Any]]]


class GoldAnswerError(DataError):
    """Gold answers that the math grader cannot use; the message names the rows."""


@dataclass
class EvalSettings:
    """The protocol of one evaluation (every field is a ``trl-igrpo eval`` flag).

    Args:
        num_samples: k, samples per problem (the paper: 64 on AIME, 8 elsewhere).
        temperature: Sampling temperature (paper: 0.6); 0 decodes greedily and needs ``num_samples=1``.
        top_p: Nucleus sampling (paper: 0.95).
        max_new_tokens: Generation budget per sample (the paper's NeMo-Skills runs allowed 65,000).
        mode: ``"single"`` (the paper's inference) or ``"draft_refine"`` (diagnostic two-pass).
        reasoning: ``"on"``/``"off"`` applies the Llama-Nemotron toggle (``detailed thinking on|off`` or
            ``enable_thinking``, whichever the chat template implements); ``None`` leaves prompts as they are.
        reasoning_style: Force ``"system_prompt"`` or ``"enable_thinking"`` instead of detecting it.
        prompt_template: The user message, with ``{problem}``.
        system_prompt: An optional system message.
        batch_size: Sequences per ``generate`` call (transformers backend).
        seed: Seeds sampling.
        on_bad_gold: ``"error"`` (default) or ``"skip"`` for gold answers the grader cannot use.
        strip_draft_think: In ``draft_refine``, drop the draft's ``<think>`` block before appending it.
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


@dataclass
class EvalResult:
    """``results`` (what ``results.json`` holds) and ``samples`` (one record per generated sample)."""

    results: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------------------
# Gold answers and grading


def _make_grader():
    from ..rewards.math import MathAccuracyReward

    return MathAccuracyReward()


def check_gold_answers(
    problems: Sequence[BenchmarkProblem], grader, on_bad_gold: str = "error"
) -> tuple[list[BenchmarkProblem], list[dict[str, Any]]]:
    r"""Problems whose gold answer the grader can use, and the skipped ones with the reason.

    A gold answer is unusable when the grader cannot read it (``grader.gold_problems``, the rules of
    :mod:`trl_igrpo.rewards.gold`: placeholders such as ``N/A``/``TODO``, prose such as ``see the textbook``, LaTeX
    math-verify cannot parse such as ``\frac{1}{``), or when ``\boxed{gold}`` does not verify against it (no
    completion could ever be graded correct). With ``on_bad_gold="error"`` either raises :class:`GoldAnswerError`
    naming the rows.
    """
    golds = [p.answer for p in problems]
    reasons: list[str | None] = list(grader.gold_problems(golds))
    readable = [i for i, reason in enumerate(reasons) if reason is None]
    scores = grader.score([golds[i] for i in readable], [f"\\boxed{{{golds[i]}}}" for i in readable])
    for i, score in zip(readable, scores):
        if score != 1.0:
            reasons[i] = "math-verify cannot parse it" if score is None else "it does not verify against itself"
    kept = [problem for problem, reason in zip(problems, reasons) if reason is None]
    skipped = [
        {"index": problem.index, "answer": problem.answer, "reason": reason}
        for problem, reason in zip(problems, reasons)
        if reason is not None
    ]
    if skipped and on_bad_gold == "error":
        shown = "; ".join(f"row {s['index']}: {s['answer'][:60]!r} ({s['reason']})" for s in skipped[:5])
        raise GoldAnswerError(
            f"{len(skipped)} gold answer(s) cannot be graded: {shown}. Fix them (a plain answer such as '\\frac{{1}}{{4}}' "
            "or '204'), point --answer_column/--answer_format at the right field, or pass --on_bad_gold skip to "
            "leave these problems out (they are then listed in results.json)."
        )
    if not kept:
        raise GoldAnswerError("no problem has a gradeable gold answer.")
    return kept, skipped


_UNREADABLE = "unreadable answer: "


def _vote_key(grade) -> str | None:
    """What a graded sample votes for: the answer math-verify read (normalised), the text of a final answer it could
    not read (marked so it never merges with a read one), or ``None`` (no final answer: no vote)."""
    if grade.answer is None:
        return None
    key = normalize_answer(grade.answer)
    return key if grade.readable else f"{_UNREADABLE}{key}"


def grade_samples(
    problems: Sequence[BenchmarkProblem], samples: Sequence[Sequence[Any]], grader
) -> tuple[list[ProblemResult], list[list[dict[str, Any]]], int]:
    """Grade every sample and compute each problem's :class:`~trl_igrpo.eval.metrics.ProblemResult`.

    Returns ``(problem_results, per-problem sample records, problems whose maj@k grouped wrong answers by string only)``.
    Each sample votes with what the grader read from it (:func:`_vote_key`; see :mod:`trl_igrpo.eval.metrics` for how
    unparseable samples count); wrong answers that differ as strings are compared with the grader (``verify(a, b)``)
    before voting.
    """
    golds = [problem.answer for problem, per_problem in zip(problems, samples) for _ in per_problem]
    texts = [sample.text for per_problem in samples for sample in per_problem]
    grades = grader.grade(golds, texts)
    if any(grade.score is None for grade in grades):  # gold answers were checked, so this is a grader fault
        raise RuntimeError("the math grader returned no score for a checked gold answer.")
    position = 0
    graded = []
    for per_problem in samples:
        problem_grades = grades[position : position + len(per_problem)]
        correct = [grade.score == 1.0 for grade in problem_grades]
        graded.append((correct, problem_grades, [_vote_key(grade) for grade in problem_grades]))
        position += len(per_problem)

    # Wrong answers written differently may still be equal (0.5 vs 1/2): check each distinct pair with the grader.
    pairs, string_only = [], 0
    for problem_index, (correct, _, keys) in enumerate(graded):
        wrong = sorted(
            {k for k, ok in zip(keys, correct) if k is not None and not ok and not k.startswith(_UNREADABLE)}
        )
        if len(wrong) > MAX_WRONG_ANSWERS_FOR_EQUIVALENCE:
            string_only += 1
            continue
        pairs += [(problem_index, a, b) for i, a in enumerate(wrong) for b in wrong[i + 1 :]]
    equal = set()
    if pairs:
        verdicts = grader.score([a for _, a, _ in pairs], [f"\\boxed{{{b}}}" for _, _, b in pairs])
        equal = {pair for pair, verdict in zip(pairs, verdicts) if verdict == 1.0}

    results, records = [], []
    for problem_index, (problem, per_problem, (correct, problem_grades, keys)) in enumerate(
        zip(problems, samples, graded)
    ):

        def equivalent(a: str, b: str, problem_index=problem_index) -> bool:
            return (problem_index, *sorted((a, b))) in equal

        clusters = cluster_answers(keys, correct, equivalent)
        results.append(
            ProblemResult(
                correct=tuple(correct),
                unparseable=tuple(not grade.readable and not ok for grade, ok in zip(problem_grades, correct)),
                lengths=tuple(sample.num_tokens for sample in per_problem),
                truncated=tuple(sample.truncated for sample in per_problem),
                majority_credit=majority_vote_credit(clusters, correct),
                groups=dict(problem.groups),
                boxed_answers=tuple(last_boxed_content(sample.text) for sample in per_problem),
            )
        )
        records.append(
            [
                {
                    "problem_index": problem.index,
                    "sample": i,
                    "gold": problem.answer,
                    "completion": sample.text,
                    "extracted_answer": problem_grades[i].answer,
                    "answer_readable": problem_grades[i].readable,
                    "correct": correct[i],
                    "num_tokens": sample.num_tokens,
                    "truncated": sample.truncated,
                }
                for i, sample in enumerate(per_problem)
            ]
        )
    return results, records, string_only


# ----------------------------------------------------------------------------------------------------------------------
# Prompts and generation


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
    from ..reasoning.modes import apply_reasoning_mode, resolve_reasoning_style

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


# ----------------------------------------------------------------------------------------------------------------------
# Output


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def _metrics_row(metrics: dict[str, Any], ks: Sequence[str]) -> list[str]:
    n = metrics["num_samples"]
    return [
        str(metrics["num_problems"]),
        *(_percent(metrics["pass@k"][k]) for k in ks),
        _percent(metrics[f"maj@{n}"]),
        f"{metrics['mean_length']:.1f}",
        _percent(metrics["unparseable_frac"]),
        _percent(metrics["truncated_frac"]),
    ]


def _nemo_skills_table(nemo: dict[str, Any]) -> str:
    rows = [
        f"| {k} | {_percent(nemo['pass@k'][k])} | {_percent(nemo['pass@1[k]'][k])} | "
        + (_percent(nemo["majority@k"][k]) if k in nemo["majority@k"] else "-")
        + " |"
        for k in nemo["pass@k"]
    ]
    return "\n".join(
        [
            "NeMo-Skills' definitions, same grades: pass@k = any of the first k samples correct; majority@k = most "
            "frequent (\\boxed{} string, correct) pair of the first k, sorted tie-break.",
            "",
            "| k | pass@k (first k) | pass@1[k] | majority@k |",
            "|---|---|---|---|",
            *rows,
        ]
    )


def format_markdown(results: dict[str, Any], title: str | None = None) -> str:
    """The results as Markdown tables (percentages; lengths in tokens): overall, then one table per breakdown column,
    then the drafts of ``draft_refine`` mode."""
    metrics = results["metrics"]
    n = metrics["num_samples"]
    ks = list(metrics["pass@k"])
    headers = ["problems", *(f"pass@{k}" for k in ks), f"maj@{n}", "mean length", "unparseable %", "truncated %"]

    def table(first_header: str | None, rows: list[list[str]]) -> str:
        columns = ([first_header] if first_header else []) + headers
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])

    protocol = results.get("protocol", {})
    lines = [f"## {title}" if title else "## Evaluation", ""]
    if protocol:
        lines += [
            f"{protocol.get('mode', 'single')} pass, k = {n}, temperature {protocol.get('temperature')}, "
            f"top-p {protocol.get('top_p')}, max {protocol.get('max_new_tokens')} new tokens, reasoning "
            f"{protocol.get('reasoning') or 'unchanged'}; pass@1 is the mean over the k samples (percentages).",
            "",
        ]
    lines.append(table(None, [_metrics_row(metrics, ks)]))
    if "nemo_skills" in results:
        lines += ["", _nemo_skills_table(results["nemo_skills"])]
    for column, by_value in results.get("by_group", {}).items():
        lines += ["", f"### By {column}", "", table(column, [[v, *_metrics_row(m, ks)] for v, m in by_value.items()])]
    if "drafts" in results:
        lines += [
            "",
            "### Drafts (draft_refine mode: the first pass)",
            "",
            table(None, [_metrics_row(results["drafts"], ks)]),
            "",
            f"Refinement minus draft pass@1: {_percent(results['refinement_minus_draft_pass@1'])} points.",
        ]
    if results.get("skipped_problems"):
        lines += ["", f"{len(results['skipped_problems'])} problem(s) skipped for ungradeable gold answers."]
    return "\n".join(lines) + "\n"


def write_results(result: EvalResult, output_dir: str | Path, title: str | None = None) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``samples.jsonl`` into ``output_dir``; returns their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "results": output_dir / "results.json",
        "markdown": output_dir / "results.md",
        "samples": output_dir / "samples.jsonl",
    }
    paths["results"].write_text(json.dumps(_finite(result.results), indent=2) + "\n")
    paths["markdown"].write_text(format_markdown(result.results, title))
    with paths["samples"].open("w", encoding="utf-8") as handle:
        for record in result.samples:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return paths


def _finite(value):
    """JSON without NaN/inf (not valid JSON): such floats become ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
