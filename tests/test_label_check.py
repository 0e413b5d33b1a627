"""The LM's own label check (issue 20, item 2): the margin arithmetic, the selection it orders, the config's
refusals, and, against the real llama.cpp server with the embedded Gemma 3 270M, the checker on real SST-2 texts
and a one-round ``synalign run --label-check lm``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synalign.alignment import align
from synalign.config import RunConfig
from synalign.errors import InputError
from synalign.lmcheck import label_margins, token_groups

SYNALIGN = [sys.executable, "-m", "synalign.app"]


def test_margins_are_own_first_token_minus_best_other() -> None:
    first = {"negative": 7, "positive": 3, "neutral": 9}
    tokens = [3, 7, 9]
    lp = np.log(np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]))
    got = label_margins(lp, tokens, first, ["positive", "negative"])
    assert got == pytest.approx([np.log(0.6 / 0.3), np.log(0.2 / 0.6)])


def test_labels_sharing_a_first_token_are_one_group_and_not_each_others_competitor() -> None:
    first = {"card_arrival": 5, "card_linking": 5, "refund": 8}
    assert token_groups(first) == {5: ("card_arrival", "card_linking"), 8: ("refund",)}
    lp = np.log(np.array([[0.7, 0.2], [0.7, 0.2]]))
    got = label_margins(lp, [5, 8], first, ["card_linking", "refund"])
    assert got == pytest.approx([np.log(0.7 / 0.2), np.log(0.2 / 0.7)])
    assert label_margins(np.zeros((1, 1)), [5], {"a": 5, "b": 5}, ["a"]).tolist() == [0.0]  # nothing to tell apart


def test_margins_refuse_a_label_without_a_first_token_or_a_shape_mismatch() -> None:
    with pytest.raises(InputError, match="no first token"):
        label_margins(np.zeros((1, 2)), [1, 2], {"a": 1, "b": 2}, ["c"])
    with pytest.raises(InputError, match=r"expected \(2, 2\)"):
        label_margins(np.zeros((1, 2)), [1, 2], {"a": 1, "b": 2}, ["a", "b"])


def _pool(seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = {"a": rng.normal(size=16), "b": rng.normal(size=16)}
    real_labels = ["a"] * 30 + ["b"] * 30
    syn_labels = ["a"] * 20 + ["b"] * 20
    real = np.stack([centres[y] + 0.5 * rng.normal(size=16) for y in real_labels])
    syn = np.stack([centres[y] + 0.5 * rng.normal(size=16) for y in syn_labels])
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return norm(syn), syn_labels, norm(real), real_labels


def test_priority_fills_each_quota_with_the_largest_margins_among_the_filters_kept() -> None:
    syn, syn_labels, real, real_labels = _pool()
    margins = np.random.default_rng(1).normal(size=len(syn_labels))
    margins[3] = np.nan  # an unscored text ranks last
    result = align(syn, syn_labels, real, real_labels, strategy="filter", accept_fraction=0.25, seed=0,
                   device="cpu", compute_mmd=False, priority=margins)
    plain = align(syn, syn_labels, real, real_labels, strategy="filter", accept_fraction=0.25, seed=0,
                  device="cpu", compute_mmd=False)
    labels = np.asarray(syn_labels)
    for label in ("a", "b"):
        rows = np.flatnonzero(labels == label)
        chosen = rows[result.accepted[rows]]
        assert len(chosen) == 5 == int(plain.accepted[rows].sum())
        # the filter's rejects are the same in both runs (same τ), so the chosen are the top margins of the rest
        assert result.filter_threshold == plain.filter_threshold
        rest = np.setdiff1d(rows, chosen)
        kept_rest = [i for i in rest if not np.isnan(margins[i])]
        assert 3 not in chosen
        if result.filtered == 0:
            assert np.nanmin(margins[chosen]) >= max(margins[kept_rest], default=-np.inf)
    assert not np.array_equal(result.accepted, plain.accepted)  # random among the kept picks others


def test_priority_without_a_filter_takes_exactly_each_labels_largest_margins() -> None:
    syn, syn_labels, real, real_labels = _pool(2)
    margins = np.random.default_rng(3).normal(size=len(syn_labels))
    result = align(syn, syn_labels, real, real_labels, strategy="random", accept_fraction=0.25, seed=0,
                   device="cpu", compute_mmd=False, priority=margins)
    labels = np.asarray(syn_labels)
    for label in ("a", "b"):
        rows = np.flatnonzero(labels == label)
        top = rows[np.argsort(-margins[rows])[:5]]
        assert set(np.flatnonzero(result.accepted & (labels == label))) == set(top)


def test_priority_of_the_wrong_length_is_refused() -> None:
    syn, syn_labels, real, real_labels = _pool()
    with pytest.raises(InputError, match="priority must be 40"):
        align(syn, syn_labels, real, real_labels, priority=np.zeros(3), device="cpu")


def test_auto_checks_labels_with_the_local_lm_only(tmp_path: Path) -> None:
    assert RunConfig(data=tmp_path, llm="local").label_check_on
    assert not RunConfig(data=tmp_path, llm="eda").label_check_on
    assert not RunConfig(data=tmp_path, llm="openai:gpt-4o-mini").label_check_on  # its API has no token ids
    assert not RunConfig(data=tmp_path, llm="local", label_check="off").label_check_on
    assert "label_check" not in RunConfig(data=tmp_path, llm="local", label_check="off").model_dump()


def test_label_check_needs_a_language_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`label_check` lm needs a language model"):
        RunConfig(data=tmp_path, llm="eda", label_check="lm")
    with pytest.raises(ValueError, match="`base_url`"):
        RunConfig(data=tmp_path, llm="openai:gpt-4o-mini", label_check="lm")
    proc = subprocess.run([*SYNALIGN, "run", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--llm", "eda",
                           "--label-check", "lm"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--label-check" in proc.stderr and "language model" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- against the real local server --------------------------------------------------------------------------


def _local_lm_available() -> bool:
    from synalign.agents.llamacpp import find_binary

    if find_binary() is None:
        if os.environ.get("SYNALIGN_REQUIRE_LOCAL_LM") == "1":
            raise RuntimeError("SYNALIGN_REQUIRE_LOCAL_LM=1 but llama-server is not built (synalign local-lm build)")
        return False
    return True


needs_local_lm = pytest.mark.skipif(not _local_lm_available(), reason="llama-server not built")


@pytest.mark.slow
@needs_local_lm
def test_the_local_lm_reads_real_reviews_as_their_label(demo_rows) -> None:
    from synalign.agents.labelcheck import InContextLabelChecker
    from synalign.agents.llamacpp import LocalServer, embedded_model_path

    by_label = {y: [r["text"] for r in demo_rows if r["label"] == y] for y in ("negative", "positive")}
    reference = {y: texts[:32] for y, texts in by_label.items()}
    texts = [t for y in ("negative", "positive") for t in by_label[y][100:120]]
    intended = ["negative"] * 20 + ["positive"] * 20
    swapped = ["positive"] * 20 + ["negative"] * 20
    with LocalServer.start(embedded_model_path()) as server:
        checker = InContextLabelChecker(server.base_url, "gemma", reference)
        try:
            right = np.asarray(checker.margins(texts, intended))
            calls = checker.calls
            wrong = np.asarray(checker.margins(texts, swapped))
        finally:
            checker.close()
    assert checker.per_label == 4 and checker.groups == {checker.first_tokens["negative"]: ("negative",),
                                                         checker.first_tokens["positive"]: ("positive",)}
    assert calls == 40 and checker.calls == 80 and checker.seconds > 0
    assert np.allclose(right, -wrong, atol=1e-6)  # two labels: the margin flips sign with the label
    # the 270M model leans to one label, but its margin ranks: "positive" scores higher on positive reviews
    from sklearn.metrics import roc_auc_score

    positive_score = np.where(np.asarray(intended) == "positive", right, wrong)
    assert roc_auc_score(np.asarray(intended) == "positive", positive_score) >= 0.75, right


@pytest.mark.slow
@needs_local_lm
def test_a_run_with_the_label_check_orders_its_pick_by_the_lms_margin(small_data: Path, tmp_path: Path) -> None:
    import pandas as pd

    def run(check: str) -> tuple[subprocess.CompletedProcess, Path]:
        out = tmp_path / check
        proc = subprocess.run(
            [*SYNALIGN, "run", "--data", str(small_data), "--out", str(out), "--llm", "local", "--rounds", "1",
             "--clusters-per-label", "1", "--samples-per-cluster", "12", "--cluster-size", "6", "--label-check",
             check, "--seed", "7"],  # not test_local_lm's run: its response-cache entries would make that one's hits
            capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc, out

    proc, out = run("lm")
    summary = json.loads((out / "summary.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())[-1]
    pool = pd.read_parquet(out / "pool.parquet")
    assert pool["label_margin"].notna().all() and len(pool) == summary["generated"]
    assert summary["usage"]["label_check_calls"] == summary["generated"] == metrics["label_check_calls"]
    assert summary["cost"]["label_check_calls_per_accepted"] == pytest.approx(
        summary["generated"] / summary["accepted"], abs=1e-3)
    assert summary["cost"]["generated_per_accepted"] == pytest.approx(summary["generated"] / summary["accepted"],
                                                                      abs=1e-3)
    assert summary["backend"]["label_check"]["per_label"] == 4
    accepted = pool[pool["accepted"]]
    assert metrics["lm_agrees_accepted"] == pytest.approx(float(np.mean(accepted["label_margin"] > 0)))
    assert metrics["lm_agrees_pool"] == pytest.approx(float(np.mean(pool["label_margin"] > 0)))
    assert "label check:" in proc.stderr and "calls per accepted text" in proc.stderr
    assert "label-check requests per accepted text" in (out / "report.html").read_text()

    # the same run without the check generates the same pool (the check changes no prompt) and keeps the same
    # filter's survivors, from which it draws at random: the check's pick has the larger margins, label by label
    _, off_dir = run("off")
    off = pd.read_parquet(off_dir / "pool.parquet").set_index("id")
    assert "label_margin" not in off.columns
    lm_pool = pool.set_index("id")
    assert off["text"].equals(lm_pool["text"].loc[off.index])
    for label, rows in lm_pool.groupby("label"):
        kept_lm = rows[rows["accepted"]]["label_margin"]
        kept_off = rows.loc[off[(off["label"] == label) & off["accepted"]].index, "label_margin"]
        assert len(kept_lm) == len(kept_off)
        assert kept_lm.sum() >= kept_off.sum() - 1e-9, label
    assert json.loads((off_dir / "summary.json").read_text())["cost"]["label_check_calls_per_accepted"] is None
