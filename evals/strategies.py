"""Selection strategies compared by the evaluation (issue 4: "choose the alignment default by measurement").

Every strategy picks a label-balanced subset of a synthetic pool: exactly ``quotas[label]`` rows of each
label (the same per-label counts as random selection), using only

* the labelled few-shot real set (k per class from ``train``),
* an unlabelled real pool (other ``train`` texts; their labels are never read), and
* the synthetic pool itself (texts' embeddings and generated labels).

No strategy sees test data. Strategies (names as in the results tables):

===========================  ==============================================================================
``random``                   uniform per label (the baseline)
``top_weight``               top KMM weight, KMM of label L's pool to the labelled real rows of L
``proportional``             sampled ∝ those KMM weights (weighted sampling without replacement)
``herding``                  kernel herding to the labelled real rows of L (Chen, Welling & Smola 2010)
``herding_unlabelled``       kernel herding of label L's pool to the whole unlabelled real pool
``herding_pseudo``           kernel herding to L's labelled rows ∪ unlabelled rows pseudo-labelled L by a
                             logistic regression fitted on the labelled few-shot set
``top_weight_unlabelled``    top KMM weight, KMM of label L's pool to the whole unlabelled real pool
``top_weight_pseudo``        top KMM weight, KMM to the ``herding_pseudo`` target
``ot_labelled``/``ot_pseudo`` semi-relaxed entropic OT (POT) from the real target of L (labelled / pseudo)
                             to L's pool; top received plan mass
``filter``                   label-consistency filter, then random: drop pool rows for which a logistic
                             regression fitted on the labelled real set predicts another label with
                             probability > τ; τ chosen per seed by cross-validation on the few-shot set
``blend_cv``                 per label, the first α·quota kernel-herding picks (to the labelled rows of L)
                             plus random rows for the rest; α ∈ {0, ¼, ½, ¾, 1} chosen per seed by
                             cross-validation on the few-shot set (:func:`choose_alpha`)
``filter+X``                 the filter, then strategy X on the surviving rows
===========================  ==============================================================================

KMM weights come from :func:`synalign.alignment.kmm_weights` (pairwise Frank–Wolfe, 200 iterations), which
are sparse: at most 201 non-zero weights per label. When a label's quota is larger than that,
``top_weight`` and ``proportional`` take the non-zero-weight rows and fill the rest of the quota at random
(ties of zero weight are broken at random), so at m = 1,000 they are part KMM, part random; at m = 300 they
are pure KMM (see ``evals/RESULTS.md``).

The core strategies (``random``, ``top_weight``, ``proportional``, ``herding``) are
:data:`synalign.alignment.SELECTION_STRATEGIES` called per label; the others are defined here. None of the
eval-only strategies is registered in the core registry: the core's per-label strategy signature does not
see the other labels' real rows (needed by the label-consistency filter) nor an unlabelled pool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from synalign.consistency import FILTER_C, TAU_GRID, fit_filter_classifier, choose_threshold, label_consistency_scores
from synalign.consistency import consistency_mask as _filter_mask
from synalign.consistency import random_per_label as _random_per_label
from synalign.errors import InputError

__all__ = [
    "SelectionTask",
    "EVAL_STRATEGIES",
    "DEFAULT_STRATEGIES",
    "TAU_GRID",
    "ALPHA_GRID",
    "choose_alpha",
    "balanced_quotas",
    "label_consistency_scores",
    "choose_tau",
    "select",
    "with_tau",
]

@dataclass(frozen=True)
class SelectionTask:
    """Everything a strategy may use for one seed.

    Attributes:
        pool: (n, d) unit-norm embeddings of the synthetic pool; pool_labels: (n,) generated labels.
        real: (r, d) embeddings of the labelled few-shot real set; real_labels: (r,) labels.
        unlabelled: (u, d) embeddings of the unlabelled real pool (u may be 0).
        quotas: rows to select per label (see :func:`balanced_quotas`).
        bandwidth: RBF bandwidth σ (Euclidean units).
        seed: random seed of this selection.
        device: torch device for the kernel computations.
        tau: label-consistency threshold; ``None`` = choose by cross-validation (:func:`choose_tau`).
        info: filled by strategies with diagnostics (chosen τ, rows filtered, …).
    """

    pool: np.ndarray
    pool_labels: np.ndarray
    real: np.ndarray
    real_labels: np.ndarray
    unlabelled: np.ndarray
    quotas: dict[str, int]
    bandwidth: float
    seed: int = 0
    device: str = "cpu"
    tau: float | None = None
    info: dict = field(default_factory=dict)


EvalStrategy = Callable[[SelectionTask], np.ndarray]


def balanced_quotas(pool_labels: Sequence[str], labels: Sequence[str], m: int) -> dict[str, int]:
    """Equal per-label counts summing to ``m`` (remainder to the first labels in sorted order); a label
    with too few pool rows gives its shortfall to the others.

    Raises:
        InputError: ``m`` larger than the pool, or a label with no pool rows.
    """
    counts = {lab: int(np.sum(np.asarray(pool_labels, dtype=object) == lab)) for lab in sorted(labels)}
    missing = [lab for lab, c in counts.items() if c == 0]
    if missing:
        raise InputError(f"the synthetic pool has no rows for label(s) {missing}")
    if m > sum(counts.values()):
        raise InputError(f"cannot select m={m} of a pool of {sum(counts.values())} rows")
    quotas = {lab: 0 for lab in counts}
    left = m
    open_ = sorted(counts)
    while left > 0:
        share, extra = divmod(left, len(open_))
        given = 0
        for i, lab in enumerate(open_):
            want = share + (1 if i < extra else 0)
            take = min(want, counts[lab] - quotas[lab])
            quotas[lab] += take
            given += take
        left -= given
        open_ = [lab for lab in open_ if quotas[lab] < counts[lab]]
    return quotas


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


def _rng(task: SelectionTask, salt: int) -> np.random.Generator:
    return np.random.default_rng([task.seed, salt])


def choose_tau(task: SelectionTask, grid: Sequence[float] = TAU_GRID, folds: int = 4) -> float:
    """Filter threshold τ by cross-validation on the labelled few-shot set
    (:func:`synalign.consistency.choose_threshold`; test data is never used). Records the per-τ log-loss in
    ``task.info["tau_cv_logloss"]``."""
    tau, means = choose_threshold(
        task.real, task.real_labels, task.pool, task.pool_labels, task.quotas, seed=task.seed, grid=grid, folds=folds
    )
    task.info["tau_cv_logloss"] = {str(t): round(v, 5) for t, v in means.items()}
    return float(tau)


ALPHA_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Candidate herding fractions α of ``blend_cv`` (0 = random, 1 = kernel herding)."""


