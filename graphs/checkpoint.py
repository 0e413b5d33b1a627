"""The run's checkpoint store (LangGraph's SQLite saver and SQLite store), opened and read with corruption checks.

One file, ``checkpoints.sqlite``, holds both: the saver's checkpoints (the state: references and small
records) and the store's items (each round's samples and the latest alignment,
:mod:`synalign.graphs.samplestore`), each on its own connection.

A checkpoint that cannot be trusted is never resumed: a truncated or garbled database, or a checkpoint blob
that no longer decodes, is one :class:`~synalign.errors.InputError` naming the file and the command that
starts the run over — never a traceback and never a silently shorter run.

The file also records what it is a checkpoint of (table ``synalign_run``, :func:`record_run_config`): a digest
of each run-defining config field (every field but ``out`` and the ``resume_safe`` ones, digests only, so no
value such as a URL is copied into it). A ``--resume`` whose ``config.json`` disagrees (edited, or the
checkpoint copied from another run) is refused, naming the options that differ, before any work.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from langgraph.checkpoint.sqlite import SqliteSaver

from synalign.artifacts.rundir import CHECKPOINT_FILE, RunDir
from synalign.config import RunConfig, resume_safe_fields
from synalign.errors import InputError
from synalign.fileio import disk_full_error
from synalign.graphs.samplestore import MissingItemError, load_pool, namespace_for

if TYPE_CHECKING:  # pragma: no cover  (the import costs ~50 ms of sqlite_vec: only when a run opens its store)
    from langchain_core.runnables import RunnableConfig
    from langgraph.store.sqlite import SqliteStore

__all__ = [
    "CHECKPOINT_FILE", "KEEP_CHECKPOINTS", "PruningSqliteSaver", "alignments_prunable", "corrupt_checkpoint_error",
    "open_checkpoints",
    "open_store", "read_state", "record_run_config", "verify_checkpoints",
]

_T = TypeVar("_T")

KEEP_CHECKPOINTS: int | None = 2
"""Checkpoints kept per thread (the latest and its parent); None keeps every one. A resume reads only the
latest checkpoint and the pending writes on it."""


class PruningSqliteSaver(SqliteSaver):
    """LangGraph's SQLite saver that keeps only a thread's latest ``keep`` checkpoints and their writes.

    The SQLite saver writes a checkpoint after every node, each with the channels' values, so a run's file grew
    faster than its pool (``evals/scripts/bench_checkpoint.py``: 32.3 MB for 10k EDA samples in 5 rounds,
    3.2 KB per sample and rising with rounds); with the older checkpoints deleted as each new one lands it was
    8.2 MB (0.8 KB per sample, flat), SQLite reusing the freed pages. Checkpoint ids are time-ordered (uuid6),
    the order the saver itself reads them in.
    """

    def __init__(self, conn: sqlite3.Connection, *, keep: int | None = 2, **kwargs: Any) -> None:
        super().__init__(conn, **kwargs)
        self.keep = keep

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        """Save ``checkpoint`` (:meth:`SqliteSaver.put`), then delete the thread's older checkpoints and writes."""
        saved = super().put(config, checkpoint, metadata, new_versions)
        if self.keep is not None:
            where = (str(config["configurable"]["thread_id"]), config["configurable"].get("checkpoint_ns", ""))
            latest = (
                "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
                "ORDER BY checkpoint_id DESC LIMIT ?"
            )
            with self.cursor() as cur:
                for table in ("writes", "checkpoints"):
                    cur.execute(
                        f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_ns = ? "
                        f"AND checkpoint_id NOT IN ({latest})",
                        (*where, *where, self.keep),
                    )
        return saved


def _run_data(out: Path) -> str:
    """The run's ``--data`` from its config.json, for the command that starts it over (``DATA`` if unreadable)."""
    try:
        return str(json.loads(RunDir(out).config_file.read_text(encoding="utf-8"))["data"])
    except (OSError, ValueError, KeyError, TypeError):
        return "DATA"


def corrupt_checkpoint_error(path: Path, reason: str, out: Path) -> InputError:
    """The one-line error for an unreadable checkpoint: names the file and the command that starts over."""
    data = _run_data(out)
    return InputError(
        f"{path}: the run's checkpoint is corrupt ({reason}); it cannot be resumed safely — start the run over "
        f"with: synalign run `data` {data} `out` {out} `overwrite` (and the other options in {RunDir(out).config_file})"
    )


