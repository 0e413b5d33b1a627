"""Greedy maximum GP posterior variance picks (SynAlign stage 1's selection rule) as a pivoted Cholesky.

A Gaussian process with zero targets and an RBF kernel (unit output scale) tracks which real examples the
demonstrations have already covered. Its posterior variance at x given the picked set S is

    σ²(x | S) = k(x,x) − k(x,S) (K_SS + σ_n² I)⁻¹ k(S,x)        (Rasmussen & Williams 2006, eq. 2.26)

with a tiny noise σ_n² (``noise``) for numerical stability. Greedily taking argmax σ²(x | S) is exactly
a pivoted (partial) Cholesky factorisation of K + σ_n² I (Harbrecht, Peters & Schneider 2012): the
residual diagonal of the factorisation *is* σ²(x | S) + σ_n². Each step costs one kernel row k(X, x_pivot)
and one rank-one update, O(N·(d + t)) time after t picks and O(N·(d + m)) memory; the N×N kernel matrix
is never formed (DESIGN §3.2: a per-step GP refit is 27× slower at N=5000, m=100, same picks). The loop
is bound by memory bandwidth; on CPU its rows are split into shards, one thread each (:class:`_Shard`).

The factorisation is this module's own torch code; ``linear_operator``'s ``pivoted_cholesky`` (shipped
with gpytorch, the ``test`` extra) over a gpytorch ``RBFKernel`` is the reference it is tested against
(``tests/test_explorer.py``) and compared with in ``evals/scripts/bench_explorer.py``. Logs go to the
``synalign.explorer`` logger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from synalign.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from synalign._torch import RBFRows

__all__ = [
    "DEGENERATE_STD_SPREAD",
    "DegenerateKernelError",
    "PickResult",
    "greedy_variance_picks",
    "median_heuristic",
]

logger = logging.getLogger("synalign.explorer")

#: Below this spread (max − min) of the posterior std over unpicked candidates the kernel is degenerate.
DEGENERATE_STD_SPREAD = 1e-6
#: On CPU the rows are split into shards of at least this many rows, one thread each (see :class:`_Shard`).
_MIN_SHARD_ROWS = 4096

_T = TypeVar("_T")


class DegenerateKernelError(InputError):
    """The RBF length-scale is so small relative to the data's pairwise distances that every unpicked
    point has the same posterior std (k(x, x') ≈ 0 for all x ≠ x'), so "maximum variance" carries no
    information and picking would follow file order (the failure of the reference code's length-scale
    0.1 on unit-norm embeddings, DESIGN §3.2)."""


@dataclass(frozen=True)
class PickResult:
    """Result of :func:`greedy_variance_picks`.

    Attributes:
        indices: new picks (row indices into ``x``), in the order they were picked.
        posterior_std: GP posterior std (kernel units, in [0, 1]) of each pick at the time it was picked.
        length_scale: RBF length-scale used (same units as ``x``, i.e. Euclidean distance).
        std_spread: (min, max) posterior std over the unpicked candidates at the first step that had
            something to condition on (after the prior picks, or after the first new pick); ``None`` when
            fewer than two candidates were left.
    """

    indices: list[int]
    posterior_std: list[float]
    length_scale: float
    std_spread: tuple[float, float] | None



def median_heuristic(x: np.ndarray, max_points: int = 2000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance between the rows of ``x`` (N, d).

    Uses a uniform random subsample of ``max_points`` rows (seeded) when N is larger. The usual default
    RBF length-scale / bandwidth (Gretton et al. 2012, JMLR, §8; Garreau, Jitkrittum & Kanagawa 2017).

    Raises:
        InputError: fewer than 2 rows, non-finite values, or all rows identical.
    """
    from synalign._torch import median_pairwise_distance

    return median_pairwise_distance(x, max_points=max_points, seed=seed, name="embeddings")


def _shard_count(n: int, device: torch.device) -> int:
    """Threads for the pivoted Cholesky loop: one per intra-op thread on CPU, ≥ 4,096 rows each; 1 on CUDA."""
    import torch

    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), n // _MIN_SHARD_ROWS))


