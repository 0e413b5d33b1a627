"""Selection (SynAlign stage 3, second half): which synthetic rows to keep, by named strategy.

The one job of this module is naming and composing selection strategies, which pick an accepted subset of a
labelled synthetic pool, ``quotas[label]`` rows per label: **the** registry of named strategies
(:data:`SELECTION_STRATEGIES`, :func:`register_strategy`; the core registers the per-label functions of
:mod:`synalign.selectors`, and :mod:`synalign.evals.strategies` registers its evaluation-only ones); strategy
objects (:class:`PerLabel` runs a per-label function over every label, :class:`FilterThen` is the
``"filter+NAME"`` combinator, and :func:`parse_strategy` is the one place that turns a name into them); and the
one cross-validation chooser (:func:`cross_validate`) with the filter threshold it picks
(:func:`choose_threshold`). The label-consistency filter's classifier and keep mask are
:mod:`synalign.consistency`'s.

Strategy objects run against a :class:`SelectionContext` that says how a per-label function is fed (bandwidth,
weights, random stream, real target): :func:`synalign.alignment.align` provides one for a run,
:class:`synalign.evals.strategies.SelectionTask` one for the evaluation. DESIGN §3.4: matching a tiny labelled
target can over-fit it, so the default (``"filter"``) was chosen by held-out measurement (``evals/RESULTS.md``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import numpy as np

from synalign._threads import single_blas_thread
from synalign.consistency import TAU_GRID, consistency_mask, label_consistency_scores
from synalign.errors import InputError
from synalign.selectors import (
    SelectionStrategy,
    select_herding,
    select_proportional,
    select_random,
    select_top_weight,
)

__all__ = [
    "BUILTIN_STRATEGIES",
    "SELECTION_STRATEGIES",
    "FilterThen",
    "PerLabel",
    "SelectionContext",
    "Strategy",
    "check_strategy",
    "choose_threshold",
    "cross_validate",
    "get_strategy",
    "parse_strategy",
    "register_strategy",
]

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import SupportsRichComparison

C = TypeVar("C", bound="SupportsRichComparison")  # candidates are dict keys and compared (ties)


# ----------------------------------------------------------------------------------------------------
# Strategy objects and the context they run in
# ----------------------------------------------------------------------------------------------------


class SelectionContext(Protocol):
    """What a :class:`Strategy` runs against: one labelled pool, its real set and the per-label quotas.

    Attributes: pool (m, d) and pool_labels (m,) of the synthetic pool; real (n, d) and real_labels (n,);
    quotas: rows to accept per label, in iteration order; seed; tau: a fixed filter threshold or ``None``
    (choose by cross-validation); cv_seed: seed of that cross-validation's folds and draws (``None``: seed);
    cv_warm_start: warm-started fits in it (:func:`cross_validate`). Read-only to a strategy (properties here, so
    that a frozen dataclass is a context too).
    """

    @property
    def pool(self) -> np.ndarray: ...

    @property
    def pool_labels(self) -> np.ndarray: ...

    @property
    def real(self) -> np.ndarray: ...

    @property
    def real_labels(self) -> np.ndarray: ...

    @property
    def quotas(self) -> dict[str, int]: ...

    @property
    def seed(self) -> int: ...

    @property
    def tau(self) -> float | None: ...

    @property
    def cv_seed(self) -> int | None: ...

    @property
    def cv_warm_start(self) -> bool: ...

    def per_label(self, leaf: PerLabel, mask: np.ndarray | None) -> np.ndarray:
        """Run ``leaf`` on each label's (masked) pool rows; sorted pool indices meeting the quotas."""
        ...

    def record_filter(self, tau: float, keep: np.ndarray, cv_logloss: dict[float, float] | None) -> None:
        """Note the filter's τ, its (m,) keep mask and, when τ was cross-validated, the log-loss per τ."""
        ...


