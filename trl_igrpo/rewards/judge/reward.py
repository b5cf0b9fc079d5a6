"""The reward: :class:`GenerativeJudgeReward`, an ``async`` TRL reward function that asks a judge backend to grade
each completion against the reference answer, and counts, logs and bounds every way that can fail."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...reasoning.think import strip_reasoning
from .._text import completion_text
from .backend_openai import OpenAIChatJudge
from .backend_transformers import TransformersJudge
from .errors import (
    FAILURE_KINDS,
    JudgeError,
    JudgeReplyError,
    JudgeTimeoutError,
    JudgeUnavailableError,
    JudgeUnscorableBatchError,
)
from .prompts import (
    DEFAULT_JUDGE_SYSTEM_PROMPT,
    DEFAULT_JUDGE_USER_TEMPLATE,
    VERDICT_INSTRUCTIONS,
    build_judge_messages,
    question_text,
)
from .verdicts import parse_numeric_verdict, parse_yes_no_verdict

__all__ = ["GenerativeJudgeReward", "make_judge_reward"]

logger = logging.getLogger(__name__)

#: What one judge request came back with: (score, raw reply, failure).
_Outcome = tuple[float | None, str | None, JudgeError | None]


class GenerativeJudgeReward:
    """Async TRL reward function: a judge model grades each completion against the reference answer, in [0, 1].

    Args:
        backend: :class:`OpenAIChatJudge`, :class:`TransformersJudge`, or any object with ``async chat(messages) -> str``
            (and optionally ``check()`` and ``max_concurrency``).
        verdict: ``"numeric"`` (a number in ``score_range``), ``"yes_no"``, or a callable ``reply -> float`` that raises
            :class:`JudgeReplyError` on a malformed reply.
        score_range: range of the numeric verdict, mapped linearly to [0, 1] (e.g. ``(0, 10)``).
        verdict_location: ``"reply"`` (the whole reply must be the verdict) or ``"last_line"`` (judges that explain
            first). A ``<think>...</think>`` prefix in the reply is always skipped.
        system_prompt: the judge's system prompt; same placeholders as ``user_template``.
        user_template: the judge's user message, with placeholders ``{question}``, ``{reference}``, ``{completion}``
            (the fenced completion), ``{nonce}`` and ``{verdict_instructions}``, substituted in one pass.
        reference_column: dataset column with the reference answer (TRL passes every column as a keyword argument).
        question_column: column with the question; default uses ``original_prompt`` when present (iGRPO Stage 2, whose
            ``prompt`` embeds the draft) and otherwise ``prompt`` (last user message of conversational prompts).
        strip_completion_reasoning: grade only the text after the last ``</think>`` (the judge compares answers; this
            also shrinks the injection surface and the judge's context). An empty answer scores ``empty_score``
            without a judge call (e.g. truncated reasoning).
        on_failure: score of a row whose judge request failed: ``"none"`` (score ``None``; TRL then ignores this
            function for the row), ``"raise"`` (raise the first failure at once), or a float. Whatever it says, a batch
            in which *every* judge request fails raises :class:`JudgeUnscorableBatchError` (see
            ``max_unscorable_batches``): a reward that scores nothing would otherwise train on zero advantages.
        batch_timeout: deadline in seconds for one call (one batch): requests still unanswered then are cancelled
            and count as timeouts. This bounds the time a hung judge can cost per batch, whatever the backend's
            per-request ``timeout``/``max_retries``. ``None``: no deadline. Raise it for very large batches or slow
            judges (a batch needs about ``requests / max_concurrency`` judge latencies).
        max_unscorable_batches: consecutive calls in which every judge request fails that are tolerated (their rows
            follow ``on_failure``) before :class:`JudgeUnscorableBatchError` is raised; 0 (default) raises at the
            first. A call with at least one scored request resets the count.
        max_concurrency: judge requests in flight per call (default: the backend's).
        fail_fast: check the backend once at the first call and raise :class:`JudgeUnavailableError` if it is down,
            whatever ``on_failure`` says. :meth:`check` runs the same check on demand (e.g. before ``trainer.train()``).
        log_replies: add the raw judge replies to TRL's completions table (``log_extra``) as ``judge_reply``.
        name: metric name (``rewards/<name>/mean``).

    Every call reports, through TRL's ``log_metric`` when the trainer passes it, the number of failed judge requests
    by kind -- ``rewards/<name>/failures/malformed`` (an answer that is not a verdict, or not an OpenAI response),
    ``.../failures/timeout``, ``.../failures/connection`` and ``.../failures/http`` -- plus
    ``rewards/<name>/failed_frac`` (failed / sent requests) and ``rewards/<name>/seconds`` (wall time of the call).
    :attr:`failure_counts` keeps the running totals.
    """

    def __init__(
        self,
        backend: Any,
        *,
        verdict: str | Callable[[str], float] = "numeric",
        score_range: tuple[float, float] = (0.0, 1.0),
        verdict_location: str = "reply",
        system_prompt: str = DEFAULT_JUDGE_SYSTEM_PROMPT,
        user_template: str = DEFAULT_JUDGE_USER_TEMPLATE,
        reference_column: str = "solution",
        question_column: str | None = None,
        strip_completion_reasoning: bool = True,
        empty_score: float = 0.0,
        on_failure: str | float = "none",
        batch_timeout: float | None = 120.0,
        max_unscorable_batches: int = 0,
        max_concurrency: int | None = None,
        fail_fast: bool = True,
        log_replies: bool = False,
        name: str = "judge_reward",
    ):
        if not hasattr(backend, "chat"):
            raise TypeError("`backend` needs an `async chat(messages) -> str` method.")
        if not callable(verdict) and verdict not in VERDICT_INSTRUCTIONS:
            raise ValueError(f"`verdict` must be 'numeric', 'yes_no' or a callable, got {verdict!r}.")
        if verdict_location not in ("reply", "last_line"):
            raise ValueError(f"`verdict_location` must be 'reply' or 'last_line', got {verdict_location!r}.")
        if not (isinstance(on_failure, (int, float)) and not isinstance(on_failure, bool)) and on_failure not in (
            "none",
            "raise",
        ):
            raise ValueError(f"`on_failure` must be 'none', 'raise' or a float score, got {on_failure!r}.")
        if batch_timeout is not None and not batch_timeout > 0:
            raise ValueError(f"`batch_timeout` must be > 0 seconds or None, got {batch_timeout!r}.")
        if isinstance(max_unscorable_batches, bool) or not (
            isinstance(max_unscorable_batches, int) and max_unscorable_batches >= 0
        ):
            raise ValueError(f"`max_unscorable_batches` must be an int >= 0, got {max_unscorable_batches!r}.")
        low, high = score_range
        if not high > low:
            raise ValueError(f"`score_range` must be (low, high) with high > low, got {score_range}.")
        if "{completion}" not in user_template:
            raise ValueError("`user_template` must contain the {completion} placeholder.")
        self.backend = backend
        self.verdict = verdict
        self.score_range = (float(low), float(high))
        self.verdict_location = verdict_location
        self.system_prompt = system_prompt
        self.user_template = user_template
        self.reference_column = reference_column
        self.question_column = question_column
        self.strip_completion_reasoning = strip_completion_reasoning
        self.empty_score = empty_score
        self.on_failure = on_failure
        self.batch_timeout = batch_timeout
        self.max_unscorable_batches = max_unscorable_batches
        backend_concurrency: int = getattr(backend, "max_concurrency", 8)
        self.max_concurrency: int = max_concurrency or backend_concurrency
        self.fail_fast = fail_fast
        self.log_replies = log_replies
        self.__name__ = name
        self._checked = False
        #: Failed judge requests since this reward was built, by kind (see :data:`FAILURE_KINDS`).
        self.failure_counts: dict[str, int] = dict.fromkeys(FAILURE_KINDS, 0)
        self._unscorable_in_a_row = 0

    def __repr__(self) -> str:
        return f"GenerativeJudgeReward(name={self.__name__!r}, backend={self.backend!r}, verdict={self.verdict!r})"

    @property
    def endpoint(self) -> str:
        """What the judge talks to, for messages: the backend's ``base_url``, else its ``repr``."""
        return getattr(self.backend, "base_url", None) or repr(self.backend)

    # -- building blocks --------------------------------------------------------------------------------------------
    @property
    def verdict_instructions(self) -> str:
        """The sentence telling the judge how to answer (yes/no, a number in ``score_range``); empty for a custom
        verdict parser, whose prompt must say it."""
        if callable(self.verdict):
            return ""
        if self.verdict == "numeric" and self.score_range != (0.0, 1.0):
            low, high = self.score_range
            return f"Reply with a single number between {low:g} and {high:g} ({high:g} = correct) and nothing else."
        return VERDICT_INSTRUCTIONS[self.verdict]

    def build_messages(self, question: str, reference: str, completion: str, nonce: str | None = None) -> list[dict]:
        """The judge conversation for one completion; the completion is fenced with a fresh random nonce
        (:func:`~trl_igrpo.rewards.judge.prompts.build_judge_messages`)."""
        return build_judge_messages(
            self.system_prompt, self.user_template, question, reference, completion, self.verdict_instructions, nonce
        )

    def parse_reply(self, reply: str) -> float:
        """The score in [0, 1] for a judge reply; raises :class:`JudgeReplyError` when it is not a strict verdict."""
        if callable(self.verdict):
            score = float(self.verdict(reply))
            if not 0.0 <= score <= 1.0:
                raise JudgeReplyError(f"The custom verdict parser returned {score}, outside [0, 1].")
            return score
        if self.verdict == "yes_no":
            return parse_yes_no_verdict(reply, location=self.verdict_location)
        return parse_numeric_verdict(reply, score_range=self.score_range, location=self.verdict_location)

    def check(self) -> None:
        """Raise :class:`JudgeUnavailableError` if the backend is unreachable (runs the backend's ``check``)."""
        check = getattr(self.backend, "check", None)
        if check is not None:
            check()
        self._checked = True

    async def _judge_one(self, messages: list[dict], semaphore: asyncio.Semaphore) -> _Outcome:
        """(score, raw reply, failure) of one request; failures are returned, or raised with ``on_failure="raise"``."""
        async with semaphore:
            try:
                reply = await self.backend.chat(messages)
            except JudgeUnavailableError:
                raise
            except JudgeError as error:
                if self.on_failure == "raise":
                    raise
                return None, None, error
        try:
            return self.parse_reply(reply), reply, None
        except JudgeReplyError as error:
            if self.on_failure == "raise":
                raise
            return None, reply, error

    async def _run_with_deadline(self, coroutines: list) -> list[_Outcome]:
        """Run the requests; those still pending at ``batch_timeout`` are cancelled and fail as timeouts."""
        if not coroutines:
            return []
        tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
        done, pending = await asyncio.wait(tasks, timeout=self.batch_timeout, return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for task in tasks:
            if task in done and task.exception() is not None:
                raise task.exception()
        deadline = JudgeTimeoutError(
            f"The batch deadline batch_timeout={self.batch_timeout:g}s passed before the judge at {self.endpoint} "
            "answered."
        )
        if pending and self.on_failure == "raise":
            raise deadline
        return [task.result() if task in done else (None, None, deadline) for task in tasks]

    def _fix_hint(self, kind: str, error: JudgeError, reply: str | None) -> str:
        if kind == "malformed":
            shown = f"e.g. {reply[:120]!r}" if reply is not None else str(error)[:160]
            return (
                f"the judge answered, but not with a verdict in the required format ({shown}). Fix: serve an "
                "instruction-following judge model, raise the backend's max_tokens if replies are cut off (or turn "
                "off the judge's reasoning), use verdict_location='last_line' for judges that explain first, or pass "
                "a custom `verdict` parser."
            )
        if kind == "timeout":
            timeout = getattr(self.backend, "timeout", None)
            retries = getattr(self.backend, "max_retries", None)
            per_request = f"timeout={timeout:g}s per attempt, {retries + 1} attempt(s); " if timeout else ""
            return (
                f"the judge did not answer in time ({per_request}batch_timeout={self.batch_timeout}s). Fix: check "
                "that the judge server is up and not hung or overloaded, lower max_concurrency, or raise the "
                "backend's `timeout` / the reward's `batch_timeout`."
            )
        if kind == "connection":
            return (
                f"the judge at {self.endpoint} refused or dropped the connections ({error}). Fix: start the judge "
                "server (e.g. `vllm serve MODEL`) or correct `base_url`."
            )
        return f"the judge endpoint answered with errors ({error}). Fix: check the judge server's log."

    def _unscorable_error(
        self, counts: dict[str, int], examples: dict, num_requests: int
    ) -> JudgeUnscorableBatchError:
        summary = ", ".join(f"{count} {kind}" for kind, count in counts.items() if count)
        kind = max(counts, key=lambda name: counts[name])
        message = (
            f"The judge reward {self.__name__!r} could not score this batch: all {num_requests} judge request(s) to "
            f"{self.endpoint} failed ({summary}). Mostly {kind}: {self._fix_hint(kind, *examples[kind])} "
            f"This is unscorable batch {self._unscorable_in_a_row} in a row; max_unscorable_batches="
            f"{self.max_unscorable_batches} tolerates that many in a row (their rows score on_failure={self.on_failure!r})."
        )
        return JudgeUnscorableBatchError(message, counts)

    # -- TRL entry point --------------------------------------------------------------------------------------------
    async def __call__(self, completions: Sequence[Any], prompts: Sequence[Any] | None = None, **kwargs: Any):
        """Score a batch: ``list[float | None]``, one per completion. TRL passes dataset columns as ``kwargs``.

        Raises :class:`~trl_igrpo.rewards.judge.JudgeUnscorableBatchError` when every judge request of the batch
        failed (after ``max_unscorable_batches`` such batches in a row), and logs the failure metrics through
        ``log_metric``.
        """
        questions, references = self._questions_and_references(completions, prompts, kwargs)
        if self.fail_fast and not self._checked:
            await asyncio.get_running_loop().run_in_executor(None, self.check)
        start = time.perf_counter()
        scores, requests = self._plan_requests(completions, questions, references)
        semaphore = asyncio.Semaphore(self.max_concurrency)
        outcomes = await self._run_with_deadline(
            [self._judge_one(self.build_messages(*request), semaphore) for request in requests]
        )
        replies: list[str | None] = [None] * len(completions)
        counts = dict.fromkeys(FAILURE_KINDS, 0)
        examples: dict[str, tuple[JudgeError, str | None]] = {}
        for rows, (score, reply, error) in zip(requests.values(), outcomes):
            if error is not None:
                kind = error.kind if error.kind in counts else "http"
                counts[kind] += 1
                examples.setdefault(kind, (error, reply))
                score = self._failure_score
            for i in rows:
                scores[i], replies[i] = score, reply
        self._report(counts, len(requests), replies, time.perf_counter() - start, kwargs)
        self._count_unscorable_batch(counts, examples, len(requests))
        return scores

    def _questions_and_references(
        self, completions: Sequence[Any], prompts: Sequence[Any] | None, columns: dict[str, Any]
    ) -> tuple[Sequence[Any], Sequence[Any]]:
        """The question and reference answer of each completion, from the dataset columns TRL passes."""
        if self.reference_column not in columns:
            raise ValueError(
                f"The judge reward needs a `{self.reference_column}` column with the reference answers "
                f"(set reference_column=...); got columns {sorted(k for k in columns if not k.startswith('log_'))}."
            )
        references = columns[self.reference_column]
        if self.question_column is not None:
            if self.question_column not in columns:
                raise ValueError(f"The judge reward needs a `{self.question_column}` column (question_column).")
            questions = columns[self.question_column]
        else:
            questions = columns.get("original_prompt") or prompts or [None] * len(completions)
        if not (len(references) == len(questions) == len(completions)):
            raise ValueError("`completions`, the questions and the reference answers must have the same length.")
        return questions, references

    def _plan_requests(
        self, completions: Sequence[Any], questions: Sequence[Any], references: Sequence[Any]
    ) -> tuple[list[float | None], dict[tuple[str, str, str], list[int]]]:
        """Scores known without a judge (a row without a reference stays ``None``, an empty answer gets
        ``empty_score``) and the judge requests, ``(question, reference, answer) -> rows``: identical requests are
        judged once."""
        scores: list[float | None] = [None] * len(completions)
        requests: dict[tuple[str, str, str], list[int]] = {}
        for i, (completion, question, reference) in enumerate(zip(completions, questions, references)):
            text = completion_text(completion)
            answer = strip_reasoning(text) if self.strip_completion_reasoning else text.strip()
            if reference is None:
                continue  # no reference: unscorable, TRL ignores the row for this function
            if not answer:
                scores[i] = self.empty_score
                continue
            requests.setdefault((question_text(question), str(reference), answer), []).append(i)
        return scores, requests

    @property
    def _failure_score(self) -> float | None:
        """The score of a row whose judge request failed (``on_failure``; ``"raise"`` never gets here)."""
        return None if self.on_failure in ("none", "raise") else float(self.on_failure)

    def _report(
        self, counts: dict[str, int], num_requests: int, replies: list[str | None], seconds: float, columns: dict
    ) -> None:
        """Add the batch's failures to :attr:`failure_counts` and report them through TRL's ``log_metric`` (and the
        replies through ``log_extra`` with ``log_replies``) and, when any request failed, in one warning."""
        failed = sum(counts.values())
        for kind, count in counts.items():
            self.failure_counts[kind] += count
        log_metric = columns.get("log_metric")
        if callable(log_metric):
            for kind, count in counts.items():
                log_metric(f"rewards/{self.__name__}/failures/{kind}", float(count))
            log_metric(f"rewards/{self.__name__}/failed_frac", failed / num_requests if num_requests else 0.0)
            log_metric(f"rewards/{self.__name__}/seconds", seconds)
        log_extra = columns.get("log_extra")
        if self.log_replies and callable(log_extra):
            log_extra("judge_reply", [reply or "" for reply in replies])
        if failed:
            summary = ", ".join(f"{count} {kind}" for kind, count in counts.items() if count)
            logger.warning(
                f"Judge reward {self.__name__!r}: {failed} of {num_requests} judge request(s) to {self.endpoint} "
                f"failed ({summary}); their rows score {self._failure_score}. See the "
                f"rewards/{self.__name__}/failures/* metrics."
            )

    def _count_unscorable_batch(self, counts: dict[str, int], examples: dict, num_requests: int) -> None:
        """Raise :class:`~trl_igrpo.rewards.judge.JudgeUnscorableBatchError` once more than
        ``max_unscorable_batches`` batches in a row had every request fail; a batch with one score resets the count."""
        if not num_requests:
            return
        if sum(counts.values()) < num_requests:
            self._unscorable_in_a_row = 0
            return
        self._unscorable_in_a_row += 1
        if self._unscorable_in_a_row > self.max_unscorable_batches:
            error = self._unscorable_error(counts, examples, num_requests)
            self._unscorable_in_a_row = 0
            raise error

    def score(self, completions: Sequence[Any], prompts: Sequence[Any] | None = None, **kwargs: Any):
        """Synchronous convenience wrapper around the async call (outside a running event loop)."""
        return asyncio.run(self(completions, prompts=prompts, **kwargs))


def make_judge_reward(
    base_url: str | None = None,
    model: str | None = None,
    *,
    local_model: Any = None,
    tokenizer: Any = None,
    backend_kwargs: Mapping[str, Any] | None = None,
    **reward_kwargs: Any,
) -> GenerativeJudgeReward:
    """Build a judge reward for an OpenAI-compatible endpoint (``base_url`` + ``model``) or a local model.

    Examples::

        judge = make_judge_reward("http://127.0.0.1:8000/v1", "meta-llama/Llama-3.3-70B-Instruct", verdict="yes_no")
        judge = make_judge_reward(local_model="path/to/judge", backend_kwargs={"max_new_tokens": 8})

    ``backend_kwargs`` go to :class:`OpenAIChatJudge` / :class:`TransformersJudge`, the rest to
    :class:`GenerativeJudgeReward`.
    """
    if (base_url is None) == (local_model is None):
        raise ValueError("Pass either `base_url` (with `model`) or `local_model`.")
    backend: OpenAIChatJudge | TransformersJudge
    if base_url is not None:
        if model is None:
            raise ValueError("`base_url` needs `model`: the model name the endpoint serves.")
        backend = OpenAIChatJudge(base_url, model, **(backend_kwargs or {}))
    else:
        backend = TransformersJudge(local_model, tokenizer, **(backend_kwargs or {}))
    return GenerativeJudgeReward(backend, **reward_kwargs)
