"""Label-consistency filter: drop synthetic samples that a classifier fitted on the real examples
confidently assigns to another label.

Measured in ``evals/RESULTS.md`` (issue 4): on AG News the LM-generated pools hurt when added blindly
(real only 0.829 → + random 1,000 synthetic 0.801), and this filter followed by random selection gave
the best worst case over SST-2 and AG News of all the selection strategies compared (AG News +3.05 points over
random selection of the same size; SST-2 within noise of random), while every pure distribution-matching
selection (KMM top weight, kernel herding, OT) lost 1–4 points on SST-2. It is the default selection.

Method: p_other(x) = max_{c ≠ y(x)} p(c | x) from an L2-regularised logistic regression fitted on the real
labelled embeddings only; a sample is kept when p_other(x) ≤ τ. τ is chosen by stratified k-fold
cross-validation on the real set (never on test data): for each fold and candidate τ, filter the pool with a
classifier fitted on the fold's training part, draw the per-label quota at random from the survivors, fit the
downstream logistic regression on (fold's real training part + selection) and score the log-loss on the fold's
held-out real rows; the τ with the lowest mean log-loss wins (ties → the larger τ, i.e. less filtering).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from synalign.errors import InputError

__all__ = ["TAU_GRID", "FILTER_C", "fit_filter_classifier", "label_consistency_scores", "consistency_mask", "choose_threshold", "random_per_label"]

#: Candidate thresholds τ (1.0 = keep everything).
TAU_GRID: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Inverse L2 strength of the filter's logistic regression (fitted on few real examples).
FILTER_C = 10.0


def fit_filter_classifier(x: np.ndarray, y: np.ndarray, c: float = FILTER_C):  # noqa: ANN201 - sklearn estimator
    """L2 logistic regression (C = ``c``) on (n, d) embeddings ``x`` and n labels ``y``; returns the fitted model."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000).fit(np.asarray(x, np.float64), np.asarray(y, dtype=object))


def label_consistency_scores(
    real: np.ndarray, real_labels: Sequence[str], pool: np.ndarray, pool_labels: Sequence[str]
) -> np.ndarray:
    """p_other(x) for every pool row: the largest probability of a label other than the generated one.

    Args:
        real: (n, d) real embeddings; real_labels: n labels (at least two distinct).
        pool: (m, d) synthetic embeddings; pool_labels: m generated labels (each must occur in real_labels).

    Returns:
        (m,) float array in [0, 1].

    Raises:
        InputError: fewer than two real labels, or a pool label absent from the real labels.
    """
    y = np.asarray([str(v) for v in real_labels], dtype=object)
    if len(set(y.tolist())) < 2:
        raise InputError("the label-consistency filter needs real examples of at least two labels")
    model = fit_filter_classifier(real, y, FILTER_C)
    classes = [str(c) for c in model.classes_]
    col = {c: i for i, c in enumerate(classes)}
    missing = sorted({str(lab) for lab in pool_labels} - set(col))
    if missing:
        raise InputError(f"synthetic label(s) {missing} have no real examples")
    proba = model.predict_proba(np.asarray(pool, np.float64))
    own = np.asarray([col[str(lab)] for lab in pool_labels], dtype=np.int64)
    proba[np.arange(len(own)), own] = -1.0
    return proba.max(axis=1) if len(own) else np.zeros(0)


def consistency_mask(
    p_other: np.ndarray, pool_labels: Sequence[str], quotas: dict[str, int], tau: float
) -> np.ndarray:
    """(m,) bool: rows with p_other ≤ τ; a label left with fewer than its quota keeps its quota of least
    suspect rows, so every label can still fill its quota."""
    labels = np.asarray([str(v) for v in pool_labels], dtype=object)
    keep = np.asarray(p_other) <= tau
    for label, quota in quotas.items():
        rows = np.flatnonzero(labels == label)
        if int(keep[rows].sum()) < quota:
            keep[rows[np.argsort(np.asarray(p_other)[rows], kind="stable")[:quota]]] = True
    return keep


def random_per_label(
    pool_labels: Sequence[str], quotas: dict[str, int], rng: np.random.Generator, mask: np.ndarray | None = None
) -> np.ndarray:
    """Sorted pool indices: ``quotas[label]`` rows per label drawn uniformly (among ``mask`` rows if given)."""
    labels = np.asarray([str(v) for v in pool_labels], dtype=object)
    chosen: list[np.ndarray] = []
    for label in quotas:  # in the caller's order, so a seed reproduces the same draw
        rows = np.flatnonzero((labels == label) & (mask if mask is not None else True))
        chosen.append(rng.choice(rows, size=min(quotas[label], len(rows)), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)


def choose_threshold(
    real: np.ndarray,
    real_labels: Sequence[str],
    pool: np.ndarray,
    pool_labels: Sequence[str],
    quotas: dict[str, int],
    *,
    seed: int = 0,
    grid: Sequence[float] = TAU_GRID,
    folds: int = 4,
) -> tuple[float, dict[float, float]]:
    """Choose τ by cross-validation on the real set (see the module docstring).

    Returns:
        (τ, mean held-out log-loss per candidate τ).

    Raises:
        InputError: as :func:`label_consistency_scores`.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray([str(v) for v in real_labels], dtype=object)
    p_labels = np.asarray([str(v) for v in pool_labels], dtype=object)
    n_min = min(int(np.sum(y == lab)) for lab in set(y.tolist()))
    folds = max(2, min(folds, n_min))
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    losses: dict[float, list[float]] = {float(t): [] for t in grid}
    for f, (tr, va) in enumerate(skf.split(real, y)):
        p_other = label_consistency_scores(real[tr], y[tr], pool, p_labels)
        for tau in losses:
            keep = consistency_mask(p_other, p_labels, quotas, tau)
            chosen = random_per_label(p_labels, quotas, np.random.default_rng([seed, 17, f]), keep)
            x = np.concatenate([real[tr], pool[chosen]]).astype(np.float64)
            yy = np.concatenate([y[tr], p_labels[chosen]])
            model = LogisticRegression(C=1.0, max_iter=2000).fit(x, yy)
            proba = model.predict_proba(np.asarray(real[va], np.float64))
            losses[tau].append(log_loss(y[va], proba, labels=model.classes_))
    means = {tau: float(np.mean(v)) for tau, v in losses.items()}
    best = min(means.values())
    return max(t for t, v in means.items() if v <= best + 1e-12), means
