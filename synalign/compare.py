"""How far one text set is from another: the divergences a run reports, plus a calibrated discriminator.

:func:`compare_sets` embeds a reference set A (real data) and a candidate set B (synthetic data) and returns

- ``mmd2``: :func:`synalign.divergence.mmd2_fixed_set` of B to A — the estimator the run report uses for the
  accepted set (V-statistic on B, U-statistic on A), RBF kernel with the median-heuristic bandwidth of A;
- ``noise_floor`` ± ``noise_floor_std``: the same quantity for a random subset of A as large as B against the
  rest of A (:func:`synalign.divergence.fixed_set_noise_floor`, the run report's estimator, same draws): "as close
  as real data of that size"; ``mmd2_over_floor`` ± ``mmd2_over_floor_std`` (the floor's spread carried over);
- ``sinkhorn``: debiased Sinkhorn divergence (Feydy et al. 2019; POT) between the two embedding clouds, and
  ``sinkhorn_floor``, the same for a random subset of A as large as B against the rest of A;
- ``discriminator_auc``: cross-validated ROC AUC of a logistic regression telling B from A on the embeddings
  (0.5 = indistinguishable, 1 = separable), next to ``discriminator_auc_floor``, the same AUC for two random
  halves of A (≈ 0.5). This calibrated fidelity figure is the one mostlyai-qa and NVIDIA's Safe-Synthesizer
  report; unlike MMD² it is bounded and needs no bandwidth.

:func:`assess_with_heldout` judges B as training data for A's task on held-out real examples H (``synalign
compare --heldout``), as a run judges its accepted set: utility (a classifier on A vs on A + B, scored on H;
:mod:`synalign.utility`), novelty (B's near-copies of A's or H's texts; :mod:`synalign.novelty`), fidelity to H
(:func:`heldout_fidelity`) and the verdict (:func:`synalign.verdict.judge`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from synalign._threads import single_blas_thread
from synalign.errors import InputError
from synalign.utility import UtilityEstimate
from synalign.verdict import Fidelity, Novelty, Verdict

__all__ = [
    "discriminator_auc", "compare_embeddings", "compare_sets", "heldout_fidelity", "HeldoutAssessment",
    "assess_with_heldout", "check_enough_texts", "MIN_TEXTS_TO_MEASURE",
]


@single_blas_thread
def discriminator_auc(a: np.ndarray, b: np.ndarray, *, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated ROC AUC of logistic regression separating rows of ``b`` (label 1) from ``a`` (label 0).

    Classes are balanced by subsampling the larger set (so a size gap alone cannot be learnt); stratified
    ``folds``-fold cross-validation, AUC over the pooled out-of-fold scores.

    Args:
        a: (n, d) embeddings; b: (m, d) embeddings; both need at least ``folds`` rows.
        folds: cross-validation folds (2-10, fewer when a set is small).
        seed: subsampling and fold seed.

    Returns:
        AUC in [0, 1].

    Raises:
        InputError: fewer than 2 rows in a set, or mismatched dimensions.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InputError(f"discriminator: mismatched embeddings {a.shape} and {b.shape}")
    n = min(len(a), len(b))
    if n < 2:
        raise InputError("discriminator: each set needs at least 2 rows")
    rng = np.random.default_rng(seed)
    a, b = a[rng.permutation(len(a))[:n]], b[rng.permutation(len(b))[:n]]
    x, y = np.vstack([a, b]), np.r_[np.zeros(n), np.ones(n)]
    cv = StratifiedKFold(n_splits=max(2, min(folds, n)), shuffle=True, random_state=seed)
    scores = cross_val_predict(LogisticRegression(max_iter=2000), x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def heldout_fidelity(
    synthetic: np.ndarray,
    validation: np.ndarray,
    real: np.ndarray,
    bandwidth: float,
    *,
    seed: int = 0,
    n_draws: int = 5,
    device: str = "auto",
) -> Fidelity:
    """Fidelity of a synthetic set to a held-out real slice, each figure next to what real data scores.

    - ``mmd2``: :func:`synalign.divergence.mmd2_fixed_set` of ``synthetic`` to ``validation``;
      ``mmd2_floor``: the mean over ``n_draws`` random subsets of ``real`` as large as ``synthetic`` (capped at
      ``len(real)``) of the same quantity: "as close to the slice as real training data of that size".
    - ``discriminator_auc``: :func:`discriminator_auc` of ``synthetic`` against ``validation``;
      ``discriminator_auc_floor``: the same for ``real`` against ``validation`` (≈ 0.5).

    Args:
        synthetic: (m, d); validation: (v, d) the held-out slice; real: (n, d) the real set the run fitted on.
        bandwidth: RBF σ (embedding units), the run's.

    Returns:
        :class:`synalign.verdict.Fidelity` (fields None where a set has fewer than 2 rows).
    """
    from synalign.divergence import mmd2_fixed_set

    if len(synthetic) < 2 or len(validation) < 2 or len(real) < 2:
        return Fidelity()
    rng = np.random.default_rng(seed)
    m = min(len(synthetic), len(real))
    floor = float(np.mean([
        mmd2_fixed_set(real[rng.permutation(len(real))[:m]], validation, bandwidth, device=device)
        for _ in range(n_draws)
    ]))
    folds = max(2, min(5, len(validation) // 2))
    return Fidelity(
        mmd2=float(mmd2_fixed_set(synthetic, validation, bandwidth, device=device)),
        mmd2_floor=floor,
        discriminator_auc=discriminator_auc(validation, synthetic, folds=folds, seed=seed),
        discriminator_auc_floor=discriminator_auc(validation, real, folds=folds, seed=seed),
    )


MIN_TEXTS_TO_MEASURE = 10
"""Fewest texts on each side of a comparison (and in a pool ``synalign align`` measures): the discriminator's
5 folds get 2 texts of each set, the noise floor a subset of A as large as B."""


def check_enough_texts(n_a: int, n_b: int) -> None:
    """Refuse a comparison of ``n_a`` reference and ``n_b`` candidate texts when a side has fewer than
    :data:`MIN_TEXTS_TO_MEASURE` (its MMD², floor and AUC would be noise reported as a result).

    Raises:
        InputError: too few texts on a side.
    """
    if min(n_a, n_b) < MIN_TEXTS_TO_MEASURE:
        raise InputError(
            f"compare: too few texts to measure: A has {n_a}, B has {n_b}; each side needs at least "
            f"{MIN_TEXTS_TO_MEASURE}"
        )


def compare_embeddings(a: np.ndarray, b: np.ndarray, *, seed: int = 0, device: str = "auto") -> dict[str, Any]:
    """The comparison of :func:`compare_sets` on ready embeddings.

    Args:
        a: (n, d) reference (real) embeddings; b: (m, d) candidate embeddings; each at least
            :data:`MIN_TEXTS_TO_MEASURE` rows.

    Returns:
        ``{"n_a", "n_b", "bandwidth", "mmd2", "noise_floor", "noise_floor_std", "noise_floor_draws",
        "mmd2_over_floor", "mmd2_over_floor_std", "sinkhorn", "sinkhorn_floor", "discriminator_auc",
        "discriminator_auc_floor"}`` (kernel units for MMD², squared embedding distance for Sinkhorn). The floor is
        the run's (:func:`synalign.divergence.fixed_set_noise_floor` at B's size, seeded with ``seed``): a run's
        real set and accepted set compared with the run's seed give the floor its report shows.

    Raises:
        InputError: too few rows or mismatched dimensions.
    """
    from synalign.divergence import (
        FLOOR_DRAWS,
        fixed_set_noise_floor,
        median_bandwidth,
        mmd2_fixed_set,
        sinkhorn_divergence,
    )

    check_enough_texts(len(a), len(b))
    bandwidth = float(median_bandwidth(a, seed=seed))
    mmd2 = float(mmd2_fixed_set(b, a, bandwidth, device=device))
    m = min(len(b), len(a) - 2)
    floor, floor_std = fixed_set_noise_floor(a, len(b), bandwidth, seed=seed, device=device)
    ratio = mmd2 / floor if floor > 0 else None
    rng = np.random.default_rng(seed)
    half = rng.permutation(len(a))
    subset = rng.permutation(len(a))
    return {
        "n_a": len(a),
        "n_b": len(b),
        "bandwidth": bandwidth,
        "mmd2": mmd2,
        "noise_floor": float(floor),
        "noise_floor_std": float(floor_std),
        "noise_floor_draws": FLOOR_DRAWS,
        "mmd2_over_floor": ratio,
        "mmd2_over_floor_std": ratio * floor_std / floor if ratio is not None else None,
        "sinkhorn": float(sinkhorn_divergence(b, a, seed=seed)),
        # in 384-d the discrete OT cost between two samples of one distribution is far from 0, so the
        # divergence is only readable next to the value a real subset of B's size gets against the rest of A
        "sinkhorn_floor": float(sinkhorn_divergence(a[subset[:m]], a[subset[m:]], seed=seed)),
        "discriminator_auc": discriminator_auc(a, b, seed=seed),
        "discriminator_auc_floor": discriminator_auc(a[half[: len(a) // 2]], a[half[len(a) // 2 :]], seed=seed),
    }


def compare_sets(a: Sequence[str], b: Sequence[str], *, embedder: Any = None, seed: int = 0) -> dict[str, Any]:
    """Embed two text sets and compare them (see the module docstring); A is the reference (real) set.

    Args:
        a, b: texts. embedder: any object with ``encode(texts) -> (n, d) array`` (default: the bundled
            MiniLM :class:`synalign.embeddings.Embedder`, cached).
        seed: seed of every random subset.

    Returns:
        As :func:`compare_embeddings`.

    Raises:
        InputError: too few texts.
    """
    if embedder is None:
        from synalign.embeddings import Embedder

        embedder = Embedder()
    return compare_embeddings(np.asarray(embedder.encode(list(a))), np.asarray(embedder.encode(list(b))), seed=seed)


class HeldoutAssessment(BaseModel):
    """B judged as training data on held-out real examples (:func:`assess_with_heldout`).

    Attributes:
        utility: A alone vs A + B, scored on the held-out set (paired Δ with 95 % bootstrap intervals).
        novelty: share of B that are near-copies of A's or the held-out texts (``accepted_share`` =
            ``pool_share``; nothing was excluded), and ``near_copies``, their count.
        fidelity: B's MMD² and discriminator AUC to the held-out set, each next to what A scores.
        verdict: :func:`synalign.verdict.judge` of the three.
    """

    model_config = ConfigDict(frozen=True)

    utility: UtilityEstimate
    novelty: Novelty
    near_copies: int
    fidelity: Fidelity
    verdict: Verdict


def assess_with_heldout(
    a_texts: Sequence[str],
    a_labels: Sequence[str],
    b_texts: Sequence[str],
    b_labels: Sequence[str],
    heldout_texts: Sequence[str],
    heldout_labels: Sequence[str],
    *,
    embedder: Any = None,
    seed: int = 0,
    device: str = "auto",
) -> HeldoutAssessment:
    """Judge B as training data for A's task on held-out real examples, as a run judges its accepted set.

    - utility: :func:`synalign.utility.estimate_utility` with A as the real training set, B as the synthetic
      set and the held-out set as the validation slice (no random-subset baseline: B is taken whole);
    - novelty: :func:`synalign.novelty.near_copies` of B's texts against A's and the held-out ones (characters
      or embedding cosine; a copy of a held-out text would inflate the utility);
    - fidelity: :func:`heldout_fidelity` of B to the held-out set, with the RBF bandwidth of A (median heuristic);
    - verdict: :func:`synalign.verdict.judge` of the three, ``accepted`` = len(B).

    Args:
        a_texts, a_labels: n reference (real training) texts and labels, at least two distinct labels.
        b_texts, b_labels: m ≥ 1 candidate (synthetic) texts and labels; every label must occur in A.
        heldout_texts, heldout_labels: v ≥ 2 held-out real texts and labels (never in A); every label must occur
            in A.
        embedder: any object with ``encode(texts) -> (k, d)`` unit-norm array (default: the bundled MiniLM
            :class:`synalign.embeddings.Embedder`).
        seed: seeds the bootstrap, the floors' random subsets and the discriminator's folds.
        device: where MMD² is computed (``"auto"``, ``"cpu"``, ``"cuda"``).

    Returns:
        :class:`HeldoutAssessment`.

    Raises:
        InputError: texts and labels of different lengths, an empty B, fewer than 2 held-out rows, a B or
            held-out label that A lacks, or A with fewer than two labels.
    """
    from synalign.divergence import median_bandwidth
    from synalign.novelty import near_copies
    from synalign.utility import estimate_utility
    from synalign.verdict import judge

    for name, texts, labels in (("A", a_texts, a_labels), ("B", b_texts, b_labels),
                                ("the held-out set", heldout_texts, heldout_labels)):
        if len(texts) != len(labels):
            raise InputError(f"compare: {name} has {len(texts)} texts but {len(labels)} labels")
    if not len(b_texts):
        raise InputError("compare: B has no texts")
    if len(heldout_texts) < 2:
        raise InputError(f"compare: the held-out set needs at least 2 labelled texts, got {len(heldout_texts)}")
    known = {str(v) for v in a_labels}
    for name, labels in (("the held-out set", heldout_labels), ("B", b_labels)):
        missing = sorted({str(v) for v in labels} - known)
        if missing:
            raise InputError(f"compare: {name} has label {missing[0]!r}, which A (the real training set) lacks")
    if embedder is None:
        from synalign.embeddings import Embedder

        embedder = Embedder()
    a, b, h = (np.asarray(embedder.encode(list(t))) for t in (a_texts, b_texts, heldout_texts))
    utility = estimate_utility(a, a_labels, b, b_labels, h, heldout_labels, seed=seed)
    # against the held-out texts too, as a run does: a copy of one would leak into the utility estimate
    copies = near_copies(b_texts, [*a_texts, *heldout_texts], b, np.vstack([a, h]))
    novelty = Novelty(
        accepted_share=copies.share, pool_share=copies.share, excluded=0,
        ratio_threshold=copies.ratio_threshold, cosine_threshold=copies.cosine_threshold,
    )
    fidelity = heldout_fidelity(b, h, a, float(median_bandwidth(a, seed=seed)), seed=seed, device=device)
    return HeldoutAssessment(
        utility=utility, novelty=novelty, near_copies=int(copies.mask.sum()), fidelity=fidelity,
        verdict=judge(utility, novelty, fidelity, accepted=len(b_texts)),
    )
