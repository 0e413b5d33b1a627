"""``synalign align``: weight and select a synthetic pool made elsewhere (real LM output) against real SST-2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synalign.app.cli import app
from synalign.fileio import read_examples
from synalign.records import SyntheticExample

# GPT-2 (DiLM) SST-2 generations, real LM output (see its SOURCE.md)
SHARED_POOL = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "synthetic" / "sst2-gpt2-dilm" / "generated.jsonl"
)
PER_LABEL = 25


def _invoke(*args: str):  # noqa: ANN202
    return CliRunner().invoke(app, ["align", *args])


def _assert_one_line_error(result, *fragments: str) -> None:  # noqa: ANN001
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("synalign: error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory, small_data: Path) -> Path:
    """25 negative + 25 positive synthetic texts: real LM output from the shared pool when present, else the
    pool an EDA run wrote (Parquet)."""
    out = tmp_path_factory.mktemp("pool")
    if SHARED_POOL.is_file():
        rows = [json.loads(line) for line in SHARED_POOL.read_text(encoding="utf-8").splitlines()]
        kept = (
            [r for r in rows if r["label"] == "negative"][:PER_LABEL]
            + [r for r in rows if r["label"] == "positive"][:PER_LABEL]
        )
        path = out / "pool.jsonl"
        path.write_text(
            "".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in kept), encoding="utf-8"
        )
        return path
    from synalign.config import RunConfig
    from synalign.graphs import run

    result = run(RunConfig(data=small_data, out=out / "run", clusters_per_label=1, cluster_size=4,
                           samples_per_cluster=PER_LABEL, max_rounds=1, target="0", llm="eda"))
    assert all(n == PER_LABEL for n in result.summary["generated_per_label"].values())
    return out / "run" / "pool.parquet"


def test_align_selects_accept_fraction_per_label_and_writes_outputs(demo_dir: Path, pool: Path, tmp_path: Path) -> None:
    out = tmp_path / "aligned"
    # --allow-near-copies: every pool text is eligible, so the counts are accept_fraction × pool (the near-copies
    # kept out by default are tested below)
    common = [
        "--real", str(demo_dir), "--pool", str(pool), "--out", str(out), "--max-real", "200", "--allow-near-copies"
    ]
    result = _invoke(*common, "--accept-fraction", "0.4")
    assert result.exit_code == 0, (result.output, result.stderr)
    assert "20 accepted (negative 10/25, positive 10/25)" in result.stdout
    for name in ("synthetic.jsonl", "synthetic.parquet", "pool.parquet", "metrics.json", "summary.json", "report.html"):
        assert (out / name).is_file(), name
    assert not (out / "config.json").exists() and not (out / "checkpoints.sqlite").exists()  # nothing to resume
    accepted = read_examples(out / "synthetic.jsonl", SyntheticExample)
    whole = read_examples(out / "pool.parquet", SyntheticExample)
    assert len(whole) == 2 * PER_LABEL and {s.text for s in accepted} <= {s.text for s in whole}
    for label in ("negative", "positive"):
        assert sum(1 for s in accepted if s.label == label) == round(0.4 * PER_LABEL)  # accept_fraction × pool
        assert sum(1 for s in whole if s.label == label and s.accepted) == round(0.4 * PER_LABEL)
        assert sum(s.kmm_weight for s in whole if s.label == label) == pytest.approx(1.0, abs=1e-4)
    assert all(s.accepted and s.backend == "external" and s.round == 1 for s in accepted)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert len(metrics) == 1 and metrics[0]["accepted"] == 20 and metrics[0]["generated"] == 2 * PER_LABEL
    assert "mmd2_accepted_heldout" in metrics[0]  # the demo's test split is the held-out check
    assert summary["command"] == "align" and summary["pool"] == str(pool) and summary["selection"] == "filter"
    assert summary["stop_reason"] in ("target", "single_pass") and summary["final_mmd2"] == metrics[0]["mmd2_accepted"]
    assert summary["noise_floor"] > 0 and summary["bandwidth"] > 0 and summary["accept_fraction"] == 0.4
    assert summary["validation"]["source"] == "25% of train" and summary["verdict"]["level"] in (
        "green", "amber", "red"
    )
    assert f"verdict {summary['verdict']['level'].upper()}: {summary['verdict']['headline']}" in result.stdout
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "generated outside synalign" in page and 'id="verdict"' in page and "after aligning the pool" in page

    # an existing --out is refused (one line, nothing touched); --overwrite replaces it
    again = _invoke(*common, "--selection", "herding")
    _assert_one_line_error(again, str(out), "--overwrite")
    assert len(read_examples(out / "synthetic.jsonl", SyntheticExample)) == 20
    replaced = _invoke(*common, "--selection", "herding", "--overwrite")
    assert replaced.exit_code == 0, replaced.stderr
    accepted = read_examples(out / "synthetic.jsonl", SyntheticExample)
    assert [sum(1 for s in accepted if s.label == lab) for lab in ("negative", "positive")] == [13, 13]  # ⌊12.5 + ½⌋
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["selection"] == "herding"


def test_align_pool_and_run_refuse_a_config_without_out(demo_dir: Path, tmp_path: Path) -> None:
    from synalign.config import RunConfig
    from synalign.errors import InputError
    from synalign.graphs import run
    from synalign.graphs.align_pool import align_pool

    config = RunConfig(data=demo_dir, llm="eda")  # no `out`: nowhere to write the outputs
    with pytest.raises(InputError, match="RunConfig.out is required to align"):
        align_pool(config, tmp_path / "pool.jsonl")
    with pytest.raises(InputError, match="RunConfig.out is required to run"):
        run(config)
    assert list(tmp_path.iterdir()) == []


def test_align_bad_input_is_one_line(demo_dir: Path, pool: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    missing = tmp_path / "no-such-pool.jsonl"
    _assert_one_line_error(_invoke("--real", str(demo_dir), "--pool", str(missing), "--out", str(out)), str(missing))
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text("".join(f'{{"text": "a fine film, take {i}", "label": "neutral"}}\n' for i in range(12)),
                       encoding="utf-8")  # enough rows to measure: the unknown label is what is refused
    _assert_one_line_error(_invoke("--real", str(demo_dir), "--pool", str(foreign), "--out", str(out)), "'neutral'")
    _assert_one_line_error(
        _invoke("--real", str(demo_dir), "--pool", str(pool), "--out", str(out), "--accept-fraction", "0"),
        "--accept-fraction",
    )
    _assert_one_line_error(
        _invoke("--real", str(demo_dir), "--pool", str(pool), "--out", str(out), "--selection", "magic"), "magic"
    )
    _assert_one_line_error(
        _invoke("--real", str(demo_dir), "--pool", str(pool), "--out", str(out), "--heldout", str(foreign)),
        str(foreign), "none of its labels",
    )
    _assert_one_line_error(
        _invoke("--real", str(demo_dir), "--pool", str(pool), "--out", str(out), "--holdout", "1"), "--holdout"
    )
    assert not out.exists()  # nothing written on bad input


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text(
        "".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def _summary(out: Path) -> tuple[dict, dict]:  # noqa: ANN202
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return json.loads((out / "summary.json").read_text(encoding="utf-8")), metrics[0]


def test_near_copies_of_real_texts_are_kept_out_unless_allowed(
    small_data: Path, pool: Path, tmp_path: Path
) -> None:
    real = [json.loads(line) for line in small_data.read_text(encoding="utf-8").splitlines()]
    copied = [r for r in real if r["label"] == "negative"][:12] + [r for r in real if r["label"] == "positive"][:12]
    from synalign.datafiles import load_dataset

    pool_rows = [{"text": r.text, "label": r.label} for r in load_dataset(pool).train]
    mixed = _write_jsonl(tmp_path / "mixed.jsonl", pool_rows + copied)  # the pool + exact copies of real texts
    common = ["--real", str(small_data), "--pool", str(mixed), "--accept-fraction", "0.8"]

    result = _invoke(*common, "--out", str(tmp_path / "default"))
    assert result.exit_code == 0, (result.output, result.stderr)
    summary, row = _summary(tmp_path / "default")
    # the slice (25 % of each label of the one file) is carved out of train; the rest is what the pool is aligned
    # against, and a copy counts as a near-copy of the texts aligned against
    held = set(summary["validation"]["ids"])
    assert (
        summary["validation"]["source"] == "25% of train" and len(held) == 30
        and all(i.startswith("train-") for i in held)
    )
    assert row["utility"]["n_real"] == len(real) - len(held) and row["utility"]["n_validation"] == len(held)
    fitted = {r["text"] for i, r in enumerate(real) if f"train-{i}" not in held}
    fit_copies = [r for r in copied if r["text"] in fitted]
    assert len(fit_copies) >= 12
    accepted = {s.text for s in read_examples(tmp_path / "default" / "synthetic.jsonl", SyntheticExample)}
    assert not accepted & {r["text"] for r in fit_copies}
    assert row["near_copies"] >= len(fit_copies) and row["near_copies_accepted"] == 0
    assert summary["novelty"]["accepted_share"] == 0 and summary["novelty"]["excluded"] == row["near_copies"]
    assert summary["verdict"]["level"] in ("green", "amber", "red") and summary["utility"] and summary["fidelity"]
    assert result.stdout.strip().splitlines()[-len(summary["verdict"]["evidence"]) - 1].startswith(
        f"verdict {summary['verdict']['level'].upper()}: "
    )

    allowed = _invoke(*common, "--out", str(tmp_path / "allowed"), "--allow-near-copies")
    assert allowed.exit_code == 0, allowed.stderr
    summary, row = _summary(tmp_path / "allowed")
    accepted = {s.text for s in read_examples(tmp_path / "allowed" / "synthetic.jsonl", SyntheticExample)}
    assert accepted & {r["text"] for r in fit_copies} and row["near_copies_accepted"] > 0
    assert summary["novelty"]["excluded"] == 0 and summary["novelty"]["accepted_share"] > 0


def test_validation_split_or_heldout_file_is_the_slice_and_never_aligned_against(
    demo_rows: list[dict[str, str]], pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import synalign.graphs.runner as runner

    used: list = []
    write_outputs = runner.write_outputs

    def spy(ctx, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        used.append(ctx)
        return write_outputs(ctx, *args, **kwargs)

    monkeypatch.setattr(runner, "write_outputs", spy)
    by_label = {label: [r for r in demo_rows if r["label"] == label] for label in ("negative", "positive")}
    train = by_label["negative"][:40] + by_label["positive"][:40]
    validation = [r for rows in by_label.values() for r in rows[40:70] if r["text"] not in {t["text"] for t in train}]
    real = tmp_path / "real"
    real.mkdir()
    _write_jsonl(real / "train.jsonl", train)
    _write_jsonl(real / "validation.jsonl", validation)

    result = _invoke("--real", str(real), "--pool", str(pool), "--out", str(tmp_path / "split"))
    assert result.exit_code == 0, (result.output, result.stderr)
    summary, row = _summary(tmp_path / "split")
    ctx = used[-1]
    assert summary["validation"]["source"] == "validation split" and summary["validation"]["size"] == len(validation)
    assert not set(summary["validation"]["ids"]) & {r.id for r in ctx.real}  # the slice is not aligned against
    assert not {r.text for r in ctx.validation} & {r.text for r in ctx.real}
    assert len(ctx.real) == len(train) and row["utility"]["n_real"] == len(train)  # the whole train split is fitted
    assert summary["verdict"] and summary["novelty"] and summary["utility"]["n_validation"] == len(validation)

    # a single file has no validation split: --heldout names the slice
    single = _write_jsonl(tmp_path / "train.jsonl", train)
    held = _write_jsonl(tmp_path / "heldout.jsonl", validation)
    result = _invoke(
        "--real", str(single), "--pool", str(pool), "--out", str(tmp_path / "file"), "--heldout", str(held)
    )
    assert result.exit_code == 0, (result.output, result.stderr)
    summary, row = _summary(tmp_path / "file")
    assert summary["validation"]["source"] == f"heldout file {held}" and len(used[-1].real) == len(train)
    assert (
        all(i.startswith("heldout-") for i in summary["validation"]["ids"])
        and row["utility"]["n_validation"] == len(validation)
    )

    # --holdout 0 and no split: nothing to measure utility on, and the verdict says so
    result = _invoke("--real", str(single), "--pool", str(pool), "--out", str(tmp_path / "none"), "--holdout", "0")
    assert result.exit_code == 0, (result.output, result.stderr)
    summary, row = _summary(tmp_path / "none")
    assert summary["validation"]["source"] == "none" and "utility" not in row and summary["utility"] is None
    assert summary["verdict"]["level"] == "amber" and "--holdout 0" in summary["verdict"]["headline"]
    assert len(used[-1].real) == len(train) and "verdict AMBER: utility not measured" in result.stdout
