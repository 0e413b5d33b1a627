"""Alignment (SynAlign stage 3) of a Ray-embedded pool: the Nyström KMM screen on sharded Ray actors.

The one job of this module is running ``kmm_weights(features="nystrom")`` (:mod:`synalign.kmm`) on a pool that
lives in a ``ray.data.Dataset`` (embedded by :mod:`synalign.scaleout.embed`), and handing the weights to
:func:`synalign.alignment.align` for the selection. :func:`ray_kmm_weights` is the same algorithm as the local
path, step for step:

1. landmarks: the same seeded uniform draw of r rows from the synthetic and real rows
   (:func:`synalign.kmm.nystrom_landmarks`), gathered from the shards; the map (:class:`synalign.kmm.NystromMap`,
   Williams & Seeger 2001) is fitted once on the driver and sent to every shard;
2. the screen: exponentiated gradient (Kivinen & Warmuth 1997) for :data:`synalign.kmm.NYSTROM_SCREEN_ITER`
   iterations on the FITC-corrected features K ≈ ΦΦᵀ + diag(1 − ||φ_i||²) (Snelson & Ghahramani 2006). Each
   actor holds its shard's rows, features Φ_k and weights; per step the driver exchanges only r'-vectors and
   scalars with them (Φᵀw = Σ_k Φ_kᵀw_k, the softmax's max and normaliser, the objective change), so Φ, m·r'·4
   bytes (4 KB a row at r = 1,024), never leaves the actors;
3. the working set: the ``NYSTROM_WORKING_SET`` largest screened weights (each shard's top rows, merged), whose
   embeddings come to the driver for the exact-kernel solve (:func:`synalign.kmm.kmm_weights`, ``"exact"``).

The shards' sums are over their own rows and then added, where the local path sums all rows at once, so the
weights agree to float rounding, not bit for bit (``tests/test_ray.py``: ``atol=1e-6`` and the same support).

What must fit on the driver: the real set (n·d), r landmarks and the r×r map, the working set (2,048·d), the
(m,) ids and weights; :func:`ray_align` also collects the pool's embeddings (m·d·4 bytes, 1.5 KB a MiniLM row)
because the selection strategies and the MMD² report read them. The shards need about m·(d + r' + 10)·4 bytes in
all, and keep the pool for every label of a :func:`ray_align` call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from synalign.errors import InputError
from synalign.scaleout.embed import embedding_matrix, require_ray

if TYPE_CHECKING:  # pragma: no cover
    import ray.data

    from synalign.alignment import AlignmentResult

__all__ = ["ray_align", "ray_kmm_weights", "ray_kmm_weights_by_label"]


class _PoolShard:
    """A Ray actor holding one shard of the pool: its rows (and labels), their Nyström features and weights.

    :meth:`use` picks the active rows (one label's, or all) and their positions: ranks by id over the active rows
    of the whole pool (the row order of the local path). The EG step is split where the local
    :func:`synalign.kmm._exponentiated_gradient` needs a sum over all rows.
    """

    def __init__(self, shard: Any, column: str, id_column: str, label_column: str | None, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        need = [id_column, column] + ([label_column] if label_column else [])
        ids, rows, labels = [], [], []
        self.missing = ""
        for batch in shard.iter_batches(batch_format="numpy", batch_size=None):
            if any(name not in batch for name in need):
                self.missing = f"the pool needs the columns {', '.join(map(repr, need))} (has {', '.join(batch)})"
                break
            ids.append(np.asarray(batch[id_column], dtype=np.int64))
            rows.append(embedding_matrix(batch[column]))
            if label_column:
                labels.append(np.asarray([str(v) for v in batch[label_column]], dtype=object))
        self.ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        self.x = np.ascontiguousarray(np.concatenate(rows)) if rows else np.zeros((0, 0), dtype=np.float32)
        self.labels = np.concatenate(labels) if labels else None
        self.use(None, np.sort(self.ids))

    def info(self) -> tuple[np.ndarray, np.ndarray | None, int, str]:
        """(ids, labels or None, dimension d or 0 when empty, "" or what is missing)."""
        return self.ids, self.labels, int(self.x.shape[1]) if len(self.x) else 0, self.missing

    def use(self, label: str | None, sorted_ids: np.ndarray) -> int:
        active = np.ones(len(self.ids), dtype=bool) if label is None or self.labels is None else self.labels == label
        self.pos = np.searchsorted(sorted_ids, self.ids[active])
        self.xa = np.ascontiguousarray(self.x[active])
        return len(self.pos)

    def rows(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mask = np.isin(self.pos, positions)
        return self.pos[mask], self.xa[mask]

    def featurize(self, fmap: Any, mu: Any, block: int, m: int) -> Any:
        """Φ_k, residual, b_k = Φ_k μ_r and uniform weights 1/m; returns Φ_kᵀw_k (float64)."""
        import torch

        with torch.no_grad():
            phi, self.resid = fmap.transform(torch.from_numpy(self.xa), block)
            self.phi = phi
            self.b = (phi @ mu).double()
            self.w = torch.full((len(self.xa),), 1.0 / m, dtype=torch.float64)
            return (phi.T @ self.w.to(phi.dtype)).double()

    def set_kw(self, v: Any) -> None:
        self.kw = (self.phi @ v).double().add_(self.resid * self.w)

    def propose(self, eta: float) -> tuple[float, float]:
        """logits = log w − η∇f; returns (max, Σ exp(logits − max)) for the global softmax."""
        import torch

        self.logits = torch.log(self.w.clamp(min=1e-300)) - eta * 2.0 * (self.kw - self.b)
        if not len(self.logits):
            return -math.inf, 0.0
        top = float(self.logits.max())
        return top, float(torch.exp(self.logits - top).sum())

    def normalise(self, top: float, total: float) -> Any:
        import torch

        self.w_new = torch.exp(self.logits - top) / total
        return (self.phi.T @ self.w_new.to(self.phi.dtype)).double()

    def change(self, v: Any) -> float:
        """(w' − w)ᵀ(Kw' + Kw − 2b) over the shard's rows (the local path's exact objective change)."""
        self.kw_new = (self.phi @ v).double().add_(self.resid * self.w_new)
        return float((self.w_new - self.w) @ (self.kw_new + self.kw - 2.0 * self.b))

    def commit(self) -> None:
        self.w, self.kw = self.w_new, self.kw_new

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        values, idx = torch.topk(self.w, min(k, len(self.w)))
        return self.pos[idx.numpy()], values.numpy()

    def release(self) -> None:
        """Drop the features of the last solve (the next label's replace them)."""
        for name in ("phi", "resid", "b", "w", "kw", "logits", "w_new", "kw_new"):
            self.__dict__.pop(name, None)


def _gather(shards: list[Any], positions: np.ndarray, d: int) -> np.ndarray:
    """Active rows at ``positions`` (in that order) from the shards."""
    import ray

    positions = np.asarray(positions, dtype=np.int64)
    order = np.argsort(positions)
    out = np.empty((len(positions), d), dtype=np.float32)
    for pos, rows in ray.get([s.rows.remote(positions) for s in shards]):
        if len(pos):
            out[order[np.searchsorted(positions[order], pos)]] = rows
    return out


def _screen(shards: list[Any], featurize: tuple[Any, ...], n_iter: int) -> None:
    """Distributed exponentiated gradient from uniform weights: the local screen's steps, step size rule
    (×1.25 on descent, halve and retry on ascent, 30 retries) and acceptance test, with every sum over rows
    split into per-shard sums."""
    import ray
    import torch

    def total(parts: list[Any]) -> Any:
        return torch.stack(parts).sum(dim=0).to(torch.float32)

    v = total(ray.get([s.featurize.remote(*featurize) for s in shards]))
    ray.get([s.set_kw.remote(v) for s in shards])
    eta = 1.0
    for _ in range(n_iter):
        for _retry in range(30):
            parts = ray.get([s.propose.remote(eta) for s in shards])
            top = max(p[0] for p in parts)
            norm = sum(p[1] * math.exp(p[0] - top) for p in parts if p[1] > 0)
            v = total(ray.get([s.normalise.remote(top, norm) for s in shards]))
            if sum(ray.get([s.change.remote(v) for s in shards])) <= 0.0:
                ray.get([s.commit.remote() for s in shards])
                eta *= 1.25
                break
            eta *= 0.5
        else:
            break


class _Shards:
    """The pool split over ``count`` :class:`_PoolShard` actors (``Dataset.split``); a context manager that kills
    them on exit. ``ids`` (sorted), ``labels`` (in id order, or None) and ``d`` describe the whole pool."""

    def __init__(
        self, pool: Any, count: int, cpus: float, column: str, id_column: str, label_column: str | None
    ) -> None:
        import ray

        actor = ray.remote(num_cpus=cpus)(_PoolShard)
        # Any: Ray types an actor's methods (``h.info.remote``) only under ``@ray.method``, and ray loads lazily here
        self.handles: list[Any] = [
            actor.remote(part, column, id_column, label_column, int(cpus)) for part in pool.split(count)
        ]
        try:
            infos = ray.get([h.info.remote() for h in self.handles])
            missing = next((i[3] for i in infos if i[3]), "")
            if missing:
                raise InputError(missing)
            ids = np.concatenate([i[0] for i in infos])
            if not len(ids):
                raise InputError("the pool is empty")
            order = np.argsort(ids, kind="stable")
            self.ids = ids[order]
            if len(np.unique(self.ids)) != len(self.ids):
                raise InputError(f"column {id_column!r} has duplicate ids")
            self.labels = np.concatenate([i[1] for i in infos])[order] if label_column else None
            self.d = max(i[2] for i in infos)
        except BaseException:
            self.close()
            raise

    def use(self, label: str | None) -> int:
        """Make one label's rows (``None``: all rows) the active ones; returns their count m."""
        import ray

        chosen = self.ids if label is None or self.labels is None else self.ids[self.labels == label]
        ref = ray.put(chosen)
        return sum(ray.get([h.use.remote(label, ref) for h in self.handles]))

    def close(self) -> None:
        import ray

        for h in self.handles:
            ray.kill(h)
        self.handles = []

    def __enter__(self) -> _Shards:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check(solver: str, shards: int, n_iter: int, n_features: int | None) -> None:
    if solver not in ("frank_wolfe", "eg"):
        raise InputError(f"unknown KMM solver {solver!r}; known: frank_wolfe, eg")
    if shards < 1 or n_iter < 0 or (n_features is not None and n_features < 2):
        raise InputError(f"shards must be >= 1, n_iter >= 0 and n_features >= 2, got {shards}, {n_iter}, {n_features}")


def _solve(
    shards: _Shards, label: str | None, r: np.ndarray, sigma: float, *, solver: Literal["frank_wolfe", "eg"],
    n_iter: int,
    n_features: int | None, seed: int, working_set: int | None, block: int, device: str, tol: float,
) -> np.ndarray:
    """The (m,) weights of the active rows (one label's or all), in id order: :func:`ray_kmm_weights`'s steps."""
    import ray
    import torch

    from synalign import kmm

    m = shards.use(label)
    handles, d = shards.handles, shards.d
    if d != r.shape[1]:
        raise InputError(f"pool and real have different dimensions: {d} vs {r.shape[1]}")
    ws = int(working_set or kmm.NYSTROM_WORKING_SET)
    block = max(1, block)
    if m <= ws:
        keep = np.arange(m)
    else:
        syn_pos, real_pos = kmm.nystrom_landmarks(m, len(r), n_features or kmm.NYSTROM_LANDMARKS, seed)
        fmap = kmm.NystromMap(torch.from_numpy(np.concatenate([_gather(handles, syn_pos, d), r[real_pos]])), sigma)
        mu = fmap.mean(torch.from_numpy(r), block)
        _screen(handles, (ray.put(fmap), ray.put(mu), block, m), kmm.NYSTROM_SCREEN_ITER)
        tops = ray.get([h.top.remote(ws) for h in handles])
        ray.get([h.release.remote() for h in handles])
        pos = np.concatenate([t[0] for t in tops])
        val = torch.from_numpy(np.concatenate([t[1] for t in tops]))
        keep = np.sort(pos[torch.topk(val, ws).indices.numpy()])
    weights = np.zeros(m)
    weights[keep] = kmm.kmm_weights(
        _gather(handles, keep, d), r, bandwidth=sigma, solver=solver, n_iter=n_iter,
        features="exact", device=device, block_size=block, tol=tol,
    )
    return weights


def ray_kmm_weights(
    pool: ray.data.Dataset,
    real: np.ndarray,
    *,
    bandwidth: float,
    column: str = "embedding",
    id_column: str = "id",
    solver: Literal["frank_wolfe", "eg"] = "frank_wolfe",
    n_iter: int = 200,
    n_features: int | None = None,
    seed: int = 0,
    shards: int = 2,
    cpus_per_shard: float = 1.0,
    working_set: int | None = None,
    block_size: int = 4096,
    device: str = "auto",
    tol: float = 1e-8,
) -> tuple[np.ndarray, np.ndarray]:
    """``kmm_weights(pool, real, features="nystrom")`` with the pool in a Ray Dataset (module docstring).

    Args:
        pool: Dataset of m rows with a float tensor column ``column`` (d,) and a unique integer ``id_column``;
            row i of the local path is the row with the i-th smallest id. It is consumed once
            (``Dataset.split`` into the shards); a lazy pipeline runs then.
        real: (n, d) real embeddings (on the driver).
        bandwidth: RBF σ (Euclidean units). solver, n_iter, n_features, seed, block_size, tol: as
            :func:`synalign.kmm.kmm_weights` (``n_features`` = landmarks r, default 1,024).
        shards: actors holding the pool; cpus_per_shard: CPUs (torch threads) each.
        working_set: rows kept by the screen (default :data:`synalign.kmm.NYSTROM_WORKING_SET`, read at call
            time); a pool of at most that many rows is solved exactly on the driver, as locally.
        device: device of the exact working-set solve on the driver (the shards run on CPU).

    Returns:
        (ids, weights): the (m,) sorted ids and their float64 weights, ≥ 0, summing to 1 (zero outside the
        working set).

    Raises:
        InputError: Ray missing, a missing column, duplicate ids, mismatched dimensions, bad bandwidth, solver
            or counts.
    """
    require_ray("ray_kmm_weights")
    from synalign._torch import as_matrix, bandwidth_list

    r = as_matrix(real, "real")
    (sigma,) = bandwidth_list(bandwidth)
    _check(solver, shards, n_iter, n_features)
    with _Shards(pool, shards, cpus_per_shard, column, id_column, None) as held:
        weights = _solve(held, None, r, sigma, solver=solver, n_iter=n_iter, n_features=n_features, seed=seed,
                         working_set=working_set, block=block_size, device=device, tol=tol)
        return held.ids, weights


def ray_kmm_weights_by_label(
    pool: ray.data.Dataset,
    real: np.ndarray,
    real_labels: Sequence[str],
    *,
    bandwidth: float,
    label_column: str = "label",
    column: str = "embedding",
    id_column: str = "id",
    solver: Literal["frank_wolfe", "eg"] = "frank_wolfe",
    n_iter: int = 200,
    n_features: int | None = None,
    seed: int = 0,
    shards: int = 2,
    cpus_per_shard: float = 1.0,
    working_set: int | None = None,
    device: str = "auto",
    tol: float = 1e-8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`ray_kmm_weights` of each label's rows against that label's real rows, at one ``bandwidth`` (a
    run's fixed one), with the pool split once over the shards, which keep it for every label.

    Args:
        pool: Dataset with ``id_column`` (unique ints), ``label_column`` and the embedding ``column``.
        real, real_labels: (n, d) real embeddings and their n labels.
        bandwidth, solver, n_iter, n_features, seed, shards, cpus_per_shard, working_set, device, tol: as
            :func:`ray_kmm_weights`.

    Returns:
        (ids, labels, weights): the pool's (m,) sorted ids, their labels and float64 weights, each label's
        ≥ 0 and summing to 1.

    Raises:
        InputError: as :func:`ray_kmm_weights`, or a label of the pool with no real rows.
    """
    require_ray("ray_kmm_weights_by_label")
    from synalign._torch import as_matrix, bandwidth_list

    r = as_matrix(real, "real")
    real_lab = np.asarray([str(v) for v in real_labels], dtype=object)
    (sigma,) = bandwidth_list(bandwidth)
    _check(solver, shards, n_iter, n_features)
    with _Shards(pool, shards, cpus_per_shard, column, id_column, label_column) as held:
        assert held.labels is not None
        weights = np.zeros(len(held.ids))
        for label in dict.fromkeys(held.labels.tolist()):
            xr = r[real_lab == label]
            if not len(xr):
                raise InputError(f"synthetic label {label!r} has no real examples to align to")
            weights[held.labels == label] = _solve(
                held, label, xr, sigma, solver=solver, n_iter=n_iter, n_features=n_features, seed=seed,
                working_set=working_set, block=4096, device=device, tol=tol,
            )
        return held.ids, held.labels, weights


def ray_align(
    pool: ray.data.Dataset,
    real: np.ndarray,
    real_labels: Sequence[str],
    *,
    label_column: str = "label",
    column: str = "embedding",
    id_column: str = "id",
    strategy: str = "filter",
    accept_fraction: float = 0.5,
    solver: Literal["frank_wolfe", "eg"] = "frank_wolfe",
    n_features: int | None = None,
    seed: int = 0,
    shards: int = 2,
    cpus_per_shard: float = 1.0,
    working_set: int | None = None,
    device: str = "auto",
    compute_mmd: bool = True,
) -> tuple[np.ndarray, AlignmentResult]:
    """:func:`synalign.alignment.align` of a Ray-embedded pool, with each label's KMM weights from the Nyström
    screen on the shards (:func:`ray_kmm_weights`'s algorithm).

    The pool is split once over ``shards`` actors, which keep it for every label. Per label (in order of first
    appearance by id), the bandwidth is the median heuristic of that label's real and synthetic rows (as
    ``align``), the weights are solved on that label's rows, and ``align`` selects with them. The pool's
    embeddings and labels are gathered on the driver for the selection (m·d·4 bytes).

    Args:
        pool: Dataset with ``id_column`` (unique ints), ``label_column`` and the embedding ``column``.
        real, real_labels: (n, d) real embeddings and their n labels.
        strategy, accept_fraction, solver, seed, device, compute_mmd: as :func:`synalign.alignment.align`.
        n_features, shards, cpus_per_shard, working_set: as :func:`ray_kmm_weights`.

    Returns:
        (ids, result): the pool's (m,) sorted ids, and the :class:`~synalign.alignment.AlignmentResult` whose
        row i is the row with id ``ids[i]``.

    Raises:
        InputError: as :func:`ray_kmm_weights` and :func:`synalign.alignment.align`.
    """
    require_ray("ray_align")
    from synalign._torch import as_matrix
    from synalign.alignment import align
    from synalign.divergence import median_bandwidth

    r = as_matrix(real, "real")
    real_lab = np.asarray([str(v) for v in real_labels], dtype=object)
    _check(solver, shards, 200, n_features)
    with _Shards(pool, shards, cpus_per_shard, column, id_column, label_column) as held:
        assert held.labels is not None
        labels = held.labels
        held.use(None)
        s = _gather(held.handles, np.arange(len(held.ids)), held.d)
        weights = np.zeros(len(labels))
        for label in dict.fromkeys(labels.tolist()):
            rows, xr = labels == label, r[real_lab == label]
            if not len(xr):
                raise InputError(f"synthetic label {label!r} has no real examples to align to")
            try:
                bw = median_bandwidth(xr, s[rows])
            except InputError:
                bw = 1.0  # fewer than 2 distinct rows: any bandwidth gives the same selection (as align)
            weights[rows] = _solve(held, label, xr, bw, solver=solver, n_iter=200, n_features=n_features,
                                   seed=seed, working_set=working_set, block=4096, device=device, tol=1e-8)
        ids = held.ids
    result = align(
        s, labels, r, real_lab, strategy=strategy, accept_fraction=accept_fraction, solver=solver, seed=seed,
        device=device, compute_mmd=compute_mmd, weights=weights,
    )
    return ids, result