@dataclass(frozen=True)
class _Best:
    """A shard's best unpicked candidate: largest score (priority·σ²) and largest σ², with their rows."""

    score: float
    score_row: int
    var: float
    var_row: int


class _Shard:
    """Rows [lo, hi) of the pivoted partial Cholesky state: Lᵀ[:, lo:hi], residual diagonal, unpicked flags.

    Each greedy step reads the whole factor once (Σ_t N·t floats for m picks): the loop is bound by memory
    bandwidth, not flops. Splitting the rows over threads (each shard runs its kernel row, rank-one update
    and argmax on its own rows; only the pivot's factor column and per-shard maxima are exchanged) uses the
    bandwidth of several cores: 1.7× on 2 CPU cores (``evals/scripts/bench_explorer.py``). The picks are the
    same as unsharded: every row's arithmetic is unchanged and ties still go to the lowest row.
    """

    def __init__(
        self, rows: RBFRows, lo: int, hi: int, rank: int, noise: float, priority: torch.Tensor | None
    ) -> None:
        import torch

        dev = rows.device
        self.rows, self.lo, self.hi, self.noise = rows, lo, hi, noise
        self.resid = torch.full(
            (hi - lo,), 1.0 + noise, dtype=torch.float32, device=dev
        )  # diag of K + σ_n² I
        self.factor = torch.empty((rank, hi - lo), dtype=torch.float32, device=dev)  # Lᵀ, one row per pivot
        self.available = torch.ones(hi - lo, dtype=torch.bool, device=dev)
        self.priority = None if priority is None else priority[lo:hi]
        self.t = 0

    def pivot_row(self, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(L[p, :t], residual diagonal at p) for a row p of this shard."""
        i = p - self.lo
        return self.factor[: self.t, i].clone(), self.resid[i].clone()

    def add_pivot(self, p: int, a: torch.Tensor, r_p: torch.Tensor) -> _Best:
        """Append the factor column of pivot p (L[p, :t] = a, residual r_p) and return the new best."""
        import torch

        col = self.rows.row_block(p, self.lo, self.hi)
        if self.t:
            col -= a @ self.factor[: self.t]
        if self.lo <= p < self.hi:
            col[p - self.lo] = r_p  # K_pp + σ_n² − Σ L_pj² (the residual diagonal itself)
            self.available[p - self.lo] = False
        col /= torch.sqrt(r_p.clamp(min=1e-30))
        self.factor[self.t] = col
        self.resid.sub_(col * col).clamp_(min=0.0)
        self.t += 1
        return self.best()

    def score(self, use_priority: bool = True) -> torch.Tensor:
        """(hi − lo,) priority·σ² (or σ²) per row, −inf for picked rows."""
        var = (self.resid - self.noise).clamp_(min=0.0)
        if use_priority and self.priority is not None:
            var = var * self.priority
        return var.masked_fill(~self.available, -float("inf"))

    def best(self) -> _Best:
        """Largest score and σ² over this shard's unpicked rows (first row on ties)."""
        import torch

        score = self.score()
        i = int(torch.argmax(score))
        if self.priority is None:
            return _Best(float(score[i]), self.lo + i, float(score[i]), self.lo + i)
        var = self.score(use_priority=False)
        j = int(torch.argmax(var))
        return _Best(float(score[i]), self.lo + i, float(var[j]), self.lo + j)

    def std(self, p: int) -> float:
        """Posterior std σ(x_p | S) of row p of this shard."""
        return float(((self.resid[p - self.lo] - self.noise).clamp(min=0.0)).sqrt())

    def spread(self) -> tuple[int, float, float]:
        """(number of unpicked rows, min σ, max σ) over them; (0, nan, nan) when none."""
        import torch

        left = int(self.available.sum())
        if not left:
            return 0, float("nan"), float("nan")
        std = torch.sqrt((self.resid[self.available] - self.noise).clamp(min=0.0))
        return left, float(std.min()), float(std.max())

def _checked_length_scale(length_scale: float) -> float:
    """ℓ itself, once checked.

    Raises:
        InputError: ℓ not positive and finite.
    """
    if not (length_scale > 0 and np.isfinite(length_scale)):
        raise InputError(f"RBF length-scale must be a positive finite number, got {length_scale!r}")
    return float(length_scale)


def greedy_variance_picks(
    x: np.ndarray,
    m: int,
    *,
    length_scale: float | None = None,
    picked: Sequence[int] = (),
    priority: np.ndarray | None = None,
    noise: float = 1e-6,
    device: str = "auto",
) -> PickResult:
    """Pick ``m`` rows of ``x`` by greedy maximum GP posterior variance (pivoted partial Cholesky).

    Args:
        x: (N, d) float array of embeddings (L2-normalised rows expected, not required).
        m: number of new picks; fewer are returned when fewer than ``m`` unpicked rows remain.
        length_scale: RBF length-scale ℓ in k(a,b) = exp(−||a−b||²/(2ℓ²)); ``None``: :func:`median_heuristic`.
        picked: rows picked earlier; they are re-applied as pivots first (in this order) and never re-picked,
            so continuing from ``picked`` gives the same sequence as picking everything in one call.
        priority: optional (N,) non-negative weights; the next pick is argmax priority·σ²(x | S) (e.g. the
            positive part of the MMD witness function, to aim at real regions the synthetic data
            under-covers). If every unpicked row has priority 0, plain σ² is used.
        noise: observation-noise variance σ_n² added to K_SS (jitter).
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.

    Ties at the very first step (nothing to condition on, every σ² = 1) are broken by distance to the
    centroid of ``x`` (most central row first), not by file order.

    Returns:
        :class:`PickResult`.

    Raises:
        InputError: bad shapes, out-of-range or repeated ``picked``, bad ``priority``, ``m`` < 0.
        DegenerateKernelError: the posterior std of all unpicked candidates is equal (spread < 1e-6) at the
            first step with something to condition on: ``length_scale`` is far below the data's
            median pairwise distance.
    """
    import torch

    from synalign._torch import RBFRows, as_matrix, resolve_device, sequential_loop

    xs = as_matrix(x, "embeddings")
    n = xs.shape[0]
    if not isinstance(m, (int, np.integer)) or m < 0:
        raise InputError(f"number of picks must be a non-negative integer, got {m!r}")
    prior = [int(i) for i in picked]
    if any(i < 0 or i >= n for i in prior):
        raise InputError(
            f"picked indices must lie in [0, {n}), got {[i for i in prior if i < 0 or i >= n][:5]}"
        )
    if len(set(prior)) != len(prior):
        raise InputError("picked indices contain duplicates")
    if not (noise >= 0 and np.isfinite(noise)):
        raise InputError(f"GP noise variance must be non-negative and finite, got {noise!r}")
    prio = None
    if priority is not None:
        prio = np.asarray(priority, dtype=np.float32).reshape(-1)
        if prio.shape[0] != n:
            raise InputError(f"priority must have one value per row ({n}), got {prio.shape[0]}")
        if not np.isfinite(prio).all() or (prio < 0).any():
            raise InputError("priority must be finite and non-negative")
    if length_scale is None:
        length_scale = median_heuristic(xs) if n >= 2 else 1.0
    m_eff = min(int(m), n - len(prior))
    if m_eff < m:
        logger.info("only %d unpicked rows left; picking %d instead of %d", n - len(prior), m_eff, m)

    dev = resolve_device(device)
    ell = _checked_length_scale(float(length_scale))
    n_shards = _shard_count(n, dev)
    with torch.no_grad(), sequential_loop(dev):
        xt = torch.as_tensor(xs).to(dev)
        rows = RBFRows(xt, ell)
        prio_t = None if prio is None else torch.as_tensor(prio).to(dev)
        bounds = np.linspace(0, n, n_shards + 1).round().astype(int)
        rank = len(prior) + m_eff
        shards = [_Shard(rows, int(lo), int(hi), rank, noise, prio_t) for lo, hi in pairwise(bounds)]
        pool = ThreadPoolExecutor(max_workers=n_shards) if n_shards > 1 else None

        def each(fn: Callable[[_Shard], _T]) -> list[_T]:
            """Run ``fn`` on every shard (one thread each when sharded) and return the results in order."""
            return [fn(sh) for sh in shards] if pool is None else list(pool.map(fn, shards))

        def owner(p: int) -> _Shard:
            return shards[int(np.searchsorted(bounds, p, side="right")) - 1]

        def add_pivot(p: int) -> list[_Best]:
            """Condition on row ``p`` in every shard; returns each shard's best candidate afterwards."""
            own = owner(p)
            a, r_p = own.pivot_row(p)
            return each(lambda sh: sh.add_pivot(p, a, r_p))

        def global_best(bests: list[_Best]) -> tuple[float, int, float, int]:
            """(max score, its row, max σ², its row) over all shards; ties → the lowest row, as argmax."""
            score, p_score = max((b.score, -b.score_row) for b in bests)
            var, p_var = max((b.var, -b.var_row) for b in bests)
            return score, -p_score, var, -p_var

        try:
            bests = each(lambda sh: sh.best())
            for p in prior:
                bests = add_pivot(p)
            t = len(prior)

            spread: tuple[float, float] | None = None
            checked = False

            def check() -> None:
                nonlocal spread, checked
                checked = True
                parts = each(lambda sh: sh.spread())
                n_avail = sum(k for k, _, _ in parts)
                if n_avail < 2:
                    return
                lo = min(a for k, a, _ in parts if k)
                hi = max(b for k, _, b in parts if k)
                spread = (lo, hi)
                logger.info(
                    "posterior std over %d unpicked candidates: min=%.6g max=%.6g spread=%.3g "
                    "(length-scale %.4g)",
                    n_avail,
                    lo,
                    hi,
                    hi - lo,
                    ell,
                )
                if hi - lo < DEGENERATE_STD_SPREAD:
                    med = median_heuristic(xs) if n >= 2 else float("nan")
                    logger.warning(
                        "degenerate GP kernel: posterior std spread %.3g < %.0e",
                        hi - lo,
                        DEGENERATE_STD_SPREAD,
                    )
                    raise DegenerateKernelError(
                        f"RBF length-scale {ell:.4g} is too small for the data's median pairwise "
                        f"distance {med:.4g}: every unpicked point has posterior std {hi:.6f} "
                        f"(spread {hi - lo:.1e}), so picking would follow file order; use a length-scale "
                        f"near {med:.3g} or leave it unset (median heuristic)"
                    )

            indices: list[int] = []
            stds: list[float] = []
            while len(indices) < m_eff:
                if t and not checked:
                    check()
                best, p, best_var, p_var = global_best(bests)
                use_priority = prio_t is not None and best > 0.0
                if not use_priority:
                    best, p = best_var, p_var
                if t == 0:
                    # Nothing to condition on: every variance is k(x,x) = 1; break ties by centrality.
                    score = torch.cat([sh.score(use_priority) for sh in shards])
                    centroid_d2 = ((xt - xt.mean(dim=0)) ** 2).sum(dim=1)
                    p = int(torch.argmin(centroid_d2.masked_fill(~(score >= best), float("inf"))))
                indices.append(p)
                stds.append(owner(p).std(p))
                bests = add_pivot(p)
                t += 1
            if t and not checked:
                check()
        finally:
            if pool is not None:
                pool.shutdown()
    return PickResult(indices=indices, posterior_std=stds, length_scale=ell, std_spread=spread)
