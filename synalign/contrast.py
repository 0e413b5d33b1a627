"""Contrastive demonstrations: which other labels a label is confused with, and which of their real examples to
show beside its own (issue "Data that helps", item 1).

A continuation prompt that shows only lines of the target label tells a base model what the label looks like,
not what separates it from its neighbours; on labels that differ by shades the generated texts blur into each
other. A contrastive prompt first shows a few lines of the *confusable* labels, each with its own label, then
the target label's demonstrations and its open line. Precedents: label-aware / contrastive demonstrations in
few-shot generation (ProGen, Ye et al., EMNLP Findings 2022, feeds back in-context examples; AttrPrompt, Yu et
al., NeurIPS 2023 Datasets, §3, class-specific attributes written against similar classes).

"Confusable" is measured on the real examples alone: a logistic regression on the sentence embeddings,
cross-validated (each text scored by a model that never saw it), gives the soft confusion

.. math::

    C_{ab} = \\frac{1}{|a|} \\sum_{i: y_i = a} \\hat p_{-i}(b \\mid x_i), \\qquad
    s(a, b) = C_{ab} + C_{ba}

and a label's neighbours are the ``b ≠ a`` of largest ``s(a, b)``. Of each neighbour, the real examples
shown are those nearest (cosine) to the cluster's demonstration centroid: the near misses of that region.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["label_confusion", "confusable_labels", "contrast_examples"]


def label_confusion(embeddings: np.ndarray, labels: Sequence[str], *, folds: int = 5, seed: int = 0
                    ) -> tuple[list[str], np.ndarray]:
    """The cross-validated soft confusion matrix ``C`` of the module docstring.

    Args:
        embeddings: (n, d) float, real examples' sentence embeddings.
        labels: (n,) their labels.
        folds: cross-validation folds, lowered to the smallest label's count (at least 2).
        seed: seed of the fold split.

    Returns:
        (sorted label values, (L, L) float matrix: row a = mean predicted probability of each label over a's
        texts, each row summing to 1).

    Raises:
        ValueError: fewer than two labels, or lengths that differ.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.asarray([str(label) for label in labels], dtype=object)
    x = np.asarray(embeddings, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} embeddings but {len(y)} labels")
    names, counts = np.unique(y, return_counts=True)
    if len(names) < 2:
        raise ValueError("a label confusion needs at least two labels")
    index = {name: i for i, name in enumerate(names)}
    codes = np.asarray([index[v] for v in y])
    if counts.min() < 2:  # too few to cross-validate: the centroid similarities stand in (rows sum to 1)
        centroids = np.stack([x[codes == i].mean(axis=0) for i in range(len(names))])
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        sims = np.exp(centroids @ centroids.T)
        return [str(n) for n in names], sims / sims.sum(axis=1, keepdims=True)
    split = StratifiedKFold(n_splits=int(min(folds, counts.min())), shuffle=True, random_state=seed)
    proba = cross_val_predict(LogisticRegression(max_iter=2000), x, codes, cv=split, method="predict_proba")
    confusion = np.stack([proba[codes == i].mean(axis=0) for i in range(len(names))])
    return [str(n) for n in names], confusion


def confusable_labels(embeddings: np.ndarray, labels: Sequence[str], *, neighbours: int = 1, seed: int = 0
                      ) -> dict[str, list[str]]:
    """Each label's ``neighbours`` most confusable other labels, by ``s(a, b) = C_ab + C_ba`` (largest first).

    Args:
        embeddings: (n, d) float, the real examples' embeddings.
        labels: (n,) their labels.
        neighbours: how many other labels per label (capped at the number of other labels).
        seed: seed of the cross-validation split.

    Returns:
        ``{label: [neighbour, ...]}`` for every label.

    Raises:
        ValueError: as :func:`label_confusion`; ``neighbours`` < 1.
    """
    if neighbours < 1:
        raise ValueError(f"neighbours must be >= 1, got {neighbours}")
    names, confusion = label_confusion(embeddings, labels, seed=seed)
    score = confusion + confusion.T
    np.fill_diagonal(score, -np.inf)
    out: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        order = np.argsort(-score[i], kind="stable")[: min(neighbours, len(names) - 1)]
        out[name] = [names[j] for j in order]
    return out


def contrast_examples(embeddings: np.ndarray, labels: Sequence[str], demonstrations: Sequence[int],
                      neighbours: Sequence[str], per_label: int) -> list[tuple[str, list[int]]]:
    """The real examples of each neighbour label to show beside a cluster: the ``per_label`` nearest (cosine) to
    the centroid of the cluster's demonstrations.

    Args:
        embeddings: (n, d) float, the real examples' embeddings (rows need not be unit-norm).
        labels: (n,) their labels.
        demonstrations: row indices of the cluster's demonstrations.
        neighbours: the labels to draw from, in the order they are shown.
        per_label: examples per neighbour label (fewer when the label has fewer).

    Returns:
        ``[(neighbour, [row index, ...]), ...]``, nearest first; a neighbour with no examples is left out.

    Raises:
        ValueError: no demonstrations, or ``per_label`` < 1.
    """
    if not len(demonstrations):
        raise ValueError("contrast examples need the cluster's demonstrations")
    if per_label < 1:
        raise ValueError(f"per_label must be >= 1, got {per_label}")
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    centroid = x[np.asarray(demonstrations)].mean(axis=0)
    y = np.asarray([str(label) for label in labels], dtype=object)
    out: list[tuple[str, list[int]]] = []
    for neighbour in neighbours:
        rows = np.flatnonzero(y == str(neighbour))
        if len(rows):
            nearest = rows[np.argsort(-(x[rows] @ centroid), kind="stable")[:per_label]]
            out.append((str(neighbour), [int(i) for i in nearest]))
    return out
