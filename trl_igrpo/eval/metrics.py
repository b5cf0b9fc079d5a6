r"""Pure metrics of ``trl-igrpo eval``: pass@k, majority voting, answer extraction and aggregation.

Nothing here generates or grades; grading (math-verify with hard timeouts) happens in :mod:`trl_igrpo.eval.grading`,
which hands each sample's correctness and the answer the grader read from it to these functions. Votes and grades
come from the same reader: a sample votes for the answer math-verify read (the string it extracted), so no sample is
graded one way and counted another.

Definitions (per problem, n samples of which c are correct):

- **pass@1** = c / n, averaged over problems: the paper's "pass@1 averaged over k samples" (iGRPO §4.1, NeMo-Skills).
- **pass@k** (Chen et al. 2021, arXiv 2107.03374, Eq. 1), the unbiased estimator
  pass@k = 1 - C(n - c, k) / C(n, k), computed as the stable product 1 - prod_{i=n-c+1}^{n} (1 - k / i).
  With k = n it is 1 when any sample is correct.
- **maj@k**: the answer with the most votes wins and scores 1 if it is correct. All correct samples vote together
  (each equals the gold answer); wrong answers that math-verify finds equal vote together (see
  :func:`cluster_answers`). **Ties** between clusters score the fraction of tied clusters that are correct, i.e. the
  expected accuracy of breaking the tie uniformly at random: deterministic, and independent of sample order
  (``Counter.most_common`` would favour whichever answer came first). A problem with no vote scores 0.
- **unparseable**: a sample from which the grader reads no value. Two kinds, counted apart in maj@k:

  - *an unreadable final answer* (``\boxed{}``, ``\boxed{\frac{1}{``, an empty ``<answer></answer>``): the model
    committed to an answer, which is wrong; it **votes**, with the same unreadable answers of that problem (three
    empty boxes outvote one correct sample);
  - *no final answer at all* (no ``<answer>`` block, no ``\boxed{}``, no final LaTeX expression; e.g. cut off by the
    token budget): it does **not vote**, as in self-consistency and NeMo-Skills.

  Both count as wrong for pass@k.

NeMo-Skills' definitions (the paper's harness) are reported beside ours (:func:`nemo_skills_metrics`): pass@k = any
of the *first* k samples correct (ours is the unbiased estimator over all n), majority@k = the most frequent
(``\boxed{}`` string, correct) pair among the first k samples that have a ``\boxed{}``, ties broken by sorted order.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..rewards._text import last_boxed_content

__all__ = [
    "ProblemResult",
    "cluster_answers",
    "extract_final_answer",
    "last_boxed_content",
    "majority_vote_credit",
    "nemo_skills_majority",
    "nemo_skills_metrics",
    "normalize_answer",
    "pass_at_k",
    "pass_at_k_ladder",
    "summarize",
    "summarize_by_group",
]


# ----------------------------------------------------------------------------------------------------------------------
# pass@k


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k of one problem (Chen et al. 2021, Eq. 1): ``1 - C(n - c, k) / C(n, k)``.

    Computed as ``1 - prod_{i = n - c + 1}^{n} (1 - k / i)``, which avoids huge binomials (n = 64, 256, ...).
    """
    n, c = num_samples, num_correct
    if n < 1:
        raise ValueError(f"num_samples must be >= 1, got {n}.")
    if not 0 <= c <= n:
        raise ValueError(f"num_correct must be in [0, num_samples={n}], got {c}.")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, num_samples={n}], got {k}.")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_k_ladder(num_samples: int) -> list[int]:
    """The k values reported for n samples: powers of two below n, then n itself (n = 8 -> [1, 2, 4, 8])."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    ladder = [2**i for i in range(num_samples.bit_length()) if 2**i < num_samples]
    return [*ladder, num_samples]


# ----------------------------------------------------------------------------------------------------------------------
# Answer extraction (string level; mirrors the precedence of trl_igrpo.rewards.math)

_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FINAL_LATEX = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)


def extract_final_answer(text: str) -> str | None:
    r"""The final answer of a completion as a string, or ``None`` when there is none (an *unparseable* sample).

    Same precedence as :func:`trl_igrpo.rewards.math.extract_answer_region`: the last ``<answer>...</answer>`` block
    (its ``\boxed{}`` content if it has one, else its whole content); otherwise the last ``\boxed{}``; otherwise the
    last ``$...$``, ``\(...\)`` or ``\[...\]`` expression.
    """
    blocks = _ANSWER_BLOCK.findall(text)
    if blocks:
        block = blocks[-1]
        boxed = last_boxed_content(block)
        content = boxed if boxed is not None else block.strip()
        return content or None
    boxed = last_boxed_content(text)
    if boxed is not None:
        return boxed or None
    expressions = [
        next(group for group in match.groups() if group is not None) for match in _FINAL_LATEX.finditer(text)
    ]
    if expressions and expressions[-1].strip():
        return expressions[-1].strip()
    return None


_SPACING = re.compile(r"\\[,;:! ]|\\q?quad|\\left|\\right|\s+")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")


def normalize_answer(answer: str) -> str:
    r"""A canonical string for grouping votes: strips ``$``, spacing commands, ``\left``/``\right``, whitespace, a
    trailing period, ``\text{}`` wrappers and degree marks, and reads ``\dfrac``/``\tfrac`` as ``\frac``.

    Only a first, cheap pass: answers that still differ as strings are compared with math-verify before voting.
    """
    text = answer.strip().rstrip(".").strip().strip("$")
    text = _TEXT_WRAPPER.sub(r"\1", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = text.replace("^\\circ", "").replace("^{\\circ}", "")
    text = _SPACING.sub("", text)
    return text.rstrip(".")


# ----------------------------------------------------------------------------------------------------------------------
# Majority voting


def cluster_answers(
    answers: Sequence[str | None],
    correct: Sequence[bool],
    equivalent: Callable[[str, str], bool] | None = None,
) -> list[int | None]:
    """Group one problem's samples into answer clusters for voting; returns a cluster id per sample.

    - Unparseable samples (answer ``None`` and not correct) get ``None``: they do not vote.
    - Every correct sample joins one cluster: each equals the gold answer, hence each other.
    - Wrong answers are grouped by exact string, then distinct strings are merged when ``equivalent(a, b)`` holds
      (transitively; default: never). A wrong answer is never merged with the correct cluster.
    """
    if len(answers) != len(correct):
        raise ValueError(f"Got {len(answers)} answers but {len(correct)} correctness flags.")
    wrong_keys = sorted({a for a, ok in zip(answers, correct) if not ok and a is not None})
    parent = {key: key for key in wrong_keys}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    if equivalent is not None:
        for i, first in enumerate(wrong_keys):
            for second in wrong_keys[i + 1 :]:
                if root(first) != root(second) and equivalent(first, second):
                    parent[root(second)] = root(first)
    labels = {key: index + 1 for index, key in enumerate(sorted({root(k) for k in wrong_keys}))}
    clusters: list[int | None] = []
    for answer, ok in zip(answers, correct):
        if ok:
            clusters.append(0)
        elif answer is None:
            clusters.append(None)
        else:
            clusters.append(labels[root(answer)])
    return clusters


def majority_vote_credit(clusters: Sequence[Hashable | None], correct: Sequence[bool]) -> float:
    """maj@k credit of one problem: 1 if the most-voted cluster is correct, 0 if not; a tie scores the fraction of
    tied clusters that are correct (uniform random tie-break, in expectation). ``None`` clusters do not vote; with no
    votes at all the credit is 0.

    Raises ``ValueError`` if one cluster mixes correct and wrong samples (clusters must be answer-equivalence classes).
    """
    if len(clusters) != len(correct):
        raise ValueError(f"Got {len(clusters)} clusters but {len(correct)} correctness flags.")
    cluster_correct: dict[Hashable, bool] = {}
    for cluster, ok in zip(clusters, correct):
        if cluster is None:
            continue
        if cluster_correct.setdefault(cluster, bool(ok)) != bool(ok):
            raise ValueError(f"Cluster {cluster!r} holds both correct and wrong samples.")
    votes = Counter(cluster for cluster in clusters if cluster is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    winners = [cluster for cluster, count in votes.items() if count == top]
    return sum(cluster_correct[cluster] for cluster in winners) / len(winners)


def nemo_skills_majority(answers: Sequence[str | None], correct: Sequence[bool]) -> float:
    """NeMo-Skills' majority credit: the most frequent ``(answer, correct)`` pair among the samples with an answer
    (``None`` does not vote), ties broken by sorted order (the smallest pair wins); 0 when no sample has an answer."""
    votes = sorted((answer, bool(ok)) for answer, ok in zip(answers, correct) if answer is not None)
    if not votes:
        return 0.0
    (_, ok), _ = Counter(votes).most_common(1)[0]  # most_common keeps first-seen order among equal counts
    return float(ok)


def nemo_skills_metrics(problems: Sequence[ProblemResult], ks: Iterable[int] | None = None) -> dict[str, object]:
    """The metrics under NeMo-Skills' definitions, from the same grades: ``pass@k`` = any of the first k samples
    correct, ``pass@1[k]`` = mean correctness of the first k, ``majority@k`` (k >= 2) = :func:`nemo_skills_majority`
    over the first k samples' ``boxed_answers``. ``ks`` defaults to :func:`pass_at_k_ladder`."""
    if not problems:
        raise ValueError("No problems to summarize.")
    n = problems[0].num_samples
    if any(p.num_samples != n or len(p.boxed_answers) != n for p in problems):
        raise ValueError("Every problem needs the same number of samples, each with its boxed answer recorded.")
    ks = pass_at_k_ladder(n) if ks is None else sorted(set(ks))
    count = len(problems)
    return {
        "pass@k": {str(k): sum(any(p.correct[:k]) for p in problems) / count for k in ks},
        "pass@1[k]": {str(k): sum(sum(p.correct[:k]) / k for p in problems) / count for k in ks},
        "majority@k": {
            str(k): sum(nemo_skills_majority(p.boxed_answers[:k], p.correct[:k]) for p in problems) / count
            for k in ks
            if k >= 2
        },
    }


