"""synalign.agents: the LLM-facing parts of SynAlign stage 2 (Ren et al., WWW 2025, §3.2).

- :func:`build_backend` — the run's backend: LLM (``--llm openai:MODEL``) or offline;
- :class:`LLMSummarizer` — attribute summariser, a LangChain chat model with structured output;
- :class:`SampleGenerator` / :class:`DSPyGenerator` — the DSPy generator module and its loop adapter;
- :class:`LLMRunner` (:mod:`~synalign.agents.runner`) — cache, retries, adaptive concurrency, usage, trace;
  :class:`LLMSettings` (:mod:`~synalign.agents.settings`) — endpoint, retry and ``SYNALIGN_LLM_*`` settings;
  :class:`LLMError` (:mod:`~synalign.agents.errors`) — a request that failed after every attempt;
- :func:`format_trace` — readable LLM trace of a run (``synalign trace RUN_DIR``);
- :mod:`synalign.agents.testing` — a scripted OpenAI-compatible test server with injectable faults.

Heavy frameworks (DSPy, LangChain) are imported on first use of the names that need them.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

# The one place this is set. LiteLLM (under DSPy, which the generator and ``synalign optimize`` use) reads it
# once, at import, and otherwise fetches its model cost map from GitHub: a network request in every process,
# and a stall where there is no network. This package runs before any ``synalign.agents.*`` module, so anything
# that imports DSPy, LiteLLM or LangChain-OpenAI goes through it first: modules here, and modules above this
# floor that import ``synalign.agents`` (``synalign.evals.optimize``) before those frameworks.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__all__ = [
    "build_backend",
    "build_llm_backend",
    "LLMSettings",
    "LLMRunner",
    "LLMError",
    "LLMSummarizer",
    "SampleGenerator",
    "DSPyGenerator",
    "filter_texts",
    "format_trace",
    "read_trace",
    "Redactor",
    "ResponseCache",
    "to_signature",
    "output_model",
    "to_chat_prompt",
    "save_optimized",
    "load_optimized",
]

_WHERE = {
    "build_backend": "backend",
    "build_llm_backend": "backend",
    "LLMSettings": "settings",
    "LLMRunner": "runner",
    "LLMError": "errors",
    "LLMSummarizer": "summarizer",
    "SampleGenerator": "generator",
    "DSPyGenerator": "generator",
    "filter_texts": "generator",
    "format_trace": "trace",
    "read_trace": "trace",
    "Redactor": "trace",
    "ResponseCache": "cache",
    "to_signature": "specs",
    "output_model": "specs",
    "to_chat_prompt": "specs",
    "save_optimized": "specs",
    "load_optimized": "specs",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"synalign.agents.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'synalign.agents' has no attribute {name!r}")
