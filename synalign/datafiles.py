"""Read and check the user's labelled data: JSONL / CSV / Parquet files into a :class:`Dataset`.

Input formats (one labelled text per row, field names configurable):

* JSONL (``.jsonl``): one JSON object per line, parsed line by line with :mod:`json` so that every error
  names its physical line (1-based, blank lines counted and skipped).
* CSV (``.csv``): comma-separated with a header row (line 1), parsed with the standard :mod:`csv` module
  rather than pandas because pandas cannot report the physical line of a malformed row (quoted fields may
  span several lines and blank lines are skipped); ``csv.reader.line_num`` tracks it exactly.
* Parquet (``.parquet``): read with pyarrow; a "line" there is the 1-based row number.

A dataset is either one file (train split only) or a directory with ``train.{jsonl,csv,parquet}`` and an
optional ``test.*`` and ``validation.*`` / ``dev.*`` (:func:`validation_splits`; the run's validation slice,
:mod:`synalign.holdout`). A directory may also be a Hugging Face dataset as ``datasets`` saves it
(``save_to_disk`` folders, or ``data/{split}-*.parquet`` shards: :mod:`synalign.hflayout`); a ``ClassLabel``
label column gives the labels' names (:attr:`Dataset.label_names`). :func:`validate_for_run` checks that a
dataset can feed a SynAlign run.

Every problem with user input raises :class:`synalign.errors.InputError` with a one-line message such as
``"data/train.jsonl:17: malformed JSON (Expecting ',' delimiter at column 12)"``.
"""

from __future__ import annotations

import csv
import io as _stdio
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from synalign.errors import InputError
from synalign.filecheck import COMPRESSED_SUFFIXES, check_not_compressed, check_regular_file
from synalign.hflayout import class_label_names, hf_split_files, read_hf_table
from synalign.records import RealExample

__all__ = ["SUPPORTED_SUFFIXES", "VALIDATION_SPLITS", "Dataset", "load_dataset", "load_examples", "validation_splits",
           "validate_for_run"]

SUPPORTED_SUFFIXES: tuple[str, ...] = (".jsonl", ".csv", ".parquet")
"""File types :func:`load_examples` reads (by suffix, case-insensitive)."""

VALIDATION_SPLITS: tuple[str, ...] = ("validation", "valid", "val", "dev")
"""Split names of a dataset directory read as the validation split, in order of preference (the first found is
the run's validation slice, :mod:`synalign.holdout`)."""

_BOM = b"\xef\xbb\xbf"


# --------------------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------------------


class Dataset(BaseModel):
    """Real labelled examples: a ``train`` split and optional ``test`` and ``validation`` splits.

    Attributes:
        train: training examples (ids ``"train-0"``, ``"train-1"``, ...).
        test: test examples (ids ``"test-i"``) or ``None`` when the input has no test split.
        validation: validation examples (ids ``"validation-i"``) or ``None``.
        validation_path: the file the validation split was read from, or ``None``.
        path: the file or directory the user gave.
        train_path: the file the train split was read from (used in error messages).
        test_path: the file the test split was read from, or ``None``.
        label_names: label value → name, from a ``ClassLabel`` label column (``{"0": "negative"}``); ``None``
            when the data names no labels (``--label-names`` may: :func:`synalign.labeltypes.label_names_for_run`).
    """

    model_config = ConfigDict(frozen=True)

    train: list[RealExample]
    test: list[RealExample] | None = None
    path: Path
    train_path: Path
    test_path: Path | None = None
    validation: list[RealExample] | None = None
    validation_path: Path | None = None
    label_names: dict[str, str] | None = None

    @property
    def labels(self) -> list[str]:
        """Sorted unique labels of the train split."""
        return sorted({example.label for example in self.train})

    def by_label(self) -> dict[str, list[RealExample]]:
        """Train examples grouped by label (keys sorted, file order kept within a label)."""
        groups: dict[str, list[RealExample]] = defaultdict(list)
        for example in self.train:
            groups[example.label].append(example)
        return {label: groups[label] for label in sorted(groups)}


