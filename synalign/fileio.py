"""Write files atomically (bytes, text, pydantic records as JSONL / Parquet) and read them back.

Every write goes to a temporary file in the target directory, is fsynced, then renamed with
:func:`os.replace`, so a failed write never leaves a half-written file and never clobbers the previous one.
Reading errors are one-line :class:`synalign.errors.InputError` messages naming the file and line. A write that
fails names its file (``OSError.filename``), and :func:`disk_full_error` turns a full disk into one
:class:`DiskFullError` line naming that file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from synalign.errors import InputError, SynalignError, first_validation_error

__all__ = [
    "DiskFullError", "atomic_write_bytes", "atomic_write_text", "disk_full_error", "read_examples", "read_json",
    "write_examples",
]

_OUTPUT_SUFFIXES = (".jsonl", ".parquet")

M = TypeVar("M", bound=BaseModel)

_umask_lock = threading.Lock()
_umask: int | None = None


def _file_mode(path: Path) -> int:
    """Mode for a newly written file: the existing file's mode, else 0o666 minus the process umask."""
    global _umask
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        pass
    with _umask_lock:
        if _umask is None:
            _umask = os.umask(0)
            os.umask(_umask)
    return 0o666 & ~_umask


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Run ``write`` on a temporary file next to ``path``, fsync it, then ``os.replace`` it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _file_mode(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if exc.filename is None and exc.errno is not None:  # a failed write(): name the file it was for
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


class DiskFullError(SynalignError):
    """The disk filled up while writing a file; every file written so far is whole (atomic writes)."""


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) or (
            exc.errno is None and "No space left on device" in str(exc)  # pyarrow's IO errors carry no errno
        )
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)


def disk_full_error(exc: BaseException, default: Path | str, then: str = "") -> DiskFullError | None:
    """The one-line error for ``exc`` if it says the disk is full (else None): names the file that failed
    (``exc.filename``, else ``default``: SQLite errors name no file), then ``then``.

    Example: ``no space left on the device while writing runs/x/pool.parquet ([Errno 28] No space left on
    device); nothing was written``.
    """
    if not _is_disk_full(exc):
        return None
    where = getattr(exc, "filename", None) or default
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else " ".join(str(exc).split())
    return DiskFullError(f"no space left on the device while writing {where} ({reason}){then}")


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory + ``os.replace``).

    Parent directories are created. On failure no partial file is left and an existing file is untouched.
    """
    _atomic_write(Path(path), lambda handle: handle.write(data))


def read_json(path: Path | str, what: str) -> Any:
    """Parse the JSON file at ``path``; ``what`` names it in errors (e.g. ``"price table"``).

    Raises:
        InputError: one line, ``"PATH: cannot read WHAT (reason)"`` or ``"PATH:LINE: WHAT is not valid JSON
            (reason)"``.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"{path}:{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else str(path)
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise InputError(f"{where}: {what} is not valid JSON ({reason})") from None


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_examples(records: Sequence[BaseModel], path: Path | str) -> None:
    """Write pydantic records to JSONL or Parquet (chosen by suffix), atomically.

    JSONL: one ``model_dump_json()`` object per line, UTF-8. Parquet: a pyarrow table built from
    ``model_dump(mode="json")``; list fields (e.g. ``demonstration_ids``) stay Parquet lists.
    The file is written to a temporary file in the same directory and renamed onto ``path``, so a record
    that fails to serialise leaves no partial file and any previous file untouched.

    Raises:
        InputError: ``path`` has a suffix other than ``.jsonl`` or ``.parquet``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _OUTPUT_SUFFIXES:
        raise InputError(
            f"{path}: unsupported output type {path.suffix or '(no suffix)'!r} (expected .jsonl or .parquet)"
        )
    if suffix == ".jsonl":

        def write(handle: IO[bytes]) -> None:
            for record in records:
                handle.write(record.model_dump_json().encode("utf-8"))
                handle.write(b"\n")

    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        def write(handle: IO[bytes]) -> None:
            table = pa.Table.from_pylist([record.model_dump(mode="json") for record in records])
            pq.write_table(table, handle)

    _atomic_write(path, write)


def read_examples(path: Path | str, model: type[M]) -> list[M]:
    """Read records written by :func:`write_examples` back into ``model`` instances.

    Raises:
        InputError: missing file, unsupported suffix, malformed JSON, or a row that does not validate
            against ``model`` (message names ``PATH:LINE`` or ``PATH: row N``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file or directory: {path}")
    suffix = path.suffix.lower()
    if suffix not in _OUTPUT_SUFFIXES:
        raise InputError(
            f"{path}: unsupported file type {path.suffix or '(no suffix)'!r} (expected .jsonl or .parquet)"
        )
    if suffix == ".jsonl":
        with path.open("rb") as handle:
            return [
                _validated(model, model.model_validate_json, raw, f"{path}:{line_no}")
                for line_no, raw in enumerate(handle, start=1)
                if raw.strip()
            ]
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({_one_line(str(exc))})") from None
    return [
        _validated(model, model.model_validate, row, f"{path}: row {row_no}")
        for row_no, row in enumerate(rows, start=1)
    ]


def _validated(model: type[M], validate: Callable[[Any], M], value: Any, where: str) -> M:
    """``validate(value)``; a record that does not validate is an InputError naming ``where``."""
    try:
        return validate(value)
    except ValidationError as exc:
        raise InputError(f"{where}: invalid {model.__name__} ({_first_error(exc)})") from None


def _first_error(exc: ValidationError) -> str:
    where, message, more = first_validation_error(exc)
    return f"{where or 'record'}: {message}" + (f"; {more} more" if more else "")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
