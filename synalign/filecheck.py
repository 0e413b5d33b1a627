"""Refuse, with one line, paths a run could only fail on later: compressed files where plain text is expected
(instead of a decoding error), FIFOs and devices where a file is read (instead of waiting forever), names the
file system cannot hold and directories that cannot be created (instead of an ``OSError`` traceback)."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from synalign.errors import InputError

__all__ = ["COMPRESSED_SUFFIXES", "check_creatable_dir", "check_not_compressed", "check_path_fits",
           "check_regular_file"]

_PATH_MAX_DEFAULT = 4096
_NAME_MAX_DEFAULT = 255
_ROOM_FOR_FILES = 64
"""Bytes kept free below PATH_MAX for the names of the files written inside a directory."""

COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
_COMPRESSED_MAGIC = {
    b"\x1f\x8b": ("gzip", "gunzip"), b"BZh": ("bzip2", "bunzip2"), b"\xfd7zXZ\x00": ("xz", "unxz"),
    b"\x28\xb5\x2f\xfd": ("zstd", "unzstd"),
}


def check_not_compressed(path: Path | str) -> None:
    """Refuse a compressed text file with one line (it would otherwise fail as "not UTF-8" or worse).

    Raises:
        InputError: ``path`` starts with a gzip/bzip2/xz/zstd signature.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(6)
    except OSError:
        return  # the caller reports unreadable files
    for magic, (kind, tool) in _COMPRESSED_MAGIC.items():
        if head.startswith(magic) and (kind != "bzip2" or head[3:4].isdigit()):
            raise InputError(
                f"{path} is {kind}-compressed; decompress it first (e.g. with {tool}) and pass the plain file"
            )


def check_regular_file(path: Path | str) -> None:
    """Refuse a path that exists but is not a regular file (a FIFO, socket or device): reading one could wait
    forever for a writer. Call before the first ``open``; a missing path is left to the caller.

    Raises:
        InputError: ``path`` is a FIFO, socket, character or block device.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    raise InputError(f"{path} is not a regular file ({kind}); pass a file")


def _limit(path: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(path, name))
    except (OSError, ValueError):
        return default


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return candidate
        except OSError:  # e.g. a component too long to stat
            continue
    return Path(path.anchor or ".")


def check_path_fits(path: Path | str, what: str) -> None:
    """Refuse a path the file system cannot hold: a component longer than NAME_MAX (255 bytes on most file
    systems) or, with room for the files written inside it, a whole path past PATH_MAX.

    Args:
        path: the directory to be created or written.
        what: how the message names it, e.g. ``"`out`"`` (a setting in backticks, :mod:`synalign.errors`).

    Raises:
        InputError: a name or the path is too long.
    """
    absolute = Path(os.path.abspath(path))
    base = _existing_ancestor(absolute)
    name_max = _limit(base, "PC_NAME_MAX", _NAME_MAX_DEFAULT)
    for part in absolute.parts:
        size = len(os.fsencode(part))
        if size > name_max:
            raise InputError(f"{what} {_short(part)}: a name of {size} bytes is longer than the file system "
                             f"allows ({name_max})")
    path_max = _limit(base, "PC_PATH_MAX", _PATH_MAX_DEFAULT)
    size = len(os.fsencode(str(absolute)))
    if size + _ROOM_FOR_FILES > path_max:
        raise InputError(f"{what} {_short(str(absolute))}: the path is {size} bytes long; the file system allows "
                         f"{path_max} (with room for the files inside it)")


def check_creatable_dir(path: Path | str, what: str) -> None:
    """Refuse a directory path that is an existing non-directory, or that cannot be created (e.g. under
    ``/proc`` or on a read-only mount). Nothing is left behind: the test creates and removes a temporary
    directory in the nearest existing parent.

    Raises:
        InputError: ``path`` cannot be (or be used as) a directory.
    """
    path = Path(path)
    check_path_fits(path, what)
    base = _existing_ancestor(Path(os.path.abspath(path)))
    if not base.is_dir():
        where = "is" if base == Path(os.path.abspath(path)) else f"is under {base}, which is"
        raise InputError(f"{what} {path} {where} a file, not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".synalign-probe-", dir=base))
    except OSError as exc:
        reason = "read-only file system" if exc.errno == errno.EROFS else (exc.strerror or str(exc)).lower()
        raise InputError(f"{what} {path}: cannot create a directory in {base} ({reason})") from None


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…"