# --------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------


def load_examples(
    path: Path | str,
    *,
    text_field: str = "text",
    label_field: str = "label",
    split: str = "train",
) -> list[RealExample]:
    """Read labelled examples from one JSONL, CSV or Parquet file.

    If ``path`` is a directory, the file ``{split}.jsonl|csv|parquet`` inside it is read.

    Args:
        path: the file (or a directory holding ``{split}.*``).
        text_field, label_field: names of the text and label fields / columns.
        split: used for the ids, ``f"{split}-{i}"`` with ``i`` the 0-based row index.

    Returns:
        One :class:`RealExample` per row, in file order. ``source`` is ``"PATH:LINE"`` (1-based physical
        line for JSONL and CSV, where the CSV header is line 1; 1-based row number for Parquet). Labels are
        converted to ``str`` (integral floats as integers, booleans as ``"true"``/``"false"``).

    Raises:
        InputError: missing path, unsupported file type, empty file, malformed JSON line or CSV row, a JSON
            line that is not an object, missing text/label field or column, null/empty label, empty or
            whitespace-only text, non-string text, bytes that are not valid UTF-8, unreadable Parquet.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file or directory: {path}")
    if path.is_dir():
        found = _locate(path, split)
        if found is None:
            raise InputError(f"{path}: no {split} split (expected {_expected_names(split)})")
        where, shards = found
        if shards is not None:  # a Hugging Face layout
            return _hf_examples(where, shards, text_field=text_field, label_field=label_field, split=split)
        path = where
    check_regular_file(path)  # a FIFO would block the first read forever
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".csv") or suffix in COMPRESSED_SUFFIXES:
        check_not_compressed(path)
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(
            f"{path}: unsupported file type {path.suffix or '(no suffix)'!r} "
            "(expected .jsonl, .csv or .parquet)"
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read {path} ({_one_line(exc.strerror or str(exc))})") from None
    if size == 0:
        raise InputError(f"{path} is empty")

    reader = {".jsonl": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet}[suffix]
    rows = list(reader(path, text_field, label_field))
    if not rows:
        raise InputError(f"{path} is empty")
    return [
        RealExample(id=f"{split}-{i}", text=text, label=label, source=f"{path}:{line}")
        for i, (line, text, label) in enumerate(rows)
    ]


def load_dataset(path: Path | str, *, text_field: str = "text", label_field: str = "label") -> Dataset:
    """Read a dataset: one file (train split only) or a directory with ``train.*`` and optional ``test.*`` and
    ``validation.*`` / ``dev.*`` (the first of :func:`validation_splits`).

    A directory must hold exactly one ``train.{jsonl,csv,parquet}``; other files are not read.

    Raises:
        InputError: see :func:`load_examples`; also a directory without a train split, or with two train
            (or test) files of different types.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file or directory: {path}")
    fields = {"text_field": text_field, "label_field": label_field}
    if not path.is_dir():
        examples = load_examples(path, **fields, split="train")
        return Dataset(train=examples, path=path, train_path=path, label_names=class_label_names([path], label_field))
    train_split = _locate(path, "train")
    if train_split is None:
        raise InputError(f"{path}: no train split (expected {_expected_names('train')})")
    test_split = _locate(path, "test")
    plain_validation = [p for p in validation_splits(path) if p.is_file() and p.parent == path]
    validation_split = (
        (plain_validation[0], None) if plain_validation
        else next((found for name in VALIDATION_SPLITS if (found := hf_split_files(path, name))), None)
    )

    def read(found: tuple[Path, list[Path] | None] | None, split: str) -> list[RealExample] | None:
        if found is None:
            return None
        where, shards = found
        if shards is None:
            return load_examples(where, **fields, split=split)
        return _hf_examples(where, shards, **fields, split=split)

    train = read(train_split, "train")
    assert train is not None
    return Dataset(
        train=train, test=read(test_split, "test"), path=path, train_path=train_split[0],
        test_path=test_split[0] if test_split else None, validation=read(validation_split, "validation"),
        validation_path=validation_split[0] if validation_split else None,
        label_names=class_label_names(train_split[1] or [train_split[0]], label_field),
    )


