"""Tests of synalign.datafiles / sampling / fileio: reading JSONL/CSV/Parquet, one-line input errors, sampling,
atomic writes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel, field_serializer
from pydantic_core import PydanticSerializationError

import synalign
from synalign.datafiles import Dataset, load_dataset, load_examples, validate_for_run
from synalign.errors import InputError
from synalign.fileio import atomic_write_bytes, atomic_write_text, read_examples, write_examples
from synalign.records import RealExample, SyntheticExample
from synalign.sampling import stratified_sample

DEMO = Path(synalign.__file__).parent / "data" / "sst2-demo"


@pytest.fixture(scope="module")
def demo() -> Dataset:
    return load_dataset(DEMO)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _error(func, *args, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------------------------------------------------
# Reading good data
# ---------------------------------------------------------------------------------------------------------


def test_demo_dataset_loads_with_both_splits(demo: Dataset) -> None:
    assert len(demo.train) == 800 and demo.test is not None and len(demo.test) == 872
    assert demo.labels == ["negative", "positive"]
    assert Counter(e.label for e in demo.train) == {"negative": 400, "positive": 400}
    assert demo.train[0].id == "train-0" and demo.test[871].id == "test-871"
    first = json.loads((DEMO / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert demo.train[0].text == first["text"] and demo.train[0].label == first["label"]
    assert demo.train[0].source == f"{DEMO / 'train.jsonl'}:1"
    assert demo.test[5].source == f"{DEMO / 'test.jsonl'}:6"
    groups = demo.by_label()
    assert list(groups) == ["negative", "positive"]
    assert [e.id for e in groups["positive"]] == [e.id for e in demo.train if e.label == "positive"]


def test_demo_round_trip_jsonl_and_parquet(demo: Dataset, tmp_path: Path) -> None:
    for name in ("train.jsonl", "train.parquet"):
        out = tmp_path / name
        write_examples(demo.train, out)
        assert read_examples(out, RealExample) == demo.train
    # the written JSONL is itself a readable input file with identical texts and labels
    again = load_examples(tmp_path / "train.jsonl")
    assert [(e.text, e.label) for e in again] == [(e.text, e.label) for e in demo.train]


def test_parquet_keeps_lists_as_lists(tmp_path: Path) -> None:
    records = [
        SyntheticExample(
            id=f"syn-{i}",
            text=f"text {i}",
            label="positive",
            round=1,
            backend="offline:eda",
            demonstration_ids=[f"train-{i}", f"train-{i + 1}"],
            weight=0.25 * i,
            accepted=i % 2 == 0,
        )
        for i in range(4)
    ]
    out = tmp_path / "synthetic.parquet"
    write_examples(records, out)
    schema = pq.read_schema(out)
    assert pa.types.is_list(schema.field("demonstration_ids").type)
    assert read_examples(out, SyntheticExample) == records


def test_jsonl_csv_parquet_give_identical_records(demo: Dataset, tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": [e.text for e in demo.train], "label": [e.label for e in demo.train]})
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.to_parquet(tmp_path / "train.parquet", index=False)
    jsonl = load_examples(DEMO / "train.jsonl")
    csv_rows = load_examples(tmp_path / "train.csv")
    parquet_rows = load_examples(tmp_path / "train.parquet")
    key = [(e.id, e.text, e.label) for e in jsonl]
    assert [(e.id, e.text, e.label) for e in csv_rows] == key
    assert [(e.id, e.text, e.label) for e in parquet_rows] == key
    # CSV line numbers count the header; SST texts hold no newlines, so row i is on line i + 2
    assert csv_rows[10].source == f"{tmp_path / 'train.csv'}:12"
    assert parquet_rows[10].source == f"{tmp_path / 'train.parquet'}:11"


def test_custom_field_names_and_numeric_labels(tmp_path: Path) -> None:
    rows = [{"sentence": "a gorgeous film", "y": 1}, {"sentence": "a dull mess", "y": 0}]
    _write_jsonl(tmp_path / "d.jsonl", rows)
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet", index=False)
    for name in ("d.jsonl", "d.csv", "d.parquet"):
        got = load_examples(tmp_path / name, text_field="sentence", label_field="y")
        assert [(e.text, e.label) for e in got] == [("a gorgeous film", "1"), ("a dull mess", "0")], name
    # with the default field names the same file is an error naming the missing field
    message = _error(load_examples, tmp_path / "d.jsonl")
    assert "d.jsonl:1: missing field 'text' (fields: sentence, y)" in message


def test_csv_multiline_quoted_field_keeps_physical_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "multi.csv"
    path.write_text(
        'text,label\n"first line\nsecond line, with comma",pos\n"say ""hi""",neg\n', encoding="utf-8"
    )
    rows = load_examples(path)
    assert rows[0].text == "first line\nsecond line, with comma" and rows[1].text == 'say "hi"'
    assert [r.source for r in rows] == [f"{path}:2", f"{path}:4"]
    path.write_text('text,label\n"two\nlines",pos\n"x",neg,extra\n', encoding="utf-8")
    assert "multi.csv:4: malformed CSV row (expected 2 fields, got 3)" in _error(load_examples, path)


