"""LLM call machinery shared by the summariser (LangChain) and the generator (DSPy).

Every LLM request of a run goes through one :class:`LLMRunner`, whatever the framework:

1. **Response cache** (:class:`~synalign.agents.cache.ResponseCache`), keyed by the full request; a hit
   issues no call.
2. **Bounded, adaptive concurrency** (:class:`AdaptiveLimiter`): at most ``max_concurrency`` calls in
   flight; additive-increase / multiplicative-decrease (AIMD, as in TCP congestion control, Jacobson 1988)
   halves the limit after ``rate_limit_window`` consecutive HTTP 429s and raises it by one after
   ``2 × limit`` consecutive successes, never above the configured maximum.
3. **Retries** (tenacity) on 429, 5xx, timeouts, connection errors and malformed replies (bad JSON,
   missing fields, schema violations, truncated output), with exponential backoff and full jitter;
   a ``Retry-After`` / ``retry-after-ms`` hint from the server is honoured (waited at least that long,
   capped at ``max_retry_after_s``). Client errors (400, 401, 403, 404, 422) are not retried. The clients'
   own retries are switched off (``max_retries=0``, ``num_retries=0``) so that this layer counts them all.
4. **Usage counters** (:class:`UsageCounters`): calls, failures by kind, retries, tokens in/out, cost from
   an optional price table, cache hits; the run summary reports them.
5. **Trace**: each attempt and each cache hit is appended to the run's JSONL trace, redacted.

A request that still fails after ``max_attempts`` raises :class:`LLMError` (never silently dropped).
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from synalign.config import parse_llm
from synalign.errors import InputError, SynalignError
from synalign.io import read_json

from synalign.agents.cache import ResponseCache, cache_key
from synalign.agents.trace import Redactor, TraceWriter

__all__ = [
    "LLMError",
    "MalformedReply",
    "LLMSettings",
    "parse_llm",
    "PriceTable",
    "ErrorInfo",
    "classify_error",
    "AdaptiveLimiter",
    "UsageCounters",
    "CallResult",
    "LLMRunner",
]

_log = logging.getLogger("synalign.agents")
T = TypeVar("T")
R = TypeVar("R")


class LLMError(SynalignError):
    """An LLM request failed after all retries (or with a non-retryable client error). The message is
    one redacted line naming the node, round, request, attempts and the last error."""


class MalformedReply(Exception):
    """A reply that arrived but cannot be used (unparsable, missing fields, truncated); retried."""

    def __init__(self, message: str, kind: str = "malformed") -> None:
        super().__init__(message)
        self.kind = kind


# ----------------------------------------------------------------------------------------------------------
# Settings


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"environment variable {name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"environment variable {name} must be a positive number, got {raw!r}")
    return value


@dataclass(frozen=True)
class LLMSettings:
    """How the LLM backend talks to its endpoint.

    Built from :class:`~synalign.config.RunConfig` by :meth:`from_config`; the options that are not run
    configuration fields can be set through environment variables (documented per field).

    Attributes:
        model: model name at the endpoint (``gpt-4o-mini``, ``Qwen/Qwen2.5-7B-Instruct``, ``llama3.1``).
        provider: ``openai`` (any OpenAI-compatible endpoint) or ``custom`` (models passed from Python).
        base_url: OpenAI-compatible base URL (``http://localhost:8000/v1``); None = api.openai.com.
        api_key_env: environment variable holding the API key (its value is never written anywhere).
        temperature: generator sampling temperature.
        summary_temperature: summariser temperature; None = ``temperature``.
        max_tokens: maximum completion tokens per call.
        max_concurrency: maximum calls in flight (the adaptive limit starts here).
        cache: use the on-disk response cache.
        timeout_s: per-call client timeout in seconds (``SYNALIGN_LLM_TIMEOUT``, default 120).
        max_attempts: attempts per request, first included (``SYNALIGN_LLM_MAX_ATTEMPTS``, default 6).
        request_budget_s: total seconds one request may take, all attempts and backoff waits included
            (``SYNALIGN_LLM_REQUEST_BUDGET``, default 600): a server that accepts connections but never
            answers costs at most this, not ``max_attempts × timeout_s``. No attempt starts after it.
        backoff_s: first backoff in seconds; doubles per attempt with full jitter (``SYNALIGN_LLM_BACKOFF``).
        max_backoff_s: backoff cap in seconds.
        max_retry_after_s: cap on a server's ``Retry-After``.
        rate_limit_window: consecutive 429s that halve the concurrency limit.
        max_topups: extra generator calls per request when filtering leaves fewer than ``n`` texts.
        structured_method: LangChain structured-output method (``json_schema``, ``function_calling`` or
            ``json_mode``; ``SYNALIGN_LLM_STRUCTURED``).
        prompt_style: ``"chat"`` (instructions, DSPy ChatAdapter, structured-output summariser) or
            ``"completion"`` (base models: few-shot continuation lines, statistical summariser); ``--llm
            local`` defaults to completion, every other backend to chat (``--prompt-style``).
        local_threads, local_slots: ``llama-server`` threads and parallel slots of ``--llm local``
            (``SYNALIGN_LOCAL_THREADS`` / ``SYNALIGN_LOCAL_SLOTS``, default 1 and 1: measured fastest on 2
            loaded cores).
        prices: USD per million tokens by model, ``{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}``
            (``SYNALIGN_LLM_PRICES`` = path of such a JSON file); None = cost not reported.
    """

    model: str
    provider: str = "openai"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.8
    summary_temperature: float | None = None
    max_tokens: int = 1024
    max_concurrency: int = 4
    cache: bool = True
    timeout_s: float = 120.0
    max_attempts: int = 6
    request_budget_s: float = 600.0
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_retry_after_s: float = 120.0
    rate_limit_window: int = 3
    max_topups: int = 3
    structured_method: str = "json_schema"
    prices: dict[str, dict[str, float]] | None = None
    prompt_style: str = "chat"
    local_threads: int = 1
    local_slots: int = 1

    @property
    def name(self) -> str:
        """Backend name written into every synthetic record, e.g. ``openai:gpt-4o-mini``."""
        return f"{self.provider}:{self.model}"

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> LLMSettings:
        """Settings from a :class:`~synalign.config.RunConfig` with ``config.llm`` set, the
        ``SYNALIGN_LLM_*`` environment variables, then ``overrides``.

        Raises:
            InputError: bad ``--llm``, bad environment values, unreadable price table.
        """
        if not config.llm:
            raise InputError("no LLM configured (--llm openai:MODEL or --llm local)")
        kind, model = parse_llm(config.llm)
        if kind == "eda":
            raise InputError("--llm eda is not a language model")
        local = kind == "local"
        if local:
            from synalign.local.model import EMBEDDED_MODEL

            model = Path(model).stem if model else EMBEDDED_MODEL
        style = getattr(config, "prompt_style", "auto") or "auto"
        method = os.environ.get("SYNALIGN_LLM_STRUCTURED", "json_schema")
        if method not in ("json_schema", "function_calling", "json_mode"):
            raise InputError(f"SYNALIGN_LLM_STRUCTURED must be json_schema, function_calling or json_mode, got {method!r}")
        settings = cls(
            model=model,
            provider=kind,
            base_url=config.base_url,
            api_key_env=config.api_key_env,
            temperature=config.temperature,
            max_tokens=config.max_tokens or (_LOCAL_MAX_TOKENS if local else _CHAT_MAX_TOKENS),
            max_concurrency=max(1, config.max_concurrency),
            cache=config.llm_cache,
            timeout_s=_env_float("SYNALIGN_LLM_TIMEOUT", 60.0 if local else 120.0),
            max_attempts=max(1, int(_env_float("SYNALIGN_LLM_MAX_ATTEMPTS", 6))),
            request_budget_s=_env_float("SYNALIGN_LLM_REQUEST_BUDGET", 600.0),
            backoff_s=_env_float("SYNALIGN_LLM_BACKOFF", 1.0),
            structured_method=method,
            prices=PriceTable.load(os.environ["SYNALIGN_LLM_PRICES"]).prices if os.environ.get("SYNALIGN_LLM_PRICES") else None,
            prompt_style=("completion" if local else "chat") if style == "auto" else style,
            local_threads=int(_env_float("SYNALIGN_LOCAL_THREADS", 1)),
            local_slots=int(_env_float("SYNALIGN_LOCAL_SLOTS", 1)),
        )
        return replace(settings, **overrides) if overrides else settings

    def api_key(self) -> str | None:
        """The API key from ``api_key_env``, or None when unset."""
        return os.environ.get(self.api_key_env) or None


_CHAT_MAX_TOKENS = 1024
_LOCAL_MAX_TOKENS = 256
"""Default ``max_tokens``: a chat reply holds all ``n`` texts; a completion is one text (one line), and the
generator asks for 3 × the longest demonstration's words within this cap."""


class PriceTable:
    """USD per million input/output tokens by model name.

    Args:
        prices: ``{"model": {"input": usd_per_1m, "output": usd_per_1m}}``; a key may be the bare model
            name or ``openai:MODEL``.
    """

    def __init__(self, prices: dict[str, dict[str, float]] | None) -> None:
        self.prices = prices or {}

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        """Read a price table JSON file.

        Raises:
            InputError: unreadable, not JSON, or not ``{model: {input, output}}`` with numbers.
        """
        data = read_json(path, "price table")
        if not isinstance(data, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("input"), (int, float)) and isinstance(v.get("output"), (int, float))
            for v in data.values()
        ):
            raise InputError(f"{path}: price table must map model names to {{\"input\": USD/1M, \"output\": USD/1M}}")
        return cls({k: {"input": float(v["input"]), "output": float(v["output"])} for k, v in data.items()})

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> float | None:
        """Cost in USD of one call, or None when the model has no price."""
        entry = self.prices.get(model) or self.prices.get(model.split(":", 1)[-1])
        if entry is None:
            return None
        return (tokens_in * entry["input"] + tokens_out * entry["output"]) / 1e6


