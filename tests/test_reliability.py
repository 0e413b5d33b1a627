"""Issue 12: never lose a run. Interruption before the run exists, few-shot labels, option validation, failures
that must not exit 0, one run per directory, corrupt state files — each through the real CLI where it is about
the CLI. (The SIGINT/SIGKILL crash matrix is in test_resume.py.)"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

FAST = ["--clusters-per-label", "1", "--cluster-size", "4", "--samples-per-cluster", "4", "--rounds", "1"]


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synalign.app", *args], capture_output=True, text=True, timeout=timeout,
        env=env or os.environ.copy(),
    )


def _one_line_error(proc: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "━" not in line]
    errors = [line for line in lines if line.startswith("synalign: error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def finished_run(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-round run directory (copy it before changing it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    done = _cli("run", "--data", str(small_data), "--out", str(out), *FAST)
    assert done.returncode == 0, done.stderr
    return out


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


# -- item 9: interrupted before the run directory exists ------------------------------------------------------

_SIGINT_WHILE_EMBEDDING = r'''
import os, signal, sys
from synalign.embeddings import Embedder
Embedder.encode = lambda self, texts, **kw: os.kill(os.getpid(), signal.SIGINT) or __import__("time").sleep(30)
from synalign.app.cli import main
sys.argv = ["synalign", *sys.argv[1:]]
main()
'''


def test_interrupt_before_the_run_exists_prints_no_resume_hint(small_data: Path, tmp_path: Path) -> None:
    script = tmp_path / "interrupt.py"
    script.write_text(_SIGINT_WHILE_EMBEDDING, encoding="utf-8")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(script), "run", "--data", str(small_data), "--out", str(out), *FAST],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert "--resume" not in proc.stderr and "nothing was written" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()  # the lock taken before any work is gone with the directory it created


# -- item 4: few-shot labels ----------------------------------------------------------------------------------


def test_a_label_smaller_than_the_cluster_size_gets_smaller_clusters(small_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "few.jsonl"
    rare = ["What does NASA stand for ?", "What is the abbreviation for Texas ?", "What does CPR mean ?"]
    data.write_text(small_data.read_text(encoding="utf-8")
                    + "".join(json.dumps({"text": t, "label": "abbreviation"}) + "\n" for t in rare), encoding="utf-8")
    out = tmp_path / "run"
    proc = _cli("run", "--data", str(data), "--out", str(out), *FAST, "--cluster-size", "8")
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "'abbreviation' has 3" in line]
    assert len(notes) == 1 and "--cluster-size 8" in notes[0]
    clusters = [json.loads(line) for line in (out / "attributes.jsonl").read_text().splitlines()]
    assert {c["label"] for c in clusters} == {"abbreviation", "negative", "positive"}
    labels = [json.loads(line)["label"] for line in (out / "synthetic.jsonl").read_text().splitlines()]
    assert "abbreviation" in labels


# -- item 5: every option validated before any work -----------------------------------------------------------

BAD_OPTIONS = {
    "base_url_not_a_url": (["--llm", "openai:m", "--base-url", "not-a-url"], ["--base-url", "http"]),
    "base_url_ftp": (["--llm", "openai:m", "--base-url", "ftp://example.com/v1"], ["--base-url", "http"]),
    "base_url_without_llm": (["--base-url", "http://localhost:8000/v1"], ["--base-url", "--llm"]),
    "temperature_negative": (["--llm", "openai:m", "--temperature", "-5"], ["--temperature", "0 to 2"]),
    "temperature_nan": (["--llm", "openai:m", "--temperature", "nan"], ["--temperature", "nan"]),
    "max_tokens_zero": (["--llm", "openai:m", "--max-tokens", "0"], ["--max-tokens", ">= 1"]),
    "seed_negative": (["--seed", "-1"], ["--seed", ">= 0"]),
    "max_concurrency_zero": (["--max-concurrency", "0"], ["--max-concurrency"]),
    "prompts_missing": (["--llm", "openai:m", "--prompts", "/no/such/prompts.json"], ["/no/such/prompts.json"]),
    "prompts_on_eda": (["--prompts", "PROMPTS"], ["--prompts", "EDA"]),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_option_is_one_line_exit_2_and_writes_nothing(case: str, small_data: Path, tmp_path: Path) -> None:
    args, fragments = BAD_OPTIONS[case]
    garbage = tmp_path / "prompts.json"
    garbage.write_text("not json {", encoding="utf-8")
    args = [str(garbage) if a == "PROMPTS" else a for a in args]
    out = tmp_path / "run"
    started = time.monotonic()
    proc = _cli("run", "--data", str(small_data), "--out", str(out), *FAST, *args, timeout=120)
    _one_line_error(proc, *fragments)
    assert time.monotonic() - started < 30  # refused before any embedding or network attempt
    assert not out.exists()


def test_resume_refuses_options_that_would_change_the_run(finished_run: Path, tmp_path: Path) -> None:
    out = _copy(finished_run, tmp_path)
    before = (out / "summary.json").read_text()
    proc = _cli("run", "--out", str(out), "--resume", "--rounds", "5", "--seed", "3", "--data", "other.jsonl")
    _one_line_error(proc, "--resume", "--rounds", "--seed", "--data", "config.json")
    assert (out / "summary.json").read_text() == before
    # options that only change how the run talks to an LLM are applied, and the CLI says so
    proc = _cli("run", "--out", str(out), "--resume", "--max-concurrency", "2")
    assert proc.returncode == 0, proc.stderr
    assert "note: --resume applies --max-concurrency" in proc.stderr


def test_unknown_embedding_model_fails_fast_when_the_hub_does_not_answer(
    small_data: Path, tmp_path: Path, black_hole: int
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{black_hole}"
    out = tmp_path / "run"
    started = time.monotonic()
    proc = _cli("run", "--data", str(small_data), "--out", str(out), *FAST,
                "--embedding-model", "no-such-org/no-such-model", env=env, timeout=180)
    _one_line_error(proc, "no-such-org/no-such-model")
    assert time.monotonic() - started < 60  # was: no answer for minutes
    assert not out.exists()


# -- item 6: failures never exit 0; usage summed over every process of a run ----------------------------------


def test_optimize_with_nothing_listening_fails_and_saves_nothing(small_data: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "prompts.json"
    proc = _cli("optimize", "--data", str(small_data), "--llm", "openai:m", "--base-url", f"http://127.0.0.1:{port}/v1",
                "--out", str(out), "--train", "2", "--val", "1", "--metric-embeddings", "tfidf", timeout=600)
    _one_line_error(proc, "every LM call failed", code=1)
    assert not out.exists()


def test_summary_usage_sums_every_process_of_a_resumed_run(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synalign.config import RunConfig
    from synalign.eda import EDAGenerator
    from synalign.graphs import run

    def config(out: Path) -> RunConfig:
        return RunConfig(data=small_data, out=out, clusters_per_label=1, cluster_size=4, samples_per_cluster=4,
                         max_rounds=2, target="0", seed=2)

    reference = run(config(tmp_path / "ref")).summary["usage"]
    real_generate, calls = EDAGenerator.generate, {"n": 0}

    def generate_then_stop(self, requests):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C in round 2's generate
        return real_generate(self, requests)

    with monkeypatch.context() as patch:
        patch.setattr(EDAGenerator, "generate", generate_then_stop)
        with pytest.raises(KeyboardInterrupt):
            run(config(tmp_path / "run"))
    resumed = run(config(tmp_path / "run"), resume=True).summary
    assert resumed["usage_processes"] == 2
    for key in ("summaries", "generation_requests", "texts_generated"):
        assert resumed["usage"][key] == reference[key], key


# -- item 8: one run per directory; --overwrite deletes only a run's files; a shared cache ---------------------

_HOLD_LOCK = r'''
import sys, time
from pathlib import Path
from synalign.artifacts.rundir import RunDirLock
lock = RunDirLock(Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
time.sleep(120)
'''


def test_a_second_run_into_the_same_directory_is_refused_with_the_holder(small_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        proc = _cli("run", "--data", str(small_data), "--out", str(out), *FAST)
        _one_line_error(proc, "in use by synalign process", str(holder.pid))
        assert sorted(p.name for p in out.iterdir()) == [".synalign.lock"]  # the second run wrote nothing
    finally:
        holder.kill()
        holder.wait()
    # the holder died (as with SIGKILL): its lock is gone with it, the directory is free again
    proc = _cli("run", "--data", str(small_data), "--out", str(out), *FAST)
    assert proc.returncode == 0, proc.stderr


def test_overwrite_deletes_only_the_runs_own_files(finished_run: Path, small_data: Path, tmp_path: Path) -> None:
    out = _copy(finished_run, tmp_path)
    data = out / "my-data.jsonl"
    shutil.copy(small_data, data)
    (out / "notes").mkdir()
    (out / "notes" / "keep.txt").write_text("mine")
    proc = _cli("run", "--data", str(data), "--out", str(out), "--overwrite", *FAST, "--seed", "4")
    assert proc.returncode == 0, proc.stderr
    assert data.read_text(encoding="utf-8") == small_data.read_text(encoding="utf-8")
    assert (out / "notes" / "keep.txt").read_text() == "mine"
    assert json.loads((out / "config.json").read_text())["seed"] == 4


_EMBED_MANY = r'''
import sys
from synalign.embeddings import Embedder
worker, n = int(sys.argv[2]), int(sys.argv[3])
embedder = Embedder(cache_dir=sys.argv[1], device="cpu", batch_size=8)
for start in range(0, n, 8):  # many small transactions, interleaved with the other process's
    embedder.encode([f"text {i} of worker {worker}" for i in range(start, start + 8)])
print(embedder.stats["encoded"])
'''


def test_two_processes_sharing_one_embedding_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", _EMBED_MANY, str(cache), str(w), "96"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    with sqlite3.connect(cache / "embeddings.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("select count(*) from vectors").fetchone()[0] == 192



_OPEN_AND_WRITE = r'''
import sys, time
from pathlib import Path
from synalign.cachedb import open_cache
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # all processes open at the same instant
conn = open_cache(Path(sys.argv[1]), ["create table if not exists t (k text primary key, v blob)"], "test cache")
for i in range(10):
    conn.execute("insert or replace into t values (?, ?)", (f"{sys.argv[2]}-{i}", b"x"))
    conn.commit()
'''


def test_processes_creating_one_cache_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    # A second process's switch to WAL used to fail at once with "database is locked" while the first held its
    # lock (seen in CI); opening is now serialised by NAME.lock.
    for round_ in range(6):
        path = tmp_path / f"round{round_}" / "cache.sqlite"
        path.parent.mkdir()
        at = str(time.time() + 1.5)
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AND_WRITE, str(path), str(w), at],
                                  stderr=subprocess.PIPE, text=True) for w in range(6)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), [e[-500:] for e in errors if e]
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("select count(*) from t").fetchone()[0] == 60

# -- item 2: corrupt state files ------------------------------------------------------------------------------


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100:4000] = os.urandom(min(3900, len(data) - 100))
    path.write_bytes(bytes(data))


def _flip_latest_checkpoint_blob(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        cid, blob = conn.execute(
            "select checkpoint_id, checkpoint from checkpoints order by checkpoint_id desc limit 1"
        ).fetchone()
        flipped = bytearray(blob)
        flipped[5] ^= 0x10
        flipped[len(flipped) // 2] ^= 0x40
        conn.execute("update checkpoints set checkpoint = ? where checkpoint_id = ?", (bytes(flipped), cid))


@pytest.mark.parametrize("damage", ["garbled", "truncated", "bit_flip"])
def test_corrupt_checkpoint_is_one_line_naming_the_file_and_how_to_start_over(
    damage: str, finished_run: Path, tmp_path: Path
) -> None:
    out = _copy(finished_run, tmp_path)
    db = out / "checkpoints.sqlite"
    if damage == "garbled":
        _garble(db)
    elif damage == "truncated":
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])
    else:
        _flip_latest_checkpoint_blob(db)
    before = (out / "synthetic.jsonl").read_text()
    proc = _cli("run", "--out", str(out), "--resume")
    _one_line_error(proc, str(db), "corrupt", "--overwrite")
    assert (out / "synthetic.jsonl").read_text() == before


def test_corrupt_embedding_cache_is_moved_aside_and_rebuilt(small_data: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "SYNALIGN_CACHE_DIR": str(cache)}
    first = _cli("run", "--data", str(small_data), "--out", str(tmp_path / "a"), *FAST, env=env)
    assert first.returncode == 0, first.stderr
    _garble(cache / "embeddings.sqlite")
    for side in cache.glob("embeddings.sqlite-*"):
        side.unlink()
    again = _cli("run", "--data", str(small_data), "--out", str(tmp_path / "b"), *FAST, env=env)
    assert again.returncode == 0, again.stderr
    assert len([line for line in again.stderr.splitlines() if "is corrupt" in line]) == 1
    assert list(cache.glob("embeddings.sqlite.corrupt-*"))
    assert (tmp_path / "a" / "synthetic.jsonl").read_text() == (tmp_path / "b" / "synthetic.jsonl").read_text()


def test_cached_vectors_overwritten_with_noise_are_re_embedded(tmp_path: Path) -> None:
    import numpy as np

    from synalign.embeddings import Embedder

    texts = ["a gripping , funny film", "a dull , lifeless mess"]
    embedder = Embedder(cache_dir=tmp_path, device="cpu")
    clean = embedder.encode(texts)
    embedder.close()
    with sqlite3.connect(tmp_path / "embeddings.sqlite") as conn:
        noise = np.random.default_rng(0).random(clean.shape[1], dtype=np.float32).tobytes()
        conn.execute("update vectors set vec = ?", (noise,))
    again = Embedder(cache_dir=tmp_path, device="cpu")
    assert np.allclose(again.encode(texts), clean)
    assert again.stats["encoded"] == 2  # both failed their checksum: re-embedded, never used


def test_corrupt_llm_response_cache_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    from synalign.agents.cache import ResponseCache

    path = tmp_path / "llm_cache.sqlite"
    cache = ResponseCache(path)
    cache.put("k", {"texts": ["a"]})
    cache.close()
    path.write_bytes(b"\x00not a database" * 400)
    for side in tmp_path.glob("llm_cache.sqlite-*"):
        side.unlink()
    cache = ResponseCache(path)
    assert cache.get("k") is None
    cache.put("k", {"texts": ["b"]})
    assert cache.get("k") == {"texts": ["b"]}
    assert list(tmp_path.glob("llm_cache.sqlite.corrupt-*"))


# -- item 3: a full disk ---------------------------------------------------------------------------------------

_DISK_FULL = r'''
import errno, os, sqlite3, sys
where = os.environ["FULL_AT"]
if where == "checkpoint":
    from langgraph.checkpoint.sqlite import SqliteSaver
    real_put, calls = SqliteSaver.put, []
    def put(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise sqlite3.OperationalError("database or disk is full")
        return real_put(self, *args, **kwargs)
    SqliteSaver.put = put
else:
    import synalign.fileio as io
    real_write = io._atomic_write
    def atomic_write(path, write):
        if path.name == where:
            def half(handle):
                handle.write(b"x" * 1000)
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real_write(path, half)
        return real_write(path, write)
    io._atomic_write = atomic_write
from synalign.app.cli import main
sys.argv = ["synalign", *sys.argv[1:]]
main()
'''


@pytest.mark.parametrize("where", ["checkpoint", "pool.parquet", "report.html"])
def test_disk_full_is_one_line_leaves_no_half_file_and_resumes(where: str, small_data: Path, tmp_path: Path) -> None:
    script = tmp_path / "full.py"
    script.write_text(_DISK_FULL, encoding="utf-8")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(script), "run", "--data", str(small_data), "--out", str(out), *FAST],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "FULL_AT": where})
    _one_line_error(proc, "no space left", f"synalign run --out {out} --resume", code=1)
    assert not (out / "summary.json").exists() and not (out / where).exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    resumed = _cli("run", "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "summary.json").is_file() and (out / "synthetic.jsonl").is_file()


# -- item 7: a server that accepts but never answers ----------------------------------------------------------


def test_a_request_to_a_server_that_never_answers_is_capped_in_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synalign.agents import LLMError, LLMSettings, build_backend
    from synalign.agents.testing import FaultPlan, OpenAITestServer
    from synalign.backends import SummaryRequest
    from synalign.config import RunConfig

    monkeypatch.setenv("SYNALIGN_TEST_KEY", "sk-test")
    monkeypatch.setenv("SYNALIGN_LLM_REQUEST_BUDGET", "2.5")
    with OpenAITestServer(api_key="sk-test", faults=FaultPlan(rate=1.0, kinds=("slow",), slow_s=30.0)) as srv:
        config = RunConfig(data=tmp_path / "x.jsonl", out=tmp_path / "run", llm="openai:m", base_url=srv.url,
                           api_key_env="SYNALIGN_TEST_KEY", cache_dir=tmp_path / "cache", llm_cache=False)
        settings = LLMSettings.from_config(config, timeout_s=1.0, backoff_s=0.01, max_attempts=20)
        assert settings.request_budget_s == 2.5  # configurable: SYNALIGN_LLM_REQUEST_BUDGET
        backend = build_backend(config, config.out, settings=settings)
        started = time.monotonic()
        with pytest.raises(LLMError, match="timeout"):
            backend.summarizer.summarize([SummaryRequest(task="t", label="a", demonstrations=["x y", "z w"], round=1)])
        elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed  # 20 attempts × 1 s timeout without the cap
    assert backend.usage()["llm_calls"] <= 4


# -- also: logs of non-interactive runs; compressed inputs ---------------------------------------------------


def test_non_interactive_run_prints_one_plain_line_per_step(small_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _cli("run", "--data", str(small_data), "--out", str(out), *FAST)  # stderr is a pipe, not a terminal
    assert proc.returncode == 0, proc.stderr
    steps = [line for line in proc.stderr.splitlines() if line.startswith("round 1/1: ")]
    assert [s.split(": ")[1].split()[0] for s in steps] == ["explore", "summarize", "generate", "align"]
    assert "MMD²=" in steps[-1] and "━" not in proc.stderr
    assert f"outputs in {out}" in proc.stdout and "done:" not in proc.stdout  # data on stdout, human text on stderr


def test_gzip_compressed_trace_and_data_get_one_line(small_data: Path, tmp_path: Path) -> None:
    import gzip

    trace = tmp_path / "llm_trace.jsonl"
    trace.write_bytes(gzip.compress(b'{"node": "generate"}\n'))
    _one_line_error(_cli("trace", str(trace)), str(trace), "gzip-compressed")
    for name in ("train.jsonl.gz", "train.jsonl"):
        data = tmp_path / name
        data.write_bytes(gzip.compress(small_data.read_bytes()))
        _one_line_error(_cli("run", "--data", str(data), "--out", str(tmp_path / "run"), *FAST), str(data), "gzip")
        assert not (tmp_path / "run").exists()