def _herding_order(task: SelectionTask, mask: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per label: the first ``quota`` kernel-herding picks (pool indices, in pick order) toward the labelled
    real rows of that label, among the (masked) pool rows of the label."""
    from synalign.alignment import select_herding

    out = {}
    rng = _rng(task, 5)
    for lab, q in task.quotas.items():
        rows = np.flatnonzero((task.pool_labels == lab) & (True if mask is None else mask))
        target = task.real[task.real_labels == lab]
        out[lab] = rows[
            select_herding(
                task.pool[rows], target, None, q, bandwidth=task.bandwidth, rng=rng, device=task.device
            )
        ]
    return out


def _blend(
    task: SelectionTask,
    order: dict[str, np.ndarray],
    alpha: float,
    rng: np.random.Generator,
    mask: np.ndarray | None,
) -> np.ndarray:
    """Per label: the first round(α·quota) herding picks, the rest uniformly at random from the other rows."""
    out = []
    for lab, q in task.quotas.items():
        nh = int(round(alpha * q))
        head = order[lab][:nh]
        rows = np.flatnonzero((task.pool_labels == lab) & (True if mask is None else mask))
        rest = np.setdiff1d(rows, head)
        out.append(np.concatenate([head, rng.choice(rest, size=q - nh, replace=False)]))
    return np.sort(np.concatenate(out)).astype(np.int64)


def choose_alpha(
    task: SelectionTask, *, filtered: bool = False, grid: Sequence[float] = ALPHA_GRID, folds: int = 4
) -> float:
    """Choose the herding fraction α of ``blend_cv`` by stratified k-fold cross-validation on the few-shot set.

    Per fold, herding targets only the fold's training rows (and, with ``filtered``, the label-consistency
    filter at ``task.tau`` is refitted on them); for each α the blend is selected, the downstream logistic
    regression (C = 1) is fitted on the fold's real training rows + the blend, and the log-loss on the held-out
    real rows is recorded. Lowest mean log-loss wins (ties → smaller α). Test data is never used.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(task.real_labels, dtype=object)
    n_min = min(int(np.sum(y == lab)) for lab in set(y.tolist()))
    skf = StratifiedKFold(n_splits=max(2, min(folds, n_min)), shuffle=True, random_state=task.seed)
    losses: dict[float, list[float]] = {a: [] for a in grid}
    for f, (tr, va) in enumerate(skf.split(task.real, y)):
        fold = replace(task, real=task.real[tr], real_labels=y[tr], info={})
        mask = None
        if filtered:
            p_other = label_consistency_scores(fold.real, fold.real_labels, task.pool, task.pool_labels)
            tau = task.tau if task.tau is not None else task.info.get("tau", 1.0)
            mask = _filter_mask(p_other, task.pool_labels, task.quotas, float(tau))
        order = _herding_order(fold, mask)
        for a in grid:
            chosen = _blend(fold, order, a, np.random.default_rng([task.seed, 23, f]), mask)
            x = np.concatenate([fold.real, task.pool[chosen]]).astype(np.float64)
            model = LogisticRegression(C=1.0, max_iter=2000).fit(
                x, np.concatenate([fold.real_labels, task.pool_labels[chosen]])
            )
            losses[a].append(
                log_loss(y[va], model.predict_proba(task.real[va].astype(np.float64)), labels=model.classes_)
            )
    means = {a: float(np.mean(v)) for a, v in losses.items()}
    best = min(means.values())
    alpha = min(a for a, v in means.items() if v <= best + 1e-12)
    task.info["alpha_cv_logloss"] = {str(a): round(v, 5) for a, v in means.items()}
    task.info["alpha"] = alpha
    return float(alpha)