class Strategy(ABC):
    """A named selection strategy: ``choose(context, mask)`` → sorted pool indices meeting the quotas."""

    @abstractmethod
    def choose(self, ctx: SelectionContext, mask: np.ndarray | None) -> np.ndarray:
        """Pool indices to accept; ``mask`` ((m,) bool or ``None``) limits the candidates."""


@dataclass(frozen=True)
class PerLabel(Strategy):
    """A per-label function run over every label by the context.

    Attributes:
        fn: the :class:`synalign.selectors.SelectionStrategy`; calling a ``PerLabel`` calls it.
        target: the real rows each label is matched to: ``"labelled"`` (that label's real rows; the only
            target :func:`synalign.alignment.align` has), ``"unlabelled"`` or ``"pseudo"`` (evaluation only).
        uses_weights: ``fn`` reads the KMM weights (a context may skip computing them otherwise).
        stream: which seeded random stream a context that keeps one per strategy draws from
            (``numpy.random.default_rng([seed, stream])`` in the evaluation harness; ``align`` uses one).
    """

    fn: SelectionStrategy
    target: Literal["labelled", "unlabelled", "pseudo"] = "labelled"
    uses_weights: bool = False
    stream: int = 1

    def __call__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self.fn(*args, **kwargs)

    def choose(self, ctx: SelectionContext, mask: np.ndarray | None) -> np.ndarray:
        return ctx.per_label(self, mask)


@dataclass(frozen=True)
class FilterThen(Strategy):
    """``"filter+NAME"``: the label-consistency filter (:mod:`synalign.consistency`), then ``inner``.

    τ is the context's fixed ``tau`` or, if ``None``, :func:`choose_threshold` on the context's real set; rows
    with p_other > τ are dropped (each label keeps at least its quota) and ``inner`` selects among the rest.
    """

    inner: Strategy

    def choose(self, ctx: SelectionContext, mask: np.ndarray | None) -> np.ndarray:
        tau, means = ctx.tau, None
        if tau is None:
            tau, means = choose_threshold(
                ctx.real,
                ctx.real_labels,
                ctx.pool,
                ctx.pool_labels,
                ctx.quotas,
                seed=ctx.seed if ctx.cv_seed is None else ctx.cv_seed,
                warm_start=ctx.cv_warm_start,
            )
        p_other = label_consistency_scores(ctx.real, ctx.real_labels, ctx.pool, ctx.pool_labels)
        keep = consistency_mask(p_other, ctx.pool_labels, ctx.quotas, tau)
        ctx.record_filter(tau, keep, means)
        return self.inner.choose(ctx, keep if mask is None else keep & mask)


# ----------------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------------

#: The registry: name → per-label function or :class:`Strategy` object. ``filter`` / ``filter+NAME`` are
#: not entries; :func:`parse_strategy` builds them.
SELECTION_STRATEGIES: dict[str, SelectionStrategy | Strategy] = {
    "random": PerLabel(select_random, stream=0),
    "top_weight": PerLabel(select_top_weight, uses_weights=True),
    "proportional": PerLabel(select_proportional, uses_weights=True),
    "herding": PerLabel(select_herding),
}

BUILTIN_STRATEGIES: tuple[str, ...] = tuple(SELECTION_STRATEGIES)
"""The core's own entries (fixed at import; the registry grows when :mod:`synalign.evals.strategies` or user
code registers more)."""


def register_strategy(
    name: str,
    fn: SelectionStrategy | Strategy | Callable[..., np.ndarray] | None = None,
    *,
    overwrite: bool = False,
) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]] | None:
    """Register a selection strategy under ``name``: a per-label function
    (:class:`synalign.selectors.SelectionStrategy`) or a :class:`Strategy` object. Without ``fn`` it returns a
    decorator that registers the function (``@register_strategy("name")``).

    Raises:
        InputError: empty name, ``fn`` not callable, or ``name`` taken and ``overwrite`` is false.
    """
    if fn is None:

        def decorator(f: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
            register_strategy(name, f, overwrite=overwrite)
            return f

        return decorator
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"strategy name must be a non-empty string, got {name!r}")
    if not (callable(fn) or isinstance(fn, Strategy)):
        raise InputError(f"strategy {name!r} must be callable, got {type(fn).__name__}")
    if name in SELECTION_STRATEGIES and not overwrite:
        raise InputError(
            f"selection strategy {name!r} is already registered (pass overwrite=True to replace it)"
        )
    SELECTION_STRATEGIES[name] = fn
    return None


