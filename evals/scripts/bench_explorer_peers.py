"""Benchmark 1b: the project's greedy explorer against real peers at full size (issue 13, item 4).

All methods compute the same thing: greedy maximum GP posterior variance picks = a pivoted partial Cholesky
factorisation of K + σ_n² I (RBF kernel, unit output scale), on the same embeddings, length-scale, noise and
first pick (the most central point), side by side in one run:

* ours: ``synalign.greedy_variance.greedy_variance_picks`` (float32 torch, rows split over the torch
  threads), best of ``--repeats`` runs;
* linear_operator ``pivoted_cholesky(op, rank=m, error_tol=0.0, return_pivots=True)`` (float64, the
  library gpytorch uses), once each, on three operators:
  - ``gpytorch-lazy``: a float64 gpytorch ``RBFKernel`` called on the data (a lazily evaluated kernel
    operator) + ``DiagLinearOperator(σ_n²)`` (``AddedDiagLinearOperator``). It is *not* lazy inside
    ``pivoted_cholesky``: ``LazyEvaluatedKernelTensor.representation()`` calls ``evaluate_kernel()``,
    which forms the dense N×N matrix (the peak memory column shows it; 3.2 GB at N = 20,000);
  - ``dense``: the N×N tensor K + σ_n² I formed first (its formation is included in the time);
  - ``kernel-op``: linear_operator's own ``KernelLinearOperator`` with an RBF ``covar_func`` (data
    pre-scaled by 1/ℓ), + ``DiagLinearOperator(σ_n²)``: truly lazy, each pivot row is computed on
    demand by ``_get_indices`` (element-wise over broadcast copies of the points), O(N·d) memory;
  (``gpytorch.beta_features.checkpoint_kernel`` would keep the gpytorch operator lazy too, but its
  ``_get_indices`` path took 35 s and 2 GB at N = 300, m = 10; it is not run);
* ``numpy`` / ``numpy-1t``: a textbook NumPy pivoted Cholesky (:func:`numpy_pivoted_cholesky`, float64):
  the pivot's kernel row from the points on demand, rank-one update of the residual diagonal, argmax; with
  the BLAS's default threads, and with 1 BLAS thread (``threadpoolctl``): on a shared 2-core machine the
  threaded BLAS can be ~10× slower on these matrix-vector products, so both are run and the faster counts.

The loop is memory-bound for all of them (each step reads the t×N factor once); ours differs from the NumPy
peer only by constant factors: float32 (half the bytes) and row shards over the torch threads.

linear_operator pivots on the largest diagonal, the first row on ties; at step 0 every diagonal is 1 + σ_n²,
so the rows are reordered to put the first pick at row 0 (as ``bench_explorer.reference_picks`` does) and
the picks mapped back; the std of a pivot is √(L[p, t]² − σ_n²). Each peer is warmed up once at N = 500 first.
Peak extra memory = the process's peak RSS during the call (``VmHWM`` after resetting it via
``/proc/self/clear_refs``) minus its RSS before.

    python evals/scripts/bench_explorer_peers.py [--quick] [--n 20000] [--m 1000] [--peers numpy,dense,...]

``python evals/scripts/bench_explorer.py`` runs the same comparison after its own tables (``--no-peers`` skips it).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from _bench import machine_note, markdown, sst2_embeddings

PEERS = ("gpytorch-lazy", "dense", "kernel-op", "numpy", "numpy-1t")
Picks = tuple[list[int], list[float]]


def numpy_pivoted_cholesky(
    x: np.ndarray, m: int, length_scale: float, noise: float, first: int, forced: Sequence[int] = ()
) -> tuple[list[int], list[float], np.ndarray]:
    """Greedy max-variance picks by a textbook pivoted partial Cholesky of K + σ_n² I (float64 NumPy).

    The pivots are ``first``, then ``forced`` (if given), then argmax of the residual diagonal. Returns
    (picks, posterior std of each pick when it was picked, residual diagonal σ² + σ_n² after the last pick).
    """
    xs = np.asarray(x, dtype=np.float64) / length_scale
    sq = np.einsum("ij,ij->i", xs, xs)
    n = len(xs)
    m = min(m, n)
    factor = np.empty((m, n))  # Lᵀ: one row per pivot, contiguous for the update's matrix-vector product
    resid = np.full(n, 1.0 + noise)  # diag(K + σ_n² I) − Σ_t L[:, t]²
    picks, stds, p = [], [], first
    for t in range(m):
        picks.append(p)
        stds.append(float(np.sqrt(max(resid[p] - noise, 0.0))))
        col = np.exp(-0.5 * np.maximum(sq + sq[p] - 2.0 * (xs @ xs[p]), 0.0))  # K[:, p]
        col -= factor[:t, p] @ factor[:t]
        col[p] = resid[p]
        col /= np.sqrt(resid[p])
        factor[t] = col
        resid -= col * col
        resid[picks] = -np.inf
        if t + 1 < m:
            p = forced[t] if t < len(forced) else int(np.argmax(resid))
    return picks, stds, resid


def linear_operator_picks(
    x: np.ndarray, m: int, length_scale: float, noise: float, first: int, how: str
) -> tuple[list[int], list[float], bool]:
    """Picks and posterior stds from linear_operator's ``pivoted_cholesky`` (float64) on operator ``how``, and
    whether the tensors ``pivoted_cholesky`` worked on (``op.representation()``) include an N×N matrix."""
    import torch

    try:
        import gpytorch
        from linear_operator.functions import pivoted_cholesky
        from linear_operator.operators import (
            AddedDiagLinearOperator,
            DiagLinearOperator,
            KernelLinearOperator,
        )
    except ImportError:
        raise SystemExit("the linear_operator peers need the test extra: pip install -e .[test]") from None
    n = len(x)
    order = np.r_[first, np.delete(np.arange(n), first)]  # first pick at row 0 (ties go to the first row)
    with torch.no_grad():
        xt = torch.as_tensor(np.asarray(x, dtype=np.float64)[order])
        diag = DiagLinearOperator(torch.full((n,), noise, dtype=torch.float64))
        if how == "kernel-op":
            op = AddedDiagLinearOperator(
                KernelLinearOperator(xt / length_scale, xt / length_scale, _rbf), diag
            )
        else:
            kernel = gpytorch.kernels.RBFKernel().double()
            kernel.lengthscale = length_scale
            if how == "gpytorch-lazy":
                op = AddedDiagLinearOperator(kernel(xt), diag)
            elif how == "dense":
                op = kernel(xt).to_dense()
                op.diagonal().add_(noise)
            else:
                raise ValueError(f"unknown peer {how!r}")
        factor, perm = pivoted_cholesky(op, rank=m, error_tol=0.0, return_pivots=True)
        pivots = perm[:m].tolist()
        stds = [float(np.sqrt(max(float(factor[p, t]) ** 2 - noise, 0.0))) for t, p in enumerate(pivots)]
        parts = [op] if isinstance(op, torch.Tensor) else op.representation()  # cached: no second evaluation
        holds_nxn = any(isinstance(t, torch.Tensor) and t.shape[-2:] == (n, n) for t in parts)
    return [int(order[p]) for p in pivots], stds, holds_nxn


def _rbf(x1, x2):  # noqa: ANN001, ANN202
    """RBF covariance of pre-scaled points (``KernelLinearOperator``'s ``covar_func``; closes over nothing)."""
    return (x1.unsqueeze(-2) - x2.unsqueeze(-3)).square().sum(dim=-1).mul(-0.5).exp()


def _mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise OSError(field)


def measured(fn: Callable[[], Picks]) -> tuple[float, float | None, Picks]:
    """(seconds, peak extra RSS in MiB or None where it cannot be read, result) of one call."""
    gc.collect()
    try:  # hand freed heap pages back to the OS first, so that reusing them shows in the peak
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
        before = _mib("VmRSS")
    except OSError:
        before = None
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    extra = None if before is None else max(_mib("VmHWM") - before, 0.0)
    return seconds, extra, out


def compare_peers(
    x: np.ndarray,
    m: int,
    length_scale: float,
    noise: float,
    first: int,
    *,
    peers: Sequence[str] = PEERS,
    repeats: int = 3,
) -> tuple[list[str], float | None]:
    """Run ours and the peers on the same problem; returns (printable lines incl. the table, best speed-up)."""
    from synalign.greedy_variance import greedy_variance_picks

    def ours() -> Picks:
        res = greedy_variance_picks(
            x, m - 1, length_scale=length_scale, noise=noise, picked=[first], device="cpu"
        )
        return [first, *res.indices], [1.0, *res.posterior_std]

    def peer(name: str, xx: np.ndarray, mm: int, f: int) -> Picks:
        if name == "numpy":
            return numpy_pivoted_cholesky(xx, mm, length_scale, noise, f)[:2]
        if name == "numpy-1t":
            from threadpoolctl import threadpool_limits  # installed with scikit-learn

            with threadpool_limits(limits=1, user_api="blas"):
                return numpy_pivoted_cholesky(xx, mm, length_scale, noise, f)[:2]
        picks, stds, forms[name] = linear_operator_picks(xx, mm, length_scale, noise, f, name)
        return picks, stds

    n = len(x)
    forms: dict[str, bool] = {}  # linear_operator peer → its operator holds an N×N tensor
    greedy_variance_picks(x[:500], 5, length_scale=length_scale, device="cpu")  # warm-up
    runs = [measured(ours) for _ in range(repeats)]
    t_ours, _, (p_ours, s_ours) = min(runs, key=lambda r: r[0])
    mem_ours = None if runs[0][1] is None else max(r[1] for r in runs)
    results: dict[str, tuple[float, float | None, Picks]] = {}
    for name in peers:
        peer(name, x[:500], 5, 0)  # warm-up: imports, first allocations
        results[name] = measured(lambda name=name: peer(name, x, m, first))
        print(f"peer {name} at N={n}, m={m}: {results[name][0]:.2f} s", flush=True)

    def agreement(p: list[int], s: list[float], q: list[int], s_q: list[float]) -> tuple[str, float]:
        same = sum(a == b for a, b in zip(p, q))
        k = next((i for i, (a, b) in enumerate(zip(p, q)) if a != b), None)
        return f"{same}/{m}" + ("" if k is None else f" (first differs at step {k})"), max(
            abs(a - b) for a, b in zip(s, s_q)
        )

    fmt_mem = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    rows = [
        (
            "ours: greedy_variance_picks (float32 torch)",
            n,
            m,
            f"{t_ours:.3f}",
            fmt_mem(mem_ours),
            "-",
            "-",
            "-",
        )
    ]
    labels = {
        "gpytorch-lazy": "linear_operator pivoted_cholesky, gpytorch RBFKernel lazy op + DiagLinearOperator",
        "dense": "linear_operator pivoted_cholesky, dense K + σ²I (formed first)",
        "kernel-op": "linear_operator pivoted_cholesky, KernelLinearOperator (rows on demand)",
        "numpy": "NumPy textbook pivoted Cholesky (float64, BLAS threads: default)",
        "numpy-1t": "NumPy textbook pivoted Cholesky (float64, 1 BLAS thread)",
    }
    lines = []
    for name, (sec, mem, (p, s)) in results.items():
        same, d_std = agreement(p_ours, s_ours, p, s)
        rows.append(
            (labels[name], n, m, f"{sec:.2f}", fmt_mem(mem), same, f"{d_std:.1e}", f"{sec / t_ours:.3g}x")
        )
        if p[0] != first:
            lines.append(f"WARNING: peer {name} did not start from the first pick ({p[0]} ≠ {first})")
    if forms:
        lines.append(
            f"N×N float64 = {n * n * 8 / 2**20:.0f} MiB. linear_operator operators that hold an N×N tensor "
            f"inside pivoted_cholesky (op.representation()): {', '.join(k for k, v in forms.items() if v) or 'none'}"
            f"; rows on demand only: {', '.join(k for k, v in forms.items() if not v) or 'none'}"
        )
    # where ours (float32) and a float64 peer first differ: both candidates' σ in float64 given the common prefix
    ref_name = next((k for k in ("numpy-1t", "numpy") if k in results), next(iter(results), None))
    if ref_name is not None:
        p_ref = results[ref_name][2][0]
        k = next((i for i, (a, b) in enumerate(zip(p_ours, p_ref)) if a != b), None)
        if k is None:
            lines.append(f"ours and the float64 peer ({ref_name}) pick the same {m} points in the same order")
        else:
            _, _, resid = numpy_pivoted_cholesky(x, k, length_scale, noise, first, forced=p_ours[1:k])
            sig = np.sqrt(np.maximum(resid - noise, 0.0))
            a, b = p_ours[k], p_ref[k]
            gap = abs(sig[a] - sig[b])
            err = max(abs(u - v) for u, v in zip(s_ours[:k], results[ref_name][2][1][:k]))  # float32 error
            verdict = (
                "a near-tie within ours' float32 error on the common prefix"
                if gap <= 10 * err
                else "NOT within ours' float32 error on the common prefix: look into it"
            )
            lines.append(
                f"first divergence from the float64 peer ({ref_name}) at step {k}: given the same {k} earlier "
                f"picks, float64 σ of ours' pick {a} = {sig[a]:.9f}, of the peer's pick {b} = {sig[b]:.9f} "
                f"(gap {gap:.1e}; max |Δσ| on the prefix {err:.1e}): {verdict}. Ours has no float64 mode "
                f"(greedy_variance_picks is float32 only), so it cannot be rerun in float64"
            )
        for name, (_, _, (p, _)) in results.items():
            if name != ref_name:
                same = sum(a == b for a, b in zip(p_ref, p))
                lines.append(f"float64 peers agree: {name} vs {ref_name} identical picks {same}/{m}")
    best = min(results, key=lambda k: results[k][0]) if results else None
    out = [
        machine_note(),
        f"ours: best of {repeats} runs; each peer: one run after a warm-up at N=500; torch threads as above, "
        f"NumPy BLAS threads default; peak extra memory: peak RSS during the call − RSS before (MiB)",
        "",
        markdown(
            [
                "method",
                "N",
                "m",
                "seconds",
                "peak extra MiB",
                "identical picks vs ours",
                "max |Δ posterior std| vs ours, pick by pick",
                "ours faster by",
            ],
            rows,
        ),
        "",
        *lines,
    ]
    if best is None:
        return out, None
    speedup = results[best][0] / t_ours
    out.append(
        f"target ≥ 2× the best peer ({best}, {results[best][0]:.2f} s): {'met' if speedup >= 2 else 'not met'} "
        f"({speedup:.3g}x)"
    )
    return out, speedup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GP explorer vs linear_operator / NumPy pivoted Cholesky")
    parser.add_argument("--quick", action="store_true", help="N=2,000, m=100")
    parser.add_argument("--shared", default=None, help="shared data directory [../shared/data]")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--m", type=int, default=1000)
    parser.add_argument(
        "--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of ours (best is reported)")
    parser.add_argument("--cache-dir", default=None, help="embedding cache [$SYNALIGN_CACHE_DIR]")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.m = 2000, 100
    peers = [p for p in args.peers.split(",") if p]
    if unknown := sorted(set(peers) - set(PEERS)):
        parser.error(f"unknown peers {unknown}; choose from {','.join(PEERS)}")

    import torch

    from synalign.greedy_variance import greedy_variance_picks, median_heuristic

    torch.set_num_threads(2)
    x, src = sst2_embeddings(args.shared, args.n, args.cache_dir)
    ell = median_heuristic(x)
    first = int(np.argmin(((x - x.mean(0)) ** 2).sum(1)))
    greedy_variance_picks(x[:500], 5, length_scale=ell, device="cpu")  # warm-up
    lines, _ = compare_peers(x, args.m, ell, 1e-6, first, peers=peers, repeats=args.repeats)
    print()
    print(
        f"data: {len(x)} real embeddings from {src} (d={x.shape[1]}); RBF length-scale {ell:.4f}; noise 1e-6"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
