"""Hugging Face dataset layouts on disk, read with pyarrow alone (no ``datasets`` import in the core).

Two layouts are recognised in a dataset directory, beside the plain ``train.jsonl|csv|parquet`` files that
:mod:`synalign.datafiles` reads:

* ``DatasetDict.save_to_disk``: ``DIR/dataset_dict.json`` and one folder per split (``DIR/train/``,
  ``DIR/validation/``...) holding ``state.json`` and Arrow stream shards ``data-0000N-of-0000M.arrow``; a single
  ``Dataset.save_to_disk`` folder (``state.json`` + shards at the top) is a train split.
* ``push_to_hub`` (and ``synalign export``): shards ``DIR/data/{split}-0000N-of-0000M.parquet`` (or ``.arrow``).

Both carry the ``datasets`` features in the Arrow schema metadata (key ``huggingface``): :func:`hf_features`
reads them, so a ``ClassLabel`` label column gives its names (:func:`class_names`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synalign.errors import InputError

__all__ = ["class_label_names", "class_names", "hf_features", "hf_split_files", "read_hf_table"]

_SHARD_SUFFIXES = (".parquet", ".arrow")


def hf_split_files(directory: Path, split: str) -> tuple[Path, list[Path]] | None:
    """The data files of ``split`` in a Hugging Face layout of ``directory`` (see the module docstring).

    Args:
        directory: the dataset directory.
        split: ``"train"``, ``"validation"``, ``"test"``...

    Returns:
        ``(where, shards)``: ``where`` names the split in messages (its folder, or its first shard); ``shards``
        in order. ``None`` when ``directory`` holds no such split in either layout.
    """
    folder = directory / split
    if (folder / "state.json").is_file():
        return folder, _state_shards(folder)
    if split == "train" and (directory / "state.json").is_file() and (directory / "dataset_info.json").is_file():
        return directory, _state_shards(directory)
    data = directory / "data"
    if data.is_dir():
        shards = sorted(
            p for p in data.iterdir()
            if p.is_file() and p.suffix.lower() in _SHARD_SUFFIXES and p.name.split("-")[0] == split
            and (p.stem == split or p.stem.startswith(f"{split}-"))
        )
        if shards:
            return shards[0], shards
    return None


def _state_shards(folder: Path) -> list[Path]:
    """The Arrow shards a ``save_to_disk`` folder's ``state.json`` lists (else its ``*.arrow`` files)."""
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        names = [entry["filename"] for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError):
        names = []
    shards = [folder / name for name in names] or sorted(folder.glob("*.arrow"))
    if not shards:
        raise InputError(f"{folder}: a Hugging Face save_to_disk folder without data files")
    missing = [s for s in shards if not s.is_file()]
    if missing:
        raise InputError(f"{folder}: missing data file {missing[0].name} (listed in state.json)")
    return shards


def read_hf_table(shards: list[Path], columns: list[str] | None = None) -> Any:
    """The ``columns`` (default: all) of a split's shards as one ``pyarrow.Table`` (Arrow stream or file, or
    Parquet).

    Raises:
        InputError: a shard that cannot be read, or lacks one of ``columns`` (the message lists its columns).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for shard in shards:
        try:
            if shard.suffix.lower() == ".parquet":
                table = pq.read_table(shard)
            else:
                table = _read_arrow(shard)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(
                f"{shard}: not a readable {shard.suffix[1:]} file ({' '.join(str(exc).split())})"
            ) from None
        for column in columns or []:
            if column not in table.column_names:
                raise InputError(f"{shard}: missing column {column!r} (columns: {', '.join(table.column_names)})")
        tables.append(table if columns is None else table.select(columns))
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _read_arrow(path: Path) -> Any:
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_stream(source).read_all()  # what save_to_disk writes
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_file(source).read_all()


def hf_features(schema: Any) -> dict[str, Any] | None:
    """The ``datasets`` features a file's Arrow schema carries (metadata key ``huggingface``), as the dict
    ``datasets.Features.to_dict()`` writes (``{"label": {"names": [...], "_type": "ClassLabel"}, ...}``); ``None``
    when the file was not written by ``datasets``."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return None
    try:
        features = json.loads(raw)["info"]["features"]
    except (ValueError, KeyError, TypeError):
        return None
    return features if isinstance(features, dict) else None


def class_names(features: dict[str, Any] | None, label_field: str) -> list[str] | None:
    """The names of a ``ClassLabel`` label column (index order), or ``None`` when it is not one."""
    feature = (features or {}).get(label_field)
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and isinstance(feature.get("names"), list):
        return [str(name) for name in feature["names"]]
    return None


def class_label_names(files: list[Path], label_field: str) -> dict[str, str] | None:
    """``{"0": "negative", ...}``: the names of a ``ClassLabel`` label column, from the features the first of
    ``files`` carries (a Parquet or Arrow file written by ``datasets``); ``None`` for another file or column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    first = files[0]
    if first.suffix.lower() not in (".parquet", ".arrow"):
        return None
    try:
        schema = pq.read_schema(first) if first.suffix.lower() == ".parquet" else read_hf_table([first]).schema
    except (pa.ArrowException, OSError, InputError):
        return None
    names = class_names(hf_features(schema), label_field)
    return {str(i): name for i, name in enumerate(names)} if names else None
