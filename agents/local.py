"""``--llm local``: the embedded local LM (or any GGUF) behind the same client path as a remote endpoint.

The backend starts ``llama-server`` (:class:`synalign.agents.llamacpp.LocalServer`; built once and cached, see
:func:`synalign.agents.llamacpp.build_server`), points an OpenAI-compatible ``/v1/completions`` client at it and builds
the usual LLM backend with base-model prompting (:mod:`synalign.agents.completion`). Concurrency follows
the server: never more requests in flight than its ``total_slots``. ``Backend.close`` stops the server; the
runner calls it when the run ends, fails or is interrupted, and the server dies with its parent otherwise.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from synalign.agents.settings import LLMSettings
from synalign.backends import Backend
from synalign.config import RunConfig

__all__ = ["CONTEXT_PER_SLOT", "build_local_backend", "ensure_server_binary"]

_log = logging.getLogger("synalign.agents")


def _stderr(line: str) -> None:
    print(f"synalign: {line}", file=sys.stderr, flush=True)


def ensure_server_binary(log: Callable[[str], None] = _stderr) -> Path:
    """The cached ``llama-server``, built first if needed (once; progress lines go to ``log``).

    Raises:
        SynalignError: the build failed or cannot run here (no cmake / compiler).
    """
    from synalign.agents.llamacpp import build_server

    return build_server(log=log)  # returns the cached binary at once when it exists


CONTEXT_PER_SLOT = 8192
"""Context tokens per server slot. Eight demonstrations of long texts (Amazon product reviews, ~350 tokens each)
make prompts of ~2,900 tokens, which the earlier 2,048 refused; Gemma 3 270M reads 32K, and the larger KV cache
costs memory (tens of MB for this model), not time."""


def build_local_backend(
    config: RunConfig,
    run_dir: Path | None,
    *,
    reference: Mapping[str, Sequence[str]] | None = None,
    label_names: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Backend:
    """The ``--llm local[:PATH.gguf]`` backend with its server running.

    ``Backend.info`` names the model (``model``, ``gguf``, ``gguf_sha256``), the server (threads, slots,
    context, startup seconds) and the Gemma terms note for the embedded model; the cache key of every call
    holds the GGUF's sha256, never the server's random port, so a resumed run hits the cache.

    Raises:
        InputError: a missing or non-GGUF model file (``--base-url`` with ``--llm local`` is refused by
            :class:`~synalign.config.RunConfig` already).
        SynalignError: the server binary cannot be built or the server does not start.
    """
    from synalign.agents.backend import build_llm_backend
    from synalign.agents.llamacpp import GEMMA_TERMS_NOTE, LocalServer, resolve_model
    from synalign.agents.llamacpp.model import file_sha256

    model_path = resolve_model(config.llm.model or None)
    sha256 = file_sha256(model_path)
    settings = LLMSettings.from_config(config)
    binary = ensure_server_binary()
    server = LocalServer.start(
        model_path, binary=binary, threads=settings.local_threads, slots=settings.local_slots,
        ctx_size=CONTEXT_PER_SLOT * max(1, settings.local_slots),
    )
    try:
        # concurrency then follows the server's /props slots, as for any llama.cpp endpoint (build_llm_backend)
        settings = replace(settings, base_url=server.base_url)
        backend = build_llm_backend(
            config, run_dir, settings=settings, reference=reference, identity={"gguf_sha256": sha256}, sleep=sleep,
            label_names=label_names,
        )
    except BaseException:
        server.stop()
        raise
    backend.info.update(
        base_url=None,
        gguf=str(model_path),
        gguf_sha256=sha256,
        server={"binary": str(binary), "url": server.base_url.removesuffix("/v1"), "threads": server.threads,
                "slots": server.total_slots, "n_ctx": server.n_ctx, "startup_s": round(server.startup_s, 2)},
        terms=GEMMA_TERMS_NOTE if not config.llm.model else None,
    )
    close_checker = backend.close

    def close() -> None:
        close_checker()
        server.stop()

    backend.close = close
    _log.info("local LM %s served by llama-server pid %d (%d slot(s))", settings.model, server.pid, server.total_slots)
    return backend
