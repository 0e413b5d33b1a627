"""The CLI: the main job end to end, and one clear line + exit code 2 for every kind of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synalign.app.cli import app

FAST = ["--clusters-per-label", "1", "--cluster-size", "4", "--samples-per-cluster", "4", "--rounds", "1",
        "--allow-near-copies"]  # EDA texts are near-copies of real ones: kept here, so half of each pool is accepted


def _invoke(*args: str):  # noqa: ANN202
    return CliRunner().invoke(app, ["run", *args])


def _assert_one_line_error(result, *fragments: str) -> None:  # noqa: ANN001
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("synalign: error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _rows(n: int = 6, labels: tuple[str, ...] = ("negative", "positive")) -> str:
    words = ["a gripping , funny film", "a dull , lifeless mess", "great acting all round", "flat and tedious",
             "warm and wise", "painfully slow"]
    return "".join(
        json.dumps({"text": f"{words[i % 6]} {i}", "label": labels[i % len(labels)]}) + "\n" for i in range(n)
    )


BAD_INPUTS = {
    "missing_path": (lambda d: d / "nope.jsonl", ["nope.jsonl"]),
    "empty_file": (lambda d: _write(d / "empty.jsonl", ""), ["empty.jsonl", "empty"]),
    "malformed_json": (
        lambda d: _write(d / "bad.jsonl", _rows(4) + '{"text": "oops", "label": \n' + _rows(4)), ["bad.jsonl:5", "JSON"]
    ),
    "malformed_csv": (
        lambda d: _write(d / "bad.csv", 'text,label\n"fine film",positive\n"unclosed,negative\n"ok",negative\n'),
        ["bad.csv"],
    ),
    "missing_text_field": (
        lambda d: _write(d / "f.jsonl", _rows(3) + json.dumps({"body": "x", "label": "positive"}) + "\n"),
        ["f.jsonl:4", "text"],
    ),
    "missing_label_field": (
        lambda d: _write(d / "f.jsonl", json.dumps({"text": "x y"}) + "\n" + _rows(3)), ["f.jsonl:1", "label"]
    ),
    "empty_text": (
        lambda d: _write(d / "f.jsonl", _rows(2) + json.dumps({"text": "   ", "label": "positive"}) + "\n"),
        ["f.jsonl:3", "empty"],
    ),
    "single_label": (lambda d: _write(d / "one.jsonl", _rows(12, ("positive",))), ["one.jsonl", "positive"]),
    "non_utf8": (
        lambda d: _write(d / "latin.jsonl", _rows(2).encode() + b'{"text": "caf\xe9 noir", "label": "positive"}\n'),
        ["latin.jsonl:3", "UTF-8"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    make, fragments = BAD_INPUTS[case]
    data = make(tmp_path / "in")
    out = tmp_path / "out"
    result = _invoke("--data", str(data), "--out", str(out), *FAST)
    _assert_one_line_error(result, *fragments)
    assert not out.exists(), "no output may be written for bad input"


def test_unknown_embedding_model(small_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _invoke(
        "--data", str(small_data), "--out", str(out), "--embedding-model", "no-such-org/no-such-model", *FAST
    )
    _assert_one_line_error(result, "no-such-org/no-such-model")
    assert not out.exists()


def test_max_real_too_small_for_one_cluster_per_label(small_data: Path, tmp_path: Path) -> None:
    """--max-real below labels × cluster size: one line naming the shortfall, nothing written."""
    out = tmp_path / "out"
    result = _invoke("--data", str(small_data), "--out", str(out), *FAST, "--max-real", "6")
    _assert_one_line_error(result, "cannot hold 4 examples of each of 2 labels", "--max-real")
    assert not out.exists()


def test_unwritable_output_directory(small_data: Path, tmp_path: Path) -> None:
    blocker = _write(tmp_path / "a-file", "x")
    result = _invoke("--data", str(small_data), "--out", str(blocker / "run"), *FAST)
    _assert_one_line_error(result, "a-file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_directory(small_data: Path, tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        result = _invoke("--data", str(small_data), "--out", str(parent / "run"), *FAST)
        _assert_one_line_error(result, "not writable")
    finally:
        parent.chmod(0o700)


def test_bad_option_values(small_data: Path, tmp_path: Path) -> None:
    _assert_one_line_error(
        _invoke("--data", str(small_data), "--out", str(tmp_path / "o"), "--target", "soon"), "target"
    )
    _assert_one_line_error(
        _invoke("--data", str(small_data), "--out", str(tmp_path / "o"), "--selection", "magic", *FAST), "magic"
    )
    assert not (tmp_path / "o").exists()


def test_run_existing_dir_resume_and_overwrite(small_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = _invoke("--data", str(small_data), "--out", str(out), *FAST)
    assert first.exit_code == 0, first.output + first.stderr
    assert f"outputs in {out}" in first.stdout
    assert "synthetic.jsonl" in first.stdout and "EDA backend (no language model)" in first.stderr
    before = (out / "synthetic.jsonl").read_text(encoding="utf-8")
    assert len(before.splitlines()) == 4  # 2 labels × 4 samples, half accepted

    # existing directory without --resume / --overwrite: refused, nothing touched
    _assert_one_line_error(_invoke("--data", str(small_data), "--out", str(out), *FAST), str(out), "--resume")
    assert (out / "synthetic.jsonl").read_text(encoding="utf-8") == before

    resumed = CliRunner().invoke(app, ["run", "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.stderr
    assert (out / "synthetic.jsonl").read_text(encoding="utf-8") == before

    again = _invoke("--data", str(small_data), "--out", str(out), "--overwrite", "--seed", "5", *FAST)
    assert again.exit_code == 0, again.stderr
    assert json.loads((out / "config.json").read_text())["seed"] == 5

    # --overwrite never deletes a directory that is not a synalign run
    foreign = tmp_path / "foreign"
    _write(foreign / "precious.txt", "keep me")
    _assert_one_line_error(
        _invoke("--data", str(small_data), "--out", str(foreign), "--overwrite", *FAST), "not a synalign run"
    )
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_console_script_exit_code_and_no_traceback(tmp_path: Path) -> None:
    """The installed entry point, as a user runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "synalign.app", "run", "--data", str(tmp_path / "missing.jsonl"),
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing.jsonl" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["run", "--out", "o", "--rounds", "abc"], "--rounds"), (["run", "--out", "o", "--bogus"], "--bogus"),
     (["frobnicate"], "frobnicate")],
)
def test_usage_errors_are_one_line_too(args: list[str], fragment: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "synalign.app", *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synalign: error: ") and fragment in lines[0], proc.stderr
    assert not (tmp_path / "o").exists()


def test_version_and_run_help_grouped_from_the_config() -> None:
    from synalign import __version__
    from synalign.app.options import option_flag as flag
    from synalign.config import RunConfig

    version = CliRunner().invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.strip() == f"synalign {__version__}"
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = result.output
    sections = [text.index(f"─ {name} ") for name in ("Data", "Generation", "Alignment", "LLM", "Output")]
    assert sections == sorted(sections)  # data first, output last
    for name, field in RunConfig.model_fields.items():  # every field is an option, its description its help
        assert flag(name) in text, name
        assert (field.description or "")[:25] in text, name
    flat = " ".join(text.replace("│", " ").split())  # where a help text wraps depends on the widest column
    assert "(default: filter)" in flat and "(default: 4)" in flat and "Examples:" in text
