"""Against a real llama.cpp server with the embedded Gemma 3 270M GGUF: the project's own clients (DSPy
generator with continuation prompts, LangChain summariser with JSON-schema output), a 1-round
``synalign run --llm local`` and the server's lifecycle (gone after the run, after SIGINT and SIGKILL).

The server binary is built once by ``synalign local-lm build`` (``.ci/run`` does it). Without it these tests
skip, except where ``SYNALIGN_REQUIRE_LOCAL_LM=1`` (CI), where a missing binary fails them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from synalign.agents.llamacpp import LocalServer, embedded_model_path, find_binary, tools_dir

pytestmark = pytest.mark.slow

if find_binary() is None:
    if os.environ.get("SYNALIGN_REQUIRE_LOCAL_LM") == "1":
        raise RuntimeError("SYNALIGN_REQUIRE_LOCAL_LM=1 but llama-server is not built (synalign local-lm build)")
    pytest.skip("llama-server not built (run: synalign local-lm build)", allow_module_level=True)

SYNALIGN = [sys.executable, "-m", "synalign.app"]


@pytest.fixture(scope="module")
def server():
    with LocalServer.start(embedded_model_path()) as srv:
        yield srv


@pytest.fixture(scope="module")
def label_classifier(demo_rows):
    """Logistic regression on MiniLM embeddings of the bundled real SST-2 train sample (800 texts)."""
    from sklearn.linear_model import LogisticRegression

    from synalign.embeddings import Embedder

    embedder = Embedder()
    x = embedder.encode([r["text"] for r in demo_rows])
    model = LogisticRegression(max_iter=2000).fit(x, [r["label"] for r in demo_rows])
    return lambda texts: model.predict(embedder.encode(list(texts)))


def _owned_servers(owner_pid: int) -> list[int]:
    pids = []
    for pid_file in (tools_dir() / "servers").glob("*.json"):
        try:
            info = json.loads(pid_file.read_text())
        except (OSError, ValueError):
            continue
        if info.get("owner_pid") == owner_pid:
            pids.append(int(info["pid"]))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_server_reports_slots_and_stops(server: LocalServer) -> None:
    assert server.alive() and server.total_slots == 1 and server.n_ctx >= 512
    other = LocalServer.start(embedded_model_path())
    assert other.base_url != server.base_url and _alive(other.pid)
    other.stop()
    assert not _alive(other.pid) and other.pid not in _owned_servers(os.getpid())


def test_generator_writes_on_label_texts_through_dspy(tmp_path: Path, demo_rows, label_classifier) -> None:
    from synalign.agents import build_backend
    from synalign.backends import GenerationRequest, SummaryRequest
    from synalign.config import RunConfig

    reference = {label: [r["text"] for r in demo_rows if r["label"] == label] for label in ("negative", "positive")}
    config = RunConfig(data=tmp_path, out=tmp_path / "run", llm="local", llm_cache=False)
    backend = build_backend(config, tmp_path / "run", reference=reference)
    try:
        assert backend.info["prompt_style"] == "completion" and len(backend.info["gguf_sha256"]) == 64
        requests = []
        for k, label in enumerate(("negative", "positive")):
            demos = reference[label][k * 8 : k * 8 + 8]
            attributes = backend.summarizer.summarize([SummaryRequest(task="t", label=label, demonstrations=demos)])[0]
            requests.append(
                GenerationRequest(task="t", label=label, attributes=attributes, demonstrations=demos, n=10, seed=k)
            )
        generations = backend.generator.generate(requests)
    finally:
        backend.close()
    usage = backend.usage()
    assert usage["retries"] == 0 and usage["failures"] == 0 and usage["tokens_out"] > 0 and usage["tokens_in"] > 0
    texts = [t for g in generations for t in g.texts]
    labels = [r.label for r, g in zip(requests, generations) for _ in g.texts]
    assert len(texts) >= 16 and all(t.strip() and "\n" not in t for t in texts)
    fidelity = float(np.mean(label_classifier(texts) == np.asarray(labels)))
    assert fidelity > 0.5, (fidelity, texts)
    trace = [json.loads(line) for line in (tmp_path / "run" / "llm_trace.jsonl").read_text().splitlines()]
    assert trace and all(r["prompt_style"] == "completion" for r in trace)
    assert trace[0]["prompt"][0]["content"].endswith("Text (negative):")


def test_langchain_summarizer_parses_schema_output(tmp_path: Path, server: LocalServer, demo_rows) -> None:
    from synalign.agents.backend import make_chat_model, make_runner
    from synalign.agents.settings import LLMSettings
    from synalign.agents.summarizer import LLMSummarizer
    from synalign.backends import SummaryRequest
    from synalign.config import RunConfig

    config = RunConfig(data=tmp_path, out=tmp_path / "run", llm="openai:gemma", base_url=server.base_url,
                       max_tokens=1024, llm_cache=False, max_concurrency=1)
    settings = LLMSettings.from_config(config)
    runner = make_runner(config, settings, tmp_path / "run")
    summarizer = LLMSummarizer(make_chat_model(settings, "EMPTY"), runner)
    demos = [r["text"] for r in demo_rows if r["label"] == "negative"][:6]
    summary = summarizer.summarize(
        [SummaryRequest(task="Movie review sentiment", label="negative", demonstrations=demos)]
    )[0]
    usage = runner.snapshot()
    assert usage["retries"] == 0 and usage["llm_calls"] == 1 and usage["tokens_out"] > 0
    assert isinstance(summary.style, str) and isinstance(summary.subtopics, list)


def test_one_round_run_with_local_lm(small_data: Path, tmp_path: Path, label_classifier) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*SYNALIGN, "run", "--data", str(small_data), "--out", str(out), "--llm", "local", "--rounds", "1",
         "--clusters-per-label", "1", "--samples-per-cluster", "12", "--cluster-size", "6"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"]["kind"] == "local" and "Gemma Terms of Use" in summary["backend"]["note"]
    assert summary["usage"]["llm_calls"] > 0 and summary["usage"]["retries"] == 0
    assert summary["usage"]["tokens_out"] > 0 and summary["generated"] >= 16
    pool = [json.loads(line) for line in (out / "synthetic.jsonl").read_text().splitlines()]
    assert pool and all(r["backend"] == "local:gemma-3-270m-q4_k_m" and r["text"].strip() for r in pool)
    import pandas as pd

    generated = pd.read_parquet(out / "pool.parquet")
    fidelity = float(np.mean(label_classifier(generated["text"]) == generated["label"].to_numpy()))
    assert fidelity > 0.5, fidelity
    assert "Gemma" in stderr and "LLM local:gemma-3-270m-q4_k_m:" in stderr
    report = (out / "report.html").read_text()
    assert summary["backend"]["gguf_sha256"][:16] in report and "Gemma Terms of Use" in report
    per_label = summary["generated_per_label"]
    assert set(per_label) == {"negative", "positive"} and sum(per_label.values()) == summary["generated"]
    assert not _owned_servers(proc.pid)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_server_is_gone_after_interrupt_or_kill(small_data: Path, tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*SYNALIGN, "run", "--data", str(small_data), "--out", str(out), "--llm", "local", "--rounds", "3",
         "--samples-per-cluster", "16", "--no-llm-cache"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 180
    servers: list[int] = []
    while time.monotonic() < deadline and not servers:
        servers = _owned_servers(proc.pid)
        time.sleep(0.2)
    assert servers, "the run never started its server"
    time.sleep(2.0)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in servers):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in servers)


def test_concurrency_follows_the_server_slots(tmp_path: Path, server: LocalServer) -> None:
    from synalign.agents.backend import build_llm_backend
    from synalign.config import RunConfig

    config = RunConfig(data=tmp_path, out=tmp_path / "run", llm="openai:gemma", base_url=server.base_url,
                       max_concurrency=4, prompt_style="completion", llm_cache=False)
    backend = build_llm_backend(config, tmp_path / "run", reference={"a": ["x"], "b": ["y"]})
    assert server.total_slots == 1 and backend.usage()["concurrency"]["max"] == 1
    assert backend.info["prompt_style"] == "completion"


def test_optimize_a_base_model_prompt_then_run_with_it(small_data: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.json"
    proc = subprocess.run(
        [*SYNALIGN, "optimize", "--data", str(small_data), "--llm", "local", "--out", str(prompts), "--train", "3",
         "--val", "2", "--cluster-size", "4", "-n", "2", "--metric-embeddings", "tfidf"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = json.loads(prompts.read_text())
    assert state["meta"]["model"].startswith("openai/gemma-3-270m")
    run = subprocess.run(
        [*SYNALIGN, "run", "--data", str(small_data), "--out", str(tmp_path / "run"), "--llm", "local", "--rounds", "1",
         "--clusters-per-label", "1", "--samples-per-cluster", "3", "--prompts", str(prompts)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["generated"] > 0


def _ok_calls(trace: Path) -> int:
    try:
        lines = trace.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0
    return sum(1 for line in lines if line.endswith("}") and json.loads(line).get("status") == "ok")


def test_a_run_killed_mid_generate_resumes_to_the_samples_of_an_uninterrupted_run(
    small_data: Path, tmp_path: Path
) -> None:
    """The resumed run replays the calls made before the kill from the response cache and asks a fresh server
    for the rest; with llama.cpp's prompt cache those came out different (issue 21, "local LM interrupted")."""
    args = ["--data", str(small_data), "--llm", "local", "--rounds", "1", "--clusters-per-label", "1",
            "--cluster-size", "4", "--samples-per-cluster", "4", "--seed", "0"]
    reference = tmp_path / "reference"  # uninterrupted, alongside the run that gets killed
    # an embedding cache of its own too, cold like the killed run's: a vector depends in its last bits on the
    # texts it was encoded with (padding), so a cache warmed by other tests would shift the KMM weights
    uninterrupted = subprocess.Popen([*SYNALIGN, "run", *args, "--out", str(reference), "--no-llm-cache",
                                      "--cache-dir", str(tmp_path / "reference-cache")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out = tmp_path / "run"  # a response cache of its own: only the calls made before the kill are in it
    proc = subprocess.Popen([*SYNALIGN, "run", *args, "--out", str(out), "--cache-dir", str(tmp_path / "cache")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while _ok_calls(out / "llm_trace.jsonl") < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait(30)
    made = _ok_calls(out / "llm_trace.jsonl")
    _, stderr = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, stderr[-2000:]
    assert 2 <= made < _ok_calls(reference / "llm_trace.jsonl") and not (out / "synthetic.jsonl").exists()
    resumed = subprocess.run(
        [*SYNALIGN, "run", "--out", str(out), "--resume"], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    import pandas as pd

    assert (
        pd.read_parquet(out / "pool.parquet")["text"].tolist()
        == pd.read_parquet(reference / "pool.parquet")["text"].tolist()
    )
    assert (out / "synthetic.jsonl").read_bytes() == (reference / "synthetic.jsonl").read_bytes()


def test_dry_sampler_stops_verbatim_copies_of_the_demonstrations(server: LocalServer) -> None:
    """``--dry-multiplier`` reaches llama.cpp: on a prompt that repeats its demonstrations, the base model writes
    one of them again verbatim most of the time; with DRY over the whole prompt it does not (RESULTS §16: on
    the shared tasks copies are rare, and what DRY leaves are near-copies the generator still drops)."""
    from synalign.agents.backend import make_completion_lm
    from synalign.agents.settings import LLMSettings
    from synalign.config import RunConfig

    demos = ["a dull , lifeless film that goes nowhere", "the plot is thin and the jokes fall flat",
             "a tedious mess from start to finish", "badly acted and worse written", "i was bored for two long hours"]
    prompt = "\n".join(f"Movie review (negative): {d}" for d in demos * 2) + "\nMovie review (negative):"
    verbatim = {}
    for dry in (0.0, 0.8):
        config = RunConfig(data=Path("."), llm="openai:gemma", base_url=server.base_url, prompt_style="completion",
                           dry_multiplier=dry)
        settings = LLMSettings.from_config(config)
        assert settings.sampler == ({} if dry == 0 else {"dry_multiplier": 0.8, "dry_base": 1.75,
                                                          "dry_allowed_length": 2, "dry_penalty_last_n": 8192})
        lm = make_completion_lm(settings, "EMPTY")
        outs = [lm(prompt, seed=s, stop=["\n"], max_tokens=40)[0].strip() for s in range(12)]
        verbatim[dry] = sum(o in demos for o in outs)
    assert verbatim[0.0] >= 4 and verbatim[0.8] <= 1, verbatim
