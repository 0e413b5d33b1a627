"""Sentence embeddings of a pool too large for one machine, fanned out on Ray Data (issue 13, scale-out).

The one job of this module is running :class:`synalign.embeddings.Embedder` over a ``ray.data.Dataset``:
``Dataset.map_batches`` with a callable class on an actor pool (``compute=ray.data.ActorPoolStrategy(size=N)``),
so every actor loads the encoder once and embeds block after block (Ray Data's documented pattern for batch
inference, https://docs.ray.io/en/latest/data/batch_inference.html). :func:`embed_dataset` returns a Dataset with an
``embedding`` column (for pools whose embeddings do not fit on the driver: write it with ``write_parquet``);
:func:`embed_texts` embeds a list and returns the (n, d) array in input order; :func:`collect_embeddings` brings an
embedded Dataset back to the driver ordered by its id column.

Same vectors as the local path: each actor runs the same ``Embedder.encode`` on its batches. They are not
bit-identical: sentence-transformers sorts each ``encode`` call's texts by length and pads every encoder batch to its
longest text, so a text meets other padding (and another thread count's BLAS summation order) than in one local
call; measured on the SST-2 demo sample the largest difference is 3e-7 per coordinate of unit-norm vectors
(``tests/test_ray.py`` asserts ``atol=1e-5``).

The workers import ``synalign`` (and the encoder package): on a cluster it must be installed on every node
(``pip install 'synalign[ray]'``, or a Ray ``runtime_env``). Ray connects to the cluster ``ray.init()`` named, or
starts a local one on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synalign.embeddings import Embedder
from synalign.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import ray.data

__all__ = ["RayEmbedder", "collect_embeddings", "embed_dataset", "embed_texts", "embedding_matrix", "require_ray"]

_ID = "id"
"""Row-id column :func:`embed_texts` adds (input position), and the default id column of :func:`collect_embeddings`."""


def require_ray(what: str = "the Ray scale-out") -> None:
    """Check that Ray Data is installed.

    Raises:
        InputError: ``ray`` (or ``ray.data``'s dependencies) cannot be imported; the message names the extra.
    """
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise InputError(f"{what} needs Ray Data ({exc}): pip install 'synalign[ray]'") from None


def embedding_matrix(values: np.ndarray) -> np.ndarray:
    """A batch's embedding column as a float32 (b, d) matrix: a Ray tensor column arrives as a 2-D array, a
    list column (e.g. from ``pyarrow`` lists or JSON) as an object array of (d,) rows.

    Raises:
        InputError: rows of different lengths or non-numeric values.
    """
    arr = np.asarray(values)
    if arr.dtype == object:
        try:
            arr = np.stack([np.asarray(row, dtype=np.float32) for row in arr]) if len(arr) else arr
        except (ValueError, TypeError):
            raise InputError("the embedding column must hold numeric vectors of one length") from None
    if arr.ndim != 2 and len(arr):
        raise InputError(f"the embedding column must hold (d,) vectors, got a batch of shape {arr.shape}")
    return np.asarray(arr, dtype=np.float32).reshape(len(arr), -1)


class _EmbedBatch:
    """The ``map_batches`` callable: one :class:`~synalign.embeddings.Embedder` per actor, built once."""

    def __init__(
        self,
        model: str | None,
        max_seq_length: int | None,
        encoder_batch_size: int,
        device: str,
        cache_dir: str | bool,
        threads: int,
        text_column: str,
        output_column: str,
    ) -> None:
        import torch

        from synalign.embeddings import Embedder

        if device == "cpu" or not torch.cuda.is_available():
            torch.set_num_threads(max(1, threads))
        self.embedder = Embedder(
            model, cache_dir=cache_dir, batch_size=encoder_batch_size, device=device, max_seq_length=max_seq_length
        )
        self.embedder.check()
        self.text_column = text_column
        self.output_column = output_column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch[self.text_column]]
        batch[self.output_column] = self.embedder.encode(texts)
        return batch


def embed_dataset(
    dataset: ray.data.Dataset,
    *,
    text_column: str = "text",
    output_column: str = "embedding",
    model: str | None = None,
    max_seq_length: int | None = None,
    actors: int = 2,
    cpus_per_actor: float = 1.0,
    gpus_per_actor: float = 0.0,
    batch_size: int = 1024,
    encoder_batch_size: int = 64,
    device: str = "cpu",
    cache_dir: Path | str | bool = False,
) -> ray.data.Dataset:
    """Add the column ``output_column`` of unit-norm embeddings to ``dataset`` (lazy; runs when consumed).

    ``Dataset.map_batches`` on a pool of ``actors`` actors (``ray.data.ActorPoolStrategy``), each holding one
    :class:`~synalign.embeddings.Embedder`. Every other column is kept; row order follows Ray Data's execution
    order (keep an id column to join on; :func:`collect_embeddings` sorts by it).

    Args:
        dataset: a Dataset with a string column ``text_column``.
        output_column: the new column: float32 (d,) per row (a Ray tensor column), unit L2 norm.
        model, max_seq_length, encoder_batch_size: as :class:`~synalign.embeddings.Embedder` (``None`` = the
            bundled all-MiniLM-L6-v2, 384-d; 64 texts per encoder batch).
        actors: size of the actor pool (one encoder each).
        cpus_per_actor: CPUs Ray reserves per actor; torch runs on that many threads in it.
        gpus_per_actor: GPUs Ray reserves per actor (use 1 with ``device="cuda"``).
        batch_size: rows per ``map_batches`` call (one ``encode`` call each).
        device: the encoder's device in the actors (``"cpu"``, ``"cuda"``, ``"auto"``).
        cache_dir: ``False`` (default) embeds without a cache; a path gives each actor the SQLite embedding cache
            there (a node-local path: the file is shared only by the actors of one machine).

    Returns:
        The lazily embedded Dataset.

    Raises:
        InputError: Ray Data missing, ``text_column`` absent, or a non-positive ``actors``/``batch_size``.
    """
    require_ray()
    import ray.data

    if actors < 1 or batch_size < 1 or encoder_batch_size < 1:
        raise InputError(f"actors, batch_size and encoder_batch_size must be >= 1, got {actors}, {batch_size}, "
                         f"{encoder_batch_size}")
    schema = dataset.schema()
    names = list(schema.names) if schema is not None else []
    if text_column not in names:
        raise InputError(f"the dataset has no text column {text_column!r} (columns: {', '.join(names) or 'none'})")
    cache: str | bool = str(cache_dir) if not isinstance(cache_dir, bool) else cache_dir
    if cache is True:
        raise InputError("cache_dir must be False or a node-local directory for the Ray embedding actors")
    return dataset.map_batches(
        _EmbedBatch,
        fn_constructor_kwargs={
            "model": model, "max_seq_length": max_seq_length, "encoder_batch_size": encoder_batch_size,
            "device": device, "cache_dir": cache, "threads": max(1, int(cpus_per_actor)),
            "text_column": text_column, "output_column": output_column,
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor,
    )


def embed_texts(
    texts: Sequence[str],
    *,
    actors: int = 2,
    block_rows: int | None = None,
    **options: Any,
) -> np.ndarray:
    """Embed ``texts`` on Ray (:func:`embed_dataset`); the result is in input order.

    The texts travel from the driver into Ray's object store in blocks of ``block_rows`` (default: enough for
    four blocks per actor, at most 50,000 rows), so the actors share the work block by block.

    Args:
        texts: n strings.
        actors: size of the actor pool.
        block_rows: rows per input block.
        **options: the other keyword arguments of :func:`embed_dataset` (``model``, ``batch_size``, ...).

    Returns:
        float32 array (n, d), unit-norm rows, row i the embedding of ``texts[i]``; within ``atol=1e-5`` of
        ``Embedder(...).encode(texts)`` (see the module docstring).

    Raises:
        InputError: as :func:`embed_dataset`, or a non-string text.
    """
    require_ray()
    import pyarrow as pa
    import ray.data

    texts = list(texts)
    if any(not isinstance(t, str) for t in texts):
        raise InputError("embed_texts needs strings")
    if not texts:
        from synalign.embeddings import Embedder

        return np.zeros((0, Embedder(options.get("model"), cache_dir=False).dim), dtype=np.float32)
    rows = block_rows or min(50_000, max(1, -(-len(texts) // (4 * max(1, actors)))))
    tables = [
        pa.table({_ID: np.arange(i, min(i + rows, len(texts)), dtype=np.int64), "text": texts[i : i + rows]})
        for i in range(0, len(texts), rows)
    ]
    embedded = embed_dataset(ray.data.from_arrow(tables), actors=actors, text_column="text", **options)
    return collect_embeddings(embedded, column=options.get("output_column", "embedding"), id_column=_ID)


def collect_embeddings(dataset: ray.data.Dataset, *, column: str = "embedding", id_column: str = _ID) -> np.ndarray:
    """The embeddings of ``dataset`` on the driver, row i the one whose ``id_column`` is i.

    Memory on the driver: n·d·4 bytes (15 GB for 10M MiniLM vectors); beyond that keep the Dataset and write it
    (``write_parquet``) instead.

    Args:
        dataset: a Dataset with an integer column ``id_column`` holding 0 … n−1 once each, and a float tensor
            column ``column`` of shape (d,) per row.

    Returns:
        float32 array (n, d).

    Raises:
        InputError: a missing column, or ids that are not a permutation of 0 … n−1.
    """
    require_ray()
    ids: list[np.ndarray] = []
    vectors: list[np.ndarray] = []
    for batch in dataset.iter_batches(batch_format="numpy", batch_size=None):
        if column not in batch or id_column not in batch:
            raise InputError(f"the dataset needs the columns {id_column!r} and {column!r} (has {', '.join(batch)})")
        ids.append(np.asarray(batch[id_column], dtype=np.int64))
        vectors.append(embedding_matrix(batch[column]))
    if not ids:
        raise InputError("the dataset is empty")
    order = np.concatenate(ids)
    n = len(order)
    if order.min() < 0 or order.max() >= n or len(np.unique(order)) != n:
        raise InputError(f"column {id_column!r} must hold 0 … {n - 1} once each")
    stacked = np.concatenate(vectors)
    out = np.empty_like(stacked)
    out[order] = stacked
    return out


class RayEmbedder(Embedder):
    """An :class:`~synalign.embeddings.Embedder` whose cache misses are encoded on Ray (:func:`embed_texts`):
    what ``synalign run --ray`` embeds with (the real, held-out and validation sets, then each round's new
    texts).

    The cache is the driver's, as for the local embedder: :meth:`encode` reads the hits there, sends only the
    distinct misses to the actors (which keep no cache of their own) and stores their vectors there, so a
    resumed run, the report and any later run re-read them instead of embedding again. A cached vector is
    whichever path embedded its text first; Ray's and the local encoder's agree to 3e-7 per coordinate (module
    docstring), so the cache key (the model and truncation, as locally) does not tell them apart.

    The actors are sized to the cluster at each call: one per free GPU when the cluster has one and ``device``
    is not ``"cpu"`` (encoding on ``cuda``), else one per free CPU (at least one; Ray queues it until a CPU is
    free). The encoder itself is loaded on the driver's CPU only for its dimension and truncation length.

    Args:
        model, cache_dir, batch_size, max_seq_length: as :class:`~synalign.embeddings.Embedder` (``batch_size``
            is each actor's encoder batch).
        device: where the actors encode (``"auto"``: GPU actors on a cluster with GPUs).
        max_actors: at most this many actors per call.

    Raises:
        InputError: Ray Data is not installed (the message names the extra).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        cache_dir: Path | str | None | bool = None,
        batch_size: int = 64,
        device: str = "auto",
        max_seq_length: int | None = None,
        max_actors: int = 64,
    ) -> None:
        require_ray("`ray`")
        super().__init__(model, cache_dir=cache_dir, batch_size=batch_size, device="cpu",
                         max_seq_length=max_seq_length)
        self._model = model
        self._actor_device = device
        self._max_actors = max(1, max_actors)

    def _actors(self) -> dict[str, Any]:
        """:func:`embed_dataset` options for the cluster's free resources now."""
        import ray

        free = ray.available_resources()
        gpus = int(free.get("GPU", 0))
        if self._actor_device != "cpu" and gpus:
            return {"actors": min(gpus, self._max_actors), "gpus_per_actor": 1.0, "device": "cuda"}
        return {"actors": max(1, min(int(free.get("CPU", 0)), self._max_actors)), "device": "cpu"}

    def _encode_batches(self, todo: list[str], show_progress: bool, batch_done: Callable[[int], None]) -> np.ndarray:
        """The vectors of the cache misses ``todo``, embedded on Ray (one progress report, at the end)."""
        plan = self._actors()
        rows = max(1, min(1024, -(-len(todo) // plan["actors"])))  # every actor gets a share of a small batch
        vectors = embed_texts(todo, model=self._model, max_seq_length=self.max_seq_length,
                              encoder_batch_size=self.batch_size, batch_size=rows, block_rows=rows, **plan)
        batch_done(len(todo))
        return vectors
