"""Comparing two text sets: MMD² with its noise floor, Sinkhorn divergence and a calibrated discriminator."""

from __future__ import annotations

import numpy as np
import pytest

from synalign.compare import compare_embeddings, compare_sets, discriminator_auc
from synalign.errors import InputError


def test_discriminator_separates_shifted_clouds_not_same_distribution() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 8))
    assert 0.35 < discriminator_auc(a[:100], a[100:]) < 0.65
    assert discriminator_auc(a, rng.normal(loc=0.8, size=(150, 8))) > 0.9
    with pytest.raises(InputError):
        discriminator_auc(a, a[:1])


def test_real_halves_sit_at_the_floor_and_eda_text_does_not(demo_rows) -> None:
    texts = {label: [r["text"] for r in demo_rows if r["label"] == label] for label in ("negative", "positive")}
    real = texts["negative"][:150]
    same = compare_sets(real, texts["negative"][150:300])
    other = compare_sets(real, texts["positive"][:150])
    assert same["mmd2_over_floor"] < 3 and abs(same["discriminator_auc"] - 0.5) < 0.15
    assert 0.3 < same["discriminator_auc_floor"] < 0.7
    assert other["mmd2"] > same["mmd2"] and other["discriminator_auc"] > same["discriminator_auc"] + 0.15
    assert other["sinkhorn"] > same["sinkhorn"]


def test_compare_needs_enough_rows() -> None:
    with pytest.raises(InputError, match="too few texts to measure: A has 3, B has 12"):
        compare_embeddings(np.zeros((3, 4)), np.zeros((12, 4)))


def test_compare_command_reads_a_run_directory_and_prints_json(tmp_path, demo_dir) -> None:
    import json
    import subprocess
    import sys

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    rows = [json.loads(line) for line in (demo_dir / "train.jsonl").read_text().splitlines()]
    rows = rows[::2][:300] + rows[1::2][:120]  # two disjoint samples of the same real distribution
    (tmp_path / "real.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:300]))
    (run / "synthetic.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[300:]))
    proc = subprocess.run(
        [sys.executable, "-m", "synalign.app", "compare", str(tmp_path / "real.jsonl"), str(run), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["n_a"] == 300 and result["n_b"] == 120
    assert result["mmd2_over_floor"] < 3 and 0.3 < result["discriminator_auc"] < 0.7
    bad = subprocess.run([sys.executable, "-m", "synalign.app", "compare", str(demo_dir), str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("synalign: error: no such file")


def _jsonl(path, rows):  # noqa: ANN001, ANN202
    import json

    path.write_text(
        "".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def test_compare_heldout_judges_b_as_training_data(tmp_path, demo_dir, demo_rows) -> None:
    """A: 8 real texts per label. B: 100 held-back real texts per label (train rows not in A) helps on the held-out
    test split; the same texts with their labels swapped hurt (red)."""
    import json

    from typer.testing import CliRunner

    from synalign.app.cli import app

    neg = [r for r in demo_rows if r["label"] == "negative"]
    pos = [r for r in demo_rows if r["label"] == "positive"]
    a = _jsonl(tmp_path / "a.jsonl", neg[:8] + pos[:8])
    held_back = neg[8:108] + pos[8:108]
    b = _jsonl(tmp_path / "b.jsonl", held_back)
    swap = {"negative": "positive", "positive": "negative"}
    flipped = _jsonl(tmp_path / "flipped.jsonl", [{"text": r["text"], "label": swap[r["label"]]} for r in held_back])
    test = [json.loads(line) for line in (demo_dir / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    heldout = _jsonl(tmp_path / "heldout.jsonl", test[:300])

    def compare(*args: str):  # noqa: ANN202
        return CliRunner().invoke(app, ["compare", *args])

    good = compare(str(a), str(b), "--heldout", str(heldout), "--json")
    assert good.exit_code == 0, good.output
    result = json.loads(good.stdout)
    ll = result["utility"]["delta_log_likelihood"]
    assert ll["mean"] > 0 and ll["low"] > 0 and result["utility"]["n_validation"] == 300
    assert result["utility"]["n_real"] == 16 and result["utility"]["n_synthetic"] == 200
    assert {"mean", "low", "high"} <= set(result["utility"]["delta_accuracy"]) and result["utility"]["delta_macro_f1"]
    assert result["novelty"]["accepted_share"] < 0.1 and result["fidelity"]["mmd2"] > 0
    assert result["fidelity"]["discriminator_auc_floor"] is not None and result["verdict"]["level"] == "green"

    bad = compare(str(a), str(flipped), "--heldout", str(heldout))
    assert bad.exit_code == 0, bad.output
    assert "Δ log-likelihood of the true label (nats/example)  -" in bad.stdout
    assert bad.stdout.strip().splitlines()[-1].startswith("verdict RED: ")

    one = _jsonl(tmp_path / "one.jsonl", test[:1])
    foreign = _jsonl(tmp_path / "foreign.jsonl", [{"text": "a fine film", "label": "neutral"}] * 3)
    for heldout_path, fragment in ((one, "at least 2 labelled texts"), (foreign, "label 'neutral', which A")):
        result = compare(str(a), str(b), "--heldout", str(heldout_path))
        assert result.exit_code == 2 and "Traceback" not in result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("synalign: error: compare: ") and fragment in lines[0], lines


def test_copies_of_held_out_texts_count_as_near_copies(demo_rows) -> None:
    """A B that copies the held-out texts would inflate the utility: they are near-copies, as in a run."""
    from synalign.compare import assess_with_heldout

    neg = [r for r in demo_rows if r["label"] == "negative"]
    pos = [r for r in demo_rows if r["label"] == "positive"]
    a, held, fresh = neg[:8] + pos[:8], neg[100:120] + pos[100:120], neg[200:210] + pos[200:210]
    b = held[:10] + fresh  # 10 verbatim copies of held-out texts, 20 new real texts
    got = assess_with_heldout([r["text"] for r in a], [r["label"] for r in a], [r["text"] for r in b],
                              [r["label"] for r in b], [r["text"] for r in held], [r["label"] for r in held])
    assert got.near_copies >= 10 and got.novelty.accepted_share >= 10 / 30
