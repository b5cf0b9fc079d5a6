r"""Grading for the evaluation protocol: which gold answers can be graded, and each sample's grade and vote.

Gold answers are checked before any generation (:func:`check_gold_answers`): a gold answer math-verify cannot parse,
or one that does not even match itself, stops the run with the rows named, so it never silently counts as a wrong
answer. :func:`grade_samples` grades every sample with the package's math reward
(:class:`~trl_igrpo.rewards.MathAccuracyReward`) and computes what each problem contributes to the metrics of
:mod:`trl_igrpo.eval.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .data import BenchmarkProblem, DataError
from .metrics import ProblemResult, cluster_answers, last_boxed_content, majority_vote_credit, normalize_answer

__all__ = ["MAX_WRONG_ANSWERS_FOR_EQUIVALENCE", "GoldAnswerError", "check_gold_answers", "grade_samples"]

#: Above this many distinct wrong answers for one problem, maj@k groups wrong answers by string only (the pairwise
#: math-verify check grows quadratically); the number of such problems is reported.
MAX_WRONG_ANSWERS_FOR_EQUIVALENCE = 64


class GoldAnswerError(DataError):
    """Gold answers that the math grader cannot use; the message names the rows."""


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
