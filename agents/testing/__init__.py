"""synalign.agents.testing: LLM test tooling, a scripted OpenAI-compatible server with injectable faults.

- :class:`OpenAITestServer` — the HTTP server (:mod:`~synalign.agents.testing.openai_server`; also
  ``python -m synalign.agents.testing.openai_server``);
- :class:`FaultPlan`, :data:`FAULT_KINDS` — which faults it injects (:mod:`~synalign.agents.testing.faults`);
- :func:`scripted_reply` — its deterministic replies (:mod:`~synalign.agents.testing.replies`).

Standard library only. The names are imported on first use, so that ``python -m
synalign.agents.testing.openai_server`` runs a module the package has not imported yet.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["FAULT_KINDS", "FaultPlan", "OpenAITestServer", "scripted_reply"]

_WHERE = {
    "FAULT_KINDS": "faults",
    "FaultPlan": "faults",
    "OpenAITestServer": "openai_server",
    "scripted_reply": "replies",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"synalign.agents.testing.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'synalign.agents.testing' has no attribute {name!r}")