def validation_splits(path: Path | str) -> list[Path]:
    """The ``validation`` / ``dev`` split files (:data:`VALIDATION_SPLITS`) of a dataset directory, the preferred
    name first (``validation`` before ``dev``); a run reads the first as its validation slice.

    Args:
        path: the ``--data`` path (a file has no other splits).

    Returns:
        The files, sorted by name; empty for a file or a directory without such a split.
    """
    path = Path(path)
    if not path.is_dir():
        return []
    found = [
        child
        for child in sorted(path.iterdir())
        if child.is_file()
        and child.stem.lower() in VALIDATION_SPLITS
        and child.suffix.lower() in SUPPORTED_SUFFIXES
    ]
    hf = [where for name in VALIDATION_SPLITS if (split := hf_split_files(path, name)) for where in split[:1]]
    return sorted(found, key=lambda child: VALIDATION_SPLITS.index(child.stem.lower())) + hf


def _split_name(path: Path) -> str:
    """The split a path of :func:`validation_splits` (or ``Dataset.*_path``) holds: ``"dev"`` for ``dev.csv``,
    ``"validation"`` for a ``save_to_disk`` folder ``validation/`` or a shard
    ``data/validation-00000-of-00001.parquet``."""
    return path.stem.split("-")[0] if path.parent.name == "data" else path.name if path.is_dir() else path.stem


def _locate(directory: Path, split: str) -> tuple[Path, list[Path] | None] | None:
    """``(where, shards)`` of a split of a dataset directory: a plain ``{split}.*`` file (``shards`` None), else a
    Hugging Face layout's shards (:func:`synalign.hflayout.hf_split_files`); ``None`` when absent."""
    plain = _find_split(directory, split)
    return (plain, None) if plain is not None else hf_split_files(directory, split)


def _hf_examples(
    where: Path, shards: list[Path], *, text_field: str, label_field: str, split: str
) -> list[RealExample]:
    """The examples of a Hugging Face split (``where`` names it; ``source`` is ``WHERE:ROW``, 1-based)."""
    table = read_hf_table(shards, [text_field, label_field])
    rows = list(_table_rows(table, where, text_field, label_field))
    if not rows:
        raise InputError(f"{where} is empty")
    return [
        RealExample(id=f"{split}-{i}", text=text, label=label, source=f"{where}:{row}")
        for i, (row, text, label) in enumerate(rows)
    ]


def _expected_names(split: str) -> str:
    return ", ".join(f"{split}{s}" for s in SUPPORTED_SUFFIXES[:-1]) + f" or {split}{SUPPORTED_SUFFIXES[-1]}"


def _find_split(directory: Path, split: str) -> Path | None:
    matches = [
        child
        for child in sorted(directory.iterdir())
        if child.is_file() and child.stem == split and child.suffix.lower() in SUPPORTED_SUFFIXES
    ]
    if len(matches) > 1:
        names = ", ".join(m.name for m in matches)
        raise InputError(f"{directory}: more than one {split} split ({names}); keep one")
    return matches[0] if matches else None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _label_str(value: Any, where: str, label_field: str) -> str:
    """Label as ``str``; raises InputError for null, empty, or nested values."""
    if value is None:
        raise InputError(f"{where}: null label (field {label_field!r})")
    if isinstance(value, bool):
        label = "true" if value else "false"
    elif isinstance(value, (int, np.integer)):
        label = str(int(value))
    elif isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise InputError(f"{where}: null label (field {label_field!r} is {value})")
        label = str(int(value)) if float(value).is_integer() else str(float(value))
    elif isinstance(value, str):
        label = value
    else:
        raise InputError(
            f"{where}: label must be a string or a number, got {type(value).__name__} (field {label_field!r})"
        )
    if not label.strip():
        raise InputError(f"{where}: empty label (field {label_field!r})")
    _check_encodable(label, where, label_field)
    return label


