"""The run directory: checked before anything is written, used by one process at a time, overwritten safely.

* :func:`prepare_run_dir` checks ``--out`` (exists / resumable / writable) before any work.
* :class:`RunDirLock` holds ``OUT/.synalign.lock`` (:mod:`filelock`: an OS-level lock released by the kernel
  when the process dies, so a crashed run never blocks the next one) for the whole run, so two
  ``synalign run`` into the same ``--out`` cannot interleave; the second is refused with the holder's pid.
* :func:`remove_run_files` is what ``--overwrite`` deletes: only the files a synalign run writes, never
  anything else that happens to sit in the directory (an input data file, notes, sub-directories).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from filelock import FileLock, Timeout

from synalign.errors import InputError

__all__ = ["CONFIG_FILE", "LOCK_FILE", "RUN_FILES", "RunDirLock", "prepare_run_dir", "remove_run_files"]

CONFIG_FILE = "config.json"
LOCK_FILE = ".synalign.lock"
RUN_FILES = (
    CONFIG_FILE,
    "checkpoints.sqlite",
    "checkpoints.sqlite-wal",
    "checkpoints.sqlite-shm",
    "checkpoints.sqlite-journal",
    "synthetic.jsonl",
    "synthetic.parquet",
    "pool.parquet",
    "attributes.jsonl",
    "metrics.json",
    "summary.json",
    "usage.json",
    "report.html",
    "README.md",
    "llm_trace.jsonl",
)
"""Every file a run writes into its directory (what ``--overwrite`` may delete)."""


def _entries(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.name != LOCK_FILE] if out.is_dir() else []


def prepare_run_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Check that ``out`` may be used, before anything is written.

    Raises:
        InputError: ``out`` exists (and is not empty) without ``resume``/``overwrite``; ``resume`` without a run
            in ``out``; ``overwrite`` on a non-empty directory that is not a synalign run; ``out`` cannot be
            created or written.
    """
    if resume and overwrite:
        raise InputError("--resume and --overwrite are mutually exclusive")
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {out} exists and is not a directory")
    exists = bool(_entries(out))
    if resume:
        if not (out / CONFIG_FILE).is_file():
            raise InputError(f"--resume: no synalign run in {out} (missing {CONFIG_FILE})")
        return
    if exists and not overwrite:
        raise InputError(f"output directory {out} already exists; pass --resume to continue it or --overwrite to replace it")
    if exists and overwrite and not (out / CONFIG_FILE).is_file():
        raise InputError(f"refusing to overwrite {out}: it is not a synalign run directory (no {CONFIG_FILE})")
    probe_dir = out
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise InputError(f"cannot create output directory {out}: {probe_dir} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".synalign-probe-"):
            pass
    except OSError as exc:
        raise InputError(f"output directory {out} is not writable ({exc.strerror or exc})") from None


def remove_run_files(out: Path) -> list[Path]:
    """Delete the files a synalign run wrote in ``out`` (:data:`RUN_FILES` and atomic-write leftovers).

    Returns:
        the files removed. Anything else in ``out`` is left untouched.
    """
    removed: list[Path] = []
    for entry in _entries(out):
        name = entry.name
        ours = name in RUN_FILES or any(
            name.startswith(f".{run_file}.") and name.endswith(".tmp") for run_file in RUN_FILES
        )
        if ours and (entry.is_file() or entry.is_symlink()):
            entry.unlink()
            removed.append(entry)
    return removed


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return "another process"
    return f"synalign process {pid}" if pid.isdigit() else "another process"


class RunDirLock:
    """The run directory's lock: created with the directory, held for the whole run.

    Args:
        out: the run directory (created if missing; :meth:`release` removes it again when it was created
            here and nothing but the lock was written, so a run refused or interrupted before it started
            leaves nothing behind).
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.created = False
        self._lock: FileLock | None = None

    def acquire(self) -> None:
        """Create ``out`` if needed and take the lock without waiting.

        Raises:
            InputError: ``out`` cannot be created, or another process holds the lock (its pid is named).
        """
        try:
            self.created = not self.out.exists()
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create output directory {self.out} ({exc.strerror or exc})") from None
        path = self.out / LOCK_FILE
        lock = FileLock(path, blocking=False)
        try:
            lock.acquire()
            path.write_text(f"{os.getpid()}\n", encoding="ascii")  # who holds it (the lock is on the inode)
        except Timeout:
            self.created = False  # the holder made it
            raise InputError(
                f"output directory {self.out} is in use by {_holder(path)} (lock {path}); wait for that run to "
                "finish or choose another --out"
            ) from None
        except OSError as exc:
            self.release()
            raise InputError(f"cannot lock output directory {self.out} ({exc.strerror or exc})") from None
        self._lock = lock

    def release(self) -> None:
        """Release the lock; remove ``out`` again if this process created it and wrote nothing else there.

        The lock file itself stays in a used run directory (a hidden, empty-but-a-pid file that every check
        ignores): unlinking a lock file other processes may have opened would let two of them hold it.
        """
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self.created and not _entries(self.out):  # nothing but the lock: leave no trace
            with contextlib.suppress(OSError):
                (self.out / LOCK_FILE).unlink()
                self.out.rmdir()

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
