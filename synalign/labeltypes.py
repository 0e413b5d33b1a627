"""The type of the label column in the user's data file (``int``, ``float``, ``bool`` or ``str``), and the
``datasets`` features of its text and label columns.

The data reader (:mod:`synalign.datafiles`) turns every label into a string; what is exported back to the
user's schema (``synalign export``, the dataset card's ``synalign.label_dtype`` and ``synalign.features``) is
cast back to this type, with the source's Arrow string type (``string`` or ``large_string``) and its
``ClassLabel`` names (:func:`source_features`), so the export concatenates with the real data.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synalign.datafiles import SUPPORTED_SUFFIXES, Dataset
from synalign.errors import InputError
from synalign.hflayout import hf_features, hf_split_files, read_hf_table

__all__ = ["LABEL_DTYPES", "detect_label_dtype", "label_names_for_run", "source_features"]

LABEL_DTYPES: dict[str, str] = {"int": "int64", "float": "float64", "bool": "bool", "str": "string"}
"""Label type of the user's data → the ``datasets`` ``Value`` dtype it is exported as (when the data file does
not say more: a Parquet / Arrow column keeps its own type, :func:`source_features`)."""

_ARROW_TO_VALUE = {"double": "float64", "float": "float32", "halffloat": "float16"}

_DETECT_ROWS = 1000
_INT_RE = re.compile(r"^[+-]?\d+$")


def detect_label_dtype(data: Path | str, label_field: str) -> str | None:
    """The type of the label column in the user's train data, from its first rows.

    The data reader turns every label into a string (``1`` → ``"1"``, ``true`` → ``"true"``); this says what
    to cast them back to. Parquet: the column's Arrow type. JSONL: the JSON types of the first 1000 labels
    (all booleans → ``bool``, all integers → ``int``, numbers → ``float``, anything else → ``str``). CSV: the
    first 1000 values as a reader that infers types would see them (all integers → ``int``, all numbers →
    ``float``, else ``str``).

    Args:
        data: the ``--data`` path (a file, or a directory holding ``train.*``).
        label_field: the label field / column.

    Returns:
        ``"int"``, ``"float"``, ``"bool"`` or ``"str"``; ``None`` when the file cannot be found or read (the
        caller keeps the labels as strings).
    """
    path = _train_file(Path(data))
    if path is None:
        return None
    try:
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".arrow"):
            return _parquet_label_dtype(path, label_field)
        if suffix == ".jsonl":
            values = _jsonl_labels(path, label_field)
        elif suffix == ".csv":
            values = [_csv_value(v) for v in _csv_labels(path, label_field)]
        else:
            return None
    except (OSError, UnicodeDecodeError, ValueError, csv.Error):
        return None
    return _dtype_of(values)


def source_features(data: Path | str, text_field: str, label_field: str) -> dict[str, Any] | None:
    """The ``datasets`` features of the text and label columns of the user's train data, in the dict form
    ``datasets.Features.to_dict()`` writes, so the export can give its columns the same types.

    A file written by ``datasets`` (Parquet, Arrow, a ``save_to_disk`` folder) says them itself (a ``ClassLabel``
    with its names, ``large_string`` text...); another Parquet file gives its Arrow types; JSONL and CSV give what
    ``datasets.load_dataset("json" | "csv", ...)`` infers (``string`` text, the label type of
    :func:`detect_label_dtype`).

    Args:
        data: the ``--data`` path (a file, or a dataset directory).
        text_field, label_field: the columns.

    Returns:
        ``{text_field: {...}, label_field: {...}}``; ``None`` when the data cannot be found or read.
    """
    path = _train_file(Path(data))
    if path is None:
        return None
    schema = _schema(path)
    if schema is None:
        dtype = detect_label_dtype(path, label_field)
        if dtype is None:
            return None
        return {text_field: _value("string"), label_field: _value(LABEL_DTYPES[dtype])}
    if text_field not in schema.names or label_field not in schema.names:
        return None
    features = hf_features(schema) or {}
    return {
        name: features[name] if isinstance(features.get(name), dict) else _value(_value_dtype(schema.field(name).type))
        for name in (text_field, label_field)
    }


def _value(dtype: str) -> dict[str, str]:
    return {"dtype": dtype, "_type": "Value"}


def _value_dtype(kind: Any) -> str:
    """The ``datasets`` ``Value`` dtype of an Arrow type (``large_string`` stays ``large_string``)."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return _ARROW_TO_VALUE.get(str(kind), str(kind))


