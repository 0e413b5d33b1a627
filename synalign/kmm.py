"""Kernel mean matching (KMM): importance weights of a synthetic sample on the probability simplex.

The one job of this module is the weight solve of SynAlign stage 3 (Ren et al., WWW 2025, §3.3: a weight per
synthetic sample minimising the MMD between the weighted synthetic set and the real set). With synthetic
embeddings s (m, d), real embeddings r (n, d) and the RBF kernel k(a, b) = exp(−||a−b||²/(2σ²)), the weights
are kernel mean matching (Huang et al. 2007, eq. 6; Gretton et al. 2009) restricted to the simplex Δ_m:

    min_{w ∈ Δ_m}  ||Σ_i w_i φ(s_i) − (1/n) Σ_j φ(r_j)||²  =  wᵀK_ss w − 2 wᵀ(K_sr 1/n) + const

with K_ss (m, m) and K_sr (m, n). It is solved in torch by Frank–Wolfe with exact line search (sparse solutions)
or exponentiated gradient (dense solutions), on the exact RBF kernel or, for large pools, on Nyström features
with the FITC diagonal correction (Williams & Seeger 2001; Snelson & Ghahramani 2006) or random Fourier features
(Rahimi & Recht 2007). What to *keep* given the weights is :mod:`synalign.selection`'s job.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from synalign.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "EG_EXACT_MAX", "NYSTROM_LANDMARKS", "NYSTROM_SCREEN_ITER", "NYSTROM_WORKING_SET", "NystromMap", "kmm_weights",
    "kmm_weights_on_features", "nystrom_landmarks",
]

logger = logging.getLogger("synalign.kmm")

#: Above this many synthetic rows, exponentiated gradient always uses random Fourier features (the exact path
#: keeps the m×m kernel matrix, 4·m² bytes, and does one m×m matvec per iteration).
EG_EXACT_MAX = 8192
#: Relative cost of a memory-bound matrix-vector flop vs a matrix-matrix flop (measured: ~6 on 2 CPU cores).
_MATVEC_COST = 6.0
#: ``features="nystrom"``: rows kept by the Nyström screen, then solved with the exact kernel.
NYSTROM_WORKING_SET = 2048
#: Exponentiated-gradient iterations of the Nyström screen (its ranking is stable from ~30 on).
NYSTROM_SCREEN_ITER = 50
#: ``features="nystrom"``: default number of landmarks r of the screen.
NYSTROM_LANDMARKS = 1024
#: Default number of features: Nyström landmarks r (screen only) and random Fourier features D.
_DEFAULT_FEATURES = {"nystrom": NYSTROM_LANDMARKS, "rff": 2048}


def _choose_features(
    m: int, n: int, d: int, n_features: int | None, n_iter: int, solver: str
) -> Literal["exact", "nystrom"]:
    """``features="auto"``: the cheaper of exact and Nyström under a rough flop model (:func:`kmm_weights`)."""
    c = NYSTROM_WORKING_SET
    if m <= c:
        return "exact"
    r = min(n_features or _DEFAULT_FEATURES["nystrom"], m + n)
    screen = (m + n) * d * r + m * r * r + _MATVEC_COST * NYSTROM_SCREEN_ITER * 2 * m * r
    if solver == "frank_wolfe":
        exact = m * n * d + _MATVEC_COST * n_iter * m * d
        nystrom = screen + c * n * d + _MATVEC_COST * n_iter * c * d
    else:
        exact = m * n * d + m * m * d + _MATVEC_COST * n_iter * m * m if m <= EG_EXACT_MAX else float("inf")
        nystrom = screen + c * n * d + c * c * d + _MATVEC_COST * n_iter * c * c
    return "exact" if exact <= nystrom else "nystrom"


def kmm_weights(
    synthetic: np.ndarray,
    real: np.ndarray,
    *,
    bandwidth: float,
    solver: Literal["frank_wolfe", "eg"] = "frank_wolfe",
    n_iter: int = 200,
    features: Literal["auto", "exact", "nystrom", "rff"] = "auto",
    n_features: int | None = None,
    device: str = "auto",
    seed: int = 0,
    block_size: int = 4096,
    tol: float = 1e-8,
) -> np.ndarray:
    """Kernel-mean-matching weights of the synthetic rows on the probability simplex.

    Minimises f(w) = wᵀK_ss w − 2 wᵀ(K_sr 1/n) over {w ≥ 0, Σw = 1} (Huang et al. 2007, eq. 6 with the
    simplex constraint; Gretton et al. 2009), i.e. the squared MMD ||Σ w_i φ(s_i) − mean_j φ(r_j)||² up to
    a constant, with the RBF kernel k(a,b) = exp(−||a−b||²/(2σ²)).

    Solvers:
        ``"frank_wolfe"``: pairwise Frank–Wolfe (Lacoste-Julien & Jaggi 2015) with exact line search (the
        objective is quadratic), started at the best single vertex. Each iteration adds at most one new
        non-zero weight, so the result is sparse (≤ n_iter + 1 non-zeros; Clarkson 2010). Exact path: one
        kernel column K_ss[:, i] per newly visited vertex (O(m·d)), never the m×m matrix; memory
        O(m·n_iter) at most for cached columns.
        ``"eg"``: exponentiated gradient (mirror descent on the simplex; Kivinen & Warmuth 1997) from uniform
        weights with an adaptive step (grow ×1.25 on descent, halve and retry on ascent); dense weights.
        Exact path keeps K_ss (4·m² bytes).

    Features:
        ``"exact"``: the RBF kernel itself; K_sr 1/n is computed in tiles (memory O(block²)).
        ``"nystrom"``: screen, then solve exactly on a working set (for m > ``NYSTROM_WORKING_SET`` = 2,048;
        below that it is ``"exact"``). Screen: exponentiated gradient (50 iterations) on Nyström features of
        r = ``n_features`` (default 1,024) landmarks drawn uniformly from the synthetic and real rows
        (Williams & Seeger 2001), φ(x) = Λ^{-1/2}Uᵀk_Z(x) with K_ZZ = UΛUᵀ (eigen-directions below
        1e-6·λ_max dropped), with the residual diagonal as a correction,

            K ≈ ΦΦᵀ + diag(1 − ||φ(s_i)||²)

        the "fully independent" correction of FITC (Snelson & Ghahramani 2006; Quiñonero-Candela &
        Rasmussen 2005, eq. 20; without it the approximate kernel under-counts k(s_i, s_i), the cost of
        putting weight on few rows, and solutions concentrate). The 2,048 rows with the largest screened
        weights (99.9 % of the exact EG solution's mass at m = 10k on SST-2 LM pools) form the working set;
        the requested solver then runs on them with the exact kernel, and every other row gets weight 0.
        Measured on SST-2 LM pools (``evals/scripts/bench_alignment.py``, 5 seeds, m = 3k–30k): exact-kernel
        MMD² −0.4 % … +4.5 % of the exact solve's (also with 8,000 real rows), where solving on the Nyström
        features alone gave +3–8 % at m = 10k and RFF +12–45 %; m = 100k in 6.5 s, +0.6 GB.
        Memory O((m + n)·r + 2048²) floats, time O((m + n)·r·(d + r) + 50·m·r) plus the working-set solve.
        ``"rff"``: random Fourier features φ(x) = √(2/D)[cos(Ωx), sin(Ωx)], Ω ~ N(0, σ⁻²I) (Rahimi & Recht
        2007; paired cos/sin, Sutherland & Schneider 2015), objective ||Φ_sᵀw − mean Φ_r||²; memory
        O((m + block)·D), time O((m + n)·d·D + n_iter·m·D), default D = 2,048. Kept for comparison: its
        solutions reach an MMD² 12–45 % above the exact solve's.
        ``"auto"``: the cheaper of exact and Nyström under a rough flop model (exact b costs m·n·d, exact EG
        keeps K_ss; the screen costs (m+n)·r·(d + r) plus 50 m×r passes); EG with m > 8,192 always uses
        Nyström; m ≤ 2,048 always exact. Frank–Wolfe with a moderate real set runs exact (one m×d kernel
        column per step): m = 100k vs n = 2k → exact, 5 s here.

    Args:
        synthetic: (m, d) embeddings of the synthetic pool. real: (n, d) embeddings of the real set.
        bandwidth: RBF bandwidth σ (Euclidean units, e.g. :func:`synalign.divergence.median_bandwidth`).
        n_iter: solver iterations. n_features: landmarks r for ``"nystrom"`` (default 1,024), D for
        ``"rff"`` (default 2,048).
        seed: Nyström landmarks and RFF frequencies.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``. block_size: tile rows for kernel sums and features.
        tol: Frank–Wolfe stops early once its duality gap (an upper bound on f(w) − min f) is below tol.

    Returns:
        (m,) float64 weights, ≥ 0, summing to 1.

    Raises:
        InputError: empty or mismatched arrays, bad bandwidth, unknown solver/features/device.
    """
    import torch

    from synalign._torch import as_matrix, bandwidth_list, resolve_device, sequential_loop, to_tensor

    s = as_matrix(synthetic, "synthetic")
    r = as_matrix(real, "real")
    if s.shape[1] != r.shape[1]:
        raise InputError(f"synthetic and real have different dimensions: {s.shape[1]} vs {r.shape[1]}")
    (sigma,) = bandwidth_list(bandwidth)
    if solver not in ("frank_wolfe", "eg"):
        raise InputError(f"unknown KMM solver {solver!r}; known: frank_wolfe, eg")
    if features not in ("auto", "exact", "nystrom", "rff"):
        raise InputError(f"unknown KMM features {features!r}; known: auto, exact, nystrom, rff")
    if n_iter < 0 or (n_features is not None and n_features < 2):
        raise InputError(f"n_iter must be >= 0 and n_features >= 2, got {n_iter} and {n_features}")
    m, n = s.shape[0], r.shape[0]
    if m == 1:
        return np.ones(1)
    if features == "auto":
        features = _choose_features(m, n, s.shape[1], n_features, n_iter, solver)
        logger.debug("KMM features=auto chose %s for m=%d, n=%d", features, m, n)
    if features == "nystrom" and m <= NYSTROM_WORKING_SET:
        features = "exact"
    dev = resolve_device(device)
    block = max(1, int(block_size))
    if features == "nystrom":
        rank = n_features or _DEFAULT_FEATURES["nystrom"]
        keep = _nystrom_screen(s, r, sigma, rank, seed, block, dev)
        w = np.zeros(m)
        w[keep] = kmm_weights(
            s[keep],
            r,
            bandwidth=sigma,
            solver=solver,
            n_iter=n_iter,
            features="exact",
            device=device,
            block_size=block,
            tol=tol,
        )
        return w
    with torch.no_grad():
        st, rt = to_tensor(s, dev), to_tensor(r, dev)
        if features == "rff":
            phi_s, mu = _rff_features(st, rt, sigma, n_features or _DEFAULT_FEATURES["rff"], seed, block)
            op: _QuadraticOp = _FeatureOp(phi_s, mu)
        else:
            op = _ExactOp(st, rt, sigma, block, keep_matrix=solver == "eg")
        with sequential_loop(dev):
            w = (
                _frank_wolfe(op, n_iter, tol)
                if solver == "frank_wolfe"
                else _exponentiated_gradient(op, n_iter)
            )
    w = np.clip(w.cpu().numpy().astype(np.float64), 0.0, None)
    return w / w.sum()


def kmm_weights_on_features(
    phi: torch.Tensor, mu: torch.Tensor, resid: torch.Tensor | None = None, *,
    solver: Literal["frank_wolfe", "eg"] = "frank_wolfe", n_iter: int = 200, tol: float = 1e-8,
) -> np.ndarray:
    """KMM weights solved on explicit features alone: K ≈ ΦΦᵀ + diag(resid), b = Φμ (what ``features="rff"``
    solves; with Nyström features, what the screen of ``features="nystrom"`` solves), for studying the
    approximations (``evals/scripts/bench_alignment.py --ablation-size``).

    Args:
        phi: (m, D) features of the synthetic rows. mu: (D,) mean feature of the real rows.
        resid: (m,) diagonal correction (FITC: :meth:`NystromMap.transform`), or None for none.
        solver, n_iter, tol: as in :func:`kmm_weights`.

    Returns:
        (m,) float64 weights, ≥ 0, summing to 1.
    """
    import torch

    if solver not in ("frank_wolfe", "eg"):
        raise InputError(f"unknown KMM solver {solver!r}; known: frank_wolfe, eg")
    with torch.no_grad():
        op = _FeatureOp(phi, mu, resid)
        w = _frank_wolfe(op, n_iter, tol) if solver == "frank_wolfe" else _exponentiated_gradient(op, n_iter)
    w = np.clip(w.cpu().numpy().astype(np.float64), 0.0, None)
    return w / w.sum()


class _QuadraticOp(Protocol):
    """f(w) = wᵀKw − 2wᵀb (+ const) over the simplex, through the few products the solvers need."""

    m: int
    b: torch.Tensor  # (m,) float64: K_sr 1/n

    def column(self, i: int) -> torch.Tensor: ...

    def matvec(self, w: torch.Tensor) -> torch.Tensor: ...

    def diag(self, i: int) -> float: ...


class _CachedColumns:
    """``column(i)``: K[:, i] computed once by the subclass's ``_new_column`` and cached (visited vertices)."""

    _cache: dict[int, torch.Tensor]

    def _new_column(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def column(self, i: int) -> torch.Tensor:
        col = self._cache.get(i)
        if col is None:
            col = self._new_column(i)
            self._cache[i] = col
        return col


class _ExactOp(_CachedColumns):
    """Exact RBF kernel: b by tiles, columns on the fly (cached), K materialised only for EG."""

    def __init__(self, s, r, sigma: float, block: int, *, keep_matrix: bool) -> None:
        import torch

        from synalign._torch import RBFRows, kernel_matvec, rbf_from_sq_dists, sq_dists

        self.m = int(s.shape[0])
        n = int(r.shape[0])
        self.b = kernel_matvec(
            s, r, torch.full((n,), 1.0 / n, dtype=torch.float64, device=s.device), [sigma], block
        )
        self._rows = RBFRows(s, sigma)
        self._cache: dict[int, torch.Tensor] = {}
        self._k: torch.Tensor | None = None
        if keep_matrix:
            self._k = rbf_from_sq_dists(sq_dists(s, s), [sigma])
            self._k.fill_diagonal_(1.0)

    def _new_column(self, i: int) -> torch.Tensor:
        return self._rows.row(i).double()

    def matvec(self, w: torch.Tensor) -> torch.Tensor:
        assert self._k is not None
        return (self._k @ w.to(self._k.dtype)).double()

    def diag(self, i: int) -> float:
        return 1.0


class _FeatureOp(_CachedColumns):
    """Explicit-feature kernel K ≈ ΦΦᵀ + diag(resid) (RFF: resid = 0), b = Φ μ_r (μ_r: mean real feature)."""

    def __init__(self, phi, mu, resid=None) -> None:
        import torch

        self.m = int(phi.shape[0])
        self.phi = phi
        self.b = (phi @ mu).double()
        self.resid = (
            torch.zeros(self.m, dtype=torch.float64, device=phi.device) if resid is None else resid.double()
        )
        self._cache: dict[int, torch.Tensor] = {}

    def _new_column(self, i: int) -> torch.Tensor:
        col = (self.phi @ self.phi[i]).double()
        col[i] += self.resid[i]
        return col

    def matvec(self, w: torch.Tensor) -> torch.Tensor:
        return (self.phi @ (self.phi.T @ w.to(self.phi.dtype))).double().add_(self.resid * w)

    def diag(self, i: int) -> float:
        return float(self.phi[i] @ self.phi[i]) + float(self.resid[i])


def nystrom_landmarks(m: int, n: int, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Which rows ``kmm_weights(features="nystrom")`` takes as landmarks: ``min(rank, m + n)`` of the m synthetic
    and n real rows drawn uniformly without replacement (a seeded ``torch.randperm``; Williams & Seeger 2001).

    Returns:
        (synthetic positions, real positions), int64 arrays in landmark order; the landmark matrix is
        ``concatenate([synthetic[first], real[second]])``.
    """
    import torch

    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    pick = torch.randperm(m + n, generator=gen)[: min(rank, m + n)]
    return pick[pick < m].numpy(), (pick[pick >= m] - m).numpy()


class NystromMap:
    """The Nyström feature map of the RBF kernel on landmarks Z (r, d): φ(x) = Λ^{-1/2}Uᵀk_Z(x), K_ZZ = UΛUᵀ.

    Williams & Seeger 2001. The eigen-decomposition is done in float64; directions with eigenvalue below
    1e-6·λ_max (near-duplicate landmarks) are dropped, so the feature dimension r' ≤ r and the float32 products
    stay well-conditioned. Fitted once, the map is a plain object of tensors: it pickles, so the same map can
    featurise blocks of a pool in other processes (:mod:`synalign.scaleout.align`).

    Args:
        landmarks: (r, d) float tensor Z; features come out in its dtype and on its device.
        sigma: RBF bandwidth σ (Euclidean units).
    """

    def __init__(self, landmarks: torch.Tensor, sigma: float) -> None:
        import torch

        from synalign._torch import rbf_from_sq_dists, sq_dists

        z64 = landmarks.double()
        evals, evecs = torch.linalg.eigh(rbf_from_sq_dists(sq_dists(z64, z64), [sigma]))
        keep = evals > 1e-6 * float(evals.max())
        self.sigma = float(sigma)
        self.landmarks = landmarks
        self.proj = (evecs[:, keep] / evals[keep].sqrt()).to(landmarks.dtype)  # (r, r'): φ(x) = projᵀ k_Z(x)
        self._z_sq = (landmarks * landmarks).sum(dim=1)

    @property
    def dim(self) -> int:
        """Feature dimension r' (≤ the number of landmarks)."""
        return int(self.proj.shape[1])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Features φ(x): (b, d) → (b, r') in the landmarks' dtype."""
        from synalign._torch import rbf_from_sq_dists, sq_dists

        return rbf_from_sq_dists(sq_dists(x, self.landmarks, b_sq=self._z_sq), [self.sigma]) @ self.proj

    def transform(self, x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Φ (m, r') and the FITC residual diagonal 1 − ||φ(x_i)||² (m,) float64, clamped at 0; in
        ``block``-row tiles (Snelson & Ghahramani 2006)."""
        import torch

        m = x.shape[0]
        phi = torch.empty(m, self.dim, dtype=x.dtype, device=x.device)
        resid = torch.empty(m, dtype=torch.float64, device=x.device)
        for i in range(0, m, block):
            phi[i : i + block] = self(x[i : i + block])
            resid[i : i + block] = 1.0 - (phi[i : i + block].double() ** 2).sum(dim=1)
        return phi, resid.clamp_(min=0.0)

    def mean(self, x: torch.Tensor, block: int) -> torch.Tensor:
        """Mean feature (1/n) Σ_j φ(x_j) (r',) in the landmarks' dtype (summed in float64, ``block``-row tiles)."""
        import torch

        mu = torch.zeros(self.dim, dtype=torch.float64, device=x.device)
        for i in range(0, x.shape[0], block):
            mu += self(x[i : i + block]).sum(dim=0, dtype=torch.float64)
        return (mu / x.shape[0]).to(self.landmarks.dtype)


def _nystrom_features(s, r, sigma: float, rank: int, seed: int, block: int):
    """Φ_s (m, r'), mean Φ_r (r',) and residual diagonal 1 − ||φ(s_i)||² (m,) for uniform landmarks
    (:func:`nystrom_landmarks`, :class:`NystromMap`)."""
    import torch

    syn, real = nystrom_landmarks(s.shape[0], r.shape[0], rank, seed)
    z = torch.cat([s[torch.as_tensor(syn, device=s.device)], r[torch.as_tensor(real, device=s.device)]])
    fmap = NystromMap(z, sigma)
    phi, resid = fmap.transform(s, block)
    return phi, fmap.mean(r, block), resid


def _nystrom_screen(
    s: np.ndarray, r: np.ndarray, sigma: float, rank: int, seed: int, block: int, dev: torch.device
) -> np.ndarray:
    """Working set for ``features="nystrom"``: the ``NYSTROM_WORKING_SET`` rows of ``s`` with the largest
    weights after :data:`NYSTROM_SCREEN_ITER` EG iterations on FITC-corrected Nyström features (sorted indices)."""
    import torch

    from synalign._torch import sequential_loop, to_tensor

    with torch.no_grad():
        st, rt = to_tensor(s, dev), to_tensor(r, dev)
        phi, mu, resid = _nystrom_features(st, rt, sigma, rank, seed, block)
        with sequential_loop(dev):
            w = _exponentiated_gradient(_FeatureOp(phi, mu, resid), NYSTROM_SCREEN_ITER)
        keep = torch.topk(w, NYSTROM_WORKING_SET).indices
    return np.sort(keep.cpu().numpy())


def _rff_features(s, r, sigma: float, n_features: int, seed: int, block: int):
    """Φ_s (m, D) and mean Φ_r (D,) with paired cos/sin features of N(0, σ⁻²I) frequencies."""
    import torch

    half = n_features // 2
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    omega = (torch.randn(s.shape[1], half, generator=gen) / sigma).to(device=s.device, dtype=s.dtype)
    scale = (1.0 / half) ** 0.5
    phi = torch.empty(s.shape[0], 2 * half, dtype=s.dtype, device=s.device)
    for i in range(0, s.shape[0], block):
        proj = s[i : i + block] @ omega
        torch.cos(proj, out=phi[i : i + block, :half])
        torch.sin(proj, out=phi[i : i + block, half:])
    phi.mul_(scale)
    mu = torch.zeros(2 * half, dtype=torch.float64, device=s.device)
    for i in range(0, r.shape[0], block):
        proj = r[i : i + block] @ omega
        mu[:half] += torch.cos(proj).sum(dim=0, dtype=torch.float64)
        mu[half:] += torch.sin(proj).sum(dim=0, dtype=torch.float64)
    mu *= scale / r.shape[0]
    return phi, mu.to(s.dtype)


def _frank_wolfe(op: _QuadraticOp, n_iter: int, tol: float):
    """Pairwise Frank–Wolfe, exact line search, on f(w) = wᵀKw − 2wᵀb over the simplex from the best vertex.

    Each step moves mass from the active vertex with the largest gradient ("away" atom) to the vertex
    with the smallest (Lacoste-Julien & Jaggi 2015, Alg. 2); plain FW's O(1/t) tail becomes much faster, and
    atoms can leave the support. Needs only kernel columns of visited vertices (cached).
    """
    import torch

    b = op.b
    # f(e_i) = K_ii − 2 b_i; for a normalised kernel K_ii = 1, so start at argmax b.
    i0 = int(torch.argmax(b))
    w = torch.zeros(op.m, dtype=torch.float64, device=b.device)
    w[i0] = 1.0
    kw = op.column(i0).clone()
    for it in range(n_iter):
        grad_half = kw - b  # ∇f / 2
        i = int(torch.argmin(grad_half))
        gap = 2.0 * (float(w @ grad_half) - float(grad_half[i]))  # ⟨∇f, w − e_i⟩ ≥ f(w) − f*
        if gap <= tol:
            logger.debug("Frank-Wolfe converged after %d iterations (gap %.3g)", it, gap)
            break
        a = int(torch.argmax(grad_half.masked_fill(w <= 0, -float("inf"))))
        if a == i:
            break
        col_i, col_a = op.column(i), op.column(a)
        slope = float(grad_half[a] - grad_half[i])  # −½⟨∇f, e_i − e_a⟩ > 0
        curvature = op.diag(i) + op.diag(a) - 2.0 * float(col_i[a])  # (e_i − e_a)ᵀK(e_i − e_a)
        max_step = float(w[a])
        gamma = max_step if curvature <= 0 else min(max_step, slope / curvature)
        w[i] += gamma
        w[a] -= gamma
        if gamma >= max_step:
            w[a] = 0.0
        kw.add_(col_i, alpha=gamma).add_(col_a, alpha=-gamma)
    return w


def _exponentiated_gradient(op: _QuadraticOp, n_iter: int):
    """Exponentiated gradient from uniform weights with a simple adaptive (backtracking) step size."""
    import torch

    b = op.b
    w = torch.full((op.m,), 1.0 / op.m, dtype=torch.float64, device=b.device)
    kw = op.matvec(w)
    eta = 1.0
    for _ in range(n_iter):
        grad = 2.0 * (kw - b)
        for _retry in range(30):
            logits = torch.log(w.clamp(min=1e-300)) - eta * grad
            w_new = torch.softmax(logits, dim=0)
            kw_new = op.matvec(w_new)
            # f(w') − f(w) = (w' − w)ᵀ(Kw' + Kw − 2b) for the quadratic f: the change itself, not the
            # difference of two values ≈ −0.6 whose float32 rounding (~1e-7) exceeds late improvements.
            change = float((w_new - w) @ (kw_new + kw - 2.0 * b))
            if change <= 0.0:
                w, kw = w_new, kw_new
                eta *= 1.25
                break
            eta *= 0.5
        else:
            break
    return w