def test_directory_reads_dev_as_validation_and_test_is_optional(tmp_path: Path) -> None:
    rows = [{"text": "fine", "label": "a"}, {"text": "bad", "label": "b"}]
    _write_jsonl(tmp_path / "train.jsonl", rows)
    ds = load_dataset(tmp_path)
    assert ds.test is None and ds.validation is None and len(ds.train) == 2
    (tmp_path / "dev.jsonl").write_text("not json at all\n", encoding="utf-8")
    with pytest.raises(InputError, match="dev.jsonl:1: malformed JSON"):  # the validation split is read
        load_dataset(tmp_path)
    _write_jsonl(tmp_path / "dev.jsonl", rows[:1])
    _write_jsonl(tmp_path / "validation.jsonl", rows)
    ds = load_dataset(tmp_path)  # validation is preferred to dev
    assert ds.validation_path == tmp_path / "validation.jsonl" and [e.id for e in ds.validation] == [
        "validation-0", "validation-1"]
    assert ds.test is None and len(ds.train) == 2 and ds.train_path == tmp_path / "train.jsonl"
    pd.DataFrame(rows).to_csv(tmp_path / "test.csv", index=False)
    ds = load_dataset(tmp_path)
    assert ds.test is not None and [e.id for e in ds.test] == ["test-0", "test-1"]
    single = load_dataset(tmp_path / "train.jsonl")
    assert single.test is None and single.train == ds.train


# ---------------------------------------------------------------------------------------------------------
# Bad input: one line naming file and line
# ---------------------------------------------------------------------------------------------------------

GOOD = '{"text": "a fine film", "label": "positive"}\n'


def _bad_jsonl(tmp_path: Path, body: bytes, name: str = "bad.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(body)
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            GOOD * 2 + '{"text": "x", "label": }\n',
            "bad.jsonl:3: malformed JSON (Expecting value at column 24)",
        ),
        (GOOD + '["a list", "x"]\n', "bad.jsonl:2: expected a JSON object, got an array"),
        (GOOD + '{"label": "negative"}\n', "bad.jsonl:2: missing field 'text' (fields: label)"),
        (GOOD * 3 + '{"text": "no label"}\n', "bad.jsonl:4: missing field 'label' (fields: text)"),
        (GOOD * 3 + '{"text": "   \\t ", "label": "x"}\n', "bad.jsonl:4: empty text"),
        (GOOD + '{"text": "null label", "label": null}\n', "bad.jsonl:2: null label"),
        (GOOD + '{"text": 17, "label": "x"}\n', "bad.jsonl:2: text must be a string"),
        (GOOD + "\n   \n" + '{"text": "x" "label": "y"}\n', "bad.jsonl:4: malformed JSON"),
    ],
    ids=[
        "malformed",
        "not-object",
        "missing-text",
        "missing-label",
        "empty-text",
        "null-label",
        "text-not-str",
        "blank-lines-counted",
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path: Path, body: str, expected: str) -> None:
    path = _bad_jsonl(tmp_path, body.encode("utf-8"))
    assert expected in _error(load_examples, path)


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = _bad_jsonl(tmp_path, (GOOD + "\n\n" + GOOD.replace("positive", "negative")).encode())
    rows = load_examples(path)
    assert [r.label for r in rows] == ["positive", "negative"]
    assert rows[1].id == "train-1" and rows[1].source.endswith("bad.jsonl:4")


def test_non_utf8_jsonl_and_csv(tmp_path: Path) -> None:
    path = _bad_jsonl(tmp_path, GOOD.encode() + b'{"text": "caf\xe9", "label": "x"}\n')
    assert "bad.jsonl:2: not valid UTF-8 (byte 0xe9 at column 14)" in _error(load_examples, path)
    csv_path = tmp_path / "bad.csv"
    csv_path.write_bytes(b"text,label\nfine,a\nna\xefve\xff,b\n")
    assert "bad.csv:3: not valid UTF-8 (byte 0xef at column 3)" in _error(load_examples, csv_path)