def _s_blend_cv(task: SelectionTask, mask: np.ndarray | None = None) -> np.ndarray:
    alpha = choose_alpha(task, filtered=mask is not None)
    return _blend(task, _herding_order(task, mask), alpha, _rng(task, 6), mask)


def _pseudo_targets(task: SelectionTask) -> dict[str, np.ndarray]:
    """Per label: labelled rows of L ∪ unlabelled rows the few-shot logistic regression assigns to L."""
    out = {lab: task.real[task.real_labels == lab] for lab in task.quotas}
    if len(task.unlabelled):
        model = fit_filter_classifier(task.real, task.real_labels, FILTER_C)
        pred = model.predict(np.asarray(task.unlabelled, np.float64)).astype(str)
        for lab in task.quotas:
            out[lab] = np.concatenate([out[lab], task.unlabelled[pred == lab]])
    return out


def _core_per_label(
    task: SelectionTask,
    name: str,
    targets: dict[str, np.ndarray],
    mask: np.ndarray | None = None,
    needs_weights: bool = False,
) -> np.ndarray:
    """Run core strategy ``name`` per label on the (masked) pool rows of that label against ``targets[L]``."""
    from synalign.alignment import get_strategy, kmm_weights

    fn = get_strategy(name)
    rng = _rng(task, 1)
    out = []
    for lab, q in task.quotas.items():
        rows = np.flatnonzero((task.pool_labels == lab) & (True if mask is None else mask))
        xs = task.pool[rows]
        if needs_weights:
            w = kmm_weights(xs, targets[lab], bandwidth=task.bandwidth, device=task.device, seed=task.seed)
        else:
            w = np.full(len(rows), 1.0 / len(rows))
        chosen = np.asarray(fn(xs, targets[lab], w, q, bandwidth=task.bandwidth, rng=rng, device=task.device))
        out.append(rows[chosen])
    return np.sort(np.concatenate(out)).astype(np.int64)


def _ot_mass(target: np.ndarray, pool: np.ndarray, *, rho: float = 1.0, reg: float = 0.05) -> np.ndarray:
    """Plan mass each pool row receives under semi-relaxed entropic OT from the uniform real target.

    Source (real) marginal fixed, pool marginal free up to a KL penalty ``rho`` (POT
    ``ot.unbalanced.sinkhorn_unbalanced`` with ``reg_m=(inf, rho)``, Chizat et al. 2018); squared-Euclidean
    cost divided by its median; ``reg`` is the entropic regularisation in those units. Shape (len(pool),).
    """
    import warnings

    import ot

    cost = ot.dist(np.asarray(target, np.float64), np.asarray(pool, np.float64), metric="sqeuclidean")
    cost /= max(float(np.median(cost)), 1e-12)
    a = np.full(len(target), 1.0 / len(target))
    b = np.full(len(pool), 1.0 / len(pool))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        plan = ot.unbalanced.sinkhorn_unbalanced(
            a, b, cost, reg, (float("inf"), rho), reg_type="entropy", numItermax=2000
        )
    return np.asarray(plan).sum(axis=0)


def _ot_select(
    task: SelectionTask, targets: dict[str, np.ndarray], mask: np.ndarray | None = None
) -> np.ndarray:
    out = []
    rng = _rng(task, 3)
    for lab, q in task.quotas.items():
        rows = np.flatnonzero((task.pool_labels == lab) & (True if mask is None else mask))
        mass = _ot_mass(targets[lab], task.pool[rows])
        perm = rng.permutation(len(rows))
        out.append(rows[perm[np.argsort(-mass[perm], kind="stable")[:q]]])
    return np.sort(np.concatenate(out)).astype(np.int64)


