"""Limits of generation (issue 21, reliability matrix round 3): a label with a single real example, a
``--max-samples`` budget below one round, and an endpoint that accepts connections but never answers."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synalign.app.cli import app


@pytest.fixture(scope="module")
def one_neutral(tmp_path_factory: pytest.TempPathFactory, demo_rows: list[dict[str, str]]) -> Path:
    """30 negative, 30 positive and a single neutral real review."""
    rows = (
        [r for r in demo_rows if r["label"] == "negative"][:30]
        + [r for r in demo_rows if r["label"] == "positive"][:30]
    )
    rows.append({"text": "the film runs two hours and has a plot .", "label": "neutral"})
    path = tmp_path_factory.mktemp("one-neutral") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def budget_run(one_neutral: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, str]:
    """One EDA round of 3 clusters × 16 texts under ``max_samples=24``; returns (result, log text)."""
    from synalign.config import RunConfig
    from synalign.graphs import run

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("synalign")
    logger.addHandler(handler)
    try:
        result = run(RunConfig(data=one_neutral, out=tmp_path_factory.mktemp("budget") / "run", llm="eda",
                               clusters_per_label=1, cluster_size=4, samples_per_cluster=16, max_rounds=1,
                               max_samples=24, seed=0))
    finally:
        logger.removeHandler(handler)
    return result, "\n".join(records)


def test_a_label_with_one_example_is_used_with_a_note(budget_run: tuple[object, str]) -> None:
    result, log = budget_run
    assert "'neutral' has 1" in log  # the note the README promises
    assert any(s.label == "neutral" for s in result.pool)  # generated, aligned, not an error
    assert result.summary["validation"] is not None
    assert (result.run_dir / "synthetic.jsonl").exists()


def test_max_samples_below_one_round_is_split_across_labels(budget_run: tuple[object, str]) -> None:
    result, _ = budget_run
    per_label = Counter(s.label for s in result.pool)
    assert sum(per_label.values()) <= 24
    assert per_label["negative"] == per_label["positive"] == 8  # was: 16 negative, 8 positive, 0 neutral
    assert 1 <= per_label["neutral"] <= 8  # EDA of one short demonstration may run out of new variants


@pytest.mark.parametrize(
    ("labels", "budget", "sizes"),
    [
        (["a", "a", "b", "b"], None, [16, 16, 16, 16]),
        (["a", "a", "b", "b"], 64, [16, 16, 16, 16]),
        (["a", "a", "b", "b"], 40, [10, 10, 10, 10]),
        (["a", "a", "b", "b"], 3, [1, 1, 1, 0]),
        (["a", "a", "b", "c"], 8, [2, 2, 2, 2]),
        (["a", "b", "c"], 2, [1, 1, 0]),
    ],
)
def test_the_budget_of_a_round_is_apportioned_to_labels_then_clusters(
    labels: list[str], budget: int | None, sizes: list[int]
) -> None:
    from synalign.graphs.nodes import _cluster_sizes

    assert _cluster_sizes(labels, 16, budget) == sizes


def test_the_consistency_filter_keeps_rows_of_a_label_it_has_no_real_example_of() -> None:
    """A 1-example label lands in one cross-validation fold's held-out part; that fold's filter cannot judge it."""
    import numpy as np

    from synalign.consistency import label_consistency_scores

    rng = np.random.default_rng(0)
    real = np.concatenate([rng.normal(-1, 0.3, (10, 4)), rng.normal(1, 0.3, (10, 4))])
    pool = rng.normal(0, 1, (6, 4))
    p_other = label_consistency_scores(real, ["a"] * 10 + ["b"] * 10, pool, ["a", "b", "n", "n", "a", "b"])
    assert p_other[2] == p_other[3] == 0.0 and (p_other[[0, 1, 4, 5]] > 0).all()
    assert (label_consistency_scores(real[:10], ["a"] * 10, pool, ["a", "n"] * 3) == 0).all()


# -- an endpoint that accepts connections and never answers ----------------------------------------------------


def test_a_black_hole_endpoint_ends_in_one_line(
    small_data: Path, tmp_path: Path, black_hole: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synalign.agents.settings import LLMSettings
    from synalign.config import RunConfig

    config = RunConfig(data=small_data, out=tmp_path / "x", llm="openai:m", base_url="http://127.0.0.1:1/v1")
    assert LLMSettings.from_config(config).connect_timeout_s == 10  # the default: 10 s, not 600 s of retries
    monkeypatch.setenv("SYNALIGN_LLM_CONNECT_TIMEOUT", "1")
    monkeypatch.setenv("SYNALIGN_LLM_TIMEOUT", "5")  # without the probe: fails in ~20 s instead of hanging the suite
    monkeypatch.setenv("SYNALIGN_LLM_REQUEST_BUDGET", "15")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    out = tmp_path / "run"
    started = time.monotonic()
    result = CliRunner().invoke(app, ["run", "--data", str(small_data), "--out", str(out), "--llm", "openai:m",
                                      "--base-url", f"http://127.0.0.1:{black_hole}/v1", "--rounds", "1"])
    elapsed = time.monotonic() - started
    errors = [line for line in result.stderr.splitlines() if line.startswith("synalign: error: ")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.output, result.output
    assert f"http://127.0.0.1:{black_hole}/v1 sent no answer within 1 s" in errors[0]
    assert elapsed < 60 and not out.exists()  # was: no output for 420 s, then killed