# ----------------------------------------------------------------------------------------------------------------------
# Aggregation


@dataclass(frozen=True)
class ProblemResult:
    """What one problem contributes to the metrics.

    Args:
        correct: Per sample, whether the math reward graded it correct.
        unparseable: Per sample, whether no final answer could be read from it.
        lengths: Per sample, generated tokens (up to and including EOS).
        truncated: Per sample, whether generation stopped at ``max_new_tokens`` before EOS.
        majority_credit: The problem's maj@k credit (:func:`majority_vote_credit`).
        groups: The problem's values of the breakdown columns (e.g. ``{"subject": "Algebra", "level": 3}``).
        boxed_answers: Per sample, the content of its last ``\\boxed{}`` (``None``: none), the answer string
            NeMo-Skills votes with (:func:`nemo_skills_metrics`); empty when not recorded.
    """

    correct: tuple[bool, ...]
    unparseable: tuple[bool, ...]
    lengths: tuple[int, ...]
    truncated: tuple[bool, ...]
    majority_credit: float
    groups: Mapping[str, object] | None = None
    boxed_answers: tuple[str | None, ...] = ()

    @property
    def num_samples(self) -> int:
        """n, the samples drawn for this problem."""
        return len(self.correct)

    @property
    def num_correct(self) -> int:
        """c, the correct samples."""
        return sum(self.correct)


