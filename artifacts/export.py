"""Export a run directory as a Hugging Face dataset: to a local folder or to a Hub dataset repository.

The exported layout is the one ``DatasetDict.push_to_hub`` writes, so ``load_dataset(DIR_OR_REPO)`` gives
``DatasetDict({"train": accepted samples})`` and ``load_dataset(DIR_OR_REPO, "pool")`` every generated sample::

    README.md                           the run's dataset card, its YAML header rewritten for this layout
    data/train-00000-of-00001.parquet   accepted samples (config "default")
    pool/train-00000-of-00001.parquet   every generated sample (config "pool")

Columns follow the user's data: ``text`` / ``label`` are renamed back to the run's ``text_field`` /
``label_field`` (``config.json``), and labels, which the data reader turns into strings, are cast back to the
source type. That type is recorded at run time in the card (``synalign.label_dtype``, read from the first rows
of the train file, :func:`synalign.labeltypes.detect_label_dtype`); for a run without a card it is detected
from the data file named in ``config.json`` when that path still resolves, else labels stay strings (and the
result says so). The two columns take the source's ``datasets`` features, recorded in the card too
(``synalign.features``, :func:`synalign.labeltypes.source_features`): a ``ClassLabel`` keeps its names and
``large_string`` text stays ``large_string``. ``columns="minimal"`` keeps text and label (the same features as the
real data, so ``concatenate_datasets`` works); ``"all"`` adds the provenance: ``id``, ``round``, ``kmm_weight``,
``sample_weight``, ``backend``, ``demonstration_ids`` (and ``accepted`` in the pool); a run written before
``kmm_weight`` was named so (its column was ``weight``) exports the same columns.

``datasets`` writes the Parquet files; :func:`export_to_hub` uploads the exported folder in one commit with
``huggingface_hub.HfApi`` (``create_repo`` + ``upload_folder``), so the card is the run's and not a generic one.
Both need the ``hf`` extra (``pip install 'synalign[hf]'``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from synalign.artifacts.datacard import (
    CARD_FILE,
    RUN_DATA_FILES,
    card_parts,
    read_card,
    render_card,
    size_category,
)
from synalign.artifacts.rundir import RunDir
from synalign.artifacts.summary import RunSummary
from synalign.errors import InputError, SynalignError
from synalign.fileio import DiskFullError, disk_full_error
from synalign.labeltypes import LABEL_DTYPES, detect_label_dtype, source_features

__all__ = ["COLUMN_SETS", "EXPORT_DATA_FILES", "ExportResult", "HubError", "export_to_dir", "export_to_hub",
           "read_run", "RunFiles"]

COLUMN_SETS = ("minimal", "all")
"""Values of ``columns``: ``minimal`` (text + label) or ``all`` (provenance too)."""

EXPORT_DATA_FILES: dict[str, str] = {
    "default": "data/train-00000-of-00001.parquet",
    "pool": "pool/train-00000-of-00001.parquet",
}
"""Config name → data file of an export (the layout ``push_to_hub`` writes)."""

_PROVENANCE = ("id", "round", "kmm_weight", "sample_weight", "backend", "demonstration_ids")
_HF_EXTRA = "install the hf extra: pip install 'synalign[hf]'"

Columns = Literal["minimal", "all"]


class HubError(SynalignError):
    """The Hugging Face Hub refused or failed an upload (network, permission, rate limit)."""


@dataclass
class RunFiles:
    """The records of a finished run directory.

    Attributes:
        run_dir: the directory.
        config: ``config.json``.
        summary: ``summary.json``.
        metrics: ``metrics.json``.
        card: ``(meta, body)`` of ``README.md``, ``None`` for a run written before cards existed.
    """

    run_dir: Path
    config: dict[str, Any]
    summary: RunSummary
    metrics: list[dict[str, Any]]
    card: tuple[dict[str, Any], str] | None


@dataclass
class ExportResult:
    """What an export wrote.

    Attributes:
        target: the folder, or the Hub URL of the repository.
        files: the exported files (paths relative to the target).
        rows: config name → rows.
        columns: column name → ``datasets`` dtype of the default config.
        label_dtype: the label type written (``int``, ``float``, ``bool`` or ``str``).
        notes: things the user should know (one line each), e.g. labels kept as strings.
    """

    target: str
    files: list[str]
    rows: dict[str, int]
    columns: dict[str, str]
    label_dtype: str
    notes: list[str] = field(default_factory=list)


def read_run(run_dir: Path | str) -> RunFiles:
    """Read the records of a finished synalign run directory.

    Raises:
        InputError: not a directory, not a synalign run (no ``config.json``), an unfinished run (no
            ``summary.json``), or a missing / unreadable data file or record.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir} is not a directory (expected a synalign run directory)")
    run = RunDir(run_dir)
    if not run.is_run():
        raise InputError(f"{run_dir} is not a synalign run directory (no {run.config_file.name})")
    if not run.is_finished():
        raise InputError(f"{run_dir}: the run has not finished (no {run.summary_file.name}); finish it with"
                         " `resume` first")
    for name in RUN_DATA_FILES.values():
        if not (run_dir / name).is_file():
            raise InputError(f"{run_dir}: missing {name}")
    config, summary, metrics = _read_json(run.config_file), run.read_summary(), _read_json(run.metrics_file)
    card = read_card(run.card_file) if run.card_file.is_file() else None
    return RunFiles(run_dir=run_dir, config=config, summary=summary, metrics=metrics, card=card)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"missing {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path} ({' '.join(str(exc).split())})") from None


