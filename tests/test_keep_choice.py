"""The held-out choice of how much of the accepted set to keep (issue 20, item 3): the rule on realistic
embeddings (MiniLM of real SST-2 reviews, with mislabelled "synthetic" rows where the data should hurt), the
paired interval it reads, and a ``synalign run --keep heldout`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synalign.errors import InputError
from synalign.keepchoice import choose_keep
from synalign.utility import paired_interval

SYNALIGN = [sys.executable, "-m", "synalign.app"]


@pytest.fixture(scope="module")
def sst2(demo_rows):
    from synalign.embeddings import Embedder

    rows = [r for r in demo_rows if r["label"] in ("negative", "positive")][:600]
    x = Embedder().encode([r["text"] for r in rows])
    return x, np.asarray([r["label"] for r in rows], dtype=object)


def _split(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """8 real per label to train on, 150 'synthetic' (real reviews), the rest held out."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"real": [], "syn": [], "val": []}
    for label in ("negative", "positive"):
        idx = rng.permutation(np.flatnonzero(y == label))
        parts["real"] += idx[:8].tolist()
        parts["syn"] += idx[8:158].tolist()
        parts["val"] += idx[158:].tolist()
    return {k: np.asarray(v) for k, v in parts.items()}


def test_correct_texts_are_kept_whole(sst2) -> None:
    x, y = sst2
    p = _split(x, y)
    rank = np.random.default_rng(1).normal(size=len(p["syn"]))
    choice, kept = choose_keep(x[p["real"]], y[p["real"]].tolist(), x[p["syn"]], y[p["syn"]].tolist(), rank,
                               x[p["val"]], y[p["val"]].tolist(), min_effect=0.02, n_boot=500)
    assert choice.chosen == "all" and np.array_equal(kept, np.arange(len(p["syn"])))
    assert choice.candidates["none"].vs_all.high < 0  # real reviews help: dropping them measurably hurts
    assert choice.candidates["half"].size == len(p["syn"]) // 2


def _mislabelled(y: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(labels with ``fraction`` of each label's rows flipped to the other label, the (n,) flipped mask)."""
    bad = np.zeros(len(y), dtype=bool)
    for label in ("negative", "positive"):
        rows = np.flatnonzero(y == label)
        bad[rows[: int(fraction * len(rows))]] = True
    return np.where(bad, np.where(y == "negative", "positive", "negative"), y).astype(object), bad


def test_mostly_mislabelled_texts_are_dropped_whole(sst2) -> None:
    x, y = sst2
    p = _split(x, y)
    syn_y, _ = _mislabelled(y[p["syn"]], 0.6)
    choice, kept = choose_keep(x[p["real"]], y[p["real"]].tolist(), x[p["syn"]], syn_y.tolist(),
                               np.zeros(len(syn_y)), x[p["val"]], y[p["val"]].tolist(), min_effect=0.02, n_boot=500)
    assert choice.chosen == "none" and kept.size == 0, choice.reason
    assert "no synthetic text" in choice.reason and choice.candidates["none"].vs_all.low > 0


def test_a_rank_that_finds_the_mislabelled_texts_keeps_the_correct_half(sst2) -> None:
    x, y = sst2
    p = _split(x, y)
    syn_y, bad = _mislabelled(y[p["syn"]], 0.4)  # each label: 90 correct rows, 60 of the other label
    choice, kept = choose_keep(x[p["real"]], y[p["real"]].tolist(), x[p["syn"]], syn_y.tolist(),
                               np.where(bad, -1.0, 1.0), x[p["val"]], y[p["val"]].tolist(), min_effect=0.02,
                               n_boot=500)
    assert choice.chosen == "half", choice.reason
    assert not bad[kept].any() and len(kept) == choice.candidates["half"].size == 150


def test_paired_interval_reads_a_paired_difference_and_refuses_mismatches() -> None:
    rng = np.random.default_rng(0)
    labels = ["a"] * 50 + ["b"] * 50
    a = rng.normal(size=100)
    d = paired_interval(a + 0.5, a, labels, n_boot=300)
    assert d.mean == pytest.approx(0.5) and d.low == pytest.approx(0.5) and d.high == pytest.approx(0.5)
    noisy = paired_interval(a, rng.normal(size=100), labels, n_boot=300)
    assert noisy.low < noisy.mean < noisy.high
    with pytest.raises(InputError):
        paired_interval(a[:3], a, labels)
    with pytest.raises(InputError, match="differ in length"):
        choose_keep(np.zeros((2, 3)), ["a", "b"], np.zeros((2, 3)), ["a"], np.zeros(2), np.zeros((1, 3)), ["a"],
                    min_effect=0.02)


def test_a_run_with_keep_heldout_records_its_choice_and_keeps_what_it_chose(small_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [*SYNALIGN, "run", "--data", str(small_data), "--out", str(out), "--llm", "eda", "--rounds", "1",
         "--clusters-per-label", "2", "--samples-per-cluster", "10", "--keep", "heldout", "--seed", "3",
         "--label-check", "off"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())[-1]
    summary = json.loads((out / "summary.json").read_text())
    choice = metrics["keep_choice"]
    assert set(choice["candidates"]) == {"all", "half", "none"}
    assert summary["accepted"] == metrics["accepted"] == choice["candidates"][choice["chosen"]]["size"]
    assert any(line.startswith("kept on the held-out slice: ") for line in summary["verdict"]["evidence"])
    config = json.loads((out / "config.json").read_text())
    assert config["keep"] == "heldout" and "label_check" not in config  # an off switch is left out