def get_strategy(name: str) -> SelectionStrategy | Strategy:
    """The registered entry called ``name`` (as registered).

    Raises:
        InputError: unknown name (the message lists the known ones).
    """
    try:
        return SELECTION_STRATEGIES[name]
    except KeyError:
        raise InputError(
            f"unknown selection strategy {name!r}; known: {', '.join(sorted(SELECTION_STRATEGIES))}"
        ) from None


def parse_strategy(name: str) -> Strategy:
    """The strategy object a name stands for: ``"filter"`` → ``FilterThen(random)``, ``"filter+NAME"`` →
    ``FilterThen(NAME)``, ``NAME`` → NAME (a registered per-label function becomes :class:`PerLabel`).

    Raises:
        InputError: NAME not registered (as :func:`get_strategy`).
    """
    if name == "filter":
        return FilterThen(parse_strategy("random"))
    try:
        if name.startswith("filter+"):
            return FilterThen(_entry(name.removeprefix("filter+")))
        return _entry(name)
    except InputError:
        known = ", ".join(sorted(SELECTION_STRATEGIES))
        raise InputError(
            f"unknown selection strategy {name!r}; known: filter, filter+NAME, {known} (NAME: any of these but filter)"
        ) from None


def _entry(name: str) -> Strategy:
    entry = get_strategy(name)
    return entry if isinstance(entry, Strategy) else PerLabel(entry)


def check_strategy(name: str) -> None:
    """Raise :class:`InputError` unless ``name`` is a registered strategy, ``"filter"`` or ``"filter+NAME"``."""
    parse_strategy(name)


# ----------------------------------------------------------------------------------------------------
# Cross-validation on the real set
# ----------------------------------------------------------------------------------------------------


