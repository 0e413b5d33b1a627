"""Disposable SQLite caches (embeddings, LLM responses): shared safely, rebuilt when corrupt.

A cache only saves work, so a damaged one must never stop a run nor change its result: a file SQLite cannot
read (truncated, garbled, "file is not a database", "database disk image is malformed") is moved aside to
``NAME.corrupt-TIMESTAMP`` with one warning line and an empty cache takes its place. Several processes may
share one cache directory: every connection uses WAL journaling and a busy timeout, so concurrent writers
wait for each other instead of failing or corrupting the file. Opening (the switch to WAL and the schema) runs
under ``NAME.lock`` (:mod:`filelock`): SQLite answers a second process's ``PRAGMA journal_mode=WAL`` with
"database is locked" at once, without waiting out the busy timeout, while the first one holds its lock.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock

__all__ = ["BUSY_TIMEOUT_S", "is_corruption", "open_cache", "quarantine"]

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


def _connect(path: Path, schema: Sequence[str]) -> sqlite3.Connection:
    with FileLock(f"{path}.lock", timeout=BUSY_TIMEOUT_S):
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            for statement in schema:
                conn.execute(statement)
            conn.commit()
        except BaseException:
            conn.close()
            raise
    return conn


def open_cache(path: Path, schema: Sequence[str], what: str) -> sqlite3.Connection:
    """Open (creating) the cache at ``path`` with ``schema`` statements; a corrupt file is quarantined, rebuilt.

    Raises:
        sqlite3.Error: anything that is not corruption (e.g. a read-only directory).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _connect(path, schema)
    except sqlite3.DatabaseError as exc:
        if not is_corruption(exc):
            raise
        quarantine(path, exc, what)
    return _connect(path, schema)
