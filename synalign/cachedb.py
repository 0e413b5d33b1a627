"""Disposable SQLite caches (embeddings, LLM responses): shared safely, rebuilt when corrupt.

A cache only saves work, so a damaged one must never stop a run nor change its result: a file SQLite cannot
read (truncated, garbled, "file is not a database", "database disk image is malformed") is moved aside to
``NAME.corrupt-TIMESTAMP`` with one warning line and an empty cache takes its place. Several processes may
share one cache directory: every connection uses WAL journaling and a busy timeout, so concurrent writers
wait for each other instead of failing or corrupting the file. Opening (the switch to WAL and the schema) runs
under ``NAME.lock`` (:mod:`filelock`): SQLite answers a second process's ``PRAGMA journal_mode=WAL`` with
"database is locked" at once, without waiting out the busy timeout, while the first one holds its lock.

A cache that cannot be written is never reported as another file: a full disk is an ``OSError`` (ENOSPC) whose
``filename`` is the cache file (SQLite's own error names none), and a read-only cache directory or file is one
:class:`~synalign.errors.InputError` naming it and how to choose another.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from synalign.errors import InputError

__all__ = ["BUSY_TIMEOUT_S", "Migration", "is_corruption", "open_cache", "quarantine"]

_log = logging.getLogger("synalign.cache")

BUSY_TIMEOUT_S = 60.0
"""How long a cache write waits for another process's transaction."""


def is_corruption(exc: BaseException) -> bool:
    """Whether ``exc`` says the database file itself is unreadable (not merely locked or misused)."""
    return type(exc) is sqlite3.DatabaseError or (
        isinstance(exc, sqlite3.OperationalError) and "malformed" in str(exc)
    )


def quarantine(path: Path, reason: object, what: str) -> Path:
    """Move a corrupt cache file (and its ``-wal``/``-shm``) aside; one warning line says where."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            Path(f"{path}{suffix}").replace(f"{aside}{suffix}")
    _log.warning("%s %s is corrupt (%s); moved it to %s and started an empty one", what, path, reason, aside)
    return aside


_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


def _not_writable(path: Path, what: str, reason: object) -> InputError:
    return InputError(
        f"{what} {path} cannot be written ({reason}); point `cache_dir` or SYNALIGN_CACHE_DIR at a writable "
        "directory"
    )


def _write_error(path: Path, what: str, exc: BaseException) -> BaseException | None:
    """What a failed write to the cache at ``path`` raises instead of ``exc`` (None: ``exc`` itself)."""
    if isinstance(exc, OSError):
        if exc.errno in _READ_ONLY:
            return _not_writable(path, what, exc.strerror or exc)
        if exc.errno is not None and exc.filename is None:
            return OSError(exc.errno, exc.strerror, str(path))
        return None
    message = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and "disk is full" in message:
        return OSError(errno.ENOSPC, "No space left on device", str(path))
    if isinstance(exc, sqlite3.OperationalError) and ("readonly" in message or "unable to open" in message):
        return _not_writable(path, what, message)
    return None


class _CacheConnection(sqlite3.Connection):
    """A cache's connection: a statement or commit that fails for lack of space or permission raises
    :func:`_write_error`'s error, which names the cache file."""

    cache_path: Path = Path()
    what: str = "cache"

    @contextlib.contextmanager
    def _named(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.OperationalError, OSError) as exc:
            named = _write_error(self.cache_path, self.what, exc)
            if named is None:
                raise
            raise named from None

    def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        with self._named():
            return super().execute(*args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        with self._named():
            return super().executemany(*args, **kwargs)

    def commit(self) -> None:
        with self._named():
            super().commit()

    def __exit__(self, *exc: Any) -> Any:
        with self._named():
            return super().__exit__(*exc)


Migration = Callable[[sqlite3.Connection], None]
"""A schema step that is not one statement (e.g. add a column only when it is missing)."""


def _connect(path: Path, schema: Sequence[str | Migration], what: str) -> sqlite3.Connection:
    with FileLock(f"{path}.lock", timeout=BUSY_TIMEOUT_S):
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, factory=_CacheConnection)
        conn.cache_path, conn.what = path, what
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            for step in schema:
                if isinstance(step, str):
                    conn.execute(step)
                else:
                    step(conn)
            conn.commit()
        except BaseException:
            conn.close()
            raise
    return conn


def open_cache(path: Path, schema: Sequence[str | Migration], what: str) -> sqlite3.Connection:
    """Open (creating) the cache at ``path`` with ``schema`` steps (statements, or callables run under the
    file's lock); a corrupt file is quarantined, rebuilt.

    Raises:
        InputError: the cache directory or file cannot be written (read-only, no permission).
        OSError: no space left (``filename`` names the cache file).
        sqlite3.Error: anything else that is not corruption.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return _connect(path, schema, what)
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            quarantine(path, exc, what)
        return _connect(path, schema, what)
    except (OSError, sqlite3.OperationalError) as exc:
        named = _write_error(path, what, exc)
        if named is None:
            raise
        raise named from None
