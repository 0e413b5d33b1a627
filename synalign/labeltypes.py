"""The type of the label column in the user's data file (``int``, ``float``, ``bool`` or ``str``).

The data reader (:mod:`synalign.datafiles`) turns every label into a string; what is exported back to the
user's schema (``synalign export``, the dataset card's ``synalign.label_dtype``) is cast back to this type.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synalign.datafiles import SUPPORTED_SUFFIXES

__all__ = ["detect_label_dtype"]

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
    path = Path(data)
    if path.is_dir():
        found = [c for c in sorted(path.iterdir()) if c.stem == "train" and c.suffix.lower() in SUPPORTED_SUFFIXES]
        if len(found) != 1:
            return None
        path = found[0]
    try:
        suffix = path.suffix.lower()
        if suffix == ".parquet":
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
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError):
        return None
    if label_field not in schema.names:
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
