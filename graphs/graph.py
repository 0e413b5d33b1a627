"""The SynAlign LangGraph: prepare → explore → summarize → generate → align → (explore | finish).

``build_graph()`` returns the uncompiled :class:`~langgraph.graph.StateGraph`; compile it with any
checkpointer. ``graph`` (compiled, no checkpointer) is what ``langgraph.json`` exposes to LangGraph
Studio / ``langgraph dev``.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from synalign.graphs import nodes
from synalign.graphs.context import SynAlignContext
from synalign.graphs.state import SynAlignState

__all__ = ["build_graph", "graph"]


def build_graph() -> StateGraph:
    """The loop as an uncompiled ``StateGraph[SynAlignState, SynAlignContext]``.

    Routing after ``align``: to ``finish`` (then END) when the accepted set's MMD² to the real set is at most
    the target or a budget is spent (:func:`synalign.graphs.nodes.route`), else back to ``explore``.
    """
    builder = StateGraph(SynAlignState, context_schema=SynAlignContext)
    builder.add_node("prepare", nodes.prepare)
    builder.add_node("explore", nodes.explore)
    builder.add_node("summarize", nodes.summarize)
    builder.add_node("generate", nodes.generate)
    builder.add_node("align", nodes.align)
    builder.add_node("finish", nodes.finish)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "explore")
    builder.add_edge("explore", "summarize")
    builder.add_edge("summarize", "generate")
    builder.add_edge("generate", "align")
    builder.add_conditional_edges("align", nodes.route, {"explore": "explore", "finish": "finish"})
    builder.add_edge("finish", END)
    return builder


graph = build_graph().compile()
