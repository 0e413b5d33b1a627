"""LangGraph wiring of the SynAlign loop (state, context, nodes, graph, runner).

Quick start::

    from synalign import RunConfig
    from synalign.graphs import run

    result = run(RunConfig(data="synalign/data/sst2-demo", out="runs/demo"))
    print(result.summary.final_mmd2, result.outputs["synthetic.jsonl"])
"""

from __future__ import annotations

from synalign.graphs.context import SynAlignContext
from synalign.graphs.graph import build_graph
from synalign.graphs.runner import RunResult, make_context, run
from synalign.graphs.samplestore import load_pool, namespace_for
from synalign.graphs.state import SynAlignState

__all__ = [
    "build_graph", "run", "make_context", "RunResult", "SynAlignState", "SynAlignContext", "load_pool", "namespace_for",
]