def _check_text(value: Any, where: str, text_field: str) -> str:
    if value is None:
        raise InputError(f"{where}: null text (field {text_field!r})")
    if not isinstance(value, str):
        raise InputError(f"{where}: text must be a string, got {type(value).__name__} (field {text_field!r})")
    if not value.strip():
        raise InputError(f"{where}: empty text")
    _check_encodable(value, where, text_field)
    return value


def _check_encodable(value: str, where: str, field: str) -> None:
    """Refuse a lone UTF-16 surrogate (a JSON ``\\ud800`` escape with no pair): no UTF-8 file can hold it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{where}: field {field!r} holds a lone surrogate \\u{ord(value[exc.start]):04x} at character "
            f"{exc.start + 1} (half of a UTF-16 pair; not valid Unicode text)"
        ) from None


def _utf8_error(path: Path, line: int, exc: UnicodeDecodeError, line_bytes: bytes) -> InputError:
    bad = line_bytes[exc.start] if exc.start < len(line_bytes) else 0
    return InputError(f"{path}:{line}: not valid UTF-8 (byte 0x{bad:02x} at column {exc.start + 1})")


def _read_jsonl(path: Path, text_field: str, label_field: str) -> Iterator[tuple[int, str, str]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {path} ({_one_line(exc.strerror or str(exc))})") from None
    with handle:
        for line_no, raw in enumerate(handle, start=1):
            raw = raw.rstrip(b"\r\n")
            if line_no == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _utf8_error(path, line_no, exc, raw) from None
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{where}: expected a JSON object, got {_json_type(obj)}")
            for field in (text_field, label_field):
                if field not in obj:
                    fields = ", ".join(map(str, obj)) or "none"
                    raise InputError(f"{where}: missing field {field!r} (fields: {fields})")
            text = _check_text(obj[text_field], where, text_field)
            yield line_no, text, _label_str(obj[label_field], where, label_field)


def _json_type(obj: Any) -> str:
    if isinstance(obj, list):
        return "an array"
    if isinstance(obj, str):
        return "a string"
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "a boolean"
    return "a number"


def _decode_utf8_file(path: Path) -> str:
    """Whole file as text; invalid UTF-8 reported with its physical line and column."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path} ({_one_line(exc.strerror or str(exc))})") from None
    data = data.removeprefix(_BOM)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line_no = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - line_start + 1
        raise InputError(
            f"{path}:{line_no}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {col})"
        ) from None


def _read_csv(path: Path, text_field: str, label_field: str) -> Iterator[tuple[int, str, str]]:
    text = _decode_utf8_file(path)
    if not text.strip():
        raise InputError(f"{path} is empty")
    nul = text.find("\0")
    if nul >= 0:  # the csv module reads it as data: a binary or corrupt file would pass as text
        line_no, column = text.count("\n", 0, nul) + 1, nul - text.rfind("\n", 0, nul)
        raise InputError(f"{path}:{line_no}: NUL byte at column {column} (a binary or corrupt file, not CSV text)")
    reader = csv.reader(_stdio.StringIO(text, newline=""), strict=True)
    previous_end = 0
    header: list[str] | None = None
    header_line = 1
    try:
        for row in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip() and header is None):
                continue  # blank line
            if header is None:
                header, header_line = row, start
                for field in (text_field, label_field):
                    if field not in header:
                        raise InputError(
                            f"{path}:{header_line}: missing field {field!r} (fields: {', '.join(header)})"
                        )
                    if header.count(field) > 1:
                        raise InputError(
                            f"{path}:{header_line}: column {field!r} appears {header.count(field)} times in the "
                            "header; rename the others"
                        )
                text_idx, label_idx = header.index(text_field), header.index(label_field)
                continue
            where = f"{path}:{start}"
            if len(row) != len(header):
                raise InputError(
                    f"{where}: malformed CSV row (expected {len(header)} fields, got {len(row)})"
                )
            yield (
                start,
                _check_text(row[text_idx], where, text_field),
                _label_str(row[label_idx], where, label_field),
            )
    except csv.Error as exc:
        raise InputError(f"{path}:{previous_end + 1}: malformed CSV row ({_one_line(str(exc))})") from None
    if header is None:
        raise InputError(f"{path} is empty")


