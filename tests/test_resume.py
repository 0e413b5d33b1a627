"""Crash matrix: a real `synalign run` interrupted (SIGINT = Ctrl-C, SIGKILL) inside every node, between nodes,
after a node's writes are saved but before the step's checkpoint, and while the outputs are written, then `--resume`d,
must end exactly like an uninterrupted run of the same seed: same accepted set, pool, weights, metrics and stop
reason.

The process signals itself at a chosen point through a small wrapper around the CLI (``_CRASH_WRAPPER``),
so every point is hit deterministically.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

ARGS = ["--clusters-per-label", "1", "--cluster-size", "4", "--samples-per-cluster", "6", "--rounds", "2",
        "--target", "0", "--seed", "11"]

_CRASH_WRAPPER = r'''
import concurrent.futures, faulthandler, functools, os, signal, sys, threading, time
faulthandler.dump_traceback_later(240, exit=True)  # a hang shows every thread's stack instead of a timeout
SIG = getattr(signal, os.environ["CRASH_SIGNAL"])
KIND, NODE, ROUND = (os.environ["CRASH_AT"].split(":") + ["", "", ""])[:3]
ROUND = int(ROUND or 0)
current = {"node": None, "round": 0}
fired = []

def die():
    # As a real signal: the main thread gets KeyboardInterrupt (here, or wherever it waits for the node's
    # worker thread); a worker thread carries on with its node, as it would after a real Ctrl-C.
    if fired:
        return
    fired.append(1)
    os.kill(os.getpid(), SIG)
    if threading.current_thread() is threading.main_thread():
        time.sleep(60)

def here(node):
    return current["node"] == node and ROUND in (0, current["round"])

from synalign.graphs import nodes

def wrap(name):
    fn = getattr(nodes, name)
    @functools.wraps(fn)
    def wrapped(state, runtime):
        current.update(node=name, round=state.get("round", 0) + (name == "explore"))
        if KIND == "enter" and here(NODE):
            die()
        out = fn(state, runtime)
        if KIND == "exit" and here(NODE):
            die()
        return out
    return wrapped

for name in ("prepare", "explore", "summarize", "generate", "align", "finish"):
    setattr(nodes, name, wrap(name))

from langgraph.pregel import _loop
_put_checkpoint = _loop.PregelLoop._put_checkpoint

def settle(self):
    # let the background saves finish (a few ms); some background tasks (stream queues) never end alone
    concurrent.futures.wait(list(self.submit.__self__.tasks), timeout=5)

def put_checkpoint(self, metadata):
    if KIND == "writes" and here(NODE):
        settle(self)  # NODE's writes are saved ...
        die()  # ... the step's checkpoint is not: LangGraph's live `next` is then empty
    result = _put_checkpoint(self, metadata)
    if KIND == "after" and here(NODE):
        self._put_checkpoint_fut.result(timeout=60)
        die()  # between nodes: the checkpoint after NODE is saved, the next node has not started
    return result

_loop.PregelLoop._put_checkpoint = put_checkpoint

import synalign.artifacts.report
_write_report = synalign.artifacts.report.write_report

def write_report(*args, **kwargs):
    if KIND == "outputs":
        die()
    return _write_report(*args, **kwargs)

synalign.artifacts.report.write_report = write_report

from synalign.app.cli import main
sys.argv = ["synalign", *sys.argv[1:]]
main()
'''

# enter/exit: inside a node (before its work / after it, before it returns); writes: the node's writes are saved,
# the step's checkpoint is not (the Ctrl-C case of the issue: LangGraph's live `next` is then empty);
# after: between nodes (checkpoint saved, next node not started); outputs: while writing the output files.
POINTS = [
    "enter:prepare",
    "enter:explore:2",
    "exit:summarize:1",
    "writes:summarize:1",
    "writes:generate:2",
    "exit:align:2",
    "after:align:1",
    "writes:finish",
    "outputs",
]
SIGKILL_POINTS = ["exit:generate:2", "writes:summarize:1", "after:explore:2", "outputs"]


def _cli(*args: str, env: dict[str, str] | None = None, script: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(script)] if script else [sys.executable, "-m", "synalign.app"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300, env=env or os.environ.copy())


def _outcome(out: Path) -> dict[str, Any]:
    accepted = [json.loads(line) for line in (out / "synthetic.jsonl").read_text(encoding="utf-8").splitlines()]
    pool = pq.read_table(out / "pool.parquet").to_pylist()
    metrics = json.loads((out / "metrics.json").read_text())
    for m in metrics:
        m.pop("align_seconds", None)
    summary = json.loads((out / "summary.json").read_text())
    return {
        "accepted": [(r["id"], r["text"], r["label"], round(r["kmm_weight"], 6)) for r in accepted],
        "pool": [(r["id"], r["text"], r["label"], round(r["kmm_weight"], 6), r["accepted"]) for r in pool],
        "metrics": metrics,
        "summary": {k: summary[k] for k in ("stop_reason", "rounds", "generated", "accepted", "labels", "final_mmd2")},
    }


@pytest.fixture(scope="module")
def reference(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted run, through the CLI."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = _cli("run", "--data", str(small_data), "--out", str(out), *ARGS)
    assert done.returncode == 0, done.stderr
    outcome = _outcome(out)
    assert outcome["summary"]["stop_reason"] == "max_rounds" and outcome["summary"]["generated"] == 24
    return outcome


FAST_CASE = ("SIGINT", "writes:summarize:1")  # the Ctrl-C case; the rest of the matrix is slow


@pytest.mark.parametrize(
    ("sig", "point"),
    [pytest.param(sig, p, marks=() if (sig, p) == FAST_CASE else pytest.mark.slow)
     for sig, points in (("SIGINT", POINTS), ("SIGKILL", SIGKILL_POINTS)) for p in points],
)
def test_interrupt_then_resume_matches_uninterrupted_run(
    sig: str, point: str, small_data: Path, tmp_path: Path, reference: dict[str, Any]
) -> None:
    script = tmp_path / "crash_cli.py"
    script.write_text(_CRASH_WRAPPER, encoding="utf-8")
    out = tmp_path / "run"
    env = {**os.environ, "CRASH_SIGNAL": sig, "CRASH_AT": point}
    crashed = _cli("run", "--data", str(small_data), "--out", str(out), *ARGS, env=env, script=script)
    if sig == "SIGINT":
        assert crashed.returncode == 130, crashed.stderr
        assert f"continue with: synalign run --out {out} --resume" in crashed.stderr
        assert "Traceback" not in crashed.stderr
    else:
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert not (out / "summary.json").exists()  # summary.json (written last) marks a finished run

    resumed = _cli("run", "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "stop: max_rounds" in resumed.stderr
    got = _outcome(out)
    assert got["summary"] == reference["summary"]
    assert got["accepted"] == reference["accepted"]  # 0 lost, 0 duplicated
    assert got["pool"] == reference["pool"]
    assert len(got["metrics"]) == len(reference["metrics"])
    for mine, theirs in zip(got["metrics"], reference["metrics"]):
        assert mine.keys() == theirs.keys()
        for key, value in mine.items():
            if isinstance(value, float):
                assert value == pytest.approx(theirs[key], rel=1e-6, abs=1e-12), key
            else:
                assert value == theirs[key], key
