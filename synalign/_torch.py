"""Shared torch helpers for the math modules: device choice, array conversion, RBF kernel rows.

Private to the core package (``synalign.explorer``, ``synalign.divergence``, ``synalign.alignment``).
Importing this module imports torch; ``import synalign`` does not import it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import cast

import numpy as np
import torch

from synalign.errors import InputError

__all__ = [
    "RBFRows",
    "as_matrix",
    "bandwidth_list",
    "kernel_matvec",
    "kernel_sum",
    "median_pairwise_distance",
    "rbf_from_sq_dists",
    "resolve_device",
    "sequential_loop",
    "sq_dists",
    "to_tensor",
]

_DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available else CPU; ``"cpu"``; ``"cuda"`` (InputError when CUDA is absent)."""
    if isinstance(device, torch.device):
        return device
    if device not in _DEVICES and not str(device).startswith("cuda:"):
        raise InputError(f"device must be one of {', '.join(_DEVICES)}, got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available on this machine")
    return torch.device(device)


@contextmanager
def sequential_loop(device: torch.device) -> Iterator[None]:
    """Run a Python loop of small, memory-bound torch ops with one intra-op CPU thread, then restore.

    Greedy loops (pivoted Cholesky, Frank–Wolfe, herding) issue one matrix-vector product and a few
    element-wise ops per step. With several threads, the BLAS and ATen OpenMP pools spin-wait against
    each other between these tiny calls: measured here (2 cores) a 20k-element ``torch.exp`` took 8 ms
    right after an MKL matvec instead of 0.02 ms, and the whole explorer ran 2.4× slower. Matrix-vector
    products are memory-bound, so one thread loses nothing. No-op on CUDA.
    """
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def as_matrix(x: np.ndarray | Sequence[Sequence[float]], name: str, *, min_rows: int = 1) -> np.ndarray:
    """Validate a (rows, dims) array: 2-D, finite, ≥ ``min_rows`` rows; returns it float32 C-contiguous."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (rows, dims), got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise InputError(f"{name} needs at least {min_rows} rows, got {arr.shape[0]}")
    if arr.shape[1] < 1:
        raise InputError(f"{name} has zero columns")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return arr


def to_tensor(x: np.ndarray, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """NumPy → torch on ``device`` (no copy on CPU when dtype already matches)."""
    return torch.as_tensor(x, dtype=dtype).to(device)


class RBFRows:
    """Rows k(X, x_i) of an RBF kernel over the points X, one at a time.

    k(a,b) = exp(-||a-b||²/(2ℓ²)) with length-scale ℓ; the same rows as gpytorch's ``RBFKernel``
    (``kernel(X, X[i:i+1]).to_dense()[:, 0]``, the reference in ``tests/test_explorer.py``), but from cached
    scaled points and squared norms: one (N,d)·(d,) matrix-vector product per row, no per-call copy of X
    (gpytorch's forward copies X twice per call, ~7× slower at N=20k). Memory O(N·d); the N×N matrix is
    never formed.
    """

    def __init__(self, x: torch.Tensor, length_scale: float) -> None:
        self.length_scale = float(length_scale)
        self._xs = x / self.length_scale
        self._sq = (self._xs * self._xs).sum(dim=1)

    @property
    def device(self) -> torch.device:
        return self._xs.device

    @property
    def n(self) -> int:
        return int(self._xs.shape[0])

    def row(self, i: int) -> torch.Tensor:
        """k(X, x_i) as an (N,) tensor; entry i is exactly 1."""
        return self.row_block(i, 0, self.n)

    def row_block(self, i: int, lo: int, hi: int) -> torch.Tensor:
        """k(X[lo:hi], x_i) as a (hi − lo,) tensor (rows lo … hi−1 of X against row i); k(x_i, x_i) = 1."""
        d2 = torch.addmv(self._sq[lo:hi], self._xs[lo:hi], self._xs[i], alpha=-2.0).add_(self._sq[i])
        d2.clamp_(min=0.0)
        if lo <= i < hi:
            d2[i - lo] = 0.0
        return d2.mul_(-0.5).exp_()


def sq_dists(
    a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor | None = None, b_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """Squared Euclidean distances (len(a), len(b)), clamped at 0, via norms and one matmul."""
    if a_sq is None:
        a_sq = (a * a).sum(dim=1)
    if b_sq is None:
        b_sq = (b * b).sum(dim=1)
    d2 = torch.addmm(a_sq[:, None] + b_sq[None, :], a, b.T, alpha=-2.0)
    return d2.clamp_(min=0.0)


def rbf_from_sq_dists(d2: torch.Tensor, bandwidths: Sequence[float]) -> torch.Tensor:
    """Mean over bandwidths σ of exp(-d²/(2σ²)); a single bandwidth gives the plain RBF kernel."""
    if len(bandwidths) == 1:
        return torch.exp(d2 * (-0.5 / bandwidths[0] ** 2))
    out = torch.zeros_like(d2)
    for s in bandwidths:
        out.add_(torch.exp(d2 * (-0.5 / s**2)))
    return out.div_(len(bandwidths))


def bandwidth_list(bandwidth: float | Sequence[float]) -> list[float]:
    """Validate one bandwidth or a non-empty sequence of them (positive, finite) → list of floats."""
    # np.isscalar's type guard widens a float to numpy's scalar union, and a 1-d array is no Sequence: say which
    if np.isscalar(bandwidth):
        values = [float(cast(float, bandwidth))]
    else:
        values = [float(b) for b in cast("Sequence[float]", bandwidth)]
    if not values or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"kernel bandwidth must be positive and finite, got {bandwidth!r}")
    return values


def median_pairwise_distance(
    x: np.ndarray, *, max_points: int = 2000, seed: int = 0, name: str = "data"
) -> float:
    """Median Euclidean distance over distinct pairs of rows (a random subsample of ``max_points`` rows).

    Raises:
        InputError: fewer than 2 rows, or all sampled rows identical (median 0).
    """
    x = as_matrix(x, name)
    if x.shape[0] < 2:
        raise InputError(f"median pairwise distance of {name} needs at least 2 rows, got {x.shape[0]}")
    if x.shape[0] > max_points:
        idx = np.random.default_rng(seed).choice(x.shape[0], size=max_points, replace=False)
        x = x[np.sort(idx)]
    t = torch.from_numpy(x.astype(np.float64))
    d2 = sq_dists(t, t)
    iu = torch.triu_indices(len(t), len(t), offset=1)
    med = float(np.median(torch.sqrt(d2[iu[0], iu[1]]).numpy()))
    if not med > 0:
        raise InputError(
            f"median pairwise distance of {name} is 0 (rows are identical); cannot set a kernel bandwidth"
        )
    return med


def kernel_sum(
    a: torch.Tensor, b: torch.Tensor, bandwidths: Sequence[float], block: int, *, symmetric: bool
) -> float:
    """Σ_ij k(a_i, b_j) over all pairs; with ``symmetric`` (b is a) over i ≠ j only.

    Mean-of-RBF kernel over ``bandwidths``; computed in (block × block) tiles (memory O(block²)), each tile
    summed in float64. In the symmetric case only tiles on and above the diagonal are computed.
    """
    a_sq = (a * a).sum(dim=1)
    b_sq = a_sq if symmetric else (b * b).sum(dim=1)
    total = 0.0
    n, m = a.shape[0], b.shape[0]
    for i in range(0, n, block):
        ai, ai_sq = a[i : i + block], a_sq[i : i + block]
        for j in range(i if symmetric else 0, m, block):
            d2 = sq_dists(ai, b[j : j + block], ai_sq, b_sq[j : j + block])
            if symmetric and i == j:
                d2.fill_diagonal_(0.0)
                total += float(rbf_from_sq_dists(d2, bandwidths).sum(dtype=torch.float64)) - d2.shape[0]
            else:
                tile = float(rbf_from_sq_dists(d2, bandwidths).sum(dtype=torch.float64))
                total += 2.0 * tile if symmetric else tile
    return total


def kernel_matvec(
    a: torch.Tensor, b: torch.Tensor, v: torch.Tensor, bandwidths: Sequence[float], block: int
) -> torch.Tensor:
    """K(a, b) @ v as a float64 (len(a),) tensor, computed in (block × block) tiles (memory O(block²))."""
    a_sq = (a * a).sum(dim=1)
    b_sq = (b * b).sum(dim=1)
    v = v.to(a.dtype)
    out = torch.zeros(a.shape[0], dtype=torch.float64, device=a.device)
    for i in range(0, a.shape[0], block):
        for j in range(0, b.shape[0], block):
            d2 = sq_dists(a[i : i + block], b[j : j + block], a_sq[i : i + block], b_sq[j : j + block])
            out[i : i + block] += (rbf_from_sq_dists(d2, bandwidths) @ v[j : j + block]).double()
    return out