def _read_parquet(path: Path, text_field: str, label_field: str) -> Iterator[tuple[int, str, str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({_one_line(str(exc))})") from None
    for field in (text_field, label_field):
        if field not in names:
            raise InputError(f"{path}: missing column {field!r} (columns: {', '.join(names)})")
    try:
        table = parquet.read(columns=[text_field, label_field])
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({_one_line(str(exc))})") from None
    yield from _table_rows(table, path, text_field, label_field)


def _table_rows(table: Any, path: Path, text_field: str, label_field: str) -> Iterator[tuple[int, str, str]]:
    texts = table.column(text_field).to_pylist()
    labels = table.column(label_field).to_pylist()
    for row, (text, label) in enumerate(zip(texts, labels, strict=True), start=1):
        where = f"{path}: row {row}"
        yield row, _check_text(text, where, text_field), _label_str(label, where, label_field)


# --------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------


def _check_varied(groups: dict[str, list[RealExample]], where: Path) -> None:
    """Refuse a label whose examples are mostly one text: when most pairs of them are identical, their median
    distance is 0 and the explorer's kernel cannot tell any two apart (it would fail as a too-small length-scale)."""
    for label, members in groups.items():
        counts = Counter(example.text for example in members)
        n = len(members)
        same_pairs = sum(c * (c - 1) for c in counts.values())  # ordered pairs, as n * (n - 1) below
        if n < 2 or 2 * same_pairs <= n * (n - 1):
            continue
        text, top = counts.most_common(1)[0]
        shown = text if len(text) <= 40 else text[:40] + "…"
        if top == n:
            raise InputError(f"{where}: all {n} examples of label {label!r} are the same text ({shown!r}); the "
                             "explorer needs different texts to pick demonstrations from")
        raise InputError(f"{where}: {top} of the {n} examples of label {label!r} are the same text ({shown!r}); "
                         "remove the duplicates so the explorer can tell the examples apart")


def validate_for_run(dataset: Dataset, *, cluster_size: int) -> list[str]:
    """Check that the train split can feed a SynAlign run.

    A few-shot label (fewer train examples than ``cluster_size``) is used as it is: its demonstration
    clusters shrink to the label's size. That is not an error; it is reported in the returned notes.

    Args:
        dataset: the loaded dataset.
        cluster_size: demonstration cluster size (GP pick + nearest neighbours), see ``RunConfig``.

    Returns:
        notes for the user (one line each), e.g. ``"FILE: label 'abbr' has 3 examples, fewer than
        --cluster-size 8: its clusters hold 3"``, and one naming the validation split a dataset directory
        holds (the run's validation slice); empty when every label fills a cluster and there is no such file.

    Raises:
        InputError: no examples, fewer than two labels ("only one label 'x' in FILE; need at least two"), or a
            label whose examples are mostly one text.
    """
    groups = dataset.by_label()
    where = dataset.train_path
    if len(groups) < 2:
        if not groups:
            raise InputError(f"{where} has no examples")
        (label,) = groups
        raise InputError(f"only one label {label!r} in {where}; need at least two")
    _check_varied(groups, where)
    notes = [
        f"{split}: the {_split_name(split)} split is the run's validation slice (held out from generation and "
        "selection; it measures whether the data helps)"
        for split in validation_splits(dataset.path)[:1]
    ]
    small = [(label, len(members)) for label, members in groups.items() if len(members) < cluster_size]
    if not small:
        return notes
    listed = ", ".join(f"{label!r} has {count}" for label, count in small)
    return notes + [
        (
            f"{where}: few examples for --cluster-size {cluster_size}: {listed}; "
            f"{'its' if len(small) == 1 else 'their'} clusters use all {'its' if len(small) == 1 else 'their'} "
            "examples"
        )
    ]