def test_csv_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("sentence,label\nfine,a\n", encoding="utf-8")
    assert "bad.csv:1: missing field 'text' (fields: sentence, label)" in _error(load_examples, path)
    path.write_text("text,label\nfine,a\nok,b\ntoo,many,fields\n", encoding="utf-8")
    assert "bad.csv:4: malformed CSV row (expected 2 fields, got 3)" in _error(load_examples, path)
    path.write_text("text,label\nfine,a\n  ,b\n", encoding="utf-8")
    assert "bad.csv:3: empty text" in _error(load_examples, path)
    path.write_text("text,label\nfine,a\nno label,\n", encoding="utf-8")
    assert "bad.csv:3: empty label" in _error(load_examples, path)
    path.write_text('text,label\nfine,a\n"unterminated,b\n', encoding="utf-8")
    assert "bad.csv:3: malformed CSV row" in _error(load_examples, path)
    path.write_text("text,label\n", encoding="utf-8")
    assert "bad.csv is empty" in _error(load_examples, path)


def test_parquet_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"sentence": ["a"], "label": ["x"]}).to_parquet(path)
    assert "bad.parquet: missing column 'text' (columns: sentence, label)" in _error(load_examples, path)
    pd.DataFrame({"text": ["good", "   "], "label": ["x", "y"]}).to_parquet(path)
    assert "bad.parquet: row 2: empty text" in _error(load_examples, path)
    pd.DataFrame({"text": ["good", "fine"], "label": ["x", None]}).to_parquet(path)
    assert "bad.parquet: row 2: null label" in _error(load_examples, path)
    path.write_bytes(b"this is not parquet")
    assert "bad.parquet: not a readable Parquet file" in _error(load_examples, path)


def test_missing_empty_unsupported_and_directory_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    assert _error(load_examples, missing) == f"no such file or directory: {missing}"
    assert _error(load_dataset, missing) == f"no such file or directory: {missing}"
    for name in ("empty.jsonl", "empty.csv", "empty.parquet"):
        (tmp_path / name).write_bytes(b"")
        assert _error(load_examples, tmp_path / name) == f"{tmp_path / name} is empty"
    (tmp_path / "blank.jsonl").write_text("\n  \n\n", encoding="utf-8")
    assert _error(load_examples, tmp_path / "blank.jsonl") == f"{tmp_path / 'blank.jsonl'} is empty"
    (tmp_path / "data.txt").write_text("hello\n", encoding="utf-8")
    assert "data.txt: unsupported file type '.txt'" in _error(load_examples, tmp_path / "data.txt")
    folder = tmp_path / "folder"
    folder.mkdir()
    _write_jsonl(folder / "test.jsonl", [{"text": "x", "label": "y"}])
    assert "folder: no train split (expected train.jsonl, train.csv or train.parquet)" in _error(
        load_dataset, folder
    )
    _write_jsonl(folder / "train.jsonl", [{"text": "x", "label": "y"}])
    pd.DataFrame({"text": ["x"], "label": ["y"]}).to_csv(folder / "train.csv", index=False)
    assert "more than one train split (train.csv, train.jsonl)" in _error(load_dataset, folder)


