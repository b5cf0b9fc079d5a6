"""The judge behind any OpenAI-compatible chat-completions endpoint (``vllm serve``, a provider's ``/v1``).

Requests run in a thread pool (``urllib``, no extra dependency) with retries, exponential backoff with jitter and
``Retry-After``; the API key is read from an environment variable at each request, never taken as an argument or logged.
Every failure is raised as the :class:`~trl_igrpo.rewards.judge.JudgeError` subclass of its kind.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .errors import JudgeConnectionError, JudgeError, JudgeReplyError, JudgeTimeoutError, JudgeUnavailableError

__all__ = ["OpenAIChatJudge"]


def _is_timeout(error: BaseException | None) -> bool:
    """A socket/asyncio timeout, also when urllib wraps it in ``URLError(reason=timeout)``."""
    if isinstance(error, urllib.error.HTTPError):
        return False
    return isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError)


class OpenAIChatJudge:
    """Client for an OpenAI-compatible chat-completions endpoint (``{base_url}/chat/completions``).

    Args:
        base_url: e.g. ``"http://127.0.0.1:8000/v1"`` (a ``vllm serve`` judge) or a provider's ``.../v1``.
        model: model name sent in each request (and checked against ``/models`` by :meth:`check`).
        api_key_env: name of the environment variable holding the API key, read at each request; unset or empty
            means no ``Authorization`` header (local servers). Keys are never accepted as arguments or logged.
        timeout: seconds per request attempt (connect + response).
        max_retries: extra attempts after a connection error, timeout, or HTTP 408/409/425/429/5xx. With the defaults
            one request against a hung server gives up after about ``3 * 30 s + 1.5 s`` of backoff; the reward's
            ``batch_timeout`` bounds a whole batch.
        backoff_base: base of the exponential backoff: attempt ``k`` waits ``min(backoff_max, backoff_base * 2**k)``
            seconds, times a jitter in [0.5, 1], or the server's ``Retry-After`` (capped by ``backoff_max``).
        backoff_max: upper bound of one backoff wait, in seconds.
        max_concurrency: requests in flight at once (thread-pool size).
        temperature: sampling temperature sent with each request.
        max_tokens: maximum tokens of the judge's reply, sent with each request.
        extra_body: merged into the JSON request body (e.g. ``{"chat_template_kwargs": {"enable_thinking": False}}``
            for a vLLM-served reasoning judge).
        check_timeout: timeout of the reachability check.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 30.0,
        max_retries: int = 2,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_concurrency: int = 16,
        temperature: float = 0.0,
        max_tokens: int = 16,
        extra_body: Mapping[str, Any] | None = None,
        check_timeout: float = 5.0,
    ):
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"`base_url` must be an http(s) URL such as 'http://127.0.0.1:8000/v1', got {base_url!r}."
            )
        if not model:
            raise ValueError("`model` must name the judge model served at `base_url`.")
        if timeout <= 0 or max_retries < 0 or max_concurrency < 1:
            raise ValueError("`timeout` must be > 0, `max_retries` >= 0 and `max_concurrency` >= 1.")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_concurrency = max_concurrency
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body or {})
        self.check_timeout = check_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def __repr__(self) -> str:  # no headers, no key
        return f"OpenAIChatJudge(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    # -- plumbing -----------------------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _auth_error(self, status: int) -> JudgeUnavailableError:
        hint = (
            f"set the API key in the environment variable {self.api_key_env}"
            if self.api_key_env
            else "set api_key_env"
        )
        return JudgeUnavailableError(
            f"The judge endpoint {self.base_url} rejected the request (HTTP {status}); {hint}."
        )

    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="trl-igrpo-judge")
            return self._executor

    def close(self) -> None:
        """Release the thread pool (a new one is created on the next request)."""
        with self._executor_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

    def check(self) -> None:
        """Fail fast: raise :class:`JudgeUnavailableError` unless ``{base_url}/models`` answers and lists ``model``.

        Any HTTP answer other than 401/403 counts as reachable; a 200 JSON list of models must contain ``model``.
        """
        request = urllib.request.Request(f"{self.base_url}/models", headers=self._headers(), method="GET")
        try:
            with urllib.request.urlopen(request, timeout=self.check_timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            if error.code in (401, 403):
                raise self._auth_error(error.code) from None
            return  # reachable; some providers do not implement /models
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise JudgeUnavailableError(
                f"The judge endpoint {self.base_url} is unreachable ({reason}). Start the judge server (e.g. "
                f"`vllm serve {self.model}`) or fix `base_url`."
            ) from None
        try:
            served = [entry["id"] for entry in json.loads(body)["data"]]
        except (ValueError, KeyError, TypeError):
            return
        if served and self.model not in served:
            raise JudgeUnavailableError(
                f"The judge endpoint {self.base_url} does not serve model {self.model!r}; it serves {served}."
            )

    def _post_once(self, payload: bytes) -> str:
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=payload, headers=self._headers(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            body = response.read()
        try:
            message = json.loads(body)["choices"][0]["message"]
            content = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise JudgeReplyError(f"Not an OpenAI chat-completions response: {body[:200]!r}") from None
        if content is not None and not isinstance(content, str):
            raise JudgeReplyError(f"The judge message content is not text: {content!r:.200}")
        return content or ""

    def _retry_delay(self, attempt: int, error: BaseException | None) -> float:
        headers = getattr(error, "headers", None)
        retry_after = headers.get("Retry-After") if headers else None
        if retry_after:
            try:
                return min(self.backoff_max, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return min(self.backoff_max, self.backoff_base * 2**attempt) * random.uniform(0.5, 1.0)

    async def chat(self, messages: list[dict[str, str]]) -> str:
        """Send one chat request and return the reply text, retrying transient failures with backoff."""
        body = {
            **self.extra_body,
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        payload = json.dumps(body).encode()
        loop = asyncio.get_running_loop()
        last_error: BaseException | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self._retry_delay(attempt - 1, last_error))
            try:
                future = loop.run_in_executor(self._pool(), self._post_once, payload)
                return await asyncio.wait_for(future, self.timeout)
            except urllib.error.HTTPError as error:
                if error.code in (401, 403):
                    raise self._auth_error(error.code) from None
                if error.code not in (408, 409, 425, 429) and error.code < 500:
                    detail = error.read()[:200] if error.fp is not None else b""
                    raise JudgeError(f"The judge endpoint answered HTTP {error.code}: {detail!r}") from None
                last_error = error
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
                last_error = error
        reason = getattr(last_error, "reason", None) or type(last_error).__name__
        error_class: type[JudgeError]
        if _is_timeout(last_error):
            error_class, reason = JudgeTimeoutError, f"no answer within timeout={self.timeout:g}s"
        elif isinstance(last_error, urllib.error.HTTPError):
            error_class, reason = JudgeError, f"HTTP {last_error.code}"
        else:
            error_class = JudgeConnectionError
        raise error_class(
            f"The judge request to {self.base_url} failed after {self.max_retries + 1} attempt(s): {reason}"
        ) from last_error
