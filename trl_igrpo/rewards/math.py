r"""Verifiable math accuracy reward backed by math-verify, with hard timeouts and process-parallel scoring.

Why not ``trl.rewards.accuracy_reward``: math-verify's timeouts use ``SIGALRM``, which only works in a process's main
thread, so TRL disables them off the main thread (async rewards, judge threads) and a pathological answer such as a tower
of exponents can then hang training. Here every (gold, prediction) pair is scored in a few worker subprocesses (``python -m trl_igrpo.rewards._math_worker``),
where math-verify's own timeouts work, and the parent enforces a second, hard deadline by killing a worker that
does not answer (C-level sympy loops ignore signals). Scoring is spread over the workers, so throughput scales with
cores, and each worker caches parsed gold answers (a GRPO batch repeats each solution G times).

Answer extraction, in order (see :func:`extract_answer_region`):

1. the content of the last ``<answer>...</answer>`` block, read as LaTeX (``\boxed{}`` first) or a plain expression;
2. otherwise the whole completion with ``\boxed{}`` taking priority, else the final LaTeX expression (``$...$``,
   ``\(...\)``, ``\[...\]``).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

from ._text import completion_text, last_boxed_content
from .gold import (
    UnreadableGoldError,
    gold_string,
    gold_text_problem,
    prose_in_reading,
    summarize_unreadable_golds,
)

__all__ = ["Grade", "MathAccuracyReward", "extract_answer_region", "math_accuracy_reward"]

logger = logging.getLogger(__name__)

_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer_region(text: str) -> tuple[str, bool]:
    """Return the part of a completion that holds the final answer and whether it came from an ``<answer>`` block.

    With one or more ``<answer>...</answer>`` blocks, the content of the last one is returned (``True``); otherwise the
    whole text (``False``), in which math-verify looks for ``\\boxed{}`` first and then for a final LaTeX expression.
    """
    blocks = _ANSWER_BLOCK.findall(text)
    if blocks:
        return blocks[-1].strip(), True
    return text, False


# ----------------------------------------------------------------------------------------------------------------------
# Worker side: runs in child processes (main thread, so math-verify's SIGALRM timeouts work).


def _init_worker() -> None:
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _has_value(parsed) -> bool:
    """math-verify read a mathematical value (not only the string it fell back to)."""
    return any(not isinstance(item, str) for item in parsed)


_ANCHORS = ("$", "\\boxed", "\\fbox", "\\(", "\\[")


@functools.lru_cache(maxsize=4096)
def _read_gold(gold: str | None, timeout: int | None) -> tuple[list, str | None]:
    """``(math-verify's reading, None)`` of a gold answer, or ``([], why it is unreadable)`` (see :mod:`.gold`)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    problem = gold_text_problem(gold)
    if problem is not None or gold is None:
        return [], problem
    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    text = gold.strip()
    parsed: list = []
    if not any(anchor in text for anchor in _ANCHORS):
        # A bare gold such as "(1, 2]", "10\\%" or "2x+1" is only read as LaTeX once anchored (NeMo-RL practice); a
        # sentence's final period is not part of the answer ("5." is 5).
        parsed = parse(f"\\boxed{{{text.removesuffix('.')}}}", extraction_config=configs, parsing_timeout=timeout)
    if not _has_value(parsed):
        parsed = parse(text, extraction_config=configs, parsing_timeout=timeout)
    if not _has_value(parsed):
        return [], "math-verify cannot parse it"
    word = prose_in_reading(str(parsed[-1]))
    if word is not None:
        return [], (
            f"it is prose, not an answer: math-verify reads the word {word!r} as a product of symbols "
            "(write words as \\text{...} and functions as \\sin, \\log)"
        )
    return parsed, None


def _located_answer(region: str, in_answer_block: bool) -> str | None:
    """The raw final answer of a completion that math-verify could not read, or ``None`` when it wrote none."""
    if in_answer_block:
        return region
    if "\\boxed" in region or "\\fbox" in region:
        boxed = last_boxed_content(region)
        return boxed if boxed is not None else ""  # an unclosed box (cut off mid-answer) is an empty answer
    return None


def _read_prediction(text: str, timeout: int | None) -> tuple[list, str | None]:
    """math-verify's reading of a completion's final answer, and the answer as text (``None``: it wrote none).

    A reading without a value (``\\boxed{}``, ``\\boxed{\\frac{1}{``) is returned as ``[]`` with the text the model
    wrote, so that evaluation can count it as an answer that is wrong (it votes) rather than as no answer.
    """
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    region, in_answer_block = extract_answer_region(text)
    normalization = NormalizationConfig(
        nits=False, malformed_operators=False, basic_latex=True, boxed="all", units=True
    )
    latex = LatexExtractionConfig(normalization_config=normalization, boxed_match_priority=0)
    configs = [latex, ExprExtractionConfig()] if in_answer_block else [latex]
    parsed: list = []
    if in_answer_block and region and not any(anchor in region for anchor in _ANCHORS):
        # Inside <answer> the model may write "42", "50\\%", "$42$" or "\\boxed{42}": anchor bare content as \\boxed.
        parsed = parse(f"\\boxed{{{region}}}", extraction_config=configs, parsing_timeout=timeout)
    if not _has_value(parsed):
        parsed = parse(region, extraction_config=configs, parsing_timeout=timeout)
    if not _has_value(parsed) and parsed and str(parsed[-1]).rstrip().endswith("."):
        # "\\boxed{5.}": a sentence's period inside the box; math-verify reads "5." as a string only.
        stripped = str(parsed[-1]).rstrip().removesuffix(".")
        retry = parse(f"\\boxed{{{stripped}}}", extraction_config=configs, parsing_timeout=timeout)
        parsed = retry if _has_value(retry) else parsed
    if _has_value(parsed):
        return parsed, str(parsed[-1])
    fallback = str(parsed[-1]) if parsed else None
    located = _located_answer(region, in_answer_block)
    return [], (fallback if fallback is not None else located)


class Grade(NamedTuple):
    """One (gold, completion) pair graded.

    Attributes:
        score: 1.0 (equivalent), 0.0 (wrong, missing, unreadable or timed out), ``None`` (the gold is unreadable).
        answer: The completion's final answer as math-verify read it (its normalised LaTeX), the raw text of a final
            answer it could not read, or ``None`` when the completion has no final answer.
        readable: math-verify read a value from the completion's final answer.
        gold_problem: Why the gold answer is unreadable, or ``None``.
    """

    score: float | None
    answer: str | None
    readable: bool
    gold_problem: str | None = None


def _grade_pair(args: tuple[str | None, str, int | None]) -> Grade:
    """Grade one ``(gold, completion text, timeout)`` item (runs in the worker processes)."""
    from math_verify import verify

    gold, text, timeout = args
    try:
        gold_parsed, problem = _read_gold(gold, timeout)
    except BaseException as error:  # math-verify timeouts derive from BaseException in some versions
        gold_parsed, problem = [], f"math-verify failed on it ({type(error).__name__})"
    if problem is not None:
        return Grade(None, None, False, problem)
    try:
        prediction, answer = _read_prediction(text, timeout)
        if not prediction:
            return Grade(0.0, answer, False)
        return Grade(float(verify(gold_parsed, prediction, timeout_seconds=timeout)), answer, True)
    except BaseException:
        return Grade(0.0, None, False)


# ----------------------------------------------------------------------------------------------------------------------
# Parent side.


class _Worker:
    """One ``python -m trl_igrpo.rewards._math_worker`` subprocess (never re-imports the caller's ``__main__``)."""

    def __init__(self):
        import subprocess
        import sys

        from ._math_worker import read_message

        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trl_igrpo.rewards._math_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        if read_message(self.process.stdout) is None:
            raise RuntimeError("math_accuracy_reward: the math-verify worker process failed to start.")
        self.task: tuple[int, list[int]] | None = None  # (task id, item indices)
        self.deadline = 0.0

    def send(self, task_id: int, indices: list[int], items: list[tuple], deadline: float) -> None:
        from ._math_worker import write_message

        write_message(self.process.stdin, (task_id, items))
        self.task, self.deadline = (task_id, indices), deadline

    def receive(self):
        from ._math_worker import read_message

        self.task = None
        message = read_message(self.process.stdout)
        if message is None:
            raise RuntimeError("math_accuracy_reward: a math-verify worker process died.")
        return message

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


class MathAccuracyReward:
    """A TRL reward function (``(completions, solution, **kwargs) -> list[float | None]``) checking math answers.

    Args:
        num_workers: Worker processes. ``None`` uses every core (``os.cpu_count()``, at most 8). ``0`` scores in the
            calling process; then math-verify's timeouts only apply on the main thread.
        timeout_seconds: math-verify's own parse and verify timeouts inside a worker.
        hard_timeout_seconds: Deadline per item enforced from the parent by killing the worker; an item that misses it
            scores 0.0. Defaults to ``3 * timeout_seconds + 1``.
        solution_column: Dataset column holding the gold answers.
        max_unreadable_gold_frac: When a trainer is built, the gold answers of the first 256 rows are read
            (:meth:`check_dataset`); if more than this fraction cannot be graded, construction stops
            with an error naming the column, the rows and the fix. Below it, unreadable rows are logged once and score
            ``None`` (counted in ``rewards/<name>/unscorable_frac``).

    Returns per completion 1.0 (equivalent to the gold answer), 0.0 (wrong, missing or timed out) or ``None`` when the
    gold answer cannot be graded (:mod:`trl_igrpo.rewards.gold`: missing, a placeholder, prose, unparseable); TRL then
    leaves this function out of that row's reward instead of counting the label's fault as a wrong answer.
    """

    def __init__(
        self,
        num_workers: int | None = None,
        timeout_seconds: int = 5,
        hard_timeout_seconds: float | None = None,
        solution_column: str = "solution",
        max_unreadable_gold_frac: float = 0.5,
    ):
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 or None, got {num_workers}.")
        if timeout_seconds < 1:
            raise ValueError(f"timeout_seconds must be >= 1 (math-verify uses whole seconds), got {timeout_seconds}.")
        if not 0.0 <= max_unreadable_gold_frac <= 1.0:
            raise ValueError(f"max_unreadable_gold_frac must be in [0, 1], got {max_unreadable_gold_frac}.")
        self.num_workers = min(os.cpu_count() or 1, 8) if num_workers is None else num_workers
        self.timeout_seconds = int(timeout_seconds)
        self.hard_timeout_seconds = (
            float(hard_timeout_seconds) if hard_timeout_seconds is not None else 3.0 * self.timeout_seconds + 1.0
        )
        self.solution_column = solution_column
        self.max_unreadable_gold_frac = float(max_unreadable_gold_frac)
        self.__name__ = "math_accuracy_reward"
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self.num_hard_timeouts = 0
        atexit.register(self.close)

    def close(self) -> None:
        """Stop the worker processes (they are restarted on the next call)."""
        with self._lock:
            for worker in self._workers:
                worker.kill()
            self._workers = []

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_workers"], state["_lock"] = [], None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- scoring ------------------------------------------------------------------------------------------------------
    def score(self, golds: Sequence[Any], texts: Sequence[str]) -> list[float | None]:
        """Score completion texts against gold answers (same length): 1.0, 0.0, or ``None`` for an unreadable gold."""
        return [grade.score for grade in self.grade(golds, texts)]

    def grade(self, golds: Sequence[Any], texts: Sequence[str]) -> list[Grade]:
        """:class:`Grade` each completion text against its gold answer: the score plus what math-verify read."""
        if len(golds) != len(texts):
            raise ValueError(f"Got {len(texts)} completions but {len(golds)} solutions.")
        items, problems = [], []
        for gold, text in zip(golds, texts):
            gold_text, problem = gold_string(gold)  # numbers become text; None, lists... are refused with a reason
            items.append((gold_text, text, self.timeout_seconds))
            problems.append(problem)
        if not items:
            return []
        if self.num_workers == 0:
            on_main = threading.current_thread() is threading.main_thread()
            grades = [_grade_pair((g, t, timeout if on_main else None)) for g, t, timeout in items]
        else:
            with self._lock:
                grades = self._score_with_workers(items)
        return [
            grade if problem is None else Grade(None, None, False, problem) for grade, problem in zip(grades, problems)
        ]

    def gold_problems(self, golds: Sequence[Any]) -> list[str | None]:
        """Per gold answer, why it cannot be graded (:mod:`trl_igrpo.rewards.gold`), or ``None`` when it can."""
        return [grade.gold_problem for grade in self.grade(golds, [""] * len(golds))]

    def check_dataset(self, rows: Sequence[dict], **context: Any) -> None:
        """Stop a run whose gold answers are mostly unreadable, before any compute (called by the trainers).

        Reads the gold answers of ``rows`` (the package's trainers pass the first 256 rows of the training set,
        :data:`trl_igrpo.core.checks.REWARD_DATA_CHECK_ROWS`)
        and raises :class:`~trl_igrpo.rewards.gold.UnreadableGoldError` when the column is missing or more than
        ``max_unreadable_gold_frac`` of them cannot be graded; logs a warning naming the rows below that.
        """
        column = self.solution_column
        if not rows:
            return
        if column not in rows[0]:
            raise UnreadableGoldError(
                f"{self.__name__} reads gold answers from the '{column}' column, which the training data does not "
                f"have (columns: {sorted(rows[0])}). Add it, or build MathAccuracyReward(solution_column=...) naming "
                "the column that holds the final answers."
            )
        golds = [row[column] for row in rows]
        bad = [
            (i, gold, problem) for i, (gold, problem) in enumerate(zip(golds, self.gold_problems(golds))) if problem
        ]
        if not bad:
            return
        fraction = len(bad) / len(golds)
        message = (
            f"{len(bad)} of the first {len(golds)} gold answers in the '{column}' column ({fraction:.0%}) cannot be "
            f"graded: {summarize_unreadable_golds(bad)}."
        )
        fix = (
            " Put the final answers in that column (a number or LaTeX such as '\\frac{1}{4}'; for worked solutions "
            "the last \\boxed{} is read; GSM8K: the text after '####'), or point the reward at the right column with "
            "MathAccuracyReward(solution_column=...)."
        )
        if fraction > self.max_unreadable_gold_frac:
            raise UnreadableGoldError(
                message + fix + f" More than max_unreadable_gold_frac={self.max_unreadable_gold_frac} of them are "
                "unreadable, so most rows would train on no accuracy signal."
            )
        logger.warning(
            "%s Those rows score None (rewards/%s/unscorable_frac counts them).%s", message, self.__name__, fix
        )

    def _score_with_workers(self, items: list[tuple]) -> list[Grade]:
        import select
        import time
        from collections import deque

        while len(self._workers) < self.num_workers:
            self._workers.append(_Worker())
        results: list[Grade] = [Grade(0.0, None, False)] * len(items)
        chunksize = max(1, min(32, len(items) // (4 * self.num_workers)))
        queue = deque(list(range(i, min(i + chunksize, len(items)))) for i in range(0, len(items), chunksize))
        next_task = 0
        while queue or any(w.task is not None for w in self._workers):
            now = time.monotonic()
            for worker in self._workers:
                if worker.task is None and queue:
                    indices = queue.popleft()
                    deadline = now + self.hard_timeout_seconds * len(indices)
                    worker.send(next_task, indices, [items[i] for i in indices], deadline)
                    next_task += 1
            busy = [w for w in self._workers if w.task is not None]
            wait = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            readable, _, _ = select.select([w.process.stdout for w in busy], [], [], wait)
            for worker in busy:
                assert worker.task is not None  # busy workers hold a task
                if worker.process.stdout in readable:
                    _, indices = worker.task
                    _, grades = worker.receive()
                    for index, grade in zip(indices, grades):
                        results[index] = Grade(*grade)
                elif time.monotonic() >= worker.deadline:
                    _, indices = worker.task
                    worker.kill()
                    self._workers[self._workers.index(worker)] = _Worker()
                    if len(indices) == 1:
                        # This exact item blew the hard deadline (e.g. a C-level sympy loop): score it 0.
                        self.num_hard_timeouts += 1
                        logger.warning(
                            "math_accuracy_reward: an item hit the %.1fs hard timeout; scored 0.",
                            self.hard_timeout_seconds,
                        )
                        results[indices[0]] = Grade(0.0, None, False)
                    else:
                        # Retry the chunk one item per task so the slow item is pinned down exactly.
                        queue.extendleft([i] for i in reversed(indices))
        return results

    def __call__(self, completions, solution=None, **kwargs) -> list[float | None]:
        golds = solution if self.solution_column == "solution" else kwargs.get(self.solution_column)
        if golds is None:
            raise ValueError(
                f"math_accuracy_reward needs a '{self.solution_column}' column in the dataset with the gold answers."
            )
        return self.score(golds, [completion_text(c) for c in completions])


_default_reward = MathAccuracyReward()


def math_accuracy_reward(completions, solution, **kwargs) -> list[float | None]:
    r"""1.0 if the completion's final answer is mathematically equivalent to ``solution``, else 0.0 (None: bad gold).

    A TRL reward function for plain-text and conversational completions. The answer is read from the last
    ``<answer>...</answer>`` block, else from ``\boxed{}``, else from the final LaTeX expression, and compared with
    math-verify (fractions vs decimals, sqrt, intervals, sets, percent...). Each item has a hard timeout that works from
    any thread or process; scoring runs on a pool of worker processes (one per core). Use :class:`MathAccuracyReward`
    for other timeouts or worker counts.
    """
    return _default_reward(completions, solution, **kwargs)


setattr(math_accuracy_reward, "check_dataset", _default_reward.check_dataset)  # noqa: B010 (the trainers' data check)