def test_read_examples_reports_invalid_rows(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.jsonl"
    path.write_text('{"id": "a", "text": "t", "label": "l"}\n{"id": "b", "text": "t"}\n', encoding="utf-8")
    assert "synthetic.jsonl:2: invalid RealExample (label: Field required)" in _error(
        read_examples, path, RealExample
    )


# ---------------------------------------------------------------------------------------------------------
# Sampling and validation
# ---------------------------------------------------------------------------------------------------------


def test_stratified_sample_keeps_proportions_and_order(demo: Dataset) -> None:
    unbalanced = [e for e in demo.train if e.label == "negative"] + [
        e for e in demo.train if e.label == "positive"
    ][:100]
    sample = stratified_sample(unbalanced, 50, seed=3)
    assert Counter(e.label for e in sample) == {"negative": 40, "positive": 10}
    positions = [unbalanced.index(e) for e in sample]
    assert positions == sorted(positions) and len(set(positions)) == 50
    assert stratified_sample(unbalanced, 50, seed=3) == sample
    assert stratified_sample(unbalanced, 50, seed=4) != sample
    assert stratified_sample(unbalanced, 10_000, seed=0) == unbalanced
    assert stratified_sample(unbalanced, 0, seed=0) == []


def test_stratified_sample_largest_remainder(demo: Dataset) -> None:
    # 5 / 3 / 2 examples, n = 7: exact quotas 3.5 / 2.1 / 1.4 -> floors 3/2/1, spare seat to the 0.5 remainder
    texts = [e.text for e in demo.train[:10]]
    labels = ["a"] * 5 + ["b"] * 3 + ["c"] * 2
    examples = [
        RealExample(id=f"x{i}", text=t, label=lab)
        for i, (t, lab) in enumerate(zip(texts, labels, strict=True))
    ]
    for seed in range(5):
        assert Counter(e.label for e in stratified_sample(examples, 7, seed)) == {"a": 4, "b": 2, "c": 1}
    with pytest.raises(ValueError):
        stratified_sample(examples, -1, seed=0)


def test_stratified_sample_keeps_rare_labels_with_min_per_label(demo: Dataset) -> None:
    # 31 / 2 / 3 examples, n = 10: exact quotas 8.61 / 0.56 / 0.83 → Hamilton 9 / 0 / 1 drops "b"; a minimum
    # of 2 per label takes the seats from the largest label: 6 / 2 / 2
    labels = ["a"] * 31 + ["b"] * 2 + ["c"] * 3
    examples = [
        RealExample(id=f"x{i}", text=e.text, label=lab)
        for i, (e, lab) in enumerate(zip(demo.train[:36], labels, strict=True))
    ]
    assert Counter(e.label for e in stratified_sample(examples, 10, seed=0)) == {"a": 9, "c": 1}
    kept = stratified_sample(examples, 10, seed=0, min_per_label=2)
    assert Counter(e.label for e in kept) == {"a": 6, "b": 2, "c": 2}
    # a label with fewer examples than the minimum keeps all of them
    assert Counter(e.label for e in stratified_sample(examples, 12, seed=1, min_per_label=3)) == {
        "a": 7,
        "b": 2,
        "c": 3,
    }
    with pytest.raises(InputError, match="cannot hold 2 examples of each of 3 labels"):
        stratified_sample(examples, 5, seed=0, min_per_label=2)


def test_read_json_errors_are_one_line_with_the_path(tmp_path: Path) -> None:
    from synalign.fileio import read_json

    good = tmp_path / "ok.json"
    good.write_text('{"a": [1, 2]}', encoding="utf-8")
    assert read_json(good, "price table") == {"a": [1, 2]}
    with pytest.raises(InputError, match=r"missing\.json: cannot read price table"):
        read_json(tmp_path / "missing.json", "price table")
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "a": ,\n}', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.json:2: price table is not valid JSON"):
        read_json(bad, "price table")
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"a": "café"}'.encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.json: price table is not valid JSON \(not UTF-8\)"):
        read_json(latin, "price table")


def test_validate_for_run(demo: Dataset, tmp_path: Path) -> None:
    validate_for_run(demo, cluster_size=8)  # 400 per label
    one = _write_jsonl(tmp_path / "one.jsonl", [{"text": f"t{i}", "label": "pos"} for i in range(10)])
    assert (
        _error(validate_for_run, load_dataset(one), cluster_size=2)
        == f"only one label 'pos' in {one}; need at least two"
    )
    rows = [{"text": f"t{i}", "label": "pos"} for i in range(10)] + [
        {"text": f"u{i}", "label": "neg"} for i in range(3)
    ]
    small = _write_jsonl(tmp_path / "small.jsonl", rows)
    # a few-shot label is used as it is (its clusters shrink), with one note naming it
    (note,) = validate_for_run(load_dataset(small), cluster_size=8)
    assert "small.jsonl" in note and "'neg' has 3" in note and "--cluster-size 8" in note
    assert "'pos'" not in note
    assert validate_for_run(load_dataset(small), cluster_size=3) == []


# ---------------------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------------------


class _Exploding(BaseModel):
    id: str
    text: str

    @field_serializer("text")
    def _boom(self, value: str) -> str:
        if value == "explode":
            raise RuntimeError("serialisation failed")
        return value


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path, suffix: str) -> None:
    records = [_Exploding(id=str(i), text=f"row {i}") for i in range(50)]
    bad = [*records[:30], _Exploding(id="30", text="explode"), *records[30:]]
    new = tmp_path / f"new{suffix}"
    with pytest.raises(PydanticSerializationError, match="serialisation failed"):
        write_examples(bad, new)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary file

    old = tmp_path / f"old{suffix}"
    write_examples(records[:5], old)
    before = old.read_bytes()
    with pytest.raises(PydanticSerializationError, match="serialisation failed"):
        write_examples(bad, old)
    assert old.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [old.name]
    assert read_examples(old, _Exploding) == records[:5]


def test_atomic_write_text_and_bytes(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "report.md"
    atomic_write_text(target, "# réport\n")
    assert target.read_text(encoding="utf-8") == "# réport\n"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"\x00\x01"
    assert "unsupported output type '.csv'" in _error(write_examples, [], tmp_path / "out.csv")
