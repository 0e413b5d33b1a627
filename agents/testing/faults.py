"""Fault plans of the scripted OpenAI-compatible test server: which faults it injects, drawn per request
from a seeded RNG or scripted in order (:data:`FAULT_KINDS` lists them; the server module's docstring says
what each one does on the wire)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FAULT_KINDS", "FaultPlan"]

FAULT_KINDS: tuple[str, ...] = (
    "rate_limit",
    "server_error",
    "connection_reset",
    "slow",
    "malformed_json",
    "missing_fields",
    "schema_violation",
    "truncated",
)


@dataclass
class FaultPlan:
    """Which faults the server injects.

    Attributes:
        rate: probability in [0, 1] that a request (after the script is used up) gets a fault.
        kinds: the faults drawn from, uniformly (subset of :data:`FAULT_KINDS`).
        script: faults (or ``"ok"``) served to the first requests, in order, before ``rate`` applies.
        seed: seed of the fault RNG (the draw sequence is deterministic; which request gets which draw
            depends on arrival order under concurrency).
        retry_after: ``Retry-After`` header value in whole seconds for ``rate_limit``.
        slow_s: delay in seconds for ``slow`` (make it longer than the client timeout).
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    script: list[str] = field(default_factory=list)
    seed: int = 0
    retry_after: int = 1
    slow_s: float = 3.0

    def __post_init__(self) -> None:
        unknown = [k for k in (*self.kinds, *self.script) if k not in FAULT_KINDS and k != "ok"]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be in [0, 1], got {self.rate}")