def verify_checkpoints(out: Path, thread: RunnableConfig, config: RunConfig) -> None:
    """Check, before any work, that a run's checkpoint can be resumed: intact file, written for ``config`` (the
    run-defining fields, see :func:`record_run_config`), decodable latest state, and every sample and the
    alignment it refers to present in the store and unchanged.

    Raises:
        InputError: see :func:`corrupt_checkpoint_error`; or the checkpoint was written under another config.
    """
    from synalign.graphs.graph import build_graph

    path = out / CHECKPOINT_FILE
    conn, saver = open_checkpoints(out, resume=True)
    try:
        _check_run_config(conn, config, path, out)
    except BaseException:
        conn.close()
        raise
    store_conn, store = open_store(out)
    try:
        _refuse_pool_in_state(saver, thread, path, out)
        values = read_state(build_graph().compile(checkpointer=saver, store=store), thread, path, out).values
        try:
            load_pool(store, namespace_for(thread["configurable"]["thread_id"]), values)
        except MissingItemError as exc:
            raise corrupt_checkpoint_error(path, str(exc), out) from None
    finally:
        store_conn.close()
        conn.close()


_RUN_TABLE = "synalign_run"
"""The table that says what the file is a checkpoint of: one row, ``config``."""


def _field_digests(config: RunConfig) -> dict[str, str]:
    """A digest of each run-defining field of ``config``: all but ``out`` and :func:`resume_safe_fields`."""
    values = config.model_dump(mode="json", exclude={"out", *resume_safe_fields()})
    return {name: _digest(value) for name, value in values.items()}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def record_run_config(conn: sqlite3.Connection, config: RunConfig, *, replace: bool) -> None:
    """Record in the checkpoint file the config it is a checkpoint of: the digest of every run-defining field
    and their combined digest. ``replace``: overwrite a record (a new run, or ``--extend`` raising the round
    budget); else only a file without one (written before this record existed) gets it."""
    fields = _field_digests(config)
    record = json.dumps({"digest": _digest(fields), "fields": fields}, sort_keys=True)
    with conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {_RUN_TABLE} (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        conn.execute(f"{verb} INTO {_RUN_TABLE} (name, value) VALUES ('config', ?)", (record,))


def _check_run_config(conn: sqlite3.Connection, config: RunConfig, path: Path, out: Path) -> None:
    """Refuse to resume a checkpoint recorded for other run-defining fields than ``config``'s (a field added
    since the record was written counts as unchanged while it has its default)."""
    try:
        row = conn.execute(f"SELECT value FROM {_RUN_TABLE} WHERE name = 'config'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return  # written before the record existed: nothing to compare
        raise corrupt_checkpoint_error(path, str(exc), out) from None
    if row is None:
        return
    try:
        record = json.loads(row[0])
        stored, digest = dict(record["fields"]), str(record["digest"])
    except (TypeError, ValueError, KeyError) as exc:
        raise corrupt_checkpoint_error(path, f"unreadable run record ({type(exc).__name__})", out) from None
    current = _field_digests(config)
    if digest == _digest(current):
        return
    changed = [  # a field either side leaves out (written before it existed, or an off switch) has its default
        name for name in dict.fromkeys([*current, *stored]) if name in RunConfig.model_fields
        and stored.get(name, _default_digest(name)) != current.get(name, _default_digest(name))
    ]
    if not changed:
        return
    flags = ", ".join(f"`{name}`" for name in changed)
    raise InputError(
        f"{path}: the checkpoint belongs to another run: it was written under a config that differs from "
        f"{RunDir(out).config_file} in {flags} (that file was edited, or the checkpoint copied from another run); "
        f"restore the config it was written with, or start this run over with: synalign run `data` "
        f"{_run_data(out)} `out` {out} `overwrite` (and the other options in {RunDir(out).config_file})"
    )


def _default_digest(name: str) -> str:
    """The digest of field ``name``'s default (a field a record written before it existed did not list)."""
    field = RunConfig.model_fields[name]
    default = field.get_default(call_default_factory=True)
    return _digest(json.loads(json.dumps(default, default=str)))


def _check_integrity(conn: sqlite3.Connection, path: Path, out: Path) -> None:
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        raise corrupt_checkpoint_error(path, str(exc), out) from None
    if rows != [("ok",)]:
        raise corrupt_checkpoint_error(path, f"integrity check: {rows[0][0]}", out)


_STATE_POOL_CHANNELS = ("samples", "weights", "accepted")
"""Channels of a checkpoint written before the samples moved to the store (the pool was in the state)."""


def _refuse_pool_in_state(saver: SqliteSaver, thread: RunnableConfig, path: Path, out: Path) -> None:
    """A checkpoint of an earlier synalign that held the pool in its state cannot be resumed by this one: the
    graph would not read those channels and would carry on with an empty pool."""
    try:
        saved = saver.get_tuple(thread)
    except (sqlite3.DatabaseError, ValueError, TypeError, KeyError, EOFError):
        return  # read_state reports it as corrupt
    channels = saved.checkpoint.get("channel_values", {}) if saved is not None else {}
    if any(name in channels for name in _STATE_POOL_CHANNELS):
        data = _run_data(out)
        raise InputError(
            f"{path}: this run was checkpointed by an earlier synalign that kept the samples in the state; resume "
            f"it with that version, or start it over with: synalign run `data` {data} `out` {out} `overwrite`"
        )


def alignments_prunable(keep: int | None) -> bool:
    """Whether ``align`` may delete the store's alignment before the previous one when the saver keeps ``keep``
    checkpoints: yes while every kept checkpoint is at most one ``align`` old, i.e. ``keep`` ≤ 4 (a round
    writes 4 checkpoints: explore, summarize, generate, align); None (every checkpoint kept) never."""
    return keep is not None and keep <= 4


def open_checkpoints(out: Path, *, resume: bool) -> tuple[sqlite3.Connection, PruningSqliteSaver]:
    """Open ``out/checkpoints.sqlite`` (WAL, busy timeout) and, when resuming, check that it is intact.

    Raises:
        InputError: the file is not a readable SQLite database or fails ``PRAGMA integrity_check``.
    """
    path = out / CHECKPOINT_FILE
    existed = path.exists()

    def saver(conn: sqlite3.Connection) -> PruningSqliteSaver:
        if resume and existed:
            _check_integrity(conn, path, out)
        opened = PruningSqliteSaver(conn, keep=KEEP_CHECKPOINTS)
        opened.setup()
        return opened

    return _open(out, saver, check_same_thread=False, timeout=30)


def open_store(out: Path) -> tuple[sqlite3.Connection, SqliteStore]:
    """Open the LangGraph SQLite store in ``out/checkpoints.sqlite`` (its own autocommit connection, busy
    timeout) and create its tables.

    Raises:
        InputError: the file is not a readable SQLite database.
    """
    from langgraph.store.sqlite import SqliteStore

    def store(conn: sqlite3.Connection) -> SqliteStore:
        opened = SqliteStore(conn)
        opened.setup()
        return opened

    return _open(out, store, check_same_thread=False, timeout=30, isolation_level=None)


def _open(out: Path, build: Callable[[sqlite3.Connection], _T], **connect: Any) -> tuple[sqlite3.Connection, _T]:
    """A connection to ``out/checkpoints.sqlite`` and what ``build`` makes of it; the connection is closed when
    ``build`` fails, and an unreadable database is :func:`corrupt_checkpoint_error`."""
    path = out / CHECKPOINT_FILE
    conn = sqlite3.connect(path, **connect)
    try:
        return conn, build(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if disk_full_error(exc, path) is not None:
            raise  # a full disk, not a damaged file: the run resumes once there is space
        raise corrupt_checkpoint_error(path, str(exc), out) from None
    except BaseException:
        conn.close()
        raise


def read_state(graph: Any, thread: RunnableConfig, path: Path, out: Path) -> Any:
    """``graph.get_state(thread)``, with an undecodable checkpoint (bit flips, truncation) as one InputError."""
    try:
        return graph.get_state(thread)
    except (sqlite3.DatabaseError, ValueError, TypeError, KeyError, EOFError) as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        raise corrupt_checkpoint_error(path, reason, out) from None
