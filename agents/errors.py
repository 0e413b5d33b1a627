"""Error taxonomy of LLM calls: which failures are retried, and what the server asked us to wait.

:func:`classify_error` maps an exception raised by an OpenAI, LangChain, DSPy or httpx call to an
:class:`ErrorInfo` (kind, retryable, HTTP status, ``Retry-After`` hint) by class names along the MRO and HTTP
status, so no client library is imported. :class:`MalformedReply` marks a reply that arrived but cannot be
used (retried); :class:`LLMError` is what a request raises once every attempt failed.
"""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass
from typing import Any

from synalign.errors import SynalignError

__all__ = ["ErrorInfo", "LLMError", "MalformedReply", "classify_error", "retry_after_seconds"]


class LLMError(SynalignError):
    """An LLM request failed after all retries (or with a non-retryable client error). The message is
    one redacted line naming the node, round, request, attempts and the last error."""


class MalformedReply(Exception):
    """A reply that arrived but cannot be used (unparsable, missing fields, truncated); retried."""

    def __init__(self, message: str, kind: str = "malformed") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class ErrorInfo:
    """What went wrong in one attempt.

    Attributes:
        kind: ``rate_limited``, ``server_error``, ``timeout``, ``connection``, ``malformed``, ``truncated``,
            ``client_error`` or ``error``.
        retryable: whether another attempt may succeed.
        status: HTTP status, when known.
        retry_after: the server's ``Retry-After`` hint in seconds, when given.
    """

    kind: str
    retryable: bool
    status: int | None = None
    retry_after: float | None = None


def _status_of(exc: BaseException) -> int | None:
    for attr in ("status_code", "status", "http_status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
        if value is None:
            value = next((v for k, v in dict(headers).items() if str(k).lower() == name), None)
    except Exception:  # noqa: BLE001 - headers of unknown shape
        return None
    if isinstance(value, (tuple, list)):
        value = value[0] if value else None
    return None if value is None else str(value)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's wait hint for ``exc`` in seconds: ``retry-after-ms``, then ``Retry-After`` (seconds or
    an HTTP date), from the exception's response headers or DSPy's parsed ``retry_after``; None if absent."""
    candidates = [getattr(getattr(exc, "response", None), "headers", None), getattr(exc, "headers", None)]
    candidates.append(getattr(exc, "rate_limit_headers", None))
    candidates.append(getattr(exc, "litellm_response_headers", None))
    for headers in candidates:
        ms = _header(headers, "retry-after-ms")
        if ms is not None:
            try:
                return max(0.0, float(ms) / 1000.0)
            except ValueError:
                pass
        value = _header(headers, "retry-after")
        if value is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(value)
                    return max(0.0, when.timestamp() - time.time())
                except (TypeError, ValueError):
                    pass
    hint = getattr(exc, "retry_after", None)
    if isinstance(hint, (int, float)) and not isinstance(hint, bool) and math.isfinite(hint):
        return max(0.0, float(hint))
    return None


_MALFORMED_NAMES = {
    "JSONDecodeError",
    "ValidationError",
    "OutputParserException",
    "AdapterParseError",
    "APIResponseValidationError",
    "KeyError",
    "TypeError",
    "AttributeError",
    "IndexError",
    "ValueError",
}


def classify_error(exc: BaseException) -> ErrorInfo:
    """Classify an exception raised by an OpenAI, LangChain, DSPy or httpx call (by class names along
    the MRO and HTTP status, so no client library needs to be imported)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    status = _status_of(exc)
    hint = retry_after_seconds(exc)
    if isinstance(exc, MalformedReply):
        return ErrorInfo(exc.kind, True, status)
    if "LengthFinishReasonError" in names:
        return ErrorInfo("truncated", True, status)
    if status == 429 or names & {"RateLimitError", "LMRateLimitError"}:
        return ErrorInfo("rate_limited", True, 429, hint)
    if "APITimeoutError" in names or "TimeoutException" in names or "TimeoutError" in names or "Timeout" in names:
        return ErrorInfo("timeout", True, status)
    if "LMTransportError" in names or "TransportError" in names:
        kind = "timeout" if "timed out" in str(exc).lower() else "connection"
        return ErrorInfo(kind, True, status)
    if "APIConnectionError" in names or "ConnectError" in names or isinstance(exc, ConnectionError):
        return ErrorInfo("connection", True, status)
    if status is not None and status >= 500:
        return ErrorInfo("server_error", True, status, hint)
    if status in (408, 409):
        return ErrorInfo("server_error", True, status, hint)
    if status is not None and 400 <= status < 500:
        return ErrorInfo("client_error", False, status)
    if "LMConfigurationError" in names or "LMUnsupportedFeatureError" in names:
        return ErrorInfo("client_error", False, status)
    if names & _MALFORMED_NAMES or "LMProviderError" in names:
        return ErrorInfo("malformed", True, status)
    if isinstance(exc, OSError):
        return ErrorInfo("connection", True, status)
    return ErrorInfo("error", True, status)
