"""Divergences between embedding samples: kernel MMD², the MMD witness function, Sinkhorn divergence.

All kernels are Gaussian RBF, k(a,b) = exp(−||a−b||²/(2σ²)), with σ the *bandwidth* in the embedding's
Euclidean units. A sequence of bandwidths means the **mean** of the RBF kernels (a characteristic kernel
with values in [0, 1], so MMD² stays on the same scale whatever the number of bandwidths). ``None`` means
the median heuristic on the pooled sample (Gretton et al. 2012, JMLR 13, §8).

Kernel sums are computed in blocks of ``block_size`` rows, so memory is O(block_size²) whatever n and m;
the computation runs in torch (float32, CPU or CUDA) with block sums accumulated in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from synalign._threads import single_blas_thread
from synalign.errors import InputError

__all__ = [
    "median_bandwidth",
    "mmd2_unbiased",
    "mmd2_weighted",
    "mmd_witness",
    "noise_floor",
    "mmd2_fixed_set",
    "fixed_set_noise_floor",
    "FLOOR_DRAWS",
    "sinkhorn_divergence",
]

Bandwidth = float | Sequence[float] | None

FLOOR_DRAWS = 32
"""Random real subsets behind every same-size noise floor (:func:`fixed_set_noise_floor`): the run's report, its
card and ``synalign compare`` all use this many, so one set pair gets one floor (the standard error of its mean is
the draws' std / √32, under 2 % of the floor on the bundled SST-2 sample)."""

_FLOOR_MATRIX_ROWS = 4096  # up to this many real rows the floor's kernel matrix is computed once (float64, ≤ 134 MB)


def median_bandwidth(
    x: np.ndarray, y: np.ndarray | None = None, max_points: int = 2000, seed: int = 0
) -> float:
    """Median pairwise Euclidean distance of the pooled sample x ∪ y (subsampled to ``max_points`` rows).

    Args:
        x: (n, d) array; y: optional (m, d) array pooled with it.

    Raises:
        InputError: fewer than 2 pooled rows, mismatched dims, non-finite values, or all rows identical.
    """
    from synalign._torch import as_matrix, median_pairwise_distance

    pooled = as_matrix(x, "x")
    if y is not None:
        yy = as_matrix(y, "y")
        if yy.shape[1] != pooled.shape[1]:
            raise InputError(f"x and y have different dimensions: {pooled.shape[1]} vs {yy.shape[1]}")
        pooled = np.concatenate([pooled, yy])
    return median_pairwise_distance(pooled, max_points=max_points, seed=seed, name="pooled sample")


def _pair(
    x: np.ndarray, y: np.ndarray, min_rows: int, names: tuple[str, str] = ("x", "y")
) -> tuple[np.ndarray, np.ndarray]:
    from synalign._torch import as_matrix

    a = as_matrix(x, names[0], min_rows=min_rows)
    b = as_matrix(y, names[1], min_rows=min_rows)
    if a.shape[1] != b.shape[1]:
        raise InputError(f"{names[0]} and {names[1]} have different dimensions: {a.shape[1]} vs {b.shape[1]}")
    return a, b


def _bandwidths(bandwidth: Bandwidth, a: np.ndarray, b: np.ndarray | None = None) -> list[float]:
    from synalign._torch import bandwidth_list

    if bandwidth is None:
        return [median_bandwidth(a, b)]
    return bandwidth_list(bandwidth)


def _kernel_sums(
    a: np.ndarray, b: np.ndarray, bandwidth: Bandwidth, device: str, block_size: int
) -> tuple[float, float, float]:
    """Σ_{i≠j} k(a_i,a_j), Σ_{i≠j} k(b_i,b_j) and Σ_ij k(a_i,b_j) (``None`` bandwidth: median on a ∪ b)."""
    import torch

    from synalign._torch import kernel_sum, resolve_device, to_tensor

    bws = _bandwidths(bandwidth, a, b)
    dev = resolve_device(device)
    block = max(1, int(block_size))
    with torch.no_grad():
        at, bt = to_tensor(a, dev), to_tensor(b, dev)
        kaa = kernel_sum(at, at, bws, block, symmetric=True)
        kbb = kernel_sum(bt, bt, bws, block, symmetric=True)
        kab = kernel_sum(at, bt, bws, block, symmetric=False)
    return kaa, kbb, kab


def _mean_kernel(p, x, bws: list[float], block: int):  # p (P, d), x (n, d): torch tensors
    """(len(p),) float64 tensor: mean_j k(p_i, x_j)."""
    import torch

    from synalign._torch import kernel_matvec

    n = x.shape[0]
    return kernel_matvec(p, x, torch.full((n,), 1.0 / n, dtype=torch.float64, device=p.device), bws, block)


def _draws(n_rows: int, n_draws: int, seed: int, value: Callable[[np.ndarray], float]) -> tuple[float, float]:
    """(mean, std with ddof=1; 0 for one draw) of ``value(permutation of n_rows)`` over seeded draws."""
    rng = np.random.default_rng(seed)
    arr = np.asarray([value(rng.permutation(n_rows)) for _ in range(n_draws)])
    return float(arr.mean()), float(arr.std(ddof=1)) if n_draws > 1 else 0.0


def mmd2_unbiased(
    x: np.ndarray,
    y: np.ndarray,
    bandwidth: Bandwidth = None,
    *,
    device: str = "auto",
    block_size: int = 4096,
) -> float:
    """Unbiased MMD² U-statistic between samples x and y (Gretton et al. 2012, JMLR 13, eq. 3).

        MMD²_u = 1/(n(n−1)) Σ_{i≠j} k(x_i,x_j) + 1/(m(m−1)) Σ_{i≠j} k(y_i,y_j) − 2/(nm) Σ_ij k(x_i,y_j)

    Args:
        x: (n, d) array, n ≥ 2. y: (m, d) array, m ≥ 2.
        bandwidth: RBF bandwidth σ, a sequence of them (mean kernel), or ``None`` (median heuristic on x ∪ y).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        block_size: rows per block; peak memory ≈ 4·block_size² bytes per kernel block.

    Returns:
        MMD² in kernel units (can be slightly negative: the estimator is unbiased, so ≈ 0 ± noise when
        x and y come from one distribution).

    Raises:
        InputError: fewer than 2 rows on a side, mismatched dims, bad bandwidth or device.
    """
    a, b = _pair(x, y, min_rows=2)
    kxx, kyy, kxy = _kernel_sums(a, b, bandwidth, device, block_size)
    n, m = a.shape[0], b.shape[0]
    return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2.0 * kxy / (n * m)


def mmd2_weighted(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    bandwidth: Bandwidth = None,
    *,
    device: str = "auto",
    block_size: int = 4096,
) -> float:
    """Biased (V-statistic) MMD² between the weighted sample Σ w_i δ_{x_i} and the empirical y.

        ||Σ_i w_i φ(x_i) − (1/m) Σ_j φ(y_j)||² = wᵀK_xx w − (2/m) wᵀK_xy 1 + (1/m²) 1ᵀK_yy 1

    the kernel-mean-matching objective (Huang et al. 2007; Gretton et al. 2009). With uniform weights
    it is the biased MMD²_b of Gretton et al. 2012, eq. 5.

    Args:
        x: (n, d) array. y: (m, d) array. weights: (n,) non-negative, summing to 1 (checked to 1e-4).
        bandwidth, device, block_size: as in :func:`mmd2_unbiased`.

    Raises:
        InputError: shapes, weights off the simplex, bad bandwidth or device.
    """
    import torch

    from synalign._torch import kernel_matvec, kernel_sum, resolve_device, to_tensor

    a, b = _pair(x, y, min_rows=1)
    w = _simplex_weights(weights, a.shape[0])
    bws = _bandwidths(bandwidth, a, b)
    dev = resolve_device(device)
    block = max(1, int(block_size))
    m = b.shape[0]
    with torch.no_grad():
        at, bt = to_tensor(a, dev), to_tensor(b, dev)
        wt = torch.as_tensor(w, dtype=torch.float64, device=dev)
        kw = kernel_matvec(at, at, wt, bws, block)  # K_xx w
        ky = _mean_kernel(at, bt, bws, block)
        kyy = kernel_sum(bt, bt, bws, block, symmetric=True) + m
        value = float(wt @ kw) - 2.0 * float(wt @ ky) + kyy / (m * m)
    return value


def _simplex_weights(weights: np.ndarray, n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != n:
        raise InputError(f"weights must have one value per row ({n}), got {w.shape[0]}")
    if not np.isfinite(w).all() or (w < 0).any() or abs(w.sum() - 1.0) > 1e-4:
        raise InputError(f"weights must be non-negative and sum to 1 (sum is {w.sum():.6g})")
    return w


def mmd_witness(
    points: np.ndarray,
    real: np.ndarray,
    synthetic: np.ndarray,
    bandwidth: Bandwidth = None,
    *,
    device: str = "auto",
    block_size: int = 4096,
) -> np.ndarray:
    """Empirical MMD witness function f(p) = mean_j k(p, real_j) − mean_j k(p, synthetic_j).

    f is the direction in the RKHS along which the two samples differ most (Gretton et al. 2012, §2.3,
    Fig. 1): f(p) > 0 where real data is denser than synthetic data (under-covered regions), < 0 where
    synthetic data over-represents. The explorer uses its positive part as a priority.

    Args:
        points: (p, d) evaluation points. real: (n, d). synthetic: (m, d).
        bandwidth: as in :func:`mmd2_unbiased` (``None``: median heuristic on real ∪ synthetic).

    Returns:
        (p,) float64 array, values in [−1, 1].

    Raises:
        InputError: shapes, bad bandwidth or device.
    """
    import torch

    from synalign._torch import as_matrix, resolve_device, to_tensor

    r, s = _pair(real, synthetic, min_rows=1, names=("real", "synthetic"))
    p = as_matrix(points, "points")
    if p.shape[1] != r.shape[1]:
        raise InputError(f"points and real have different dimensions: {p.shape[1]} vs {r.shape[1]}")
    bws = _bandwidths(bandwidth, r, s)
    dev = resolve_device(device)
    block = max(1, int(block_size))
    with torch.no_grad():
        pt, rt, st = to_tensor(p, dev), to_tensor(r, dev), to_tensor(s, dev)
        f_real, f_syn = _mean_kernel(pt, rt, bws, block), _mean_kernel(pt, st, bws, block)
    return (f_real - f_syn).cpu().numpy()


def noise_floor(
    x: np.ndarray,
    bandwidth: Bandwidth = None,
    *,
    n_splits: int = 5,
    seed: int = 0,
    device: str = "auto",
) -> tuple[float, float]:
    """Real-vs-real noise floor: unbiased MMD² between two random halves of x, over ``n_splits`` splits.

    A synthetic set whose MMD² to the real set is within this floor is as close as another sample of
    the real data would be (at half the sample size), so targets can be stated relative to it.

    Args:
        x: (n, d) array, n ≥ 4. bandwidth: as in :func:`mmd2_unbiased` (``None``: median heuristic on x).
        n_splits: number of random half/half splits (seeded).

    Returns:
        (mean, std) of the split MMD² values (std with ddof=1; 0 for one split).

    Raises:
        InputError: fewer than 4 rows, n_splits < 1, bad bandwidth or device.
    """
    from synalign._torch import as_matrix

    a = as_matrix(x, "x", min_rows=4)
    if n_splits < 1:
        raise InputError(f"n_splits must be >= 1, got {n_splits}")
    bws = _bandwidths(bandwidth, a)
    half = a.shape[0] // 2
    return _draws(
        a.shape[0],
        n_splits,
        seed,
        lambda p: mmd2_unbiased(a[p[:half]], a[p[half : 2 * half]], bws, device=device),
    )


def mmd2_fixed_set(
    s: np.ndarray,
    x: np.ndarray,
    bandwidth: Bandwidth = None,
    *,
    device: str = "auto",
    block_size: int = 4096,
) -> float:
    """MMD² between the empirical distribution of a fixed set S and the distribution P that x samples.

        MMD²_S = 1/m² Σ_{i,j} k(s_i,s_j) + 1/(n(n−1)) Σ_{i≠j} k(x_i,x_j) − 2/(mn) Σ_ij k(s_i,x_j)

    V-statistic on the S side (diagonal kept), U-statistic on the x side: an unbiased estimate of
    ‖μ_S − μ_P‖² for x ~ P i.i.d., *however S was chosen*. Use it for a selected set (e.g. the accepted
    synthetic training set): the U-statistic of :func:`mmd2_unbiased` assumes S is an i.i.d. sample, and a
    diversity-seeking selection (kernel herding) drives its within-S term down and the estimate below zero.
    Compare it with :func:`fixed_set_noise_floor` at the same m (the value a random real subset of that size
    gets).

    Args:
        s: (m, d) array, m ≥ 1. x: (n, d) array, n ≥ 2.
        bandwidth, device, block_size: as in :func:`mmd2_unbiased`.

    Returns:
        MMD² in kernel units (≥ 0 up to the noise of the x-side U-statistic).

    Raises:
        InputError: too few rows, mismatched dims, bad bandwidth or device.
    """
    a, b = _pair(s, x, min_rows=1)
    if b.shape[0] < 2:
        raise InputError(f"x needs at least 2 rows, got {b.shape[0]}")
    kss, kxx, ksx = _kernel_sums(a, b, bandwidth, device, block_size)
    m, n = a.shape[0], b.shape[0]
    kss += m  # off-diagonal + diagonal (k(s, s) = 1)
    return kss / (m * m) + kxx / (n * (n - 1)) - 2.0 * ksx / (m * n)


def fixed_set_noise_floor(
    x: np.ndarray,
    m: int,
    bandwidth: Bandwidth = None,
    *,
    n_draws: int = FLOOR_DRAWS,
    seed: int = 0,
    device: str = "auto",
) -> tuple[float, float]:
    """Noise floor of :func:`mmd2_fixed_set` at set size m: a random real subset of size m vs the rest of x.

    This is what m real examples would score, so "the accepted set is within k × this floor" says the
    synthetic set is nearly as close to the real distribution as real data of the same size. m is capped
    at n // 2 so the rest keeps at least half of x. The one estimator of the same-size floor: the run (each
    round's ``noise_floor_same_size``, the report, the card) and ``synalign compare`` call it with the run's
    seed, so the same real set, size and bandwidth give the same floor everywhere (the rows are put in a canonical
    order first: the floor depends on the set, not on the order it is given in). Up to 4096 real rows the
    kernel matrix is computed once and every draw is a matrix-vector product (the same values as
    :func:`mmd2_fixed_set` per draw, far faster).

    Args:
        x: (n, d) real array, n ≥ 4. m: set size (≥ 1). n_draws: random subsets (seeded), default
            :data:`FLOOR_DRAWS`.

    Returns:
        (mean, std) over the draws (std with ddof=1, the spread of real subsets of size m; 0 for one draw).

    Raises:
        InputError: fewer than 4 rows, m < 1, n_draws < 1.
    """
    from synalign._torch import as_matrix

    a = as_matrix(x, "x", min_rows=4)
    if m < 1 or n_draws < 1:
        raise InputError(f"m and n_draws must be >= 1, got m={m}, n_draws={n_draws}")
    bws = _bandwidths(bandwidth, a)
    a = a[np.lexsort(a.T[::-1])]  # canonical row order: the draws pick the same subsets of the same set
    size = min(int(m), a.shape[0] // 2)
    if a.shape[0] <= _FLOOR_MATRIX_ROWS:
        return _matrix_floor(a, size, bws, n_draws, seed, device)
    return _draws(
        a.shape[0], n_draws, seed, lambda p: mmd2_fixed_set(a[p[:size]], a[p[size:]], bws, device=device)
    )


def _matrix_floor(
    a: np.ndarray, size: int, bws: list[float], n_draws: int, seed: int, device: str
) -> tuple[float, float]:
    """:func:`fixed_set_noise_floor` from one kernel matrix: draw j's subset S_j (the first ``size`` of the
    j-th seeded permutation, as :func:`_draws` makes them) gives Σ_S k, Σ_{S,R} k and Σ_R k from K·1_S."""
    import torch

    from synalign._torch import rbf_from_sq_dists, resolve_device, sq_dists, to_tensor

    n = a.shape[0]
    rng = np.random.default_rng(seed)
    chosen = np.zeros((n, n_draws))
    for j in range(n_draws):
        chosen[rng.permutation(n)[:size], j] = 1.0
    dev = resolve_device(device)
    with torch.no_grad():
        at = to_tensor(a, dev)
        kernel = rbf_from_sq_dists(sq_dists(at, at), bws).double()
        kernel.fill_diagonal_(0.0)
        s = torch.as_tensor(chosen, dtype=torch.float64, device=dev)
        ks = kernel @ s  # (n, draws)
        row = kernel.sum(dim=1)
        total = float(row.sum())
        kss = (s * ks).sum(dim=0)  # Σ_{i≠j ∈ S}
        ksr = (row[:, None] * s).sum(dim=0) - kss  # Σ_{i ∈ S, j ∈ R}
        krr = total - kss - 2.0 * ksr  # Σ_{i≠j ∈ R}
        rest = n - size
        values = ((kss + size) / (size * size) + krr / (rest * (rest - 1)) - 2.0 * ksr / (size * rest)).cpu().numpy()
    return float(values.mean()), float(values.std(ddof=1)) if n_draws > 1 else 0.0


@single_blas_thread
def sinkhorn_divergence(
    x: np.ndarray,
    y: np.ndarray,
    *,
    reg: float | None = None,
    max_points: int = 2000,
    seed: int = 0,
    num_iter_max: int = 5000,
    stop_thr: float = 1e-6,
) -> float:
    """Debiased Sinkhorn divergence on the squared-Euclidean cost (Genevay, Peyré & Cuturi 2018):

        S_ε(x, y) = W_ε(x, y) − ½ W_ε(x, x) − ½ W_ε(y, y),   W_ε = ⟨P_ε, C⟩

    with P_ε the entropic-OT plan at regularisation ε (POT ``ot.bregman.empirical_sinkhorn_divergence``,
    clamped at 0 by POT). ε → 0 gives squared 2-Wasserstein; large ε tends to an MMD (Feydy et al. 2019).
    Uses the plain (non-log) Sinkhorn solver: ``sinkhorn_log`` at small ε took 339 s for 2k×2k here.

    Args:
        x: (n, d), y: (m, d) arrays; each side is subsampled (seeded) to ``max_points`` rows.
        reg: ε in squared-distance units; ``None`` = 0.05 × median squared distance between x and y.
        num_iter_max, stop_thr: Sinkhorn iteration limit and marginal-violation tolerance.

    Returns:
        S_ε ≥ 0 in squared-distance units; 0 for identical sets.

    Raises:
        InputError: shapes, non-positive reg.
    """
    import warnings

    import ot

    a, b = _pair(x, y, min_rows=1)
    rng = np.random.default_rng(seed)
    if a.shape[0] > max_points:
        a = a[np.sort(rng.choice(a.shape[0], max_points, replace=False))]
    if b.shape[0] > max_points:
        b = b[np.sort(rng.choice(b.shape[0], max_points, replace=False))]
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if reg is None:
        med = float(np.median(ot.dist(a64, b64, metric="sqeuclidean")))
        reg = 0.05 * med if med > 0 else 1e-3
    if not (reg > 0 and np.isfinite(reg)):
        raise InputError(f"Sinkhorn regularisation must be positive, got {reg!r}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sinkhorn did not converge")
        value = ot.bregman.empirical_sinkhorn_divergence(
            a64, b64, float(reg), metric="sqeuclidean", numIterMax=num_iter_max, stopThr=stop_thr
        )
    return float(value)
