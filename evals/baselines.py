"""Two published baselines for the synthetic-data selection study (issue 10, part 2).

* **DSIR** — Xie, Santurkar, Ma, Liang, "Data Selection for Language Models via Importance Resampling",
  NeurIPS 2023, arXiv:2302.03169 (reference code: github.com/p-lambda/dsir, ``HashedNgramDSIR``). Texts are
  mapped to hashed unigram + bigram counts (lower-cased word/punctuation tokens, 10,000 buckets, as in the
  paper); one bag-of-hashed-n-grams (multinomial) model is fitted on the target texts and one on the raw pool;
  the log importance weight of a pool text is its log-likelihood ratio under the two models (the paper's
  importance weight estimator), and k texts are resampled *without* replacement with the Gumbel-top-k trick.
  Deviation from the reference code: bucket probabilities use add-one (Laplace) smoothing of the
  counts, where the code adds 1e-8 to the normalised frequencies; with a few hundred target texts most buckets
  are empty and 1e-8 would give any unseen n-gram a ~18-nat penalty.
* **IMP-Loss** — Kuo, Liao, Chao, Ma, Cheng, "Not All LLM-Generated Data Are Equal: Rethinking Data Weighting
  in Text Classification", ICLR 2025, arXiv:2410.21526. The cross-entropy of a synthetic sample is weighted by
  P̂′(y|x) / Q̂(y|x) (the Importance Loss, IMP-Loss), where the
  *quality checker* P̂′ is a classifier fitted on the small real set and the *diversity checker* Q̂ one fitted
  on the synthetic set itself. Here both are L2 logistic regressions on frozen sentence embeddings instead of
  fine-tuned BERT models, each with its C chosen by cross-validated log-loss, and Q̂ is cross-fitted (see
  :func:`imp_loss_weights` for why both).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from synalign._threads import single_blas_thread
from synalign.errors import InputError

__all__ = ["dsir_log_weights", "dsir_select", "imp_loss_weights"]

#: Word and punctuation runs, the pattern of NLTK's ``WordPunctTokenizer`` that the DSIR code uses.
_WORDPUNCT = r"\w+|[^\w\s]+"
_FOLDS = 5
#: Inverse L2 strengths the IMP-Loss checkers choose from by cross-validated log-loss.
_C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def _hashed_counts(texts: Sequence[str], n_buckets: int) -> object:
    """(len(texts), n_buckets) sparse matrix of hashed unigram + bigram counts."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(
        ngram_range=(1, 2), n_features=n_buckets, alternate_sign=False, norm=None, lowercase=True,
        token_pattern=_WORDPUNCT,
    )
    return vectorizer.transform(list(texts))


def _log_multinomial(counts: object, n_buckets: int) -> np.ndarray:
    """(n_buckets,) log bucket probabilities of a bag-of-n-grams model, add-one smoothed."""
    totals = np.asarray(counts.sum(axis=0), dtype=np.float64).ravel()  # type: ignore[attr-defined]
    return np.log(totals + 1.0) - np.log(totals.sum() + n_buckets)


def dsir_log_weights(pool_texts: Sequence[str], target_texts: Sequence[str], *, n_buckets: int = 10_000) -> np.ndarray:
    """DSIR log importance weights of the pool texts toward the target texts.

    ``log w(x) = Σ_b count(x, b) · (log θ_target[b] − log θ_raw[b])`` (Xie et al. 2023: ``ŵ = p̂_feat(z) /
    q̂_feat(z)`` with the bag-of-hashed-n-grams model ``p̂(z) = Π_b θ[b]^{z_b}``), where ``θ[b] = (c_b + 1) /
    (Σ c + n_buckets)`` from the bucket counts ``c`` of all target texts (θ_target) or all pool texts (θ_raw).
    Not normalised by length, as in the paper, whose raw data are chunks of similar length. Among texts of
    varying length this favours short ones: a pool text's log weight drifts by about −(its n-gram count) ·
    KL(θ_raw ‖ θ_target), since the raw model is fitted on the pool itself. With a target of a few dozen short
    texts θ_target is mostly smoothing and the weights separate domains poorly: measured on 60 real SST-2 test
    sentences vs 24 IT-support sentences of the same length (``tests/test_baselines.py``), the share of
    (in-domain, off-domain) pairs ranked right is 0.63 with the first 64 SST-2 train texts as target and 0.88
    with all 800.

    Args:
        pool_texts: m raw (candidate) texts. target_texts: texts of the distribution to match.
        n_buckets: hash buckets for unigrams and bigrams (10,000 in the paper).

    Returns:
        (m,) float64 log importance weights.

    Raises:
        InputError: empty pool or target, or ``n_buckets < 1``.
    """
    if len(pool_texts) == 0:
        raise InputError("DSIR needs at least one pool text")
    if len(target_texts) == 0:
        raise InputError("DSIR needs at least one target text")
    if n_buckets < 1:
        raise InputError(f"n_buckets must be at least 1, got {n_buckets}")
    pool = _hashed_counts(pool_texts, n_buckets)
    log_diff = _log_multinomial(_hashed_counts(target_texts, n_buckets), n_buckets) - _log_multinomial(pool, n_buckets)
    return np.asarray(pool @ log_diff, dtype=np.float64).ravel()


