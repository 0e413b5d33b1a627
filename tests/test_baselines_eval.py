"""evals/baselines_eval.py: seed parsing, the summary's paired deltas, and resuming from per-seed files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from synalign.evals.baselines_eval import (
    CAP_PER_SOURCE,
    METHODS,
    N_UNLABELLED,
    REPO,
    _delta,
    _parse_seeds,
    _summary,
    main,
)


def _rows(seeds: range) -> list[dict]:
    shift = {"real only": -0.08, "random": 0.0, "filter": 0.01, "herding": -0.02, "dsir": 0.0,
             "whole pool": 0.005, "imp_loss": -0.01}
    return [{"seed": s, "method": m, "n_synthetic": 1000, "accuracy": 0.8 + shift[m] + 0.001 * s * (m == "dsir")
             + 0.003 * (s % 2), "macro_f1": 0.79, "seconds": 1.0} for s in seeds for m in METHODS]


def test_parse_seeds() -> None:
    assert _parse_seeds("0-3") == [0, 1, 2, 3]
    assert _parse_seeds("5,1, 2-3") == [1, 2, 3, 5]
    with pytest.raises(SystemExit):
        _parse_seeds(" , ")


def test_delta_verdicts() -> None:
    rows = _rows(range(4))
    assert _delta(rows, "random", "random") == ("", "")
    assert _delta(rows, "filter", "random")[1] == "tie"  # constant difference: no variance, no test
    rows[2 * len(METHODS) + 2]["accuracy"] += 0.001  # seed 2's filter: now a real paired test
    assert _delta(rows, "filter", "random")[1] == "win"
    assert _delta(rows, "dsir", "random")[1] == "tie"
    assert _delta(_rows(range(1)), "herding", "random")[1] == "n/a (1 seed)"


def test_summary_has_every_method_and_imp_loss_vs_whole_pool() -> None:
    text = _summary("sst2", _rows(range(3)), "k=32")
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert set(METHODS) <= set(lines)
    assert "-0.0150" in lines["imp_loss"]  # Δ vs whole pool, only on the imp_loss line
    assert lines["dsir"].count("(p") == 1


def test_resume_skips_done_seeds_and_refuses_other_configs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    config = {"task": "sst2", "k": 32, "m": 1000, "cap_per_source": CAP_PER_SOURCE, "n_unlabelled": N_UNLABELLED,
              "data": os.path.relpath(data.resolve(), REPO)}
    folder = tmp_path / "out" / "sst2"
    folder.mkdir(parents=True)
    for s in (0, 1):
        rows = [r for r in _rows(range(2)) if r["seed"] == s]
        (folder / f"seed{s}.json").write_text(json.dumps({"config": config, "seconds": 1.0, "rows": rows}))
    args = ["--tasks", "sst2", "--seeds", "0-1", "--data", str(data), "--out", str(tmp_path / "out")]
    assert main(args) == 0  # no data directory: it would fail if it tried to load anything
    assert len(json.loads((folder / "rows.json").read_text())) == 2 * len(METHODS)
    assert "seeds [0, 1]" in (folder / "summary.md").read_text()
    with pytest.raises(SystemExit, match="use another --out"):
        main([*args[:-4], "--m", "300", *args[-4:]])
    capsys.readouterr()


def test_synalign_ablate_rebuilds_the_baselines_table_from_saved_seeds(tmp_path: Path) -> None:
    """``synalign ablate --table baselines`` re-runs the table from committed per-seed files (nothing embedded:
    the data folder holds no task data, so loading anything would fail), and a bad --table is one usage line."""
    from typer.testing import CliRunner

    from synalign.app.cli import app

    data = tmp_path / "data"
    data.mkdir()
    config = {"task": "sst2", "k": 32, "m": 1000, "cap_per_source": CAP_PER_SOURCE, "n_unlabelled": N_UNLABELLED,
              "data": os.path.relpath(data.resolve(), REPO)}
    folder = tmp_path / "results" / "baselines" / "sst2"
    folder.mkdir(parents=True)
    for s in (0, 1, 2):
        rows = [r for r in _rows(range(3)) if r["seed"] == s]
        (folder / f"seed{s}.json").write_text(json.dumps({"config": config, "seconds": 1.0, "rows": rows}))
    args = ["ablate", "--table", "baselines", "--tasks", "sst2", "--seeds", "0-2", "--data", str(data),
            "--results", str(tmp_path / "results")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = (folder / "summary.md").read_text()
    assert "seeds [0, 1, 2]" in summary and "| dsir |" in summary
    bad = CliRunner().invoke(app, ["ablate", "--table", "nope", "--data", str(data)])
    assert bad.exit_code == 2 and "--table must be ablation or baselines" in bad.output
