"""End-to-end behaviour of the LangGraph loop on real SST-2 text with the offline backend."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from synalign.config import RunConfig
from synalign.graphs import run
from synalign.graphs.runner import CONFIG_FILE


def _config(data: Path, out: Path, **overrides: object) -> RunConfig:
    base: dict[str, object] = dict(
        data=data, out=out, clusters_per_label=1, cluster_size=4, samples_per_cluster=6, max_rounds=3,
        target="0", seed=3,
    )
    base.update(overrides)
    return RunConfig(**base)


def _pool(result) -> list[tuple[str, str, str, float, bool]]:  # noqa: ANN001
    return [(s.id, s.text, s.label, round(s.kmm_weight, 6), s.accepted) for s in result.pool]


def test_stops_on_budget_rounds_and_writes_outputs(small_data: Path, tmp_path: Path) -> None:
    # the loop's budget mechanics with EDA's near-copies kept and no utility stop
    result = run(_config(small_data, tmp_path / "run", allow_near_copies=True, patience=None))
    assert result.stop_reason == "max_rounds"
    assert [m["round"] for m in result.metrics] == [1, 2, 3]
    # each round adds 2 labels × 1 cluster × 6 samples; pool grows, the accepted set is half of each label
    assert [m["generated"] for m in result.metrics] == [12, 24, 36]
    assert [m["accepted"] for m in result.metrics] == [6, 12, 18]
    for name in ("synthetic.jsonl", "synthetic.parquet", "pool.parquet", "metrics.json", "summary.json",
                 "report.html", "attributes.jsonl", CONFIG_FILE):
        assert (tmp_path / "run" / name).is_file(), name
    lines = (tmp_path / "run" / "synthetic.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 18 and all(r["accepted"] for r in records)
    # the training weight of every accepted row is 1 (the selection keeps a subset); the KMM weight is a
    # diagnostic that is 0 for some accepted rows (issue 21: nobody training with weights drops them)
    assert all(r["sample_weight"] == 1.0 for r in records) and "weight" not in records[0]
    pool_rows = pq.read_table(tmp_path / "run" / "pool.parquet").to_pylist()
    assert {r["sample_weight"] for r in pool_rows if not r["accepted"]} == {0.0}
    assert all(r["backend"].startswith("offline") for r in records)
    assert all(len(r["demonstration_ids"]) == 4 for r in records)
    # weights: per-label simplex over the whole pool
    for label in ("negative", "positive"):
        assert sum(s.kmm_weight for s in result.pool if s.label == label) == pytest.approx(1.0, abs=1e-4)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["backend"]["is_llm"] is False and "EDA backend (no language model)" in summary["backend"]["note"]
    assert summary["noise_floor"] is not None and summary["final_mmd2"] == result.metrics[-1]["mmd2_accepted"]
    assert "EDA backend (no language model)" in (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    # the explorer never re-uses a pick across rounds
    clusters = [json.loads(line) for line in (tmp_path / "run" / "attributes.jsonl").read_text().splitlines()]
    picks = [c["pick_id"] for c in clusters]
    assert len(picks) == 6 and len(set(picks)) == 6


def test_stops_on_target(small_data: Path, tmp_path: Path) -> None:
    # an absolute target every accepted set meets: one round only
    result = run(_config(small_data, tmp_path / "run", target="10"))
    assert result.stop_reason == "target" and len(result.metrics) == 1
    # a relative target: 1e6 × the noise floor is met too
    result = run(_config(small_data, tmp_path / "run2", target="1e6x"))
    assert result.stop_reason == "target"
    assert result.metrics[0]["target_mmd2"] == pytest.approx(1e6 * result.metrics[0]["noise_floor_same_size"])


def test_stops_on_sample_budget(small_data: Path, tmp_path: Path) -> None:
    result = run(_config(small_data, tmp_path / "run", max_samples=20))
    assert result.stop_reason == "max_samples"
    assert len(result.pool) == 20 and "over_budget" not in result.summary["dropped"]  # round 2 asks for 8, not 12
    last = [s.label for s in result.pool if s.round == 2]
    assert last.count("negative") == last.count("positive") == 4  # the rest of the budget split across labels


class _CrashOnce(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted_run(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synalign.eda import EDAGenerator

    reference = run(_config(small_data, tmp_path / "ref"))

    real_generate = EDAGenerator.generate
    calls = {"n": 0}

    def generate_then_crash(self, requests):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 2:  # the process dies inside the generate node of round 2
            raise _CrashOnce("killed")
        return real_generate(self, requests)

    cfg = _config(small_data, tmp_path / "crash")
    with monkeypatch.context() as patch:
        patch.setattr(EDAGenerator, "generate", generate_then_crash)
        with pytest.raises(_CrashOnce):
            run(cfg)
    assert not (tmp_path / "crash" / "synthetic.jsonl").exists()  # no final output from a dead run
    with sqlite3.connect(tmp_path / "crash" / "checkpoints.sqlite") as conn:
        assert conn.execute("select count(*) from checkpoints").fetchone()[0] > 0

    saved = RunConfig.model_validate_json((tmp_path / "crash" / CONFIG_FILE).read_text())
    resumed = run(saved, resume=True)
    assert resumed.stop_reason == reference.stop_reason
    assert _pool(resumed) == _pool(reference)
    assert [m["mmd2_accepted"] for m in resumed.metrics] == pytest.approx(
        [m["mmd2_accepted"] for m in reference.metrics]
    )
    # resuming a finished run rewrites the same outputs and generates nothing new
    again = run(saved, resume=True)
    assert _pool(again) == _pool(reference)


def test_divergence_is_measured_against_a_noise_floor(small_data: Path, tmp_path: Path) -> None:
    result = run(_config(small_data, tmp_path / "run", max_rounds=1, clusters_per_label=2, samples_per_cluster=20,
                         allow_near_copies=True, holdout=0))
    m = result.metrics[0]
    assert m["accepted"] == 40
    assert 0 < m["noise_floor"] < m["noise_floor_same_size"]  # 60 real examples beat 40 real examples
    # EDA paraphrases of 16 demonstrations are further from the real set than 40 random real examples
    assert m["mmd2_accepted"] > m["noise_floor_same_size"] + 2 * m["noise_floor_same_size_std"]
    assert m["sinkhorn_accepted"] > 0


def test_sigkill_then_resume_from_the_cli_loses_and_duplicates_nothing(small_data: Path, tmp_path: Path) -> None:
    """A real `synalign run` process killed with SIGKILL mid-run, then `--resume`d, ends like an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["--clusters-per-label", "1", "--cluster-size", "4", "--samples-per-cluster", "6", "--rounds", "3",
            "--target", "0", "--seed", "11"]
    reference = run(_config(small_data, tmp_path / "ref", seed=11))
    out = tmp_path / "killed"
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "synalign.app", "run", "--data", str(small_data), "--out", str(out), *args],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
    )
    deadline = time.monotonic() + 180
    killed_mid_run = False
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            db = out / "checkpoints.sqlite"
            if db.exists():
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
                try:  # the latest checkpoint's step (the saver keeps only the latest two checkpoints)
                    step = conn.execute(
                        "select max(json_extract(cast(metadata as text), '$.step')) from checkpoints"
                    ).fetchone()[0]
                except sqlite3.OperationalError:  # table not created yet / locked
                    step = None
                finally:
                    conn.close()
                if step is not None and step >= 5:  # inside round 1 or 2: prepare, explore, summarize, ...
                    proc.send_signal(signal.SIGKILL)
                    killed_mid_run = True
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        log.close()
    assert killed_mid_run, "run ended before it could be killed: " + (tmp_path / "killed.log").read_text()[-2000:]
    assert not (out / "synthetic.jsonl").exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "synalign.app", "run", "--out", str(out), "--resume"],
        capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    lines = (out / "synthetic.jsonl").read_text(encoding="utf-8").splitlines()
    got = [(r["id"], r["text"], r["label"]) for r in map(json.loads, lines)]
    want = [(s.id, s.text, s.label) for s in reference.accepted]
    assert got == want
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["generated"] for m in metrics] == [m["generated"] for m in reference.metrics] == [12, 24, 36]


def test_the_checkpoint_keeps_only_the_latest_two_and_still_resumes(small_data: Path, tmp_path: Path) -> None:
    """A finished 3-round run (18 checkpoints written) keeps 2; resuming it needs only the latest."""
    result = run(_config(small_data, tmp_path / "run"))
    with sqlite3.connect(tmp_path / "run" / "checkpoints.sqlite") as conn:
        steps = [json.loads(m)["step"] for (m,) in conn.execute(
            "select cast(metadata as text) from checkpoints order by checkpoint_id")]
        orphans = conn.execute(
            "select count(*) from writes where checkpoint_id not in (select checkpoint_id from checkpoints)"
        ).fetchone()[0]
    assert len(steps) == 2 and steps[1] == steps[0] + 1 and steps[1] >= 3 * 4 + 1  # 4 nodes a round + finish
    assert orphans == 0
    again = run(RunConfig.model_validate_json((tmp_path / "run" / CONFIG_FILE).read_text()), resume=True)
    assert [s.id for s in again.accepted] == [s.id for s in result.accepted]
