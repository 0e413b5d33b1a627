"""Usage counters of a run's LLM calls (calls, failures by kind, retries, tokens, cost, cache hits, backoff
waits, dropped texts), thread-safe, reported in the run summary."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from synalign.agents.pricing import PriceTable

if TYPE_CHECKING:
    from synalign.agents.limiter import AdaptiveLimiter

__all__ = ["UsageCounters", "merge_usage"]


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
        """Add ``counts`` (``llm_calls=1``, ``tokens_in=...``) to the totals and to ``node``'s."""
        with self._lock:
            self.counts.update(counts)
            self.by_node.setdefault(node, Counter()).update(counts)

    def failure(self, node: str, kind: str) -> None:
        """Count one failed attempt of ``node`` with error kind ``kind``."""
        with self._lock:
            self.failures_by_kind[kind] += 1
            self.counts["failures"] += 1
            self.by_node.setdefault(node, Counter())["failures"] += 1

    def add_cost(self, cost: float | None) -> None:
        """Add the cost of one call in USD (None = unpriced, ignored)."""
        if cost is None:
            return
        with self._lock:
            self.cost_usd = (self.cost_usd or 0.0) + cost

    def add_wait(self, seconds: float) -> None:
        """Add a backoff wait."""
        with self._lock:
            self.waited_s += seconds

    def add_dropped(self, dropped: dict[str, int]) -> None:
        """Add texts dropped by the generator's filters, by reason."""
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


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, bool) or isinstance(right, bool):
        return right
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return left + right
    if right is None and isinstance(left, (int, float)):
        return left  # e.g. a process that made no priced call: keep the total
    if isinstance(left, dict) and isinstance(right, dict):
        merged = dict(left)
        for key, value in right.items():
            merged[key] = _add(merged[key], value) if key in merged else value
        return merged
    return right


def merge_usage(snapshots: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several :meth:`UsageCounters.snapshot` dicts (processes of one run, endpoints of one generator) as one:
    numbers add up, nested counters add up key by key, ``cache_hit_rate`` is recomputed from the summed hits and
    misses, and anything else (names, ``concurrency``) is the last snapshot's."""
    total: dict[str, Any] = {}
    for snapshot in snapshots:
        usage = dict(snapshot)
        usage.pop("cache_hit_rate", None)
        concurrency = usage.pop("concurrency", None)
        total = _add(total, usage)
        if concurrency is not None:
            total["concurrency"] = concurrency
    if "cache_hits" in total:
        looked_up = total.get("cache_hits", 0) + total.get("cache_misses", 0)
        total["cache_hit_rate"] = total["cache_hits"] / looked_up if looked_up else None
    return total
