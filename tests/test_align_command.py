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
SHARED_POOL = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthetic" / "sst2-gpt2-dilm" / "generated.jsonl"
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
        kept = [r for r in rows if r["label"] == "negative"][:PER_LABEL] + [r for r in rows if r["label"] == "positive"][:PER_LABEL]
        path = out / "pool.jsonl"
        path.write_text("".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in kept), encoding="utf-8")
        return path
    from synalign.config import RunConfig
    from synalign.graphs import run

    result = run(RunConfig(data=small_data, out=out / "run", clusters_per_label=1, cluster_size=4,
                           samples_per_cluster=PER_LABEL, max_rounds=1, target="0", llm="eda"))
    assert all(n == PER_LABEL for n in result.summary["generated_per_label"].values())
    return out / "run" / "pool.parquet"


def test_align_selects_accept_fraction_per_label_and_writes_outputs(demo_dir: Path, pool: Path, tmp_path: Path) -> None:
    out = tmp_path / "aligned"
    common = ["--real", str(demo_dir), "--pool", str(pool), "--out", str(out), "--max-real", "200"]
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
        assert sum(s.weight for s in whole if s.label == label) == pytest.approx(1.0, abs=1e-4)
    assert all(s.accepted and s.backend == "external" and s.round == 1 for s in accepted)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert len(metrics) == 1 and metrics[0]["accepted"] == 20 and metrics[0]["generated"] == 2 * PER_LABEL
    assert "mmd2_accepted_heldout" in metrics[0]  # the demo's test split is the held-out check
    assert summary["command"] == "align" and summary["pool"] == str(pool) and summary["selection"] == "filter"
    assert summary["stop_reason"] in ("target", "single_pass") and summary["final_mmd2"] == metrics[0]["mmd2_accepted"]
    assert summary["noise_floor"] > 0 and summary["bandwidth"] > 0 and summary["accept_fraction"] == 0.4
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


def test_align_bad_input_is_one_line(demo_dir: Path, pool: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    missing = tmp_path / "no-such-pool.jsonl"
    _assert_one_line_error(_invoke("--real", str(demo_dir), "--pool", str(missing), "--out", str(out)), str(missing))
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"text": "a fine film", "label": "neutral"}\n', encoding="utf-8")
    _assert_one_line_error(_invoke("--real", str(demo_dir), "--pool", str(foreign), "--out", str(out)), "'neutral'")
    _assert_one_line_error(
        _invoke("--real", str(demo_dir), "--pool", str(pool), "--out", str(out), "--accept-fraction", "0"),
        "--accept-fraction",
    )
    _assert_one_line_error(
        _invoke("--real", str(demo_dir), "--pool", str(pool), "--out", str(out), "--selection", "magic"), "magic"
    )
    assert not out.exists()  # nothing written on bad input
