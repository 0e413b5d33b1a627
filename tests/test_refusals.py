"""Issue 21, reliability matrix round 3: option values, credentials in a URL, data quirks, non-regular files,
unbounded values, options that do nothing, tiny inputs, ``eval --out`` a file, identical texts and CLI polish.

Each bad input is one ``synalign: error: ...`` line, exit 2 and nothing written. Most are refused before a run
starts, so they go through the CLI's own entry point in-process (:func:`synalign.app.cli.main`), or through the
validator or reader that refuses them; none starts a run.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from synalign.app.cli import main
from synalign.app.options import cli_message, config_error
from synalign.config import RunConfig
from synalign.errors import InputError

SECRET = "pw-SECRET"


def _as_printed(call: Callable[[], object]) -> None:
    """Run ``call``; an InputError it raises is re-raised with its message as the CLI prints it (the core names
    settings by field, ``max_seq_length``; the CLI's printer names their flags, ``--max-seq-length``)."""
    try:
        call()
    except InputError as exc:
        raise InputError(cli_message(str(exc))) from exc


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the CLI in-process: (exit code, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    return int(exited.value.code or 0), capsys.readouterr().err


def _one_line(code: int, err: str, *fragments: str) -> str:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("synalign: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A FIFO no one writes to. A daemon thread opens it for writing after 20 s, so a reader that blocks on it
    fails its test (an empty read) instead of hanging the suite."""
    path = tmp_path / "data.jsonl"
    os.mkfifo(path)

    def unblock() -> None:
        with path.open("w"):
            pass

    timer = threading.Timer(20.0, unblock)
    timer.daemon = True
    timer.start()
    yield path
    timer.cancel()


# -- option values, unbounded values: RunConfig refuses them (the CLI and the Python API alike) -------------

LONG_NAME = "a" * 300
BAD_VALUES = {
    "seed_past_64_bits": ({"seed": 2**64}, "--seed", "4294967295"),
    "seed_past_32_bits": ({"seed": 2**32}, "--seed", "4294967295"),
    "base_url_with_newline": ({"llm": "openai:m", "base_url": "http://127.0.0.1:9/v1\nX: y"}, "--base-url",
                              "control characters"),
    "base_url_with_password": ({"llm": "openai:m", "base_url": f"http://user:{SECRET}@127.0.0.1:9/v1"},
                               "--base-url", "--api-key-env"),
    "base_url_with_user": ({"llm": "openai:m", "base_url": "http://user@127.0.0.1:9/v1"}, "--base-url",
                           "user name or password"),
    "out_name_too_long": ({"out": LONG_NAME}, "--out", "300 bytes"),
    "out_past_path_max": ({"out": "/".join(["d" * 200] * 25)}, "--out", "the path is"),
    "cache_dir_a_file": ({"cache_dir": "FILE"}, "--cache-dir", "is a file, not a directory"),
    "cache_dir_under_a_file": ({"cache_dir": "FILE/cache"}, "--cache-dir", "which is a file"),
    "max_tokens_huge": ({"llm": "openai:m", "max_tokens": 10**12}, "--max-tokens", "at most"),
    "target_infinite": ({"target": "1e400"}, "--target", "finite"),
    "target_infinite_relative": ({"target": "1e400x"}, "--target", "finite"),
    "item_name_newline": ({"llm": "openai:m", "item_name": "Movie\nreview"}, "--item-name", "one line"),
    "item_name_blank": ({"llm": "openai:m", "item_name": "  "}, "--item-name", "non-empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_run_config_refuses_bad_values_in_one_line(case: str, tmp_path: Path) -> None:
    values, flag, fragment = BAD_VALUES[case]
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")
    values = {k: str(v).replace("FILE", str(afile)) if k == "cache_dir" else v for k, v in values.items()}
    with pytest.raises(ValidationError) as caught:
        RunConfig(**{"data": tmp_path / "d.jsonl", "out": tmp_path / "run", **values})
    line = config_error(caught.value)
    assert line.startswith(f"invalid option {flag}: ") and fragment in line, line
    assert "\n" not in line and SECRET not in line and SECRET not in str(caught.value)


def test_run_config_keeps_the_largest_valid_values(tmp_path: Path) -> None:
    config = RunConfig(data=tmp_path / "d.jsonl", out=tmp_path / "run", seed=2**32 - 1, llm="openai:m",
                       max_tokens=4096, item_name="Movie review", cache_dir=tmp_path / "new" / "cache",
                       base_url="http://127.0.0.1:9/v1")
    assert config.seed == 2**32 - 1 and not (tmp_path / "new").exists()  # the check leaves nothing behind


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
def test_cache_dir_under_proc_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        RunConfig(data="d.jsonl", out="run", cache_dir="/proc/synalign-cache")
    assert "cannot create a directory in /proc" in config_error(caught.value)


def test_huge_seed_is_refused_before_anything_is_written(capsys: pytest.CaptureFixture[str], demo_dir: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, err = _main(capsys, "run", "--data", str(demo_dir), "--out", str(out), "--seed", str(2**64))
    _one_line(code, err, "--seed")
    assert not out.exists()


def test_password_in_base_url_is_refused_and_never_printed(capsys: pytest.CaptureFixture[str], demo_dir: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, err = _main(capsys, "run", "--data", str(demo_dir), "--out", str(out), "--llm", "openai:m",
                      "--base-url", f"http://user:{SECRET}@127.0.0.1:9/v1")
    _one_line(code, err, "--base-url", "--api-key-env")
    assert SECRET not in err and not out.exists()


def test_long_out_name_is_one_line(capsys: pytest.CaptureFixture[str], demo_dir: Path, tmp_path: Path) -> None:
    code, err = _main(capsys, "run", "--data", str(demo_dir), "--out", str(tmp_path / LONG_NAME))
    _one_line(code, err, "--out", "longer than the file system allows")
    assert list(tmp_path.iterdir()) == []


def test_max_seq_length_past_the_encoders_positions_is_refused() -> None:
    from synalign.embeddings import Embedder

    Embedder(max_seq_length=512, cache_dir=False).check()  # all-MiniLM-L6-v2 has 512 positions
    with pytest.raises(InputError, match="--max-seq-length 100000 is more than the embedding model's 512"):
        _as_printed(Embedder(max_seq_length=100_000, cache_dir=False).check)


def test_device_cuda_without_cuda_says_so() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    from synalign.embeddings import Embedder

    with pytest.raises(InputError, match="--device cuda: .*CUDA") as caught:
        _as_printed(Embedder(device="cuda", cache_dir=False).check)
    assert "unknown embedding model" not in str(caught.value)


# -- options that do nothing ---------------------------------------------------------------------------------


def test_item_name_with_eda_is_a_note(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from synalign.app.cli import _new_config

    config = _new_config({"data": tmp_path / "d.jsonl", "out": tmp_path / "run", "llm": "eda",
                          "item_name": "Movie review"})
    assert config.item_name == "Movie review"
    notes = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(notes) == 1 and notes[0].startswith("note: --item-name") and "EDA" in notes[0]
    _new_config({"data": tmp_path / "d.jsonl", "out": tmp_path / "run", "llm": "openai:m", "item_name": "Review"})
    assert capsys.readouterr().err == ""


# -- data quirks and non-regular files -------------------------------------------------------------------------


def test_lone_surrogate_names_file_and_line(tmp_path: Path, demo_rows: list[dict[str, str]]) -> None:
    from synalign.datafiles import load_examples

    path = tmp_path / "train.jsonl"
    lines = [json.dumps(r) for r in demo_rows[:20]]
    lines[6] = '{"text": "a fine \\ud800 film", "label": "positive"}'
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"^{path}:7: field 'text' holds a lone surrogate \\ud800"):
        load_examples(path)


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csv_with_a_duplicate_column_is_refused(tmp_path: Path, demo_rows: list[dict[str, str]]) -> None:
    from synalign.datafiles import load_examples

    path = _csv(tmp_path / "train.csv", ["text", "label", "text"],
                [[r["text"], r["label"], "translated"] for r in demo_rows[:20]])
    with pytest.raises(InputError, match=rf"^{path}:1: column 'text' appears 2 times"):
        load_examples(path)


def test_csv_with_a_nul_byte_names_file_and_line(tmp_path: Path, demo_rows: list[dict[str, str]]) -> None:
    from synalign.datafiles import load_examples

    rows = [[r["text"], r["label"]] for r in demo_rows[:20]]
    rows[9][0] = rows[9][0][:10] + "\0" + rows[9][0][10:]
    path = _csv(tmp_path / "train.csv", ["text", "label"], rows)
    with pytest.raises(InputError, match=rf"^{path}:11: NUL byte at column 11"):
        load_examples(path)


def test_data_fifo_is_not_a_regular_file(fifo: Path) -> None:
    from synalign.datafiles import load_dataset

    with pytest.raises(InputError, match=rf"^{fifo} is not a regular file \(a FIFO\)"):
        load_dataset(fifo)


def test_align_pool_fifo_is_refused(capsys: pytest.CaptureFixture[str], demo_dir: Path, fifo: Path,
                                    tmp_path: Path) -> None:
    out = tmp_path / "aligned"
    code, err = _main(capsys, "align", "--real", str(demo_dir), "--pool", str(fifo), "--out", str(out))
    _one_line(code, err, "not a regular file")
    assert not out.exists()


def test_a_label_of_identical_texts_is_refused_in_the_users_terms(
    capsys: pytest.CaptureFixture[str], demo_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    rows = [r if r["label"] == "negative" else {**r, "text": "a great movie"} for r in demo_rows[:100]]
    out = tmp_path / "run"
    code, err = _main(capsys, "run", "--data", str(_jsonl(tmp_path / "train.jsonl", rows)), "--out", str(out))
    line = _one_line(code, err, "label 'positive' are the same text", "'a great movie'")
    assert "length-scale" not in line and not out.exists()


def test_a_label_with_a_few_repeated_texts_is_still_used(demo_rows: list[dict[str, str]], tmp_path: Path) -> None:
    from synalign.datafiles import load_dataset, validate_for_run

    rows = demo_rows[:100] + [{"text": "a great movie", "label": "positive"}] * 5
    validate_for_run(load_dataset(_jsonl(tmp_path / "train.jsonl", rows)), cluster_size=8)


# -- tiny inputs, eval --out, trace, strategies ----------------------------------------------------------------


def test_align_pool_of_one_row_is_too_few_to_measure(capsys: pytest.CaptureFixture[str], demo_dir: Path,
                                                     demo_rows: list[dict[str, str]], tmp_path: Path) -> None:
    out = tmp_path / "aligned"
    pool = _jsonl(tmp_path / "pool.jsonl", demo_rows[:1])
    code, err = _main(capsys, "align", "--real", str(demo_dir), "--pool", str(pool), "--out", str(out))
    _one_line(code, err, "too few rows to measure (1)")
    assert not out.exists()


COMPARE_CASES = {
    "two_rows": (["--max-texts", "2"], "too few texts to measure: A has 2, B has 2"),
    "max_texts_negative": (["--max-texts", "-1"], "--max-texts"),
    "seed_negative": (["--seed", "-1"], "--seed"),
    "seed_past_32_bits": (["--seed", str(2**32)], "--seed"),
}


@pytest.mark.parametrize("case", sorted(COMPARE_CASES))
def test_compare_refuses_bad_values(case: str, capsys: pytest.CaptureFixture[str], demo_dir: Path) -> None:
    args, fragment = COMPARE_CASES[case]
    code, err = _main(capsys, "compare", str(demo_dir), str(demo_dir), *args)
    _one_line(code, err, fragment)


def test_eval_out_an_existing_file_is_refused_before_evaluating(capsys: pytest.CaptureFixture[str],
                                                                demo_dir: Path, tmp_path: Path) -> None:
    afile = tmp_path / "results"
    afile.write_text("keep me", encoding="utf-8")
    code, err = _main(capsys, "eval", "--data", str(demo_dir), "--pool", str(demo_dir / "train.jsonl"),
                      "--out", str(afile))
    _one_line(code, err, "--out", "is a file, not a directory")
    assert afile.read_text(encoding="utf-8") == "keep me"


@pytest.mark.parametrize("args, fragment", [
    (["--node", "bogus"], "--node"), (["--round", "99"], "--round 99: the trace holds rounds 1, 2"),
    (["--round", "0"], "--round"),
])
def test_trace_refuses_a_node_or_round_it_does_not_hold(args: list[str], fragment: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    records = [{"node": node, "round": r, "status": "ok", "prompt": [], "response": "x"}
               for r in (1, 2) for node in ("summarize", "generate")]
    _jsonl(tmp_path / "llm_trace.jsonl", records)
    code, err = _main(capsys, "trace", str(tmp_path), *args)
    _one_line(code, err, fragment)


def test_unknown_strategy_lists_filter_and_filter_plus_name() -> None:
    from synalign.selection import check_strategy

    for name in ("bogus", "filter+bogus"):
        with pytest.raises(InputError, match=r"known: filter, filter\+NAME, (\w+, )*herding, .*random"):
            check_strategy(name)
