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
held-out real rows; the τ with the lowest mean log-loss wins (ties → the larger τ, i.e. less filtering). That
choice is :func:`synalign.selection.choose_threshold` (the shared cross-validation chooser); the ``"filter"`` /
``"filter+NAME"`` strategies are :class:`synalign.selection.FilterThen`. This module's one job is the filter's
classifier, scores and keep mask.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from synalign._threads import single_blas_thread

__all__ = ["FILTER_C", "TAU_GRID", "consistency_mask", "fit_filter_classifier", "label_consistency_scores"]

#: Candidate thresholds τ (1.0 = keep everything).
TAU_GRID: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Inverse L2 strength of the filter's logistic regression (fitted on few real examples).
FILTER_C = 10.0

#: Fitted filter classifiers kept by :func:`fit_filter_classifier` (a run uses 5: the whole real set + 4 folds).
_FIT_CACHE_SIZE = 16
_FITTED: OrderedDict[bytes, Any] = OrderedDict()
_FIT_LOCK = threading.Lock()


@single_blas_thread
def fit_filter_classifier(x: np.ndarray, y: np.ndarray, c: float = FILTER_C, *, memoise: bool = True):
    """L2 logistic regression (C = ``c``) on (n, d) embeddings ``x`` and n labels ``y``; returns the fitted model.

    Fits are memoised by content (the bytes of ``x``, the labels and ``c``; the latest
    :data:`_FIT_CACHE_SIZE`): a run's real set does not change between rounds, so from round 2 on the filter
    and the cross-validation folds reuse the classifiers of round 1. Treat the returned model as read-only.
    ``memoise=False`` fits without touching the memo (a one-off fit, e.g. real + synthetic in
    :mod:`synalign.utility`, must not evict the real-set fits).
    """
    from sklearn.linear_model import LogisticRegression

    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.asarray([str(v) for v in y], dtype=object)
    if not memoise:
        return LogisticRegression(C=c, max_iter=2000).fit(x, y)
    digest = hashlib.blake2b(x.tobytes(), digest_size=16)
    digest.update(repr((x.shape, c)).encode())
    digest.update("\x1f".join(y.tolist()).encode())
    key = digest.digest()
    with _FIT_LOCK:
        if key in _FITTED:
            _FITTED.move_to_end(key)
            return _FITTED[key]
    model = LogisticRegression(C=c, max_iter=2000).fit(x, y)
    with _FIT_LOCK:
        _FITTED[key] = model
        while len(_FITTED) > _FIT_CACHE_SIZE:
            _FITTED.popitem(last=False)
    return model


def label_consistency_scores(
    real: np.ndarray,
    real_labels: Sequence[str] | np.ndarray,
    pool: np.ndarray,
    pool_labels: Sequence[str] | np.ndarray,
) -> np.ndarray:
    """p_other(x) for every pool row: the largest probability of a label other than the generated one.

    A row whose label has no example in ``real`` cannot be judged and scores 0 (kept); so do all rows when
    ``real`` holds fewer than two labels. That happens inside a cross-validation fold when a label has a single
    real example (it lands in the fold's held-out part); the run itself checks that every synthetic label has
    real examples (:func:`synalign.alignment.align`).

    Args:
        real: (n, d) real embeddings; real_labels: n labels.
        pool: (m, d) synthetic embeddings; pool_labels: m generated labels.

    Returns:
        (m,) float array in [0, 1].
    """
    y = np.asarray([str(v) for v in real_labels], dtype=object)
    labels = np.asarray([str(v) for v in pool_labels], dtype=object)
    p_other = np.zeros(len(labels))
    if len(set(y.tolist())) < 2 or not len(labels):
        return p_other
    model = fit_filter_classifier(real, y, FILTER_C)
    col = {str(c): i for i, c in enumerate(model.classes_)}
    seen = np.asarray([lab in col for lab in labels.tolist()], dtype=bool)
    if not seen.any():
        return p_other
    proba = model.predict_proba(np.asarray(pool, np.float64)[seen])
    own = np.asarray([col[lab] for lab in labels[seen].tolist()], dtype=np.int64)
    proba[np.arange(len(own)), own] = -1.0
    p_other[seen] = proba.max(axis=1)
    return p_other


def consistency_mask(
    p_other: np.ndarray, pool_labels: Sequence[str] | np.ndarray, quotas: dict[str, int], tau: float
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
