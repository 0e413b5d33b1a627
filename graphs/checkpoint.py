"""The run's checkpoint store (LangGraph's SQLite saver), opened and read with corruption checks.

A checkpoint that cannot be trusted is never resumed: a truncated or garbled database, or a checkpoint blob
that no longer decodes, is one :class:`~synalign.errors.InputError` naming the file and the command that
starts the run over — never a traceback and never a silently shorter run.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver

from synalign.errors import InputError

__all__ = ["CHECKPOINT_FILE", "corrupt_checkpoint_error", "open_checkpoints", "read_state", "verify_checkpoints"]

CHECKPOINT_FILE = "checkpoints.sqlite"


def corrupt_checkpoint_error(path: Path, reason: str, out: Path) -> InputError:
    """The one-line error for an unreadable checkpoint: names the file and the command that starts over."""
    data = "DATA"
    try:
        data = str(json.loads((out / "config.json").read_text(encoding="utf-8"))["data"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return InputError(
        f"{path}: the run's checkpoint is corrupt ({reason}); it cannot be resumed safely — start the run over "
        f"with: synalign run --data {data} --out {out} --overwrite (and the other options in {out / 'config.json'})"
    )


def verify_checkpoints(out: Path, thread: dict[str, Any]) -> None:
    """Check, before any work, that a run's checkpoint can be resumed: intact file, decodable latest state.

    Raises:
        InputError: see :func:`corrupt_checkpoint_error`.
    """
    from synalign.graphs.graph import build_graph

    conn, saver = open_checkpoints(out, resume=True)
    try:
        read_state(build_graph().compile(checkpointer=saver), thread, out / CHECKPOINT_FILE, out)
    finally:
        conn.close()


def _check_integrity(conn: sqlite3.Connection, path: Path, out: Path) -> None:
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        raise corrupt_checkpoint_error(path, str(exc), out) from None
    if rows != [("ok",)]:
        raise corrupt_checkpoint_error(path, f"integrity check: {rows[0][0]}", out)


def open_checkpoints(out: Path, *, resume: bool) -> tuple[sqlite3.Connection, SqliteSaver]:
    """Open ``out/checkpoints.sqlite`` (WAL, busy timeout) and, when resuming, check that it is intact.

    Raises:
        InputError: the file is not a readable SQLite database or fails ``PRAGMA integrity_check``.
    """
    path = out / CHECKPOINT_FILE
    existed = path.exists()
    conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
    try:
        if resume and existed:
            _check_integrity(conn, path, out)
        saver = SqliteSaver(conn)
        saver.setup()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise corrupt_checkpoint_error(path, str(exc), out) from None
    except BaseException:
        conn.close()
        raise
    return conn, saver


def read_state(graph: Any, thread: dict[str, Any], path: Path, out: Path) -> Any:
    """``graph.get_state(thread)``, with an undecodable checkpoint (bit flips, truncation) as one InputError."""
    try:
        return graph.get_state(thread)
    except (sqlite3.DatabaseError, ValueError, TypeError, KeyError, EOFError) as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        raise corrupt_checkpoint_error(path, reason, out) from None