def summarize(problems: Sequence[ProblemResult], ks: Iterable[int] | None = None) -> dict[str, object]:
    """Metrics over problems: ``pass@1`` (mean of c / n), ``pass@k`` per k (default :func:`pass_at_k_ladder`),
    ``maj@k``, ``mean_length`` (tokens per sample), ``unparseable_frac`` and ``truncated_frac`` (per sample).

    All problems must have the same number of samples n (the ``k`` of ``--num_samples``).
    """
    if not problems:
        raise ValueError("No problems to summarize.")
    sizes = {p.num_samples for p in problems}
    if len(sizes) != 1:
        raise ValueError(f"Every problem needs the same number of samples; got {sorted(sizes)}.")
    n = sizes.pop()
    ks = pass_at_k_ladder(n) if ks is None else sorted(set(ks))
    total = n * len(problems)
    return {
        "num_problems": len(problems),
        "num_samples": n,
        "pass@1": sum(p.num_correct / n for p in problems) / len(problems),
        "pass@k": {str(k): sum(pass_at_k(n, p.num_correct, k) for p in problems) / len(problems) for k in ks},
        f"maj@{n}": sum(p.majority_credit for p in problems) / len(problems),
        "mean_length": sum(sum(p.lengths) for p in problems) / total,
        "unparseable_frac": sum(sum(p.unparseable) for p in problems) / total,
        "truncated_frac": sum(sum(p.truncated) for p in problems) / total,
    }


def summarize_by_group(
    problems: Sequence[ProblemResult], columns: Sequence[str], ks: Iterable[int] | None = None
) -> dict[str, dict[str, dict[str, object]]]:
    """:func:`summarize` per value of each breakdown column: ``{column: {str(value): metrics}}``, values sorted."""
    breakdown: dict[str, dict[str, dict[str, object]]] = {}
    ks = None if ks is None else list(ks)
    for column in columns:
        by_value: dict[str, list[ProblemResult]] = {}
        for problem in problems:
            value = (problem.groups or {}).get(column)
            by_value.setdefault(str(value), []).append(problem)
        breakdown[column] = {value: summarize(by_value[value], ks) for value in sorted(by_value, key=_natural_key)}
    return breakdown


def _natural_key(value: str) -> tuple:
    """Sort "Level 2" before "Level 10" and numbers numerically."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", value))
