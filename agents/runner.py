"""The LLM runner: every LLM request of a run, whatever the framework (LangChain summariser, DSPy generator).

Every request goes through one :class:`LLMRunner`:

1. **Response cache** (:class:`~synalign.agents.cache.ResponseCache`), keyed by the full request; a hit
   issues no call.
2. **Bounded, adaptive concurrency** (:class:`~synalign.agents.limiter.AdaptiveLimiter`): at most
   ``max_concurrency`` calls in flight; additive-increase / multiplicative-decrease (AIMD, as in TCP
   congestion control, Jacobson 1988) halves the limit after ``rate_limit_window`` consecutive HTTP 429s
   and raises it by one after ``2 × limit`` consecutive successes, never above the configured maximum.
3. **Retries** (tenacity) on 429, 5xx, timeouts, connection errors and malformed replies (bad JSON,
   missing fields, schema violations, truncated output), with exponential backoff and full jitter;
   a ``Retry-After`` / ``retry-after-ms`` hint from the server is honoured (waited at least that long,
   capped at ``max_retry_after_s``). Client errors (400, 401, 403, 404, 422) are not retried. The clients'
   own retries are switched off (``max_retries=0``, ``num_retries=0``) so that this layer counts them all;
   which errors are retried is :func:`~synalign.agents.errors.classify_error`'s call.
4. **Usage counters** (:class:`~synalign.agents.usage.UsageCounters`): calls, failures by kind, retries,
   tokens in/out, cost from an optional price table (:class:`~synalign.agents.pricing.PriceTable`), cache
   hits; the run summary reports them.
5. **Trace**: each attempt and each cache hit is appended to the run's JSONL trace, redacted.

A request that still fails after ``max_attempts`` raises :class:`~synalign.agents.errors.LLMError` (never
silently dropped).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, TypeVar

from synalign.agents.cache import ResponseCache, cache_key
from synalign.agents.errors import ErrorInfo, LLMError, classify_error
from synalign.agents.limiter import AdaptiveLimiter
from synalign.agents.pricing import PriceTable
from synalign.agents.settings import LLMSettings
from synalign.agents.trace import Redactor, TraceWriter
from synalign.agents.usage import UsageCounters
from synalign.errors import InputError

__all__ = ["CallResult", "LLMRunner"]

T = TypeVar("T")
R = TypeVar("R")


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

    def map(
        self, fn: Callable[[int, T], R], items: Sequence[T], on_done: Callable[[int, R], None] | None = None
    ) -> list[R]:
        """``[fn(i, item) for i, item in enumerate(items)]`` on up to ``max_concurrency`` threads, in
        order. The first exception (by item order) is re-raised after every item has finished.

        ``on_done(i, result)`` is called in the calling thread as each item succeeds (in completion order)."""
        done = on_done or (lambda i, result: None)
        if len(items) <= 1 or self.settings.max_concurrency == 1:
            results = []
            for i, item in enumerate(items):
                results.append(fn(i, item))
                done(i, results[-1])
            return results
        with ThreadPoolExecutor(max_workers=min(self.settings.max_concurrency, len(items))) as pool:
            futures = [pool.submit(fn, i, item) for i, item in enumerate(items)]
            index = {future: i for i, future in enumerate(futures)}
            for future in as_completed(futures):
                if future.exception() is None:
                    done(index[future], future.result())
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
                    f"the LLM endpoint does not know model {self.settings.model!r} or path (HTTP 404); "
                    "check `llm`/`base_url`"
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