# ----------------------------------------------------------------------------------------------------------
# Error classification


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


# ----------------------------------------------------------------------------------------------------------
# Concurrency


class AdaptiveLimiter:
    """A counting limiter whose limit adapts to rate limiting (AIMD).

    ``limit`` starts at ``maximum``; after ``window`` consecutive 429 outcomes it halves (not below
    ``minimum``); after ``2 × limit`` consecutive successes it grows by one (not above ``maximum``).
    """

    def __init__(self, maximum: int, *, minimum: int = 1, window: int = 3) -> None:
        self.maximum = max(1, maximum)
        self.minimum = max(1, min(minimum, self.maximum))
        self.window = max(1, window)
        self.limit = self.maximum
        self.lowest = self.maximum
        self.reductions = 0
        self.in_flight = 0
        self._rate_limited = 0
        self._successes = 0
        self._cond = threading.Condition()

    def acquire(self) -> None:
        """Block until fewer than ``limit`` calls are in flight, then take a slot."""
        with self._cond:
            while self.in_flight >= self.limit:
                self._cond.wait()
            self.in_flight += 1

    def release(self, outcome: str) -> None:
        """Give the slot back; ``outcome`` is ``"ok"``, ``"rate_limited"`` or any other error kind."""
        with self._cond:
            self.in_flight -= 1
            if outcome == "rate_limited":
                self._successes = 0
                self._rate_limited += 1
                if self._rate_limited >= self.window and self.limit > self.minimum:
                    self.limit = max(self.minimum, self.limit // 2)
                    self.lowest = min(self.lowest, self.limit)
                    self.reductions += 1
                    self._rate_limited = 0
                    _log.warning("sustained HTTP 429s: lowering LLM concurrency to %d", self.limit)
            elif outcome == "ok":
                self._rate_limited = 0
                self._successes += 1
                if self._successes >= 2 * self.limit and self.limit < self.maximum:
                    self.limit += 1
                    self._successes = 0
            self._cond.notify_all()


# ----------------------------------------------------------------------------------------------------------
# Usage


class UsageCounters:
    """Thread-safe counters for the run summary (see :meth:`snapshot`)."""

    def __init__(self, backend: str, prices: PriceTable | None = None) -> None:
        self.backend = backend
        self.prices = prices
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.failures_by_kind: Counter[str] = Counter()
        self.by_node: dict[str, Counter[str]] = {}
        self.dropped: Counter[str] = Counter()
        self.cost_usd: float | None = 0.0 if prices is not None and prices.prices else None
        self.waited_s = 0.0

    def add(self, node: str, **counts: int) -> None:
        with self._lock:
            self.counts.update(counts)
            self.by_node.setdefault(node, Counter()).update(counts)

    def failure(self, node: str, kind: str) -> None:
        with self._lock:
            self.failures_by_kind[kind] += 1
            self.counts["failures"] += 1
            self.by_node.setdefault(node, Counter())["failures"] += 1

    def add_cost(self, cost: float | None) -> None:
        if cost is None:
            return
        with self._lock:
            self.cost_usd = (self.cost_usd or 0.0) + cost

    def add_wait(self, seconds: float) -> None:
        with self._lock:
            self.waited_s += seconds

    def add_dropped(self, dropped: dict[str, int]) -> None:
        with self._lock:
            self.dropped.update(dropped)

    def snapshot(self, limiter: AdaptiveLimiter | None = None) -> dict[str, Any]:
        """Counters as plain data::

            {"backend", "llm_calls", "ok", "failures", "failures_by_kind", "retries", "failed_requests",
             "requests", "cache_hits", "cache_misses", "cache_hit_rate", "tokens_in", "tokens_out",
             "cost_usd", "backoff_wait_s", "concurrency": {"max", "limit", "lowest", "reductions"},
             "dropped", "shortfall", "by_node": {node: {...}}}

        ``llm_calls`` counts HTTP calls issued (failed attempts included, cache hits excluded).
        """
        with self._lock:
            c = self.counts
            looked_up = c["cache_hits"] + c["cache_misses"]
            out: dict[str, Any] = {
                "backend": self.backend,
                "llm_calls": c["llm_calls"],
                "ok": c["ok"],
                "failures": c["failures"],
                "failures_by_kind": dict(sorted(self.failures_by_kind.items())),
                "retries": c["retries"],
                "failed_requests": c["failed_requests"],
                "requests": c["requests"],
                "cache_hits": c["cache_hits"],
                "cache_misses": c["cache_misses"],
                "cache_hit_rate": (c["cache_hits"] / looked_up) if looked_up else None,
                "tokens_in": c["tokens_in"],
                "tokens_out": c["tokens_out"],
                "cost_usd": self.cost_usd,
                "backoff_wait_s": round(self.waited_s, 3),
                "dropped": dict(sorted(self.dropped.items())),
                "shortfall": c["shortfall"],
                "by_node": {node: dict(counter) for node, counter in sorted(self.by_node.items())},
            }
        if limiter is not None:
            out["concurrency"] = {
                "max": limiter.maximum,
                "limit": limiter.limit,
                "lowest": limiter.lowest,
                "reductions": limiter.reductions,
            }
        return out


# ----------------------------------------------------------------------------------------------------------
# Runner


@dataclass
class CallResult:
    """One successful LLM reply.

    Attributes:
        value: the parsed reply (JSON-serialisable; what the cache stores).
        text: the raw reply text (traced).
        tokens_in, tokens_out: usage reported by the endpoint (0 when not reported).
        cached: True when it came from the response cache.
    """

    value: Any
    text: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cached: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


def _seconds(value: float) -> float:
    return round(value, 4)


class LLMRunner:
    """Runs LLM requests with cache, adaptive concurrency, retries, usage counting and tracing.

    Args:
        settings: endpoint and retry settings.
        cache: response cache, or None (``--no-llm-cache``).
        trace: trace writer, or None.
        redactor: scrubs secrets from error messages and trace lines.
        sleep: the sleep function used between attempts (injectable for tests).
        rng: jitter source.
    """

    def __init__(
        self,
        settings: LLMSettings,
        *,
        cache: ResponseCache | None = None,
        trace: TraceWriter | None = None,
        redactor: Redactor | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.trace = trace
        self.redactor = redactor or Redactor([settings.api_key()])
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.prices = PriceTable(settings.prices) if settings.prices else None
        self.usage = UsageCounters(settings.name, self.prices)
        self.limiter = AdaptiveLimiter(settings.max_concurrency, window=settings.rate_limit_window)

    # -- public ----------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Usage counters with the concurrency state (``Backend.usage``)."""
        return self.usage.snapshot(self.limiter)

    def map(self, fn: Callable[[int, T], R], items: Sequence[T]) -> list[R]:
        """``[fn(i, item) for i, item in enumerate(items)]`` on up to ``max_concurrency`` threads, in
        order. The first exception (by item order) is re-raised after every item has finished."""
        if len(items) <= 1 or self.settings.max_concurrency == 1:
            return [fn(i, item) for i, item in enumerate(items)]
        with ThreadPoolExecutor(max_workers=min(self.settings.max_concurrency, len(items))) as pool:
            futures = [pool.submit(fn, i, item) for i, item in enumerate(items)]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        return [f.result() for f in futures]

    def call(
        self,
        *,
        node: str,
        round: int,  # noqa: A002 - the loop's term
        index: int,
        payload: dict[str, Any],
        prompt: list[dict[str, Any]],
        fn: Callable[[], CallResult],
        extra: dict[str, Any] | None = None,
    ) -> CallResult:
        """Run one request: cache lookup, then up to ``max_attempts`` attempts of ``fn``.

        ``payload`` is the full request as the model sees it (hashed into the cache key; must not hold
        secrets); ``prompt`` is the message list written to the trace; ``extra`` adds fields to its records.

        Raises:
            LLMError: all attempts failed, or a non-retryable error (after redaction).
            InputError: the endpoint rejected the API key or does not know the model (401/403/404).
        """
        import tenacity

        key = cache_key(payload) if self.cache is not None else None
        base = {"node": node, "round": round, "request": index, **(extra or {}), "model": self.settings.name}
        self.usage.add(node, requests=1)
        if key is not None and self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.usage.add(node, cache_hits=1)
                result = CallResult(value=hit["value"], text=hit.get("text", ""), cached=True, meta=hit.get("meta", {}))
                self._trace(base, attempt=0, status="cache_hit", cache_key=key, prompt=prompt, response=result.text)
                return result
            self.usage.add(node, cache_misses=1)

        attempt_no = 0

        def attempt() -> CallResult:
            nonlocal attempt_no
            attempt_no += 1
            self.limiter.acquire()
            started = time.perf_counter()
            outcome = "error"
            try:
                self.usage.add(node, llm_calls=1)
                result = fn()
                outcome = "ok"
            except Exception as exc:
                info = classify_error(exc)
                outcome = info.kind
                self.usage.failure(node, info.kind)
                self._trace(
                    base,
                    attempt=attempt_no,
                    status="error",
                    error_kind=info.kind,
                    http_status=info.status,
                    error=self._describe(exc),
                    latency_s=_seconds(time.perf_counter() - started),
                    cache_key=key,
                    prompt=prompt,
                )
                raise
            finally:
                self.limiter.release(outcome)
            latency = time.perf_counter() - started
            cost = self.prices.cost(self.settings.name, result.tokens_in, result.tokens_out) if self.prices else None
            self.usage.add(node, ok=1, tokens_in=result.tokens_in, tokens_out=result.tokens_out)
            self.usage.add_cost(cost)
            self._trace(
                base,
                attempt=attempt_no,
                status="ok",
                latency_s=_seconds(latency),
                tokens_in=result.tokens_in,
                tokens_out=result.tokens_out,
                cost_usd=cost,
                cache_key=key,
                prompt=prompt,
                response=result.text,
            )
            return result

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.settings.max_attempts)
            | getattr(tenacity, "stop_before_delay", tenacity.stop_after_delay)(self.settings.request_budget_s),
            retry=tenacity.retry_if_exception(lambda e: classify_error(e).retryable),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=lambda state: self.usage.add(node, retries=1),
            reraise=True,
        )
        try:
            result = retrying(attempt)
        except Exception as exc:
            info = classify_error(exc)
            self.usage.add(node, failed_requests=1)
            message = (
                f"LLM {node} request {index} (round {round}) failed after {attempt_no} attempt(s): "
                f"{info.kind}{f' (HTTP {info.status})' if info.status else ''}: {self._describe(exc)}"
            )
            if info.status in (401, 403):
                raise InputError(
                    f"the LLM endpoint rejected the API key (HTTP {info.status}); check ${self.settings.api_key_env}"
                ) from None
            if info.status == 404:
                raise InputError(
                    f"the LLM endpoint does not know model {self.settings.model!r} or path (HTTP 404); check --llm/--base-url"
                ) from None
            raise LLMError(message) from None
        if key is not None and self.cache is not None:
            self.cache.put(key, {"value": result.value, "text": result.text, "meta": result.meta})
        return result

    # -- helpers ---------------------------------------------------------------------------------------
    def _describe(self, exc: BaseException) -> str:
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        return self.redactor(text[:500])

    def _trace(self, base: dict[str, Any], **fields: Any) -> None:
        if self.trace is not None:
            self.trace.write({**base, **fields})

    def _wait(self, state: Any) -> float:
        """Seconds before the next attempt: the server's hint when given (plus ≤10 % jitter), a short
        jittered pause after a malformed reply, else exponential backoff with full jitter."""
        exc = state.outcome.exception() if state.outcome is not None else None
        info = classify_error(exc) if exc is not None else ErrorInfo("error", True)
        s = self.settings
        if info.retry_after is not None:
            hint = min(info.retry_after, s.max_retry_after_s)
            return hint + self.rng.uniform(0, 0.1 * max(hint, s.backoff_s * 0.1))
        if info.kind in ("malformed", "truncated"):
            return self.rng.uniform(0, 0.25 * s.backoff_s)
        cap = min(s.max_backoff_s, s.backoff_s * 2 ** (state.attempt_number - 1))
        return self.rng.uniform(0.5 * cap, cap) if info.kind == "rate_limited" else self.rng.uniform(0, cap)

    def _sleep(self, seconds: float) -> None:
        self.usage.add_wait(seconds)
        self.sleep(seconds)
