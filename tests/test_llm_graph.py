"""The whole SynAlign loop with the LLM backend, driven by `synalign run --llm ... --base-url ...` against the
local OpenAI-compatible test server: faults, cache, trace, key hygiene, and `synalign trace`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synalign.agents.testing import FaultPlan, OpenAITestServer
from synalign.app.cli import app

KEY_ENV = "SYNALIGN_GRAPH_TEST_KEY"
KEY = "sk-graph-test-key-8d1e4b7c2a90"
ROUNDS, CLUSTERS, SAMPLES = 2, 1, 6


@pytest.fixture(autouse=True)
def _llm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("SYNALIGN_LLM_TIMEOUT", "1")  # the server's slow replies take 1.5 s
    monkeypatch.setenv("SYNALIGN_LLM_BACKOFF", "0.05")


def _run(data: Path, out: Path, server: OpenAITestServer, *extra: str):  # noqa: ANN202
    args = [
        "run", "--data", str(data), "--out", str(out), "--llm", "openai:test-model", "--base-url", server.url,
        "--api-key-env", KEY_ENV, "--rounds", str(ROUNDS), "--clusters-per-label", str(CLUSTERS),
        "--cluster-size", "4", "--samples-per-cluster", str(SAMPLES), "--target", "0", "--seed", "5", *extra,
    ]
    return CliRunner().invoke(app, args)


def test_llm_loop_with_faults_then_cached_repeat(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNALIGN_CACHE_DIR", str(tmp_path / "cache"))  # LLM response cache of these runs only
    plan = FaultPlan(rate=0.2, seed=2, slow_s=1.5, retry_after=1)
    with OpenAITestServer(api_key=KEY, faults=plan) as server:
        first = _run(small_data, tmp_path / "run1", server)
        assert first.exit_code == 0, first.output
        calls_first = server.completions()
        faults = {k: v for k, v in server.stats.items() if k != "ok"}

        second = _run(small_data, tmp_path / "run2", server)
        assert second.exit_code == 0, second.output
        calls_second = server.completions() - calls_first

    run1, run2 = tmp_path / "run1", tmp_path / "run2"
    summary = json.loads((run1 / "summary.json").read_text())
    usage = summary["usage"]
    # every requested sample arrived despite the faults, and the failures are reported
    backend = summary["backend"]
    assert {k: backend[k] for k in ("name", "is_llm", "note", "kind", "model", "prompt_style")} == {
        "name": "openai:test-model", "is_llm": True, "note": None, "kind": "openai", "model": "test-model",
        "prompt_style": "chat",
    }
    assert summary["generated"] == ROUNDS * 2 * CLUSTERS * SAMPLES
    assert usage["failed_requests"] == 0 and usage["shortfall"] == 0
    assert sum(faults.values()) >= 1 and usage["failures"] == sum(faults.values())
    assert usage["retries"] == usage["failures"] and usage["llm_calls"] == calls_first
    assert usage["by_node"]["summarize"]["requests"] == ROUNDS * 2 * CLUSTERS

    # outputs carry LLM attribute summaries and LLM-generated texts
    records = [json.loads(line) for line in (run1 / "synthetic.jsonl").read_text().splitlines()]
    assert records and all(r["backend"] == "openai:test-model" for r in records)
    attributes = [json.loads(line) for line in (run1 / "attributes.jsonl").read_text().splitlines()]
    assert len(attributes) == ROUNDS * 2 * CLUSTERS
    assert all("consistent with the label" in json.dumps(a) for a in attributes)  # the server's summaries

    trace = [json.loads(line) for line in (run1 / "llm_trace.jsonl").read_text().splitlines()]
    assert {r["node"] for r in trace} == {"summarize", "generate"} and {r["round"] for r in trace} == {1, 2}
    assert sum(r["status"] == "error" for r in trace) == usage["failures"]
    generated_texts = {
        t for r in trace if r["node"] == "generate" and r["status"] == "ok" for t in _texts(r["response"])
    }
    assert {r["text"] for r in records} <= generated_texts

    # the repeat is served from the cache: no call reaches the server, same data comes out
    assert calls_second == 0
    usage2 = json.loads((run2 / "summary.json").read_text())["usage"]
    assert usage2["llm_calls"] == 0 and usage2["cache_hit_rate"] == 1.0
    records2 = [json.loads(line) for line in (run2 / "synthetic.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records2] == [r["text"] for r in records]

    # the API key is in no file the runs wrote (run directories and the cache)
    for root in (run1, run2, tmp_path / "cache"):
        for path in root.rglob("*"):
            if path.is_file():
                assert KEY.encode() not in path.read_bytes(), path

    shown = CliRunner().invoke(app, ["trace", str(run1), "--node", "generate", "--round", "2"])
    assert shown.exit_code == 0, shown.output
    assert "round 2 generate #0 attempt" in shown.output and "round 1 " not in shown.output
    assert "[[ ## texts ## ]]" in shown.output


def _texts(response: str) -> list[str]:
    body = response.split("[[ ## texts ## ]]", 1)[1].split("[[ ## completed ## ]]", 1)[0]
    return [" ".join(t.split()) for t in json.loads(body.strip())]
