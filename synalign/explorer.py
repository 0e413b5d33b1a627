"""GP explorer (SynAlign stage 1, Ren et al., WWW 2025, §3.1 "exploration-aware sampling").

A Gaussian process with zero targets and an RBF kernel (gpytorch ``RBFKernel``, unit output scale) tracks
which real examples the demonstrations have already covered. Its posterior variance at x given the picked
set S is

    σ²(x | S) = k(x,x) − k(x,S) (K_SS + σ_n² I)⁻¹ k(S,x)        (Rasmussen & Williams 2006, eq. 2.26)

with a tiny noise σ_n² (``noise``) for numerical stability. Greedily taking argmax σ²(x | S) is exactly
a pivoted (partial) Cholesky factorisation of K + σ_n² I (Harbrecht, Peters & Schneider 2012): the
residual diagonal of the factorisation *is* σ²(x | S) + σ_n². Each step costs one kernel row k(X, x_pivot)
and one rank-one update, O(N·(d + t)) time after t picks and O(N·(d + m)) memory; the N×N kernel matrix
is never formed (DESIGN §3.2: a per-step GP refit is 27× slower at N=5000, m=100, same picks).

Each pick becomes a :class:`~synalign.records.DemonstrationCluster`: the pick plus its nearest neighbours
of the same label, which the attribute summariser reads (stage 2).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from synalign.errors import InputError
from synalign.records import DemonstrationCluster

__all__ = [
    "DegenerateKernelError",
    "ExploreResult",
    "PickResult",
    "explore",
    "greedy_variance_picks",
    "median_heuristic",
]

logger = logging.getLogger("synalign.explorer")

#: Below this spread (max − min) of the posterior std over unpicked candidates the kernel is degenerate.
DEGENERATE_STD_SPREAD = 1e-6


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


@dataclass(frozen=True)
class ExploreResult:
    """Result of :func:`explore`.

    Attributes:
        clusters: demonstration clusters; per label: labels in order of first appearance, then picks in
            pick order; over all rows: in pick order.
        picked: ids picked so far per label (earlier rounds first, then this round's picks), every label.
        picks: :class:`PickResult` per label (row indices within that label's rows), or under ``"*"``
            when exploring over all rows (row indices into ``embeddings``).
    """

    clusters: list[DemonstrationCluster]
    picked: dict[str, list[str]]
    picks: dict[str, PickResult] = field(default_factory=dict)


def median_heuristic(x: np.ndarray, max_points: int = 2000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance between the rows of ``x`` (N, d).

    Uses a uniform random subsample of ``max_points`` rows (seeded) when N is larger. The usual default
    RBF length-scale / bandwidth (Gretton et al. 2012, JMLR, §8; Garreau, Jitkrittum & Kanagawa 2017).

    Raises:
        InputError: fewer than 2 rows, non-finite values, or all rows identical.
    """
    from synalign._torch import median_pairwise_distance

    return median_pairwise_distance(x, max_points=max_points, seed=seed, name="embeddings")


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

    from synalign._torch import RBFRows, as_matrix, rbf_kernel, resolve_device, sequential_loop

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
    kernel = rbf_kernel(float(length_scale))
    with torch.no_grad(), sequential_loop(dev):
        xt = torch.as_tensor(xs).to(dev)
        rows = RBFRows(xt, kernel)
        ell = rows.length_scale
        resid = torch.full((n,), 1.0 + noise, dtype=torch.float32, device=dev)  # diag of K + σ_n² I
        factor = torch.empty(
            (len(prior) + m_eff, n), dtype=torch.float32, device=dev
        )  # Lᵀ, one row per pivot
        available = torch.ones(n, dtype=torch.bool, device=dev)
        prio_t = None if prio is None else torch.as_tensor(prio).to(dev)
        t = 0

        def add_pivot(p: int) -> None:
            nonlocal t
            col = rows.row(p)
            if t:
                col -= factor[:t, p] @ factor[:t]
            col[p] = resid[p]  # K_pp + σ_n² − Σ L_pj² (the residual diagonal itself)
            col /= torch.sqrt(resid[p].clamp(min=1e-30))
            factor[t] = col
            resid.sub_(col * col).clamp_(min=0.0)
            available[p] = False
            t += 1

        for p in prior:
            add_pivot(p)

        spread: tuple[float, float] | None = None
        checked = False

        def check() -> None:
            nonlocal spread, checked
            checked = True
            if int(available.sum()) < 2:
                return
            std = torch.sqrt((resid[available] - noise).clamp(min=0.0))
            lo, hi = float(std.min()), float(std.max())
            spread = (lo, hi)
            logger.info(
                "posterior std over %d unpicked candidates: min=%.6g max=%.6g spread=%.3g "
                "(length-scale %.4g)",
                int(available.sum()),
                lo,
                hi,
                hi - lo,
                ell,
            )
            if hi - lo < DEGENERATE_STD_SPREAD:
                med = median_heuristic(xs) if n >= 2 else float("nan")
                logger.warning(
                    "degenerate GP kernel: posterior std spread %.3g < %.0e", hi - lo, DEGENERATE_STD_SPREAD
                )
                raise DegenerateKernelError(
                    f"RBF length-scale {ell:.4g} is too small for the data's median pairwise "
                    f"distance {med:.4g}: every unpicked point has posterior std {hi:.6f} "
                    f"(spread {hi - lo:.1e}), so picking would follow file order; use a length-scale "
                    f"near {med:.3g} or leave it unset (median heuristic)"
                )

        indices: list[int] = []
        stds: list[float] = []
        centroid_d2 = None
        while len(indices) < m_eff:
            if t and not checked:
                check()
            var = (resid - noise).clamp_(min=0.0)
            score = var if prio_t is None else var * prio_t
            score = score.masked_fill(~available, -float("inf"))
            best = float(score.max())
            if prio_t is not None and best <= 0.0:
                score = var.masked_fill(~available, -float("inf"))
                best = float(score.max())
            if t == 0:
                # Nothing to condition on: every variance is k(x,x) = 1; break ties by centrality.
                if centroid_d2 is None:
                    centroid_d2 = ((xt - xt.mean(dim=0)) ** 2).sum(dim=1)
                tied = score >= best
                p = int(torch.argmin(centroid_d2.masked_fill(~tied, float("inf"))))
            else:
                p = int(torch.argmax(score))
            indices.append(p)
            stds.append(float(torch.sqrt(var[p])))
            add_pivot(p)
        if t and not checked:
            check()
    return PickResult(indices=indices, posterior_std=stds, length_scale=ell, std_spread=spread)


def explore(
    embeddings: np.ndarray,
    ids: Sequence[str],
    labels: Sequence[str],
    *,
    clusters_per_label: int,
    cluster_size: int,
    picked: dict[str, list[str]] | None = None,
    length_scale: float | None = None,
    priority: np.ndarray | None = None,
    per_label: bool = True,
    device: str = "auto",
) -> ExploreResult:
    """Build demonstration clusters with the GP explorer (SynAlign stage 1).

    By default (``per_label=True``, as the reference code does) the explorer runs
    :func:`greedy_variance_picks` on each label's rows alone (labels in order of first appearance),
    continuing from the ids already picked in earlier rounds. With ``per_label=False`` one GP runs over
    all rows and makes ``clusters_per_label × number of labels`` picks in total, wherever the posterior
    variance is largest. Each new pick becomes a cluster: the pick followed by its ``cluster_size − 1``
    nearest neighbours (Euclidean distance, equivalently cosine for unit-norm rows) among the rows of
    the pick's label, nearest first.

    Args:
        embeddings: (N, d) float array of L2-normalised embeddings of the real examples.
        ids: N unique example ids.
        labels: N labels.
        clusters_per_label: new picks (clusters) per label; fewer when fewer unpicked rows remain.
        cluster_size: examples per cluster, pick included.
        picked: ids picked in earlier rounds, per label (not modified).
        length_scale: RBF length-scale; ``None`` = median heuristic of each label's rows (of all rows
            when ``per_label`` is false).
        priority: optional (N,) non-negative weights (see :func:`greedy_variance_picks`).
        per_label: one GP per label (default) or one over all rows.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns:
        :class:`ExploreResult` with the clusters and the updated picked ids.

    Raises:
        InputError: mismatched lengths, duplicate ids, unknown picked ids, a label with fewer examples than
            ``cluster_size``, bad counts.
        DegenerateKernelError: see :func:`greedy_variance_picks` (message names the label).
    """
    import torch

    from synalign._torch import as_matrix, resolve_device

    x = as_matrix(embeddings, "embeddings")
    n = x.shape[0]
    ids = [str(i) for i in ids]
    labels = [str(lab) for lab in labels]
    if len(ids) != n or len(labels) != n:
        raise InputError(f"embeddings has {n} rows but got {len(ids)} ids and {len(labels)} labels")
    row_of = {i: r for r, i in enumerate(ids)}
    if len(row_of) != n:
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise InputError(f"example ids must be unique; {dup!r} repeats")
    if clusters_per_label < 1 or cluster_size < 1:
        raise InputError(
            f"clusters_per_label and cluster_size must be >= 1, got {clusters_per_label} and {cluster_size}"
        )
    if priority is not None:
        priority = np.asarray(priority, dtype=np.float32).reshape(-1)
        if priority.shape[0] != n:
            raise InputError(f"priority must have one value per row ({n}), got {priority.shape[0]}")
    label_arr = np.asarray(labels, dtype=object)
    order = list(dict.fromkeys(labels))
    rows_of_label = {label: np.flatnonzero(label_arr == label) for label in order}
    for label, rows in rows_of_label.items():
        if len(rows) < cluster_size:
            raise InputError(
                f"label {label!r} has {len(rows)} examples, fewer than cluster_size {cluster_size}"
            )
    prior = {k: [str(i) for i in v] for k, v in (picked or {}).items()}
    unknown = sorted(set(prior) - set(order))
    if unknown:
        raise InputError(f"picked ids given for labels not in the data: {unknown}")
    for label, before in prior.items():
        missing = [i for i in before if i not in row_of or labels[row_of[i]] != label]
        if missing:
            raise InputError(
                f"picked ids for label {label!r} not found among that label's examples: {missing[:5]}"
            )

    dev = resolve_device(device)
    out_picked: dict[str, list[str]] = {label: list(prior.get(label, [])) for label in order}
    details: dict[str, PickResult] = {}
    new_picks: list[tuple[int, float]] = []  # (row, posterior std)
    if per_label:
        groups = [(label, rows_of_label[label], clusters_per_label) for label in order]
    else:
        groups = [("*", np.arange(n), clusters_per_label * len(order))]
    for group, rows, m in groups:
        local = {ids[r]: j for j, r in enumerate(rows)}
        before = [i for label in ([group] if per_label else order) for i in prior.get(label, [])]
        try:
            res = greedy_variance_picks(
                x[rows],
                m,
                length_scale=length_scale,
                picked=[local[i] for i in before],
                priority=None if priority is None else priority[rows],
                device=str(dev),
            )
        except DegenerateKernelError as err:
            where = f"label {group!r}" if per_label else "all labels"
            raise DegenerateKernelError(f"{where}: {err}") from None
        details[group] = res
        if len(res.indices) < m:
            logger.warning(
                "%s: only %d unpicked examples left, %d clusters instead of %d",
                f"label {group!r}" if per_label else "all labels",
                len(res.indices),
                len(res.indices),
                m,
            )
        new_picks += [(int(rows[j]), std) for j, std in zip(res.indices, res.posterior_std, strict=True)]

    clusters: list[DemonstrationCluster] = []
    with torch.no_grad():
        for r, std in new_picks:
            label = labels[r]
            out_picked[label].append(ids[r])
            same = rows_of_label[label]
            diff = torch.as_tensor(x[same]).to(dev) - torch.as_tensor(x[r]).to(dev)
            d2 = (diff * diff).sum(dim=1).cpu().numpy()
            d2[same == r] = -1.0  # the pick always comes first
            nearest = same[np.argsort(d2, kind="stable")[:cluster_size]]
            clusters.append(
                DemonstrationCluster(
                    label=label,
                    pick_id=ids[r],
                    posterior_std=float(std),
                    example_ids=[ids[j] for j in nearest],
                )
            )
    return ExploreResult(clusters=clusters, picked=out_picked, picks=details)