def dsir_select(
    pool_texts: Sequence[str],
    pool_labels: Sequence[str] | np.ndarray,
    target_texts: Sequence[str],
    quotas: Mapping[str, int],
    *,
    seed: int,
    n_buckets: int = 10_000,
) -> np.ndarray:
    """DSIR importance resampling without replacement, ``quotas[label]`` pool rows of each label.

    The log weights (:func:`dsir_log_weights`) are label-agnostic, as in DSIR; the resampling is done within each
    label's rows so the selection keeps the requested label counts. Gumbel-top-k (Xie et al. 2023; Kool et al.
    2019): keep the ``k`` rows with the largest ``log w_i + G_i``, ``G_i ~ Gumbel(0, 1)`` i.i.d. — a sample
    without replacement from the distribution proportional to ``w``. Labels absent from ``quotas`` get no rows.

    Args:
        pool_texts, pool_labels: m texts and their labels. target_texts: the texts to match.
        quotas: rows to draw per label. seed: seeds the ``numpy.random.Generator`` of the Gumbel noise.
        n_buckets: hash buckets (see :func:`dsir_log_weights`).

    Returns:
        (Σ quotas,) int64 pool indices, sorted ascending.

    Raises:
        InputError: ``len(pool_texts) != len(pool_labels)``, empty target, a negative quota, or a quota larger
        than that label's number of pool rows.
    """
    if len(pool_texts) != len(pool_labels):
        raise InputError(f"{len(pool_texts)} pool texts but {len(pool_labels)} labels")
    labels = np.asarray([str(label) for label in pool_labels], dtype=object)
    for label, k in quotas.items():
        available = int(np.sum(labels == str(label)))
        if k < 0 or k > available:
            raise InputError(f"quota {k} for label {label!r} is outside 0..{available} (its pool rows)")
    log_w = dsir_log_weights(pool_texts, target_texts, n_buckets=n_buckets)
    keys = log_w + np.random.default_rng(seed).gumbel(size=len(log_w))
    chosen = []
    for label in sorted(quotas, key=str):
        rows = np.flatnonzero(labels == str(label))
        chosen.append(rows[np.argsort(-keys[rows], kind="stable")[: quotas[label]]])
    return np.sort(np.concatenate([np.zeros(0, dtype=np.int64), *chosen]).astype(np.int64))


def _label_proba(proba: np.ndarray, classes: Sequence[str], labels: np.ndarray) -> np.ndarray:
    """(n,) probability each row's own label has in ``proba`` ((n, C), columns in ``classes`` order)."""
    column = {c: j for j, c in enumerate(classes)}
    return proba[np.arange(len(labels)), [column[label] for label in labels]]


def _checker_c(x: np.ndarray, y: np.ndarray, c: float | None, seed: int) -> float:
    """``c``, or the C of ``_C_GRID`` with the best stratified-CV log-loss of logistic regression on (x, y)."""
    if c is not None:
        return c
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    folds = min(_FOLDS, min(int(np.sum(y == label)) for label in set(y)))
    if folds < 2:
        raise InputError("choosing C by cross-validation needs at least 2 rows of every label")
    search = GridSearchCV(LogisticRegression(max_iter=2000), {"C": list(_C_GRID)}, scoring="neg_log_loss",
                          cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed))
    return float(search.fit(x, y).best_params_["C"])


