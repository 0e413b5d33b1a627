"""Bounded, adaptive concurrency for LLM calls: at most ``limit`` calls in flight, the limit adapting to
rate limiting by additive-increase / multiplicative-decrease (AIMD, as in TCP congestion control, Jacobson
1988)."""

from __future__ import annotations

import logging
import threading

__all__ = ["AdaptiveLimiter"]

_log = logging.getLogger("synalign.agents")


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
