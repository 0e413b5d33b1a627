"""On-disk LLM response cache (SQLite), so a repeated or resumed run does not pay twice.

Keys are SHA-256 digests of the canonical JSON of the *whole* request as the model sees it: node, model
identity and base URL, sampling settings (temperature, max tokens, ``n``, seed), the rendered messages and
the output schema. Never the API key or any header. Values are the parsed reply plus its token usage. Only
successful, validated replies are stored, so a malformed reply is never replayed. A corrupt cache file is
moved aside and rebuilt (:mod:`synalign.cachedb`); a stored value that no longer parses is a miss.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ResponseCache", "cache_key"]

T = TypeVar("T")
_SCHEMA = "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"


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
        self._conn = open_cache(self.path, [_SCHEMA], "LLM response cache")
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
            self._conn = open_cache(self.path, [_SCHEMA], "LLM response cache")
        return action(self._conn)

    def get(self, key: str) -> Any | None:
        """The stored value for ``key``, or None (also for a value that no longer parses)."""
        with self._lock:
            row = self._call(lambda db: db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone())
            value = None
            if row is not None:
                try:
                    value = json.loads(row[0])
                except (TypeError, ValueError):
                    row = None
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        return value

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable) under ``key``, replacing any previous value."""
        import time

        text = json.dumps(value, ensure_ascii=False, default=str)

        def insert(db: sqlite3.Connection) -> None:
            with db:
                db.execute(
                    "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)", (key, text, time.time())
                )

        with self._lock:
            self._call(insert)

    def __len__(self) -> int:
        with self._lock:
            return int(self._call(lambda db: db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