def _filtered(task: SelectionTask) -> np.ndarray:
    tau = task.tau if task.tau is not None else choose_tau(task)
    p_other = label_consistency_scores(task.real, task.real_labels, task.pool, task.pool_labels)
    keep = _filter_mask(p_other, task.pool_labels, task.quotas, tau)
    task.info["tau"] = tau
    task.info["filtered_out"] = int((~keep).sum())
    return keep


# ---------------------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------------------


def _labelled_targets(task: SelectionTask) -> dict[str, np.ndarray]:
    return {lab: task.real[task.real_labels == lab] for lab in task.quotas}


def _unlabelled_targets(task: SelectionTask) -> dict[str, np.ndarray]:
    if not len(task.unlabelled):
        raise InputError("strategy needs an unlabelled real pool (n_unlabelled > 0)")
    return {lab: task.unlabelled for lab in task.quotas}


def _s_random(task: SelectionTask, mask: np.ndarray | None = None) -> np.ndarray:
    return _random_per_label(task.pool_labels, task.quotas, _rng(task, 0), mask)


_TARGETS = {"labelled": _labelled_targets, "unlabelled": _unlabelled_targets, "pseudo": _pseudo_targets}


def _make(kind: str, target: str = "labelled") -> Callable[[SelectionTask, np.ndarray | None], np.ndarray]:
    def run(task: SelectionTask, mask: np.ndarray | None = None) -> np.ndarray:
        if kind == "random":
            return _s_random(task, mask)
        targets = _TARGETS[target](task)
        if kind == "ot":
            return _ot_select(task, targets, mask)
        return _core_per_label(
            task, kind, targets, mask, needs_weights=kind in ("top_weight", "proportional")
        )

    return run


_BASE: dict[str, Callable[[SelectionTask, np.ndarray | None], np.ndarray]] = {
    "random": _make("random"),
    "top_weight": _make("top_weight"),
    "proportional": _make("proportional"),
    "herding": _make("herding"),
    "herding_unlabelled": _make("herding", "unlabelled"),
    "herding_pseudo": _make("herding", "pseudo"),
    "top_weight_pseudo": _make("top_weight", "pseudo"),
    "top_weight_unlabelled": _make("top_weight", "unlabelled"),
    "ot_labelled": _make("ot", "labelled"),
    "ot_pseudo": _make("ot", "pseudo"),
    "blend_cv": _s_blend_cv,
}


def _with_filter(base: str) -> EvalStrategy:
    def run(task: SelectionTask) -> np.ndarray:
        return _BASE[base](task, _filtered(task))

    return run


def _unmasked(fn: Callable[[SelectionTask, np.ndarray | None], np.ndarray]) -> EvalStrategy:
    def run(task: SelectionTask) -> np.ndarray:
        return fn(task, None)

    return run


EVAL_STRATEGIES: dict[str, EvalStrategy] = {name: _unmasked(fn) for name, fn in _BASE.items()}
EVAL_STRATEGIES["filter"] = _with_filter("random")
for _name in (
    "top_weight",
    "proportional",
    "herding",
    "herding_unlabelled",
    "herding_pseudo",
    "ot_pseudo",
    "blend_cv",
):
    EVAL_STRATEGIES[f"filter+{_name}"] = _with_filter(_name)

#: The strategies compared by default (``synalign eval`` without ``--strategy``).
DEFAULT_STRATEGIES: tuple[str, ...] = (
    "random",
    "top_weight",
    "proportional",
    "herding",
    "herding_unlabelled",
    "herding_pseudo",
    "ot_labelled",
    "ot_pseudo",
    "filter",
    "filter+top_weight",
    "filter+proportional",
    "filter+herding",
    "filter+herding_unlabelled",
    "filter+herding_pseudo",
    "blend_cv",
    "filter+blend_cv",
)


def select(name: str, task: SelectionTask) -> np.ndarray:
    """Run strategy ``name`` and check its result: sorted distinct pool indices with exactly the quotas.

    Raises:
        InputError: unknown strategy name, or a result that breaks the quotas.
    """
    if name not in EVAL_STRATEGIES:
        raise InputError(f"unknown selection strategy {name!r}; known: {', '.join(EVAL_STRATEGIES)}")
    chosen = np.asarray(EVAL_STRATEGIES[name](task), dtype=np.int64)
    if len(np.unique(chosen)) != len(chosen):
        raise InputError(f"strategy {name!r} returned repeated indices")
    got = {lab: int(np.sum(task.pool_labels[chosen] == lab)) for lab in task.quotas}
    if got != dict(task.quotas):
        raise InputError(f"strategy {name!r} broke the per-label quotas: {got} != {task.quotas}")
    return chosen


def with_tau(task: SelectionTask, tau: float | None) -> SelectionTask:
    """A copy of ``task`` with a fixed τ (and a fresh ``info``)."""
    return replace(task, tau=tau, info={})
