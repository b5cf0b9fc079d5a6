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

from ._text import completion_text

__all__ = ["MathAccuracyReward", "extract_answer_region", "math_accuracy_reward"]

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


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str, timeout: int | None):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    gold = gold.strip()
    if "$" not in gold and "\\boxed" not in gold and "\\(" not in gold and "\\[" not in gold:
        # A bare gold such as "(1, 2]", "10\\%" or "2x+1" is only read as LaTeX once anchored (NeMo-RL practice).
        parsed = parse(f"\\boxed{{{gold}}}", extraction_config=configs, parsing_timeout=timeout)
        if parsed:
            return parsed
    return parse(gold, extraction_config=configs, parsing_timeout=timeout)


def _parse_prediction(text: str, timeout: int | None):
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    region, in_answer_block = extract_answer_region(text)
    normalization = NormalizationConfig(
        nits=False, malformed_operators=False, basic_latex=True, boxed="all", units=True
    )
    latex = LatexExtractionConfig(normalization_config=normalization, boxed_match_priority=0)
    if in_answer_block:
        # Inside <answer> the model may write "42", "50\\%", "$42$" or "\\boxed{42}": anchor bare content as \\boxed.
        configs = [latex, ExprExtractionConfig()]
        if region and not any(anchor in region for anchor in ("$", "\\boxed", "\\(", "\\[")):
            parsed = parse(f"\\boxed{{{region}}}", extraction_config=configs, parsing_timeout=timeout)
            if parsed:
                return parsed
        return parse(region, extraction_config=configs, parsing_timeout=timeout)
    return parse(region, extraction_config=[latex], parsing_timeout=timeout)


def _score_pair(args: tuple[str, str, int | None]) -> float | None:
    """1.0 / 0.0 for a (gold, completion text) pair; ``None`` when the gold answer itself cannot be parsed."""
    from math_verify import verify

    gold, text, timeout = args
    try:
        gold_parsed = _parse_gold(gold, timeout)
        if not gold_parsed:
            return None
        prediction = _parse_prediction(text, timeout)
        if not prediction:
            return 0.0
        return float(verify(gold_parsed, prediction, timeout_seconds=timeout))
    except BaseException:  # math-verify timeouts derive from BaseException in some versions
        return 0.0


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

    Returns per completion 1.0 (equivalent to the gold answer), 0.0 (wrong, missing or timed out) or ``None`` when the
    gold answer cannot be parsed (TRL then ignores this reward for that row).
    """

    def __init__(
        self,
        num_workers: int | None = None,
        timeout_seconds: int = 5,
        hard_timeout_seconds: float | None = None,
        solution_column: str = "solution",
    ):
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 or None, got {num_workers}.")
        if timeout_seconds < 1:
            raise ValueError(f"timeout_seconds must be >= 1 (math-verify uses whole seconds), got {timeout_seconds}.")
        self.num_workers = min(os.cpu_count() or 1, 8) if num_workers is None else num_workers
        self.timeout_seconds = int(timeout_seconds)
        self.hard_timeout_seconds = (
            float(hard_timeout_seconds) if hard_timeout_seconds is not None else 3.0 * self.timeout_seconds + 1.0
        )
        self.solution_column = solution_column
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
    def score(self, golds: Sequence[str], texts: Sequence[str]) -> list[float | None]:
        """Score completion texts against gold answers (same length)."""
        if len(golds) != len(texts):
            raise ValueError(f"Got {len(texts)} completions but {len(golds)} solutions.")
        items = [(str(g), t, self.timeout_seconds) for g, t in zip(golds, texts)]
        if not items:
            return []
        if self.num_workers == 0:
            on_main = threading.current_thread() is threading.main_thread()
            return [_score_pair((g, t, timeout if on_main else None)) for g, t, timeout in items]
        with self._lock:
            return self._score_with_workers(items)

    def _score_with_workers(self, items: list[tuple]) -> list[float | None]:
        import select
        import time
        from collections import deque

        while len(self._workers) < self.num_workers:
            self._workers.append(_Worker())
        results: list[float | None] = [None] * len(items)
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
                    _, scores = worker.receive()
                    for index, score in zip(indices, scores):
                        results[index] = score
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
                        results[indices[0]] = 0.0
                    else:
                        # Retry the chunk one item per task so the slow item is pinned down exactly.
                        queue.extendleft([i] for i in reversed(indices))
        return results

    def __call__(self, completions, solution=None, **kwargs) -> list[float | None]:
        golds = solution if solution is not None else kwargs.get(self.solution_column)
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
