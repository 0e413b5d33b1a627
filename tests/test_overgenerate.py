"""Over-generation (issue "Data that helps", item 4): ``--overgenerate F`` writes F times the texts per cluster
and accepts as many as a run without it, from the larger pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synalign.config import RunConfig
from synalign.graphs import run


def _config(data: Path, out: Path, **overrides: object) -> RunConfig:
    base: dict[str, object] = dict(
        data=data, out=out, clusters_per_label=1, cluster_size=4, samples_per_cluster=6, max_rounds=1,
        target="0", seed=3, allow_near_copies=True, patience=None,
    )
    base.update(overrides)
    return RunConfig(**base)


def test_overgeneration_writes_twice_the_texts_and_accepts_as_many(small_data: Path, tmp_path: Path) -> None:
    plain = run(_config(small_data, tmp_path / "plain"))
    over = run(_config(small_data, tmp_path / "over", overgenerate=2))
    assert [m["generated"] for m in plain.metrics] == [12] and [m["accepted"] for m in plain.metrics] == [6]
    assert [m["generated"] for m in over.metrics] == [24] and [m["accepted"] for m in over.metrics] == [6]
    for label in ("negative", "positive"):
        assert sum(s.label == label and s.accepted for s in over.pool) == 3
    assert over.summary["accept_fraction"] == pytest.approx(0.25) and plain.summary["accept_fraction"] == 0.5
    saved = json.loads((tmp_path / "over" / "config.json").read_text())
    assert saved["overgenerate"] == 2 and "overgenerate" not in json.loads((tmp_path / "plain" / "config.json")
                                                                            .read_text())
    card = (tmp_path / "over" / "README.md").read_text(encoding="utf-8")
    assert "over-generation: 2.0× the texts per cluster" in card and "pool: 0.25" in card


def test_overgeneration_stays_within_the_sample_budget(small_data: Path, tmp_path: Path) -> None:
    result = run(_config(small_data, tmp_path / "run", overgenerate=2, max_samples=20))
    assert len(result.pool) == 20 and "over_budget" not in result.summary["dropped"]
    assert [s.label for s in result.pool].count("negative") == 10
    assert result.metrics[-1]["accepted"] == 6  # a quarter of each label's 10, rounded half up: 3 per label


def test_overgeneration_factor_is_bounded(tmp_path: Path) -> None:
    for bad in (0.5, 5):
        with pytest.raises(ValueError, match="overgenerate"):
            RunConfig(data=tmp_path, overgenerate=bad)
    assert RunConfig(data=tmp_path, accept_fraction=0.6, overgenerate=3).accept_share == pytest.approx(0.2)
