"""On-disk LLM response cache (SQLite), so a repeated or resumed run does not pay twice.

Keys are SHA-256 digests of the canonical JSON of the *whole* request as the model sees it: node, model
identity and base URL, sampling settings (temperature, max tokens, ``n``, seed), the rendered messages and
the output schema. Never the API key or any header. Values are the parsed reply plus its token usage. Only
successful, validated replies are stored, so a malformed reply is never replayed. A corrupt cache file is
moved aside and rebuilt (:mod:`synalign.cachedb`). Each value is stored with a checksum (BLAKE2b-128 of key
and value, as the embedding cache does): a value that fails it (edited, e.g. replaced by JSON of another
shape) or no longer parses is a miss, and its row is moved to the table ``responses_aside`` with one warning
line, so the request is sent again and its fresh reply stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ResponseCache", "cache_key"]

_log = logging.getLogger("synalign.cache")

T = TypeVar("T")


def _checksum(key: str, text: str) -> str:
    return hashlib.blake2b(f"{key}\x00{text}".encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _add_digest(db: sqlite3.Connection) -> None:
    """Give a cache written before the checksum existed its ``digest`` column, filled for its rows."""
    if "digest" not in {row[1] for row in db.execute("PRAGMA table_info(responses)")}:
        db.execute("ALTER TABLE responses ADD COLUMN digest TEXT")
        rows = db.execute("SELECT key, value FROM responses").fetchall()
        db.executemany("UPDATE responses SET digest = ? WHERE key = ?", [(_checksum(k, v), k) for k, v in rows])


_SCHEMA: list[str | Callable[[sqlite3.Connection], None]] = [
    "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)",
    _add_digest,
    "CREATE TABLE IF NOT EXISTS responses_aside (key TEXT, value TEXT, created REAL, reason TEXT, moved REAL)",
]


def cache_key(payload: dict[str, Any]) -> str:
    """SHA-256 hex digest of ``payload``'s canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """A thread-safe key → JSON store in one SQLite file (``llm_cache.sqlite`` by convention).

    Counts ``hits`` and ``misses`` of :meth:`get`.
    """

    def __init__(self, path: Path | str) -> None:
        from synalign.cachedb import open_cache

        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = open_cache(self.path, _SCHEMA, "LLM response cache")
        self.hits = 0
        self.misses = 0

    def _call(self, action: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``action`` (under the lock); a corrupt cache is moved aside, rebuilt, and ``action`` retried once."""
        from synalign.cachedb import is_corruption, open_cache, quarantine

        try:
            return action(self._conn)
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            self._conn.close()
            quarantine(self.path, exc, "LLM response cache")
            self._conn = open_cache(self.path, _SCHEMA, "LLM response cache")
        return action(self._conn)

    def get(self, key: str) -> Any | None:
        """The stored value for ``key``, or None: also for a value that fails its checksum or no longer parses
        (moved aside, see the module docstring)."""
        with self._lock:
            row = self._call(
                lambda db: db.execute("SELECT value, digest FROM responses WHERE key = ?", (key,)).fetchone()
            )
            value, problem = None, None
            if row is not None:
                text, digest = row
                if not isinstance(text, str) or digest != _checksum(key, text):
                    problem = "failed its checksum"
                else:
                    try:
                        value = json.loads(text)
                    except ValueError:
                        problem = "is not valid JSON"
            if row is None or problem is not None:
                if problem is not None:
                    self._call(lambda db: self._move_aside(db, key, problem))
                self.misses += 1
                return None
            self.hits += 1
        return value

    def _move_aside(self, db: sqlite3.Connection, key: str, problem: str) -> None:
        with db:
            db.execute(
                "INSERT INTO responses_aside (key, value, created, reason, moved) "
                "SELECT key, value, created, ?, ? FROM responses WHERE key = ?",
                (problem, time.time(), key),
            )
            db.execute("DELETE FROM responses WHERE key = ?", (key,))
        _log.warning(
            "LLM response cache %s: the entry %s %s; moved it to table responses_aside and treated it as a miss",
            self.path, key[:16], problem,
        )

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable) under ``key`` with its checksum, replacing any previous value."""
        text = json.dumps(value, ensure_ascii=False, default=str)

        def insert(db: sqlite3.Connection) -> None:
            with db:
                db.execute(
                    "INSERT OR REPLACE INTO responses (key, value, created, digest) VALUES (?, ?, ?, ?)",
                    (key, text, time.time(), _checksum(key, text)),
                )

        with self._lock:
            self._call(insert)

    def __len__(self) -> int:
        with self._lock:
            return int(self._call(lambda db: db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
