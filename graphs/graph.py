"""The SynAlign LangGraph: prepare → explore → summarize → generate → align → (explore | finish).

``build_graph()`` returns the uncompiled :class:`~langgraph.graph.StateGraph`; compile it with any
checkpointer and a LangGraph store (the samples live there: :mod:`synalign.graphs.samplestore`); its context
is a :class:`SynAlignContext`. ``langgraph.json`` exposes :data:`synalign.graphs.studio.graph` to LangGraph
Studio / ``langgraph dev``: the same loop, compiled, with a JSON config as its context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph

from synalign.graphs import nodes
from synalign.graphs.context import SynAlignContext
from synalign.graphs.state import SynAlignState

__all__ = ["build_graph"]


def build_graph(
    *, context_schema: type[Any] = SynAlignContext, wrap_node: Callable[[Callable[..., Any]], Any] | None = None
) -> StateGraph[SynAlignState, Any]:
    """The loop as an uncompiled ``StateGraph[SynAlignState, SynAlignContext]``.

    Routing after ``align``: to ``finish`` (then END) when the accepted set's MMD² to the real set is at most
    the target or a budget is spent (:func:`synalign.graphs.nodes.route`), else back to ``explore``.

    Args:
        context_schema, wrap_node: for a host that passes another context (LangGraph Studio,
            :mod:`synalign.graphs.studio`): the graph's context schema, and ``wrap_node(node)`` is added in
            place of each node (it must turn that context into a :class:`SynAlignContext`). Default: the
            nodes as they are, with a :class:`SynAlignContext`.
    """
    wrap = wrap_node or (lambda node: node)
    builder = StateGraph(SynAlignState, context_schema=context_schema)
    builder.add_node("prepare", wrap(nodes.prepare))
    builder.add_node("explore", wrap(nodes.explore))
    builder.add_node("summarize", wrap(nodes.summarize))
    builder.add_node("generate", wrap(nodes.generate))
    builder.add_node("align", wrap(nodes.align))
    builder.add_node("finish", wrap(nodes.finish))
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "explore")
    builder.add_edge("explore", "summarize")
    builder.add_edge("summarize", "generate")
    builder.add_edge("generate", "align")
    builder.add_conditional_edges("align", nodes.route, {"explore": "explore", "finish": "finish"})
    builder.add_edge("finish", END)
    return builder