def _label_dtype(run: RunFiles) -> tuple[str, list[str]]:
    """The source label type (from the card, else the data file) and a note when it is unknown."""
    recorded = ((run.card or ({}, ""))[0].get("synalign") or {}).get("label_dtype")
    if recorded in LABEL_DTYPES:
        return recorded, []
    detected = detect_label_dtype(run.config.get("data", ""), run.config.get("label_field", "label"))
    if detected is not None:
        return detected, []
    return "str", [
        f"labels exported as strings: the label type of the source data is not recorded in the run and "
        f"{run.config.get('data')} cannot be read to detect it"
    ]


def _cast_label(value: str, dtype: str, where: Path) -> Any:
    try:
        if dtype == "int":
            return int(value)
        if dtype == "float":
            return float(value)
        if dtype == "bool":
            if value not in ("true", "false"):
                raise ValueError(value)
            return value == "true"
    except ValueError:
        raise InputError(f"{where}: label {value!r} is not of the source data's type {dtype}") from None
    return value


def _source_features(run: RunFiles, label_dtype: str) -> Any:
    """``datasets.Features`` of the text and label columns as the source data has them: recorded in the card
    (``synalign.features``), else read from the data file when it still resolves, else ``string`` text and the
    label type (:data:`~synalign.labeltypes.LABEL_DTYPES`)."""
    import datasets

    text_field = run.config.get("text_field", "text")
    label_field = run.config.get("label_field", "label")
    recorded = ((run.card or ({}, ""))[0].get("synalign") or {}).get("features")
    found = (
        recorded if isinstance(recorded, dict) else source_features(run.config.get("data", ""), text_field, label_field)
    )
    if isinstance(found, dict) and set(found) == {text_field, label_field}:
        try:
            features = datasets.Features.from_dict({text_field: found[text_field], label_field: found[label_field]})
        except (TypeError, ValueError, KeyError):  # features of another datasets version: fall back
            features = None
        if features is not None and isinstance(features[text_field], datasets.Value):
            return features
    return datasets.Features(
        {text_field: datasets.Value("string"), label_field: datasets.Value(LABEL_DTYPES[label_dtype])}
    )


def _dataset(run: RunFiles, name: str, *, columns: Columns, label_dtype: str, source: Any) -> Any:
    """One config's ``datasets.Dataset`` with the user's column names, label type and text type (``source``:
    :func:`_source_features`)."""
    import datasets
    import pyarrow.parquet as pq

    path = run.run_dir / RUN_DATA_FILES[name]
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())})") from None
    rows = [_with_weights(r) for r in table.to_pylist()]
    text_field = run.config.get("text_field", "text")
    label_field = run.config.get("label_field", "label")
    extra = [*_PROVENANCE, *(["accepted"] if name == "pool" else [])] if columns == "all" else []
    clash = sorted({text_field, label_field} & set(extra))
    if clash:
        raise InputError(f"the data's column {clash[0]!r} clashes with a provenance column; use `columns` minimal")
    list_type = getattr(datasets, "List", None) or datasets.Sequence  # datasets < 4 has no List
    types = {"id": "string", "round": "int64", "kmm_weight": "float64", "sample_weight": "float64",
             "backend": "string", "accepted": "bool"}
    features = datasets.Features(
        {
            **source,
            **{
                c: list_type(datasets.Value("string")) if c == "demonstration_ids" else datasets.Value(types[c])
                for c in extra
            },
        }
    )
    data = {
        text_field: [r["text"] for r in rows],
        label_field: [_cast_label(r["label"], label_dtype, path) for r in rows],
        **{c: [r.get(c) for r in rows] for c in extra},
    }
    return datasets.Dataset.from_dict(data, features=features)


