"""The evaluation's selection strategies (issue 4: "choose the alignment default by measurement").

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

KMM weights come from :func:`synalign.kmm.kmm_weights` (pairwise Frank–Wolfe, 200 iterations), which
are sparse: at most 201 non-zero weights per label. When a label's quota is larger than that,
``top_weight`` and ``proportional`` take the non-zero-weight rows and fill the rest of the quota at random
(ties of zero weight are broken at random), so at m = 1,000 they are part KMM, part random; at m = 300 they
are pure KMM (see ``evals/RESULTS.md``).

One job: the evaluation's side of selection. Names, parsing (``filter+X`` is
:class:`synalign.selection.FilterThen`) and the cross-validation chooser are :mod:`synalign.selection`'s, the
per-label functions :mod:`synalign.selectors`'; this module registers the evaluation-only strategies into that
registry with :func:`synalign.selection.register_strategy`, and :class:`SelectionTask` is the
:class:`synalign.selection.SelectionContext` they run in: a single bandwidth, an unlabelled real pool and
pseudo-labelled targets, KMM weights only for strategies that read them, and one seeded random stream per
strategy (``default_rng([seed, stream])``). The eval-only strategies need that context: ``align`` (a run) has
only the labelled real rows and refuses them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from synalign.consistency import (
    FILTER_C,
    TAU_GRID,
    consistency_mask,
    fit_filter_classifier,
    label_consistency_scores,
)
from synalign.errors import InputError
from synalign.selection import (
    PerLabel,
    SelectionContext,
    Strategy,
    choose_threshold,
    cross_validate,
    parse_strategy,
    register_strategy,
)
from synalign.selectors import select_herding, select_top_weight, top_k

__all__ = [
    "ALPHA_GRID",
    "DEFAULT_STRATEGIES",
    "EVAL_STRATEGIES",
    "BlendCV",
    "SelectionTask",
    "balanced_quotas",
    "choose_alpha",
    "choose_tau",
    "select",
    "select_ot",
    "with_tau",
]


@dataclass(frozen=True)
class SelectionTask:
    """Everything a strategy may use for one seed (the evaluation's :class:`synalign.selection.SelectionContext`).

    Attributes:
        pool: (n, d) unit-norm embeddings of the synthetic pool; pool_labels: (n,) generated labels.
        real: (r, d) embeddings of the labelled few-shot real set; real_labels: (r,) labels.
        unlabelled: (u, d) embeddings of the unlabelled real pool (u may be 0).
        quotas: rows to select per label (see :func:`balanced_quotas`).
        bandwidth: RBF bandwidth σ (Euclidean units).
        seed: random seed of this selection.
        device: torch device for the kernel computations.
        tau: label-consistency threshold; ``None`` = choose by cross-validation (:func:`choose_tau`).
        cv_seed: seed of that cross-validation (``None``: ``seed``); cv_warm_start: warm-started CV fits.
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
    cv_seed: int | None = None
    cv_warm_start: bool = False
    info: dict = field(default_factory=dict)

    def rows(self, label: str, mask: np.ndarray | None) -> np.ndarray:
        """Pool indices of ``label`` (among ``mask`` rows if given)."""
        return np.flatnonzero((self.pool_labels == label) & (True if mask is None else mask))

    def per_label(self, leaf: PerLabel, mask: np.ndarray | None) -> np.ndarray:
        """Run ``leaf`` per label on the (masked) pool rows of that label against its target
        (:data:`_TARGETS`), with KMM weights to that target if ``leaf.uses_weights`` (else uniform) and the
        stream ``default_rng([seed, leaf.stream])``; sorted pool indices."""
        from synalign.kmm import kmm_weights

        targets = _TARGETS[leaf.target](self)
        rng = np.random.default_rng([self.seed, leaf.stream])
        out = []
        for lab, q in self.quotas.items():
            rows = self.rows(lab, mask)
            xs = self.pool[rows]
            if leaf.uses_weights:
                w = kmm_weights(
                    xs, targets[lab], bandwidth=self.bandwidth, device=self.device, seed=self.seed
                )
            else:
                w = np.full(len(rows), 1.0 / len(rows))
            chosen = np.asarray(
                leaf(xs, targets[lab], w, q, bandwidth=self.bandwidth, rng=rng, device=self.device)
            )
            out.append(rows[chosen])
        return np.sort(np.concatenate(out)).astype(np.int64)

    def record_filter(self, tau: float, keep: np.ndarray, cv_logloss: dict[float, float] | None) -> None:
        """Diagnostics in ``info``: ``tau_cv_logloss`` (when τ was cross-validated), ``tau``, ``filtered_out``."""
        if cv_logloss is not None:
            _record_tau_cv(self, cv_logloss)
        self.info["tau"] = tau
        self.info["filtered_out"] = int((~keep).sum())


def balanced_quotas(pool_labels: Sequence[str] | np.ndarray, labels: Sequence[str], m: int) -> dict[str, int]:
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


def _rng(task: SelectionTask, salt: int) -> np.random.Generator:
    return np.random.default_rng([task.seed, salt])


def _record_tau_cv(task: SelectionTask, means: dict[float, float]) -> None:
    task.info["tau_cv_logloss"] = {str(t): round(v, 5) for t, v in means.items()}


def choose_tau(task: SelectionTask, grid: Sequence[float] = TAU_GRID, folds: int = 4) -> float:
    """Filter threshold τ by cross-validation on the labelled few-shot set
    (:func:`synalign.selection.choose_threshold`; test data is never used). Records the per-τ log-loss in
    ``task.info["tau_cv_logloss"]``."""
    tau, means = choose_threshold(
        task.real,
        task.real_labels,
        task.pool,
        task.pool_labels,
        task.quotas,
        seed=task.seed,
        grid=grid,
        folds=folds,
    )
    _record_tau_cv(task, means)
    return float(tau)


# ---------------------------------------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------------------------------------


def _labelled_targets(task: SelectionTask) -> dict[str, np.ndarray]:
    return {lab: task.real[task.real_labels == lab] for lab in task.quotas}


def _unlabelled_targets(task: SelectionTask) -> dict[str, np.ndarray]:
    if not len(task.unlabelled):
        raise InputError("strategy needs an unlabelled real pool (n_unlabelled > 0)")
    return {lab: task.unlabelled for lab in task.quotas}


def _pseudo_targets(task: SelectionTask) -> dict[str, np.ndarray]:
    """Per label: labelled rows of L ∪ unlabelled rows the few-shot logistic regression assigns to L."""
    out = _labelled_targets(task)
    if len(task.unlabelled):
        model = fit_filter_classifier(task.real, task.real_labels, FILTER_C)
        pred = model.predict(np.asarray(task.unlabelled, np.float64)).astype(str)
        for lab in task.quotas:
            out[lab] = np.concatenate([out[lab], task.unlabelled[pred == lab]])
    return out


_TARGETS = {"labelled": _labelled_targets, "unlabelled": _unlabelled_targets, "pseudo": _pseudo_targets}


# ---------------------------------------------------------------------------------------------------------
# kernel-herding blend with a cross-validated fraction
# ---------------------------------------------------------------------------------------------------------

ALPHA_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Candidate herding fractions α of ``blend_cv`` (0 = random, 1 = kernel herding)."""


def _herding_order(task: SelectionTask, mask: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per label: the first ``quota`` kernel-herding picks (pool indices, in pick order) toward the labelled
    real rows of that label, among the (masked) pool rows of the label."""
    out = {}
    for lab, q in task.quotas.items():
        rows = task.rows(lab, mask)
        target = task.real[task.real_labels == lab]
        out[lab] = rows[
            select_herding(task.pool[rows], target, None, q, bandwidth=task.bandwidth, device=task.device)
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
        nh = round(alpha * q)
        head = order[lab][:nh]
        rest = np.setdiff1d(task.rows(lab, mask), head)
        out.append(np.concatenate([head, rng.choice(rest, size=q - nh, replace=False)]))
    return np.sort(np.concatenate(out)).astype(np.int64)


def choose_alpha(
    task: SelectionTask, *, filtered: bool = False, grid: Sequence[float] = ALPHA_GRID, folds: int = 4
) -> float:
    """Choose the herding fraction α of ``blend_cv`` by :func:`synalign.selection.cross_validate` on the
    few-shot set (ties → smaller α; test data is never used).

    Per fold, herding targets only the fold's training rows (and, with ``filtered``, the label-consistency
    filter at ``task.tau`` is refitted on them); for each α the blend is selected (stream ``[seed, 23, fold]``).
    Records ``alpha_cv_logloss`` and ``alpha`` in ``task.info``.
    """
    y = np.asarray(task.real_labels, dtype=object)

    def fold_selection(f: int, tr: np.ndarray) -> Callable[[float], np.ndarray]:
        fold = replace(task, real=task.real[tr], real_labels=y[tr], info={})
        mask = None
        if filtered:
            p_other = label_consistency_scores(fold.real, fold.real_labels, task.pool, task.pool_labels)
            tau = task.tau if task.tau is not None else task.info.get("tau", 1.0)
            mask = consistency_mask(p_other, task.pool_labels, task.quotas, float(tau))
        order = _herding_order(fold, mask)
        return lambda a: _blend(fold, order, a, np.random.default_rng([task.seed, 23, f]), mask)

    alpha, means = cross_validate(
        task.real,
        y,
        task.pool,
        task.pool_labels,
        grid,
        fold_selection,
        seed=task.seed,
        folds=folds,
        ties="smallest",
    )
    task.info["alpha_cv_logloss"] = {str(a): round(v, 5) for a, v in means.items()}
    task.info["alpha"] = alpha
    return float(alpha)


class BlendCV(Strategy):
    """``blend_cv``: per label, the first α·quota kernel-herding picks plus random rows, α by :func:`choose_alpha`.

    Needs a :class:`SelectionTask` (the evaluation's context).
    """

    def choose(self, ctx: SelectionContext, mask: np.ndarray | None) -> np.ndarray:
        if not isinstance(ctx, SelectionTask):
            raise InputError(
                "selection strategy 'blend_cv' runs only in the evaluation harness (synalign eval)"
            )
        alpha = choose_alpha(ctx, filtered=mask is not None)
        return _blend(ctx, _herding_order(ctx, mask), alpha, _rng(ctx, 6), mask)


# ---------------------------------------------------------------------------------------------------------
# optimal transport
# ---------------------------------------------------------------------------------------------------------


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


def select_ot(
    synthetic: np.ndarray,
    real: np.ndarray,
    weights: np.ndarray,
    k: int,
    *,
    rng: np.random.Generator,
    **_: object,
) -> np.ndarray:
    """Per-label ``ot_*``: the k pool rows receiving the most plan mass under semi-relaxed entropic OT from the
    real target (:func:`_ot_mass`), ties at random. Args as :class:`synalign.selectors.SelectionStrategy`.

    Returns: (k,) int64 indices. Raises: InputError: k outside [0, m].
    """
    return top_k(_ot_mass(real, synthetic), k, rng)


# ---------------------------------------------------------------------------------------------------------
# registration and the names compared
# ---------------------------------------------------------------------------------------------------------

#: The evaluation-only strategies, registered into :data:`synalign.selection.SELECTION_STRATEGIES` on import.
_EVAL_ONLY: dict[str, Strategy] = {
    "herding_unlabelled": PerLabel(select_herding, target="unlabelled"),
    "herding_pseudo": PerLabel(select_herding, target="pseudo"),
    "top_weight_pseudo": PerLabel(select_top_weight, target="pseudo", uses_weights=True),
    "top_weight_unlabelled": PerLabel(select_top_weight, target="unlabelled", uses_weights=True),
    "ot_labelled": PerLabel(select_ot, target="labelled", stream=3),
    "ot_pseudo": PerLabel(select_ot, target="pseudo", stream=3),
    "blend_cv": BlendCV(),
}
for _name, _strategy in _EVAL_ONLY.items():
    register_strategy(_name, _strategy)

_CORE = ("random", "top_weight", "proportional", "herding")
_FILTERED = (
    "top_weight",
    "proportional",
    "herding",
    "herding_unlabelled",
    "herding_pseudo",
    "ot_pseudo",
    "blend_cv",
)

#: Every name the evaluation has compared (a list of names; the strategies are in the core registry).
EVAL_STRATEGIES: tuple[str, ...] = (*_CORE, *_EVAL_ONLY, "filter", *(f"filter+{n}" for n in _FILTERED))

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
    """Run strategy ``name`` (:func:`synalign.selection.parse_strategy`) on ``task`` and check its result:
    sorted distinct pool indices with exactly the quotas.

    Raises:
        InputError: unknown strategy name, or a result that breaks the quotas.
    """
    chosen = np.asarray(parse_strategy(name).choose(task, None), dtype=np.int64)
    if len(np.unique(chosen)) != len(chosen):
        raise InputError(f"strategy {name!r} returned repeated indices")
    got = {lab: int(np.sum(task.pool_labels[chosen] == lab)) for lab in task.quotas}
    if got != dict(task.quotas):
        raise InputError(f"strategy {name!r} broke the per-label quotas: {got} != {task.quotas}")
    return chosen


def with_tau(task: SelectionTask, tau: float | None) -> SelectionTask:
    """A copy of ``task`` with a fixed τ (and a fresh ``info``)."""
    return replace(task, tau=tau, info={})
