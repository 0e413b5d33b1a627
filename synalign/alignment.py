"""Distribution alignment (SynAlign stage 3, Ren et al., WWW 2025, §3.3), per label: :func:`align`.

The one job of this module is the per-label orchestration of stage 3: for each label, kernel-mean-matching
weights of that label's synthetic rows against its real rows (:func:`synalign.kmm.kmm_weights`), then the
named selection strategy (:func:`synalign.selection.parse_strategy`) keeps a quota of them, and optionally the
per-label MMD² of the pool and of the accepted set (:func:`synalign.divergence.mmd2_unbiased`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from synalign.errors import InputError
from synalign.kmm import kmm_weights
from synalign.runspecs import StrategySpec
from synalign.selection import PerLabel, parse_strategy

__all__ = ["AlignmentResult", "align"]

logger = logging.getLogger("synalign.alignment")


@dataclass(frozen=True)
class AlignmentResult:
    """Result of :func:`align`.

    Attributes:
        weights: (m,) float64 KMM weights; within each label they are ≥ 0 and sum to 1.
        accepted: (m,) bool mask of the rows the selection strategy kept.
        strategy: name of the selection strategy.
        bandwidth: RBF bandwidth σ used per label.
        mmd2_pool: per label, unbiased MMD² of all synthetic rows vs the real rows (None if < 2 on a side).
        mmd2_accepted: per label, unbiased MMD² of the accepted rows vs the real rows (None if < 2 on a side).
        filter_threshold: τ of the label-consistency filter (``"filter"`` strategies), else None.
        filtered: rows the label-consistency filter rejected.
    """

    weights: np.ndarray
    accepted: np.ndarray
    strategy: str
    bandwidth: dict[str, float] = field(default_factory=dict)
    mmd2_pool: dict[str, float | None] = field(default_factory=dict)
    mmd2_accepted: dict[str, float | None] = field(default_factory=dict)
    filter_threshold: float | None = None
    filtered: int = 0


@dataclass
class _AlignContext:
    """The :class:`synalign.selection.SelectionContext` of one :func:`align` call.

    A per-label function sees the label's (filtered) rows, that label's real rows, the label's bandwidth, its
    KMM weights renormalised over the candidates, and one generator shared by all labels (``default_rng(seed)``).
    ``picks`` keeps each label's accepted rows (positions within the label) in the order the strategy gave them.
    """

    name: str
    pool: np.ndarray
    pool_labels: np.ndarray
    real: np.ndarray
    real_labels: np.ndarray
    quotas: dict[str, int]
    seed: int
    device: str
    weights: np.ndarray
    bandwidths: dict[str, float]
    rng: np.random.Generator
    tau: float | None = None
    cv_seed: int | None = None
    cv_warm_start: bool = False
    filtered: int = 0
    picks: dict[str, np.ndarray] = field(default_factory=dict)
    priority: np.ndarray | None = None

    def per_label(self, leaf: PerLabel, mask: np.ndarray | None) -> np.ndarray:
        if leaf.target != "labelled":
            raise InputError(
                f"selection strategy {self.name!r} matches each label to {leaf.target} real rows; align() has "
                "only the labelled real rows"
            )
        keep = np.ones(len(self.pool), dtype=bool) if mask is None else mask
        out = []
        for label, k in self.quotas.items():
            s_idx = np.flatnonzero(self.pool_labels == label)
            xr = self.real[self.real_labels == label]
            w = self.weights[s_idx]
            kept = np.flatnonzero(keep[s_idx])  # positions within the label that survive the filter
            if self.priority is not None:  # the quota is filled in priority order instead of by the leaf
                self.picks[label] = kept[_by_priority(self.priority[s_idx][kept], k)]
                out.append(s_idx[self.picks[label]])
                continue
            w_kept = w[kept] / w[kept].sum() if w[kept].sum() > 0 else np.full(len(kept), 1.0 / len(kept))
            chosen = np.asarray(
                leaf(
                    self.pool[s_idx][kept],
                    xr,
                    w_kept,
                    k,
                    bandwidth=self.bandwidths[label],
                    rng=self.rng,
                    device=self.device,
                )
            )
            if (
                chosen.ndim != 1
                or len(chosen) != k
                or not np.issubdtype(chosen.dtype, np.integer)
                or len(np.unique(chosen)) != k
                or (k and (chosen.min() < 0 or chosen.max() >= len(kept)))
            ):
                raise InputError(
                    f"selection strategy {self.name!r} did not return {k} distinct indices in [0, {len(kept)})"
                )
            self.picks[label] = kept[chosen]
            out.append(s_idx[kept[chosen]])
        return np.sort(np.concatenate(out)).astype(np.int64)

    def record_filter(self, tau: float, keep: np.ndarray, cv_logloss: dict[float, float] | None) -> None:
        self.tau = tau
        self.filtered = int((~keep).sum())


def align(
    synthetic: np.ndarray,
    synthetic_labels: Sequence[str] | np.ndarray,
    real: np.ndarray,
    real_labels: Sequence[str] | np.ndarray,
    *,
    bandwidth: float | None = None,
    strategy: str | StrategySpec = "filter",
    accept_fraction: float = 0.5,
    solver: Literal["frank_wolfe", "eg"] = "frank_wolfe",
    seed: int = 0,
    cv_seed: int | None = None,
    cv_warm_start: bool = False,
    device: str = "auto",
    compute_mmd: bool = True,
    weights: np.ndarray | None = None,
    eligible: np.ndarray | None = None,
    priority: np.ndarray | None = None,
) -> AlignmentResult:
    """Align the synthetic pool to the real set per label: KMM weights, then selection (SynAlign stage 3).

    For each label L (in order of first appearance among ``synthetic_labels``), the synthetic rows of L
    get :func:`synalign.kmm.kmm_weights` against the real rows of L, and the strategy accepts
    max(1, ⌊accept_fraction · m_L + ½⌋) of them.

    Args:
        synthetic: (m, d) embeddings of the synthetic pool; synthetic_labels: m labels.
        real: (n, d) embeddings of the real set; real_labels: n labels.
        bandwidth: RBF σ for every label; ``None`` = median heuristic of each label's pooled real ∪ synthetic.
        strategy: a name registered in :data:`synalign.selection.SELECTION_STRATEGIES`, or ``"filter"`` /
            ``"filter+NAME"``: first drop the samples the label-consistency filter (:mod:`synalign.consistency`,
            τ by cross-validation on the real set) rejects, then select with NAME (``random`` for plain
            ``"filter"``, the default chosen by measurement in ``evals/RESULTS.md``) among the rest. KMM weights
            are computed either way. A :class:`~synalign.runspecs.StrategySpec` (a run's ``selection``) is
            used as parsed.
        accept_fraction: fraction of each label's pool to accept, in (0, 1].
        solver: KMM solver (see :func:`synalign.kmm.kmm_weights`).
        seed: seeds the strategy's ``numpy.random.Generator`` and the RFF frequencies.
        cv_seed: seeds the filter's cross-validation (folds and draws; default ``seed``). A run passes its own
            seed every round, so the folds stay the same and the classifiers fitted on the real folds are
            reused (:func:`synalign.consistency.fit_filter_classifier` memoises them).
        cv_warm_start: warm-start the cross-validation's fits (:func:`synalign.selection.cross_validate`; a run
            turns it on).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        compute_mmd: also report per-label unbiased MMD² (kernel units) of the pool and of the accepted set.
        weights: (m,) KMM weights computed elsewhere (each label's ≥ 0 and summing to 1, e.g. by
            :func:`synalign.scaleout.align.ray_kmm_weights` on a Ray-embedded pool); ``None`` = solve them here.
        eligible: (m,) bool, the rows that may be weighted and accepted (e.g. not near-copies of real texts,
            :mod:`synalign.novelty`); the others get weight 0 and are never accepted, and each label's quota is
            ``accept_fraction`` of its eligible rows. ``None`` = every row.
        priority: (m,) float, an order of preference (e.g. the LM's own label-check margin,
            :mod:`synalign.lmcheck`: SuperGen, Meng et al. 2022, keeps the texts the LM itself is surest of):
            each label's quota is filled with the rows of largest priority among those the strategy's filter
            keeps (``"filter"``: the label-consistency filter; ties in pool order), instead of the strategy's
            own per-label pick. NaN ranks last. ``None`` = the strategy decides.

    Raises:
        InputError: mismatched lengths or dims, a synthetic label with no real rows, bad accept_fraction,
            unknown strategy, a strategy that returns invalid indices, or ``weights`` of the wrong shape, negative
            or not summing to 1 per label.
    """
    options: dict[str, Any] = dict(
        bandwidth=bandwidth, strategy=strategy, accept_fraction=accept_fraction, solver=solver, seed=seed,
        cv_seed=cv_seed, cv_warm_start=cv_warm_start, device=device, compute_mmd=compute_mmd,
    )
    if priority is not None:
        priority = np.asarray(priority, dtype=np.float64)
        if priority.shape != (len(synthetic_labels),):
            raise InputError(f"priority must be {len(synthetic_labels)} numbers, got shape {priority.shape}")
    if eligible is not None:
        return _align_eligible(
            synthetic, synthetic_labels, real, real_labels, np.asarray(eligible, dtype=bool), weights, priority,
            **options,
        )
    return _align(synthetic, synthetic_labels, real, real_labels, weights=weights, priority=priority, **options)


def _align(
    synthetic: np.ndarray,
    synthetic_labels: Sequence[str] | np.ndarray,
    real: np.ndarray,
    real_labels: Sequence[str] | np.ndarray,
    *,
    bandwidth: float | None,
    strategy: str | StrategySpec,
    accept_fraction: float,
    solver: Literal["frank_wolfe", "eg"],
    seed: int,
    cv_seed: int | None,
    cv_warm_start: bool,
    device: str,
    compute_mmd: bool,
    weights: np.ndarray | None,
    priority: np.ndarray | None = None,
) -> AlignmentResult:
    """:func:`align` on every row of the pool."""
    from synalign._torch import as_matrix, bandwidth_list
    from synalign.divergence import median_bandwidth, mmd2_unbiased

    s = as_matrix(synthetic, "synthetic")
    r = as_matrix(real, "real")
    syn_lab = np.asarray([str(v) for v in synthetic_labels], dtype=object)
    real_lab = np.asarray([str(v) for v in real_labels], dtype=object)
    if len(syn_lab) != s.shape[0] or len(real_lab) != r.shape[0]:
        raise InputError(
            f"got {s.shape[0]} synthetic rows with {len(syn_lab)} labels and {r.shape[0]} real rows "
            f"with {len(real_lab)} labels"
        )
    if s.shape[1] != r.shape[1]:
        raise InputError(f"synthetic and real have different dimensions: {s.shape[1]} vs {r.shape[1]}")
    if not 0 < accept_fraction <= 1:
        raise InputError(f"accept_fraction must be in (0, 1], got {accept_fraction}")
    plan = strategy.strategy if isinstance(strategy, StrategySpec) else parse_strategy(strategy)
    strategy = str(strategy)
    fixed_bw = None if bandwidth is None else bandwidth_list(bandwidth)[0]
    order = list(dict.fromkeys(syn_lab.tolist()))
    missing = [lab for lab in order if lab not in set(real_lab.tolist())]
    if missing:
        raise InputError(f"synthetic label {missing[0]!r} has no real examples to align to")
    quotas = {
        lab: min(n, max(1, int(np.floor(accept_fraction * n + 0.5))))
        for lab, n in ((lab, int(np.sum(syn_lab == lab))) for lab in order)
    }

    given = None if weights is None else _check_weights(weights, syn_lab, order)
    weights = np.zeros(s.shape[0])
    bws: dict[str, float] = {}
    for label in order:
        xs, xr = s[syn_lab == label], r[real_lab == label]
        if fixed_bw is not None:
            bws[label] = fixed_bw
        else:
            try:
                bws[label] = median_bandwidth(xr, xs)
            except InputError:
                bws[label] = 1.0  # fewer than 2 distinct rows: any bandwidth gives the same selection
        weights[syn_lab == label] = (
            given[syn_lab == label]
            if given is not None
            else kmm_weights(xs, xr, bandwidth=bws[label], solver=solver, device=device, seed=seed)
        )

    ctx = _AlignContext(
        strategy, s, syn_lab, r, real_lab, quotas, seed, device, weights, bws, np.random.default_rng(seed),
        cv_seed=cv_seed,
        cv_warm_start=cv_warm_start,
        priority=priority,
    )
    accepted = np.zeros(s.shape[0], dtype=bool)
    accepted[plan.choose(ctx, None)] = True

    mmd_pool: dict[str, float | None] = {}
    mmd_acc: dict[str, float | None] = {}
    for label in order:
        xs, xr, k = s[syn_lab == label], r[real_lab == label], quotas[label]
        if compute_mmd:
            ok_real = len(xr) >= 2
            bw = bws[label]
            mmd_pool[label] = mmd2_unbiased(xs, xr, bw, device=device) if ok_real and len(xs) >= 2 else None
            mmd_acc[label] = (
                mmd2_unbiased(xs[ctx.picks[label]], xr, bw, device=device) if ok_real and k >= 2 else None
            )
        logger.info(
            "label %r: %d synthetic vs %d real, bandwidth %.4g, accepted %d (%s)",
            label,
            len(xs),
            len(xr),
            bws[label],
            k,
            strategy,
        )
    return AlignmentResult(
        weights=weights,
        accepted=accepted,
        strategy=strategy,
        filter_threshold=ctx.tau,
        filtered=ctx.filtered,
        bandwidth=bws,
        mmd2_pool=mmd_pool,
        mmd2_accepted=mmd_acc,
    )


def _align_eligible(
    synthetic: np.ndarray,
    synthetic_labels: Sequence[str] | np.ndarray,
    real: np.ndarray,
    real_labels: Sequence[str] | np.ndarray,
    eligible: np.ndarray,
    weights: np.ndarray | None,
    priority: np.ndarray | None,
    **options: Any,
) -> AlignmentResult:
    """:func:`align` on the ``eligible`` rows only, scattered back to the whole pool (others: weight 0, never
    accepted). A label with no eligible row accepts nothing."""
    labels = np.asarray([str(v) for v in synthetic_labels], dtype=object)
    if eligible.shape != labels.shape:
        raise InputError(f"eligible must be {len(labels)} booleans, got shape {eligible.shape}")
    rows = np.flatnonzero(eligible)
    full_w, full_acc = np.zeros(len(labels)), np.zeros(len(labels), dtype=bool)
    if len(rows) == 0:
        return AlignmentResult(weights=full_w, accepted=full_acc, strategy=str(options["strategy"]),
                               filter_threshold=None, filtered=0, bandwidth={}, mmd2_pool={}, mmd2_accepted={})
    sub_w = None
    if weights is not None:
        sub_w = np.asarray(weights, dtype=np.float64)[rows]
        for label in set(labels[rows].tolist()):
            part = labels[rows] == label
            total = sub_w[part].sum()
            sub_w[part] = sub_w[part] / total if total > 0 else 1.0 / part.sum()
    inner = _align(np.asarray(synthetic)[rows], labels[rows], real, real_labels, weights=sub_w,
                   priority=None if priority is None else priority[rows], **options)
    full_w[rows] = inner.weights
    full_acc[rows] = inner.accepted
    return replace(inner, weights=full_w, accepted=full_acc)


def _by_priority(priority: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest of (n,) ``priority`` (NaN last; ties in order), in that order."""
    key = np.where(np.isnan(priority), -np.inf, priority)
    return np.argsort(-key, kind="stable")[:k].astype(np.int64)


def _check_weights(weights: np.ndarray, labels: np.ndarray, order: list[str]) -> np.ndarray:
    """``weights`` as float64 (m,), checked: finite, ≥ 0, summing to 1 (±1e-6) within each label."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != labels.shape or not np.isfinite(w).all() or (w < 0).any():
        raise InputError(f"weights must be {len(labels)} finite non-negative numbers, got shape {w.shape}")
    for label in order:
        total = float(w[labels == label].sum())
        if abs(total - 1.0) > 1e-6:
            raise InputError(f"the weights of label {label!r} sum to {total:.6g}, not 1")
    return w