@single_blas_thread
def imp_loss_weights(
    pool_emb: np.ndarray,
    pool_labels: Sequence[str] | np.ndarray,
    real_emb: np.ndarray,
    real_labels: Sequence[str] | np.ndarray,
    *,
    seed: int = 0,
    clip: float = 10.0,
    c: float | None = None,
) -> np.ndarray:
    """IMP-Loss weights of synthetic samples: ``w(x, y) = P̂′(y|x) / Q̂(y|x)`` (Kuo et al. 2025, IMP-Loss).

    Training with ``Σ_i w_i · CE(f(x_i), y_i)`` over the synthetic set approximates the real-data risk
    (importance weighting with ``P(x) ≈ Q(x)``, so ``P(x, y) / Q(x, y) ≈ P(y|x) / Q(y|x)``). A row gets more
    weight when the real data agree with its label (quality, P̂′ high) and when it is hard to predict from the
    rest of the synthetic data (diversity, Q̂ low).

    * P̂′, the quality checker: ``LogisticRegression(C, max_iter=2000)`` fitted on the real rows.
    * Q̂, the diversity checker: the same model on the synthetic rows, **cross-fitted**: each row's Q̂(y|x) comes
      from a model fitted on the other 4 of 5 stratified folds (``cross_val_predict``). The paper fits Q̂ on the
      synthetic set and scores that same set; an in-sample fit has seen each row's own label, so Q̂ is biased
      upward, most for the atypical or mislabelled rows the fit bends toward.
    * C: the weight is a ratio of two probabilities, so both checkers must be calibrated, not just accurate.
      scikit-learn's penalty is not scaled by the row count, so one fixed C regularises a 64-row real set far
      more than a 320-row pool: with ``C = 1`` P̂′ stays near 1/2 while Q̂ is sharper, and the ratio then
      *up*-weights rows whose label the pool disagrees with — mislabelled rows. Measured on the bundled SST-2
      sample (MiniLM; 32 real rows per class; 160 synthetic rows per class, a random 25% of their labels
      flipped; 12 draws), mean weight of flipped / correct rows: 1.02–1.16 with C = 1 in all 12 draws;
      0.54–0.88 in 11 draws and 1.05 in one with C chosen as below. So by default (``c=None``)
      each checker's C is the one of {0.01, 0.1, 1, 10, 100} with the best 5-fold CV log-loss on its own
      training rows; pass ``c`` to fix it for both.
    * Post-processing (ours, for a stable weighted fit): ``Q̂`` is floored at 1e-12, ratios are clipped to
      ``[0, clip]``, then rescaled to mean 1 over the pool (so a weight can end up above ``clip``).

    Args:
        pool_emb: (m, d) synthetic embeddings; pool_labels: m labels, each also a real label, each with at least
            5 synthetic rows. real_emb: (n, d) real embeddings; real_labels: n labels, at least two distinct.
        seed: shuffles the CV folds. clip: upper bound of the raw ratio (> 0). c: fixed inverse L2 strength
            of both checkers, or None to choose each by CV log-loss.

    Returns:
        (m,) float64 non-negative weights with mean 1.

    Raises:
        InputError: length or dimension mismatch, fewer than two real or synthetic labels, a synthetic label the
        real set lacks, a synthetic label with fewer than 5 rows, a real label with fewer than 2 rows when
        ``c`` is None, ``clip <= 0`` or ``c <= 0``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x_pool, x_real = np.asarray(pool_emb, dtype=np.float64), np.asarray(real_emb, dtype=np.float64)
    y_pool = np.asarray([str(label) for label in pool_labels], dtype=object)
    y_real = np.asarray([str(label) for label in real_labels], dtype=object)
    if x_pool.ndim != 2 or x_real.ndim != 2 or x_pool.shape[1] != x_real.shape[1]:
        raise InputError(f"embeddings must be (m, d) and (n, d), got {x_pool.shape} and {x_real.shape}")
    if len(x_pool) != len(y_pool) or len(x_real) != len(y_real):
        raise InputError(f"{len(x_pool)}/{len(x_real)} pool/real rows but {len(y_pool)}/{len(y_real)} labels")
    if clip <= 0 or (c is not None and c <= 0):
        raise InputError(f"clip and c must be positive, got clip={clip}, c={c}")
    real_classes, pool_classes = sorted(set(y_real)), sorted(set(y_pool))
    if len(real_classes) < 2 or len(pool_classes) < 2:
        raise InputError("IMP-Loss needs at least two labels in both the real and the synthetic rows")
    if missing := sorted(set(pool_classes) - set(real_classes)):
        raise InputError(f"synthetic labels {missing} do not occur in the real rows")
    if (smallest := min(int(np.sum(y_pool == label)) for label in pool_classes)) < _FOLDS:
        raise InputError(f"each synthetic label needs at least {_FOLDS} rows for cross-fitting, one has {smallest}")
    quality = LogisticRegression(C=_checker_c(x_real, y_real, c, seed), max_iter=2000).fit(x_real, y_real)
    p = _label_proba(quality.predict_proba(x_pool), list(quality.classes_), y_pool)
    diversity = LogisticRegression(C=_checker_c(x_pool, y_pool, c, seed), max_iter=2000)
    folds = StratifiedKFold(n_splits=_FOLDS, shuffle=True, random_state=seed)
    q = _label_proba(cross_val_predict(diversity, x_pool, y_pool, cv=folds, method="predict_proba"), pool_classes,
                     y_pool)
    w = np.clip(p / np.maximum(q, 1e-12), 0.0, clip)
    return w / w.mean() if w.mean() > 0 else np.ones_like(w)
