"""The graph ``langgraph.json`` exposes runs from LangGraph Studio: a JSON config in the run's context, defaults
that need no setup, and a real run through the in-memory LangGraph API server (``langgraph dev``)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synalign.graphs.graph import build_graph
from synalign.graphs.studio import DEMO_DATA, StudioConfig, graph

ROOT = Path(__file__).resolve().parents[1]

# Small enough for one short run; data, llm and out are left to their Studio defaults.
SMALL = {"max_rounds": 1, "max_real": 200, "clusters_per_label": 1, "cluster_size": 4, "samples_per_cluster": 6,
         "allow_near_copies": True}  # EDA: near-copies kept, half of each pool accepted


def test_langgraph_json_exposes_the_studio_graph() -> None:
    spec = json.loads((ROOT / "langgraph.json").read_text(encoding="utf-8"))
    assert spec["graphs"] == {"synalign": "synalign.graphs.studio:graph"}


def test_defaults_need_no_setup() -> None:
    config = StudioConfig()
    assert config.data == DEMO_DATA and (DEMO_DATA / "train.jsonl").is_file()
    assert config.llm == "eda" and config.backend_kind == "eda"
    run_config = config.run_config("t1")
    assert run_config.out == Path("runs/studio/t1") and run_config.data == DEMO_DATA
    assert StudioConfig(out="elsewhere").run_config("t1").out == Path("elsewhere")
    # the JSON schema Studio renders as a form: every key optional
    schema = graph.get_context_jsonschema()
    assert {"data", "llm", "max_rounds", "out", "target"} <= set(schema["properties"])
    assert not schema.get("required")


def test_same_loop_as_build_graph() -> None:
    studio, plain = graph.get_graph(), build_graph().compile().get_graph()
    assert sorted(studio.nodes) == sorted(plain.nodes)
    assert sorted((e.source, e.target, e.conditional) for e in studio.edges) == sorted(
        (e.source, e.target, e.conditional) for e in plain.edges
    )


def test_the_graph_embeds_in_an_app_without_a_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21 item 4: the graph as a node of a user's app. Without a context: one line naming what to pass
    (not an AttributeError); with make_context(RunConfig(data=...)) no ``out`` is needed and nothing is
    written; the Studio graph is a drop-in subgraph whose context is a plain dict."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.store.memory import InMemoryStore

    from synalign.config import RunConfig
    from synalign.errors import InputError
    from synalign.graphs import load_pool, make_context, namespace_for
    from synalign.graphs.state import SynAlignState

    monkeypatch.chdir(tmp_path)
    store = InMemoryStore()
    plain = build_graph().compile(checkpointer=InMemorySaver(), store=store)
    with pytest.raises(InputError, match=r"got no context: pass context=make_context\(RunConfig"):
        plain.invoke({}, {"configurable": {"thread_id": "t0"}})
    fields = {k: v for k, v in SMALL.items() if k != "max_real"}
    config = RunConfig(data=DEMO_DATA, llm="eda", max_real=200, **fields)
    assert config.out is None
    state = plain.invoke({}, {"configurable": {"thread_id": "t1"}}, context=make_context(config))
    samples, _, accepted = load_pool(store, namespace_for("t1"), state)
    assert len(samples) == 12 and accepted.any() and state["stop_reason"]
    parent = StateGraph(SynAlignState)
    parent.add_node("synalign", graph)  # the Studio graph as a subgraph
    parent.add_edge(START, "synalign")
    parent.add_edge("synalign", END)
    app = parent.compile(checkpointer=InMemorySaver(), store=InMemoryStore())
    out = app.invoke({}, {"configurable": {"thread_id": "p1"}}, context={**SMALL, "write_outputs": False})
    assert out["stop_reason"] and len(out["metrics"]) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written by either
    with pytest.raises(InputError, match="RunConfig.out is required"):
        from synalign.graphs import run

        run(config)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_env() -> dict[str, str]:
    """The test's environment (embedding cache, HF offline) with nothing that phones home."""
    env = dict(os.environ)
    env.update(
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        LANGGRAPH_NO_VERSION_CHECK="true",  # langgraph_api.cli: no PyPI version check
        LANGGRAPH_CLI_NO_ANALYTICS="1",  # langgraph_cli.analytics: no usage report
        HF_HUB_OFFLINE="1",
    )
    return env