def _train_file(path: Path) -> Path | None:
    """The train split's file (or first shard / ``save_to_disk`` folder) of the ``--data`` path."""
    if not path.is_dir():
        return path if path.exists() else None
    found = [c for c in sorted(path.iterdir()) if c.stem == "train" and c.suffix.lower() in SUPPORTED_SUFFIXES]
    if len(found) == 1:
        return found[0]
    if found:
        return None
    hf = hf_split_files(path, "train")
    return hf[1][0] if hf else None


def _schema(path: Path) -> Any:
    """The Arrow schema of a Parquet or Arrow file, ``None`` for another type or an unreadable file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_schema(path)
        if suffix == ".arrow":
            return read_hf_table([path]).schema
    except (pa.ArrowException, OSError, InputError):
        return None
    return None


def label_names_for_run(dataset: Dataset, given: dict[str, str] | None) -> dict[str, str]:
    """The names a run gives its labels in prompts and the card: ``given`` (``--label-names``), else the data's
    ``ClassLabel`` names (:attr:`Dataset.label_names`), limited to the labels of the train split.

    Raises:
        InputError: ``given`` names a value that is not a label of the train split, or gives two labels one name.
    """
    labels = dataset.labels
    if given:
        unknown = sorted(set(given) - set(labels))
        if unknown:
            raise InputError(f"`label_names`: {unknown[0]!r} is not a label of {dataset.train_path} "
                             f"(labels: {', '.join(labels)})")
        names = list(given.values())
        twice = next((name for name in names if names.count(name) > 1), None)
        if twice is not None:
            raise InputError(f"`label_names`: two labels are named {twice!r}")
        return {label: given[label] for label in labels if label in given}
    return {label: (dataset.label_names or {})[label] for label in labels if label in (dataset.label_names or {})}


def _dtype_of(values: Sequence[Any]) -> str | None:
    if not values:
        return None
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if any(isinstance(v, bool) for v in values):
        return "str"
    if all(isinstance(v, int) for v in values):
        return "int"
    if all(isinstance(v, (int, float)) for v in values):
        return "float"
    return "str"


def _jsonl_labels(path: Path, label_field: str) -> list[Any]:
    values: list[Any] = []
    with path.open("r", encoding="utf-8-sig") as handle:
        for line in handle:
            if not line.strip():
                continue
            obj = json.loads(line)
            if isinstance(obj, dict) and obj.get(label_field) is not None:
                values.append(obj[label_field])
            if len(values) >= _DETECT_ROWS:
                break
    return values


def _csv_labels(path: Path, label_field: str) -> list[str]:
    values: list[str] = []
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            value = row.get(label_field)
            if value is not None and value.strip():
                values.append(value)
            if len(values) >= _DETECT_ROWS:
                break
    return values


def _csv_value(value: str) -> Any:
    value = value.strip()
    if _INT_RE.match(value):
        return int(value)
    try:
        return float(value)
    except ValueError:
        return value


def _parquet_label_dtype(path: Path, label_field: str) -> str | None:
    import pyarrow as pa

    schema = _schema(path)
    if schema is None or label_field not in schema.names:
        return None
    kind = schema.field(label_field).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind):
        return "int"
    if pa.types.is_floating(kind):
        return "float"
    return "str"
