"""Issue 21 §3: progress a user can read. Per-batch embedding progress, per-cluster generation progress (texts,
LLM calls, tokens), align in steps, rich bars with an ETA on a terminal, "waiting N s" only when a step is slow,
whole plain lines elsewhere, the target verdict on the ``done:`` line, ``--extend N``, help at 80 columns, and a
line per ``synalign optimize`` trial."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

FAST = ["--clusters-per-label", "1", "--cluster-size", "4", "--samples-per-cluster", "4", "--rounds", "1"]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synalign.app", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


def _one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("synalign: error: "), proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# -- embedding: per batch -------------------------------------------------------------------------------------

def test_embedding_reports_progress_per_batch_and_cache_hits_at_once(tmp_path: Path, demo_rows: list[dict]) -> None:
    from synalign.embeddings import Embedder

    texts = [r["text"] for r in demo_rows[:50]]
    calls: list[tuple[int, int]] = []
    embedder = Embedder(cache_dir=tmp_path, batch_size=16)
    cold = embedder.encode(texts, on_progress=lambda done, n: calls.append((done, n)))
    assert calls == [(0, 50), (16, 50), (32, 50), (48, 50), (50, 50)]  # a cold cache: every batch
    plain = Embedder(cache_dir=False).model.encode(texts, normalize_embeddings=True)
    assert cold.shape == (50, 384) and abs(cold - plain).max() < 1e-5  # batching by length changes nothing
    calls.clear()
    warm = embedder.encode([*texts[:10], "a text not seen yet"], on_progress=lambda done, n: calls.append((done, n)))
    assert calls == [(10, 11), (11, 11)] and (warm[:10] == cold[:10]).all()


# -- generation: per cluster, with texts, calls and tokens -----------------------------------------------------

def test_llm_requests_report_each_finished_request_in_the_calling_thread(tmp_path: Path) -> None:
    from synalign.agents import LLMRunner, LLMSettings
    from synalign.config import RunConfig

    runner = LLMRunner(LLMSettings.from_config(RunConfig(data=tmp_path, llm="openai:m", max_concurrency=3)))
    seen: list[tuple[int, int, int]] = []

    def work(i: int, item: float) -> int:
        time.sleep(item)
        return i * 10

    out = runner.map(work, [0.15, 0.0, 0.05, 0.0], on_done=lambda i, r: seen.append((i, r, threading.get_ident())))
    assert out == [0, 10, 20, 30]
    assert sorted((i, r) for i, r, _ in seen) == [(0, 0), (1, 10), (2, 20), (3, 30)]
    assert {t for *_, t in seen} == {threading.get_ident()} and seen[-1][0] == 0  # in completion order


def test_generation_progress_counts_texts_calls_and_tokens_per_cluster(
    tmp_path: Path, demo_rows: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    from synalign.agents import LLMSettings, build_backend
    from synalign.agents.testing import OpenAITestServer
    from synalign.backends import GenerationRequest, SummaryRequest
    from synalign.config import RunConfig
    from synalign.graphs import nodes

    monkeypatch.setenv("SYNALIGN_TEST_PROGRESS_KEY", "sk-progress")
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(nodes, "_emit", lambda node, round_, **payload: events.append({"node": node, **payload}))
    clusters = [(label, [r["text"] for r in demo_rows if r["label"] == label][k * 6:(k + 1) * 6])
                for label in ("negative", "positive") for k in range(2)]
    with OpenAITestServer(api_key="sk-progress") as srv:
        config = RunConfig(data=tmp_path / "unused.jsonl", out=tmp_path / "run", llm="openai:test-model",
                           base_url=srv.url, api_key_env="SYNALIGN_TEST_PROGRESS_KEY", cache_dir=tmp_path / "cache",
                           max_concurrency=2)
        backend = build_backend(config, config.out, settings=LLMSettings.from_config(config, backoff_s=0.01))
        ctx = SimpleNamespace(backend=backend)
        summaries = nodes._map_with_progress(ctx, backend.summarizer.summarize, [
            SummaryRequest(task="Sentiment.", label=label, demonstrations=demos, round=1) for label, demos in clusters
        ], "summarize", 1)
        requests = [GenerationRequest(task="Sentiment.", label=label, attributes=s, demonstrations=demos, n=4, seed=i,
                                      round=1) for i, ((label, demos), s) in enumerate(zip(clusters, summaries))]
        generations = nodes._map_with_progress(ctx, backend.generator.generate, requests, "generate", 1)
        backend.close()
    gen = [e for e in events if e["node"] == "generate"]
    assert [e["done"] for e in gen] == [1, 2, 3] and all(e["total"] == 4 for e in gen)  # the 4th: by generate
    assert [e["texts"] for e in gen] == [4, 8, 12] and sum(len(g.texts) for g in generations) == 16
    calls = [e["calls"] for e in gen]
    tokens = [e["tokens"] for e in gen]
    assert calls == sorted(calls) and calls[0] > 4 and tokens == sorted(tokens) and tokens[0] > 0  # 4 summaries first
    assert [e["done"] for e in events if e["node"] == "summarize"] == [1, 2, 3]
    assert all("texts" not in e for e in events if e["node"] == "summarize")


# -- the terminal: bars, ETA, "waiting N s" only when slow ------------------------------------------------------

def _terminal_progress(max_rounds: int = 2) -> Any:
    from rich.console import Console

    from synalign.app.progress import RoundProgress

    console = Console(file=io.StringIO(), force_terminal=True, width=140)
    return RoundProgress(max_rounds, console=console)


def _render(progress: Any) -> str:
    from rich.console import Console

    out = Console(file=io.StringIO(), width=140, color_system=None)
    out.print(progress.progress.get_renderable())
    return out.file.getvalue()


def test_terminal_shows_a_bar_per_long_step_with_counts_and_an_eta() -> None:
    progress = _terminal_progress()
    assert not progress.plain
    with progress:
        for done in (0, 64, 128):
            progress({"node": "embed", "round": 0, "done": done, "total": 300})
        progress({"node": "run", "round": 0, "max_rounds": 3})  # e.g. --extend raised the budget
        progress({"node": "explore", "round": 1, "done": 1, "total": 1})
        for done in range(4):
            progress({"node": "generate", "round": 1, "done": done, "total": 8, "texts": 16 * done,
                      "calls": 5 * done, "tokens": 4000 * done})
            time.sleep(0.05)
        shown = _render(progress)
        assert "embedding real set" in shown and "128/300" in shown
        assert "round 1/3" in shown and "  generate" in shown and "3/8" in shown
        assert "48 texts, 15 LLM calls, 12.0k tokens" in shown
        generate_line = next(line for line in shown.splitlines() if "  generate" in line)
        assert "-:--:--" not in generate_line and "0:00:0" in generate_line  # elapsed and an ETA
        progress({"node": "generate", "round": 1, "done": 8, "total": 8, "texts": 128})
        for done, phase in ((0, "embedding new texts"), (0.5, "embedding 64/128 new texts")):
            progress({"node": "align", "round": 1, "done": done, "total": 3, "phase": phase})
        shown = _render(progress)
        assert "  align" in shown and "embedding 64/128 new texts" in shown and "  generate" not in shown
        progress({"node": "align", "round": 1, "done": 3, "total": 3, "mmd2": 1e-3, "target": 2e-3})
        assert not any(line.startswith("  align") for line in _render(progress).splitlines())  # round done: bar gone
    assert "waiting" not in _render(progress)


def test_waiting_is_shown_only_when_a_step_is_slower_than_its_own_pace() -> None:
    from rich.progress import Progress

    from synalign.app.progress import slow_wait

    now = [100.0]
    bars = Progress(get_time=lambda: now[0], disable=True)
    task = bars.add_task("generate", total=10, since=now[0])
    now[0] += 20  # the first cluster: 20 s is normal (a model warming up)
    assert slow_wait(bars.tasks[0]) is None
    now[0] += 15
    assert slow_wait(bars.tasks[0]) == pytest.approx(35)  # nothing after 35 s: slower than expected
    bars.update(task, completed=5, since=now[0])  # 7 s per cluster so far
    now[0] += 12
    assert slow_wait(bars.tasks[0]) is None  # a normal step, under 3 × its pace
    now[0] += 10
    assert slow_wait(bars.tasks[0]) == pytest.approx(22)


# -- the done line --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("final", "target", "expected"), [
    (8.2e-3, 2e-3, "target missed (4.1×)"), (1.6e-3, 2e-3, "target met (0.8×)"),
    (2.08e-3, 2e-3, "target missed (1.04×)"), (float("nan"), 2e-3, "target missed (nothing accepted)"),
])
def test_done_line_states_the_target_verdict(final: float, target: float, expected: str) -> None:
    from synalign.app.cli import _target_verdict

    assert _target_verdict({"final_mmd2": final, "target_mmd2": target}) == expected


# -- --extend, the plain lines and the outputs list (two short end-to-end runs) --------------------------------

def test_extend_continues_a_finished_run_without_regenerating(small_data: Path, tmp_path: Path) -> None:
    from synalign.config import RunConfig
    from synalign.graphs import run

    out = tmp_path / "run"
    events: list[dict[str, Any]] = []
    config = RunConfig(data=small_data, out=out, llm="eda", max_rounds=1, clusters_per_label=2, cluster_size=4,
                       samples_per_cluster=4)
    run(config, on_event=events.append)
    generate = [e for e in events if e["node"] == "generate"]
    assert [e["done"] for e in generate] == [0, 1, 2, 3, 4] and [e["texts"] for e in generate[1:]] == [4, 8, 12, 16]
    align = [e for e in events if e["node"] == "align"]
    assert [e["done"] for e in align][0] == 0 and align[-1]["done"] == align[-1]["total"] == 3
    assert {e.get("phase") for e in align} >= {"selection", "held-out check"}
    assert any(str(e.get("phase", "")).startswith("embedding ") and 0 < e["done"] <= 1 for e in align)
    assert events[0]["node"] == "embed" and {"node": "run", "round": 0, "max_rounds": 1} in events
    before = {name: (out / name).read_bytes() for name in ("synthetic.jsonl", "attributes.jsonl", "metrics.json")}
    (out / "llm_trace.jsonl").write_text("", encoding="utf-8")  # as an LLM run leaves it

    proc = _cli("run", "--out", str(out), "--extend", "1")  # stderr is a pipe: plain lines
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [line for line in proc.stderr.splitlines() if line.startswith("round ")]
    assert [s.split(": ")[0] for s in steps] == ["round 2/2"] * 4
    assert steps[2].startswith("round 2/2: generate done, 16 texts")
    done = next(line for line in proc.stderr.splitlines() if line.startswith("done: "))
    assert "; target m" in done and "×)" in done and "two real halves" in done and done.endswith(" s")  # one line
    assert "usage.json" in proc.stdout and "llm_trace.jsonl" in proc.stdout
    assert json.loads((out / "config.json").read_text())["max_rounds"] == 2

    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["generated"] == 32
    import pandas as pd

    pool = pd.read_parquet(out / "pool.parquet")
    first = [json.loads(line) for line in before["synthetic.jsonl"].decode().splitlines()]
    round1 = pool[pool["round"] == 1].set_index("id")
    assert len(round1) == 16 and all(round1.loc[r["id"], "text"] == r["text"] for r in first)  # nothing regenerated
    assert (out / "attributes.jsonl").read_bytes().startswith(before["attributes.jsonl"])
    assert json.loads((out / "metrics.json").read_text())[0] == json.loads(before["metrics.json"])[0]


def test_extend_refusals_are_one_line(tmp_path: Path) -> None:
    _one_line_error(_cli("run", "--out", str(tmp_path), "--extend", "1", "--overwrite"), "--overwrite")
    _one_line_error(_cli("run", "--out", str(tmp_path / "none"), "--extend", "1"), "--extend: no synalign run")
    _one_line_error(_cli("run", "--out", str(tmp_path), "--extend", "0"), "--extend")


# -- help at 80 columns ---------------------------------------------------------------------------------------

def test_help_shows_full_option_names_at_80_columns_and_one_default_style() -> None:
    from typer.testing import CliRunner

    from synalign.app.cli import app
    from synalign.app.options import option_flag
    from synalign.config import RunConfig

    runner = CliRunner()
    text = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "80"}, terminal_width=80).output
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for name in RunConfig.model_fields:
        assert option_flag(name) in text, name
    assert "--clusters-per-label" in text and "--samples-per-cluster" in text and "--extend" in text
    assert "(default: on; turn off with --no-witness-guided)" in " ".join(text.replace("│", " ").split())
    for command in (["optimize"], ["compare"], ["eval"], ["export"], ["align"], ["local-lm", "build"]):
        shown = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"}, terminal_width=80).output
        assert "[default" not in shown and "…" not in shown, (command, shown)
    assert "(default: synalign-prompts.json)" in runner.invoke(
        app, ["optimize", "--help"], env={"COLUMNS": "80"}
    ).output


# -- synalign optimize: a line per trial ----------------------------------------------------------------------

def test_optimize_reports_each_trial(tmp_path: Path, demo_rows: list[dict]) -> None:
    from dspy.utils import DummyLM

    from synalign.evals.optimize import optimize

    rows = (
        [r for r in demo_rows if r["label"] == "negative"][:48]
        + [r for r in demo_rows if r["label"] == "positive"][:48]
    )
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    answers = {
        f"[[ ## label ## ]]\n{label}": {"texts": json.dumps([r["text"] for r in rows if r["label"] == label][-4:])}
        for label in ("negative", "positive")
    }
    trials: list[tuple[int, float | None]] = []
    optimize(data, out=tmp_path / "prompts.json", lm=DummyLM(answers), train_size=4, val_size=2, cluster_size=4,
             n=4, featurize="tfidf", pass_mark=0.0, on_trial=lambda t, s: trials.append((t, s)))
    assert len(trials) >= 2 and [t for t, _ in trials] == list(range(1, len(trials) + 1))
    assert all(s is not None and 0.0 <= s <= 1.0 for _, s in trials)


def test_optimize_command_prints_a_line_per_trial(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import synalign.evals.optimize as module
    from synalign.app.cli import app

    def fake(data: Any, **kwargs: Any) -> Any:
        print("DSPy chatter")  # captured, as the optimiser's own output is
        for trial, score in ((1, 0.5), (2, None), (3, 0.625)):
            kwargs["on_trial"](trial, score)
        return SimpleNamespace(unchanged=False, optimizer="bootstrap", demos=2, baseline_score=0.5,
                               baseline_stderr=0.01, optimized_score=0.6, optimized_stderr=0.01,
                               path=tmp_path / "p.json")

    monkeypatch.setattr(module, "optimize", fake)
    monkeypatch.setattr("synalign.agents.backend.require_llm_extra", lambda what: None)
    result = CliRunner().invoke(app, ["optimize", "--data", str(tmp_path), "--llm", "openai:m"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[:3] == [
        "trial 1: validation score 0.500 (best so far 0.500)",
        "trial 2: evaluation failed (best so far 0.500)",
        "trial 3: validation score 0.625 (best so far 0.625)",
    ]
    assert "DSPy chatter" not in result.output