@single_blas_thread
def cross_validate(
    real: np.ndarray,
    real_labels: Sequence[str] | np.ndarray,
    pool: np.ndarray,
    pool_labels: Sequence[str] | np.ndarray,
    grid: Sequence[C],
    fold_selection: Callable[[int, np.ndarray], Callable[[C], np.ndarray]],
    *,
    seed: int = 0,
    folds: int = 4,
    ties: Literal["largest", "smallest"] = "largest",
    warm_start: bool = False,
) -> tuple[C, dict[C, float]]:
    """Choose a selection parameter by stratified k-fold cross-validation on the real set (never test data).

    For fold f with training rows ``tr`` of the real set, ``fold_selection(f, tr)`` returns a function
    candidate → pool indices (fit what it needs on ``real[tr]`` only). For each candidate, a logistic
    regression (C = 1) is fitted on the fold's real training rows + the selected pool rows, and the log-loss
    on the fold's held-out real rows is recorded (candidates of a fold that select the same rows share one
    fit). The candidate with the lowest mean log-loss wins; ties (within 1e-12) go to the largest or smallest
    candidate (``ties``).

    Args:
        real: (n, d), real_labels (n,): the labelled real set. pool: (m, d), pool_labels (m,): the pool.
        grid: candidates, in reporting order. folds: at most this many (≥ 2, ≤ the rarest label's count).
        warm_start: start each candidate's fit from the fold's previous solution (L-BFGS from a nearby optimum:
            1.6–2.3× less time; the same optimum within the solver's tolerance, which is all a cold start
            guarantees too: the chosen τ agreed in 25 of 30 measured choices, the others within 1.1e-3 mean
            log-loss, ``evals/RESULTS.md`` §10). Off by default so that the evaluation's tables reproduce.

    Returns:
        (best candidate, mean held-out log-loss per candidate in grid order).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray([str(v) for v in real_labels], dtype=object)
    p_labels = np.asarray([str(v) for v in pool_labels], dtype=object)
    n_min = min(int(np.sum(y == lab)) for lab in set(y.tolist()))
    skf = StratifiedKFold(n_splits=max(2, min(folds, n_min)), shuffle=True, random_state=seed)
    losses: dict[C, list[float]] = {c: [] for c in grid}
    for f, (tr, va) in enumerate(skf.split(real, y)):
        pick = fold_selection(f, tr)
        scored: dict[bytes, float] = {}  # candidates that select the same rows share one fit
        model = LogisticRegression(C=1.0, max_iter=2000, warm_start=warm_start)
        for c, held_out in losses.items():
            chosen = np.asarray(pick(c), dtype=np.int64)
            key = np.sort(chosen).tobytes()
            if key not in scored:
                x = np.concatenate([real[tr], pool[chosen]]).astype(np.float64)
                model.fit(x, np.concatenate([y[tr], p_labels[chosen]]))
                proba = model.predict_proba(np.asarray(real[va], np.float64))
                scored[key] = log_loss(y[va], proba, labels=model.classes_)
            held_out.append(scored[key])
    means = {c: float(np.mean(v)) for c, v in losses.items()}
    best = min(means.values())
    near = [c for c, v in means.items() if v <= best + 1e-12]
    return (max(near) if ties == "largest" else min(near)), means


def _random_per_label(
    pool_labels: np.ndarray, quotas: dict[str, int], rng: np.random.Generator, mask: np.ndarray
) -> np.ndarray:
    """Sorted pool indices: ``quotas[label]`` rows per label drawn uniformly among ``mask`` rows."""
    chosen = [
        rng.choice(rows, size=min(q, len(rows)), replace=False)
        for rows, q in ((np.flatnonzero((pool_labels == lab) & mask), q) for lab, q in quotas.items())
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)


def choose_threshold(
    real: np.ndarray,
    real_labels: Sequence[str] | np.ndarray,
    pool: np.ndarray,
    pool_labels: Sequence[str] | np.ndarray,
    quotas: dict[str, int],
    *,
    seed: int = 0,
    grid: Sequence[float] = TAU_GRID,
    folds: int = 4,
    warm_start: bool = False,
) -> tuple[float, dict[float, float]]:
    """The label-consistency filter's τ by :func:`cross_validate` (ties → the larger τ, i.e. less filtering).

    Per fold, the filter is fitted on the fold's real training rows, the pool is filtered at each τ, and the
    per-label quotas are drawn at random from the survivors (stream ``[seed, 17, fold]``).

    Args: real (n, d), real_labels (n,), pool (m, d), pool_labels (m,); quotas: rows per label; warm_start:
        as :func:`cross_validate`.

    Returns:
        (τ, mean held-out log-loss per candidate τ).

    Raises:
        InputError: as :func:`synalign.consistency.label_consistency_scores`.
    """
    y = np.asarray([str(v) for v in real_labels], dtype=object)
    p_labels = np.asarray([str(v) for v in pool_labels], dtype=object)

    def fold_selection(f: int, tr: np.ndarray) -> Callable[[float], np.ndarray]:
        p_other = label_consistency_scores(real[tr], y[tr], pool, p_labels)
        return lambda tau: _random_per_label(
            p_labels,
            quotas,
            np.random.default_rng([seed, 17, f]),
            consistency_mask(p_other, p_labels, quotas, tau),
        )

    return cross_validate(
        real,
        y,
        pool,
        p_labels,
        [float(t) for t in grid],
        fold_selection,
        seed=seed,
        folds=folds,
        ties="largest",
        warm_start=warm_start,
    )