def _with_weights(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row with ``kmm_weight`` (legacy name ``weight``) and ``sample_weight`` (1.0 when accepted)."""
    if "kmm_weight" not in row and "weight" in row:
        row = {**row, "kmm_weight": row["weight"]}
    if "sample_weight" not in row:
        row = {**row, "sample_weight": 1.0 if row.get("accepted", True) else 0.0}
    return row


def _export_card(run: RunFiles, sets: Mapping[str, Any], *, label_dtype: str) -> str:
    """The run's card with its YAML header rewritten for the export layout (body unchanged)."""
    if run.card is not None:
        meta, body = run.card
    else:  # a run from before cards: build one from its records (per-label real counts unknown)
        meta, body = card_parts(config=run.config, summary=run.summary, metrics=run.metrics, label_dtype=label_dtype)
    meta = dict(meta)
    meta["configs"] = [
        {"config_name": name, "data_files": [{"split": "train", "path": path}]}
        for name, path in EXPORT_DATA_FILES.items()
    ]
    meta["size_categories"] = [size_category(len(sets["default"]))]
    meta["dataset_info"] = [  # what push_to_hub writes: features (datasets' own YAML form) and split sizes
        {
            "config_name": name,
            "features": ds.features._to_yaml_list(),
            "splits": [{"name": "train", "num_bytes": int(ds.data.nbytes), "num_examples": len(ds)}],
        }
        for name, ds in sets.items()
    ]
    meta["synalign"] = {**(meta.get("synalign") or {}), "label_dtype": label_dtype}
    return render_card(meta, body)


def _write_export(run: RunFiles, folder: Path, *, columns: Columns) -> ExportResult:
    """Write the export layout into ``folder`` (an empty directory); ``target`` is left to the caller."""
    if columns not in COLUMN_SETS:
        raise InputError(f"`columns` must be one of {', '.join(COLUMN_SETS)}, got {columns!r}")
    import datasets

    label_dtype, notes = _label_dtype(run)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the command prints its own result lines
    try:
        source = _source_features(run, label_dtype)
        sets = {
            name: _dataset(run, name, columns=columns, label_dtype=label_dtype, source=source)
            for name in EXPORT_DATA_FILES
        }
        for name, ds in sets.items():
            target = folder / EXPORT_DATA_FILES[name]
            target.parent.mkdir(parents=True, exist_ok=True)
            ds.to_parquet(str(target))
    finally:
        if bars:
            datasets.enable_progress_bars()
    columns_of = {c: _dtype_text(c, f) for c, f in sets["default"].features.items()}
    rows = {name: len(ds) for name, ds in sets.items()}
    card = _export_card(run, sets, label_dtype=label_dtype)
    (folder / CARD_FILE).write_text(card, encoding="utf-8")
    files = [CARD_FILE, *EXPORT_DATA_FILES.values()]
    return ExportResult(
        target=str(folder), files=files, rows=rows, columns=columns_of, label_dtype=label_dtype, notes=notes
    )


def _dtype_text(column: str, feature: Any) -> str:
    """How the export's result names a column's type: ``string``, ``int64``, ``ClassLabel: negative, positive``."""
    if column == "demonstration_ids":
        return "list<string>"
    names = getattr(feature, "names", None)
    return f"ClassLabel: {', '.join(names)}" if names else str(feature.dtype)


def _require_datasets() -> None:
    try:
        import datasets  # noqa: F401
        import huggingface_hub  # noqa: F401
    except ImportError as exc:
        raise InputError(
            f"the Hugging Face export needs the 'datasets' package ({exc.name} is missing): {_HF_EXTRA}"
        ) from None


def export_to_dir(run_dir: Path | str, to_dir: Path | str, *, columns: Columns = "minimal") -> ExportResult:
    """Export a finished run to a local folder that ``datasets.load_dataset(to_dir)`` reads.

    The folder is written next to its final place and renamed onto it, so a failed export leaves nothing.

    Args:
        run_dir: a finished synalign run directory.
        to_dir: the folder to create (it must not exist, or be empty).
        columns: ``"minimal"`` (text + label) or ``"all"`` (provenance too).

    Returns:
        :class:`ExportResult` (``target`` is the folder).

    Raises:
        InputError: not a finished run directory, ``to_dir`` exists and is not empty (or cannot be written),
            an unknown ``columns``, a column-name clash, ``datasets`` not installed.
        DiskFullError: no space left while writing (nothing is left behind).
    """
    _require_datasets()
    run = read_run(run_dir)
    to_dir = Path(to_dir)
    if to_dir.exists() and (not to_dir.is_dir() or any(to_dir.iterdir())):
        raise InputError(f"export target {to_dir} already exists and is not an empty directory")
    if to_dir.resolve() == run.run_dir.resolve() or run.run_dir.resolve() in to_dir.resolve().parents:
        raise InputError(f"export target {to_dir} is inside the run directory; choose another folder")
    try:
        to_dir.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=to_dir.parent, prefix=f".{to_dir.name}.export-"))
    except OSError as exc:
        raise InputError(f"cannot write {to_dir} ({exc.strerror or exc})") from None
    try:
        result = _write_export(run, scratch, columns=columns)
        if to_dir.exists():
            to_dir.rmdir()  # empty (checked above)
        os.replace(scratch, to_dir)
    except BaseException as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        full = disk_full_error(exc, to_dir, "; nothing was written") if isinstance(exc, OSError) else None
        if full is None:
            raise
        raise DiskFullError(str(full).replace(str(scratch), str(to_dir))) from None  # the scratch folder is gone
    result.target = str(to_dir)
    return result


