"""The SynAlign graph for LangGraph Studio / ``langgraph dev`` (``langgraph.json`` exposes :data:`graph`).

The loop's nodes need a :class:`~synalign.graphs.context.SynAlignContext` (real examples and their embeddings,
the embedder, the backend), which no HTTP request can carry. This graph's context is a JSON-serialisable
:class:`StudioConfig` instead (the run's ``context`` in the LangGraph API; Studio shows it as a form): every
:class:`~synalign.config.RunConfig` field, each with a default, so a run with an empty input and an empty
context runs on the bundled SST-2 demo with the EDA backend (no LLM, no setup). Each node turns that config
into the real context, built once per (thread, config) with :func:`~synalign.graphs.runner.make_context` and
kept in this process (never in the state or a checkpoint: it holds the embedder and the backend).

Same nodes, same edges, same state as :func:`~synalign.graphs.graph.build_graph`; the server's checkpointer
holds the state. ``finish`` also writes the usual outputs (``synthetic.jsonl``, ``report.html``,
``summary.json``, ...) to ``out`` (default ``runs/studio/<thread id>`` under the server's working directory).
A thread is one run: a new run on a finished thread continues the loop for more rounds (each run stops again
when its last round meets the target or a budget); to change the data or the seed, start a new thread.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime
from pydantic import Field

import synalign
from synalign.config import RunConfig
from synalign.graphs import nodes
from synalign.graphs.context import SynAlignContext
from synalign.graphs.graph import build_graph
from synalign.graphs.samplestore import require_store, thread_namespace, thread_of
from synalign.graphs.state import SynAlignState
from synalign.runspecs import LLMText

__all__ = ["DEMO_DATA", "StudioConfig", "build_studio_graph", "context_for", "graph"]

DEMO_DATA = Path(synalign.__file__).resolve().parent / "data" / "sst2-demo"
"""The bundled real SST-2 sample (800 train / 872 test), the default ``data``."""

_CACHE_SIZE = 4
"""Contexts kept at once (one per recent thread); the oldest is closed (its backend stopped) when a fifth
thread runs."""


class StudioConfig(RunConfig):
    """The run's configuration as a LangGraph Studio user passes it (the run's ``context``).

    Every :class:`~synalign.config.RunConfig` field, with the same meaning, and defaults that need no setup:
    ``data`` the bundled SST-2 demo, ``llm`` ``"eda"`` (no language model), ``out`` ``runs/studio/<thread
    id>``. E.g. ``{"llm": "local", "max_rounds": 2}`` or ``{"data": "my.jsonl", "llm": "openai:gpt-4o-mini"}``.
    """

    data: Path = Field(default=DEMO_DATA, description="Real data: JSONL/CSV/Parquet file or a directory "
                       "with train/test splits (default: the bundled SST-2 demo).")
    out: Path | None = Field(default=None, description="Where finish writes the outputs (default: "
                             "runs/studio/<thread id> under the server's working directory).")
    llm: LLMText = Field(default="eda", validate_default=True, title="Llm",
                         description="Backend: 'eda' (no LLM, the default here), 'local' "
                         "(embedded Gemma 3 270M via llama.cpp), 'local:PATH.gguf' or 'openai:MODEL' (any "
                         "OpenAI-compatible server, with base_url).")
    write_outputs: bool = Field(default=True, description="finish writes synthetic.jsonl, pool.parquet, "
                                "metrics.json, report.html, summary.json ... to out.")

    def run_config(self, thread_id: str | None) -> RunConfig:
        """The :class:`~synalign.config.RunConfig` of this config on thread ``thread_id`` (``out`` resolved)."""
        out = self.out or Path("runs") / "studio" / (thread_id or "no-thread")
        fields = self.model_dump(exclude={"out", "write_outputs"})
        return RunConfig.model_validate({**fields, "out": out})


_contexts: OrderedDict[tuple[str, str], SynAlignContext] = OrderedDict()
_lock = threading.Lock()
_run_started: dict[str, float] = {}
"""When each run in flight started (its first node), by run id: ``summary.json``'s ``wall_seconds``."""


def _close(ctx: SynAlignContext) -> None:
    with contextlib.suppress(Exception):  # closing is best effort: never hide the error that is in flight
        ctx.backend.close()
    with contextlib.suppress(Exception):
        ctx.embedder.close()


@atexit.register
def _close_all() -> None:
    with _lock:
        while _contexts:
            _close(_contexts.popitem()[1])


def context_for(config: StudioConfig | dict[str, Any] | None, thread_id: str | None) -> SynAlignContext:
    """The :class:`SynAlignContext` of ``config`` on ``thread_id``: built on first use (the data loaded and
    embedded, the embedding cache used, the backend built), then reused by every node of that thread's runs.

    Raises:
        InputError: bad data or options (see :func:`~synalign.graphs.runner.make_context`).
    """
    from synalign.graphs.runner import make_context

    studio = config if isinstance(config, StudioConfig) else StudioConfig.model_validate(config or {})
    run_config = studio.run_config(thread_id)
    key = (thread_id or "", run_config.model_dump_json())
    with _lock:  # one build at a time: two nodes of one thread never build it twice
        ctx = _contexts.get(key)
        if ctx is not None:
            _contexts.move_to_end(key)
            return ctx
        if studio.write_outputs and run_config.out is not None:  # never None: run_config resolves it
            run_config.out.mkdir(parents=True, exist_ok=True)
        ctx = make_context(run_config)
        ctx.prune_alignments = False  # the server keeps every checkpoint (time travel): keep every alignment
        _contexts[key] = ctx
        while len(_contexts) > _CACHE_SIZE:
            _close(_contexts.popitem(last=False)[1])
        return ctx


def _write_outputs(
    ctx: SynAlignContext, state: SynAlignState, update: dict[str, Any], wall: float, runtime: Runtime[Any]
) -> None:
    from synalign.artifacts.rundir import RunDir
    from synalign.graphs.runner import write_outputs

    RunDir(ctx.require_run_dir()).write_config(ctx.config)
    write_outputs(
        ctx, {**state, **update}, wall, store=require_store(runtime), prefix=thread_namespace(runtime)
    )


def _with_context(node: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """``node`` with its ``runtime.context`` (a :class:`StudioConfig`) replaced by the real context."""

    @functools.wraps(node)
    def studio_node(state: SynAlignState, runtime: Runtime[StudioConfig]) -> dict[str, Any]:
        info = getattr(runtime, "execution_info", None)
        run_id = str(getattr(info, "run_id", None))
        started = _run_started.setdefault(run_id, time.perf_counter())
        studio = runtime.context if isinstance(runtime.context, StudioConfig) else StudioConfig.model_validate(
            runtime.context or {}
        )
        ctx = context_for(studio, thread_of(runtime))
        # Runtime.override keeps the context's type; here the node's StudioConfig is swapped for the real context
        update = node(state, runtime.override(context=ctx))  # type: ignore[arg-type]
        if node is nodes.finish:
            _run_started.pop(run_id, None)
            if studio.write_outputs:
                _write_outputs(ctx, state, update, time.perf_counter() - started, runtime)
        return update

    return studio_node


def build_studio_graph() -> Any:
    """The loop compiled for a LangGraph server: context schema :class:`StudioConfig`, no checkpointer (the
    server brings its own)."""
    return build_graph(context_schema=StudioConfig, wrap_node=_with_context).compile(name="synalign")


graph = build_studio_graph()
"""What ``langgraph.json`` exposes to ``langgraph dev`` / LangGraph Studio."""
