"""Refuse compressed files where plain text is expected, with one line instead of a decoding error."""

from __future__ import annotations

from pathlib import Path

from synalign.errors import InputError

__all__ = ["COMPRESSED_SUFFIXES", "check_not_compressed"]

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
            raise InputError(f"{path} is {kind}-compressed; decompress it first (e.g. with {tool}) and pass the plain file")