def export_to_hub(
    run_dir: Path | str,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    columns: Columns = "minimal",
) -> ExportResult:
    """Upload a finished run to a Hugging Face Hub dataset repository (created when missing), one commit.

    The files are those of :func:`export_to_dir`; data files of an earlier export under ``data/`` and
    ``pool/`` are replaced.

    Args:
        run_dir: a finished synalign run directory.
        repo_id: ``"user/name"`` or ``"org/name"``.
        private: create the repository private (an existing repository keeps its visibility).
        token: a Hub write token; default ``$HF_TOKEN``, else the token saved by ``hf auth login``.
        columns: ``"minimal"`` or ``"all"``.

    Returns:
        :class:`ExportResult` (``target`` is the repository URL).

    Raises:
        InputError: as :func:`export_to_dir`; also a malformed ``repo_id`` or no token.
        HubError: the Hub refused or failed the upload (the message is the Hub's, on one line).
    """
    _require_datasets()
    import huggingface_hub

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise InputError(f"`repo_id` wants a repository id 'user/name' or 'org/name', got {repo_id!r}")
    run = read_run(run_dir)
    token = token or os.environ.get("HF_TOKEN") or huggingface_hub.get_token()
    if not token:
        raise InputError("no Hugging Face token: set HF_TOKEN to a write token (or run: hf auth login)")
    with tempfile.TemporaryDirectory(prefix="synalign-export-") as scratch:
        result = _write_export(run, Path(scratch), columns=columns)
        api = huggingface_hub.HfApi(token=token)
        try:
            url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            api.upload_folder(
                repo_id=repo_id,
                repo_type="dataset",
                folder_path=scratch,
                commit_message=f"synalign export of {run.run_dir.name}",
                delete_patterns=["data/*", "pool/*"],
            )
        except Exception as exc:  # HfHubHTTPError, OfflineModeIsEnabled, connection errors
            raise HubError(f"upload to {repo_id} failed: {' '.join(str(exc).split())}") from None
    result.target = str(getattr(url, "url", None) or f"https://huggingface.co/datasets/{repo_id}")
    return result
