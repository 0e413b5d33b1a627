"""The run directory: checked before anything is written, used by one process at a time, overwritten safely.

* :func:`prepare_run_dir` checks ``--out`` (exists / resumable / writable) before any work.
* :class:`RunDirLock` holds ``OUT/.synalign.lock`` (:mod:`filelock`: an OS-level lock released by the kernel
  when the process dies, so a crashed run never blocks the next one) for the whole run, so two
  ``synalign run`` into the same ``--out`` cannot interleave; the second is refused with the holder's pid.
* :func:`remove_run_files` is what ``--overwrite`` deletes: only the files a synalign run writes, never
  anything else that happens to sit in the directory (an input data file, notes, sub-directories).
* :class:`RunDir` owns a run directory's file names and answers about it: :meth:`RunDir.is_run` (``config.json``,
  written first), :meth:`RunDir.is_finished` (``summary.json``, written last), :meth:`RunDir.read_config`,
  :meth:`RunDir.read_summary` (:class:`~synalign.artifacts.summary.RunSummary`).
* :func:`read_compare_side` reads one side of ``synalign compare``: a run or align output, an export, or data.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from synalign.agents.trace import TRACE_FILE
from synalign.errors import InputError

if TYPE_CHECKING:
    from synalign.artifacts.summary import RunSummary
    from synalign.config import RunConfig
    from synalign.records import RealExample

__all__ = [
    "CONFIG_FILE", "LOCK_FILE", "RUN_FILES", "InvalidRunConfig", "RunDir", "RunDirLock", "prepare_run_dir",
    "read_compare_side", "remove_run_files",
]

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoints.sqlite"
SYNTHETIC_JSONL = "synthetic.jsonl"
SYNTHETIC_PARQUET = "synthetic.parquet"
POOL_FILE = "pool.parquet"
ATTRIBUTES_FILE = "attributes.jsonl"
USAGE_FILE = "usage.json"
REPORT_FILE = "report.html"
CARD_FILE = "README.md"
LOCK_FILE = ".synalign.lock"
RUN_FILES = (
    CONFIG_FILE,
    CHECKPOINT_FILE,
    f"{CHECKPOINT_FILE}-wal",
    f"{CHECKPOINT_FILE}-shm",
    f"{CHECKPOINT_FILE}-journal",
    SYNTHETIC_JSONL,
    SYNTHETIC_PARQUET,
    POOL_FILE,
    ATTRIBUTES_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    USAGE_FILE,
    REPORT_FILE,
    CARD_FILE,
    TRACE_FILE,
)
"""Every file a run writes into its directory (what ``--overwrite`` may delete)."""


class InvalidRunConfig(InputError):
    """A ``config.json`` that does not validate as a :class:`~synalign.config.RunConfig`.

    Attributes:
        path: the file.
        error: the validation error (the CLI words it with the flags' names).
    """

    def __init__(self, path: Path, error: Exception) -> None:
        self.path, self.error = path, error
        super().__init__(f"{path} is not a valid run config ({_reason(error)})")


def _reason(error: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in error.errors())
    return " ".join(str(error).split())


class RunDir:
    """One run directory: the path of every file a run (or ``synalign align``) writes there, and what they say.

    Args:
        path: the directory (it need not exist).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config_file(self) -> Path:
        """``config.json``: the resolved RunConfig."""
        return self.path / CONFIG_FILE

    @property
    def summary_file(self) -> Path:
        """``summary.json``: written last."""
        return self.path / SUMMARY_FILE

    @property
    def metrics_file(self) -> Path:
        """``metrics.json``: one row per round."""
        return self.path / METRICS_FILE

    @property
    def checkpoint_file(self) -> Path:
        """The LangGraph SQLite checkpoint and store."""
        return self.path / CHECKPOINT_FILE

    @property
    def synthetic_jsonl(self) -> Path:
        """The accepted samples (JSONL)."""
        return self.path / SYNTHETIC_JSONL

    @property
    def synthetic_parquet(self) -> Path:
        """The accepted samples (Parquet)."""
        return self.path / SYNTHETIC_PARQUET

    @property
    def pool_file(self) -> Path:
        """Every generated sample with its weight."""
        return self.path / POOL_FILE

    @property
    def attributes_file(self) -> Path:
        """Attribute summaries per cluster."""
        return self.path / ATTRIBUTES_FILE

    @property
    def usage_file(self) -> Path:
        """LLM usage of each process of the run."""
        return self.path / USAGE_FILE

    @property
    def trace_file(self) -> Path:
        """The LLM calls (``--trace``)."""
        return self.path / TRACE_FILE

    @property
    def report_file(self) -> Path:
        """``report.html``."""
        return self.path / REPORT_FILE

    @property
    def card_file(self) -> Path:
        """The dataset card (``README.md``)."""
        return self.path / CARD_FILE

    @property
    def lock_file(self) -> Path:
        """The run's lock (:class:`RunDirLock`)."""
        return self.path / LOCK_FILE

    def is_run(self) -> bool:
        """A synalign run lives here (started or finished): its ``config.json`` is written before any work."""
        return self.config_file.is_file()

    def is_finished(self) -> bool:
        """The outputs here are complete: ``summary.json`` is written last (by a run and by ``synalign align``,
        which writes no ``config.json``)."""
        return self.summary_file.is_file()

    def entries(self) -> list[Path]:
        """What the directory holds besides the lock (empty when it does not exist)."""
        return [p for p in self.path.iterdir() if p.name != LOCK_FILE] if self.path.is_dir() else []

    def read_config(self) -> RunConfig:
        """The run's saved :class:`~synalign.config.RunConfig`.

        Raises:
            InputError: no ``config.json`` (``no synalign run in OUT (missing config.json)``);
                :class:`InvalidRunConfig` when it does not validate.
        """
        from pydantic import ValidationError

        from synalign.config import RunConfig

        if not self.is_run():
            raise InputError(f"no synalign run in {self.path} (missing {CONFIG_FILE})")
        try:
            return RunConfig.model_validate_json(self.config_file.read_text(encoding="utf-8"))
        except (ValidationError, ValueError) as exc:
            raise InvalidRunConfig(self.config_file, exc) from None

    def write_config(self, config: RunConfig) -> Path:
        """Write ``config`` to ``config.json`` (atomically); returns the path."""
        from synalign.fileio import atomic_write_text

        atomic_write_text(self.config_file, config.model_dump_json(indent=2) + "\n")
        return self.config_file

    def read_summary(self) -> RunSummary:
        """The run's :class:`~synalign.artifacts.summary.RunSummary` (an earlier version's too).

        Raises:
            InputError: ``summary.json`` is missing, unreadable or not a summary.
        """
        from pydantic import ValidationError

        from synalign.artifacts.summary import RunSummary

        try:
            data = json.loads(self.summary_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"missing {self.summary_file}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read {self.summary_file} ({_reason(exc)})") from None
        try:
            return RunSummary.model_validate(data)
        except ValidationError as exc:
            raise InputError(f"{self.summary_file} is not a run summary ({_reason(exc)})") from None

    def write_summary(self, summary: RunSummary) -> Path:
        """Write ``summary.json`` (atomically; the last file of a run); returns the path."""
        from synalign.fileio import atomic_write_text

        atomic_write_text(self.summary_file, summary.to_json())
        return self.summary_file


def prepare_run_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Check that ``out`` may be used, before anything is written.

    Raises:
        InputError: ``out`` exists (and is not empty) without ``resume``/``overwrite``; ``resume`` without a run
            in ``out``; ``overwrite`` on a non-empty directory that is not a synalign run; ``out`` cannot be
            created or written.
    """
    if resume and overwrite:
        raise InputError("`resume` and `overwrite` are mutually exclusive")
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {out} exists and is not a directory")
    run_dir = RunDir(out)
    exists = bool(run_dir.entries())
    if resume:
        if not run_dir.is_run():
            raise InputError(f"`resume`: no synalign run in {out} (missing {CONFIG_FILE})")
        return
    if exists and not overwrite:
        raise InputError(
            f"output directory {out} already exists; pass `resume` to continue it or `overwrite` to replace it"
        )
    if exists and overwrite and not run_dir.is_run():
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
    for entry in RunDir(out).entries():
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
        path = RunDir(self.out).lock_file
        lock = FileLock(path, blocking=False)
        try:
            lock.acquire()
            path.write_text(f"{os.getpid()}\n", encoding="ascii")  # who holds it (the lock is on the inode)
        except Timeout:
            self.created = False  # the holder made it
            raise InputError(
                f"output directory {self.out} is in use by {_holder(path)} (lock {path}); wait for that run to "
                "finish or choose another `out`"
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
        run_dir = RunDir(self.out)
        if self.created and not run_dir.entries():  # nothing but the lock: leave no trace
            with contextlib.suppress(OSError):
                run_dir.lock_file.unlink()
                self.out.rmdir()

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_compare_side(path: Path | str, *, text_field: str = "text", label_field: str = "label") -> list[RealExample]:
    """The labelled texts of one side of ``synalign compare``, whatever synalign output or data it is given.

    - a synalign output directory, of ``synalign run`` or ``synalign align`` (``synthetic.jsonl`` beside
      ``summary.json`` or ``config.json``): its accepted samples, in the run's own ``text`` / ``label`` fields;
    - an export directory (``synalign export --to-dir``: ``data/train-*.parquet`` and a card): its accepted samples,
      in the column names the card records (the user's, ``synalign.text_field`` / ``synalign.label_field``);
    - anything else :func:`synalign.datafiles.load_dataset` reads (a data file, a dataset directory's train split,
      a Hugging Face dataset folder), with ``text_field`` / ``label_field``.

    Raises:
        InputError: see :func:`synalign.datafiles.load_dataset`.
    """
    from synalign.datafiles import load_dataset

    path = Path(path)
    run_dir = RunDir(path)
    if path.is_dir() and run_dir.synthetic_jsonl.is_file() and (run_dir.is_finished() or run_dir.is_run()):
        return load_dataset(run_dir.synthetic_jsonl).train
    if path.is_dir() and (path / "data").is_dir():
        recorded = _card_fields(run_dir.card_file)
        if recorded is not None:
            text_field, label_field = recorded
    return load_dataset(path, text_field=text_field, label_field=label_field).train


def _card_fields(card: Path) -> tuple[str, str] | None:
    """``(text_field, label_field)`` recorded in a synalign dataset card's YAML header, else ``None``."""
    import yaml

    try:
        text = card.read_text(encoding="utf-8")
        meta = yaml.safe_load(text.split("---\n", 2)[1]) if text.startswith("---\n") else None
    except (OSError, UnicodeDecodeError, IndexError, yaml.YAMLError):
        return None
    fields = (meta or {}).get("synalign") if isinstance(meta, dict) else None
    if not isinstance(fields, dict) or not fields.get("text_field") or not fields.get("label_field"):
        return None
    return str(fields["text_field"]), str(fields["label_field"])