@pytest.mark.slow
def test_langgraph_dev_server_runs_the_graph(tmp_path: Path) -> None:
    if sys.version_info < (3, 11):
        pytest.skip("the in-memory LangGraph server needs Python 3.11+")
    import httpx

    assert importlib.util.find_spec("langgraph_api"), 'needs langgraph-cli[inmem]: pip install -e ".[test]"'
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    command = [
        sys.executable, "-m", "langgraph_cli", "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
        "--port", str(port), "--config", str(ROOT / "langgraph.json"),
    ]
    started = time.perf_counter()
    with open(log, "wb") as out:
        # cwd: the server's .langgraph_api/ store and the default runs/studio/<thread> land in tmp_path
        server = subprocess.Popen(
            command, cwd=tmp_path, env=_server_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        with httpx.Client(base_url=base, timeout=300) as client:
            deadline = time.monotonic() + 120
            while True:
                assert server.poll() is None, "server exited:\n" + log.read_text(errors="replace")[-3000:]
                try:
                    if client.get("/ok", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (
                    "server not up in 120 s:\n" + log.read_text(errors="replace")[-3000:]
                )
                time.sleep(0.25)
            ready = time.perf_counter()
            assistant = client.post("/assistants/search", json={"graph_id": "synalign"}).json()[0]
            schemas = client.get(f"/assistants/{assistant['assistant_id']}/schemas").json()
            assert "max_rounds" in schemas["context_schema"]["properties"]

            thread_id = client.post("/threads", json={}).raise_for_status().json()["thread_id"]
            run = {"assistant_id": "synalign", "input": {}, "context": SMALL}
            state = client.post(f"/threads/{thread_id}/runs/wait", json=run).raise_for_status().json()
            runs = client.get(f"/threads/{thread_id}/runs").json()
            assert [r["status"] for r in runs] == ["success"], (state, log.read_text(errors="replace")[-3000:])
            assert state["stop_reason"] == "max_rounds" and state["round"] == 1
            # the state holds references; the samples and the weights are in the server's store
            assert [b["count"] for b in state["sample_batches"]] == [12] and state["alignment"]["accepted"] == 6
            items = client.post("/store/items/search", json={
                "namespace_prefix": ["synalign", thread_id, "samples"], "limit": 10,
            }).raise_for_status().json()["items"]
            assert [i["key"] for i in items] == [state["sample_batches"][0]["key"]]
            samples = items[0]["value"]["samples"]
            assert len(samples) == 12 and all(s["backend"].startswith("offline") for s in samples)  # default: EDA

            out = tmp_path / "runs" / "studio" / thread_id  # the default out, under the server's cwd
            summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
            assert summary["accepted"] == 6 and summary["backend"]["is_llm"] is False
            assert (out / "synthetic.jsonl").is_file() and (out / "report.html").is_file()
            first = time.perf_counter()

            # a second run on the thread continues the loop for one more round (the context is cached)
            state = client.post(f"/threads/{thread_id}/runs/wait", json=run).raise_for_status().json()
            assert state["round"] == 2 and state["stop_reason"] == "max_rounds"
            assert [b["count"] for b in state["sample_batches"]] == [12, 12]
            assert state["alignment"]["count"] == 24 and state["alignment"]["previous"] is not None
            assert [r["status"] for r in client.get(f"/threads/{thread_id}/runs").json()] == ["success"] * 2
            print(
                f"server up {ready - started:.1f} s, first run {first - ready:.1f} s, "
                f"second run {time.perf_counter() - first:.1f} s"
            )
    finally:
        with contextlib.suppress(ProcessLookupError):  # the server's own process group (start_new_session)
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
