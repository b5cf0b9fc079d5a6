"""How a judge request fails: one exception class per failure kind, and the kinds in the order metrics list them."""

from __future__ import annotations

from collections.abc import Mapping

#: Failure kinds, in the order metrics and messages list them.
FAILURE_KINDS = ("malformed", "timeout", "connection", "http")


class JudgeError(RuntimeError):
    """A judge request failed (transport error after all retries, HTTP error, or a malformed response).

    ``kind`` names the failure for metrics and messages: ``"malformed"``, ``"timeout"``, ``"connection"`` or
    ``"http"`` (an HTTP error status).
    """

    kind = "http"


class JudgeUnavailableError(JudgeError):
    """The judge endpoint is unreachable, rejects our credentials, or does not serve the requested model."""

    kind = "connection"


class JudgeReplyError(JudgeError):
    """The judge answered, but not with a verdict in the required format."""

    kind = "malformed"


class JudgeTimeoutError(JudgeError):
    """The judge did not answer in time (every attempt timed out, or the batch deadline passed first)."""

    kind = "timeout"


class JudgeConnectionError(JudgeError):
    """The judge connection failed on every attempt (refused, reset, DNS, ...)."""

    kind = "connection"


class JudgeUnscorableBatchError(JudgeError):
    """Every judge request of a reward call failed, more than ``max_unscorable_batches`` calls in a row.

    ``counts`` maps each failure kind (``"malformed"``, ``"timeout"``, ``"connection"``, ``"http"``) to its number in
    the last batch.
    """

    def __init__(self, message: str, counts: Mapping[str, int]):
        super().__init__(message)
        self.counts = dict(counts)
        self.kind = max(self.counts, key=lambda kind: self.counts[kind]) if any(self.counts.values()) else "http"
