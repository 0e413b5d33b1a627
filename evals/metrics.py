"""A DSPy metric for the generator, built only from measurable properties of its output.

For one example (label ℓ, demonstrations D, attributes A) and the generated texts G, four scores in [0, 1]:

- **label fidelity**: mean probability of ℓ under a logistic-regression classifier fitted on the real
  training examples (features: the metric's embedding);
- **attribute adherence**: share of texts whose word count lies in the length range the attributes state
  (``"5-12 words"``; else the demonstrations' range), widened by 20 %; averaged, when the attributes name
  a topic or sub-topics, with the share of texts that use at least one of those content words;
- **novelty**: mean over texts of 1 − max over demonstrations of the ``difflib`` ratio (1 = nothing copied;
  a near-copy at ratio ≥ 0.9 scores ≤ 0.1);
- **MMD² drop**: relative decrease of MMD² between the empirical distribution of the label's real examples
  R and that of the demonstrations D when G joins them: ``clip((MMD²_b(R, D) − MMD²_b(R, D ∪ G)) /
  MMD²_b(R, D), 0, 1)``. MMD²_b is the biased V-statistic, i.e. the exact MMD² between the two empirical
  measures (Gretton et al. 2012, eq. 5; RBF kernel, median-heuristic bandwidth of the label's real
  embeddings). It is used rather than the unbiased U-statistic because with a handful of points the
  U-statistic is all noise, and because copies of demonstrations leave the empirical measure of D unchanged
  (drop 0 or less) while the U-statistic would reward them.

The score is their weighted mean (default weights 0.4, 0.2, 0.2, 0.2). An empty G scores 0. Called with
a DSPy ``trace`` (bootstrapping), the metric returns ``score ≥ threshold`` instead of the float.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["GenerationMetric", "tfidf_featurizer", "parse_length_range"]

Featurizer = Callable[[Sequence[str]], np.ndarray]

_RANGE = re.compile(r"(\d+)\s*(?:(?:-|–|to)\s*(\d+)\s*)?words?", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")
_STOP = frozenset(
    "about after again also among because been before being between both could does doing down during each "
    "from further have having here into itself just more most much only other over same should some such than "
    "that their them then there these they this those through under until very what when where which while "
    "with would your texts words word typical review reviews short long sentence sentences phrase phrases "
    "labelled labeled distinctive terms".split()
)


def tfidf_featurizer(corpus: Sequence[str], dim: int = 128, seed: int = 0) -> Featurizer:
    """A fast, deterministic text embedding: TF-IDF (word 1–2-grams, sublinear tf) fitted on ``corpus``,
    reduced by truncated SVD (LSA) to ``dim`` dimensions and L2-normalised. Returns ``f(texts) -> (n, dim)``."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    matrix = vectorizer.fit_transform(list(corpus))
    k = max(2, min(dim, matrix.shape[1] - 1, matrix.shape[0] - 1))
    svd = TruncatedSVD(n_components=k, random_state=seed).fit(matrix)

    def featurize(texts: Sequence[str]) -> np.ndarray:
        return normalize(svd.transform(vectorizer.transform(list(texts)))).astype(np.float32)

    return featurize


def parse_length_range(text: str) -> tuple[int, int] | None:
    """``(low, high)`` words from an attribute like ``"5-12 words (median 7)"``, or None."""
    match = _RANGE.search(text or "")
    if not match:
        return None
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) else low
    return (min(low, high), max(low, high))


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    try:
        return obj[name] if name in obj else getattr(obj, name, default)  # dspy.Example / Prediction
    except (TypeError, KeyError):
        return getattr(obj, name, default)


class GenerationMetric:
    """Score generated texts against the real data (see module docstring).

    Args:
        real_texts, real_labels: the real training examples (the classifier and MMD² reference).
        featurize: texts → (n, d) embeddings; default the run's embedder (all-MiniLM-L6-v2, cached).
        weights: weights of (fidelity, adherence, novelty, mmd_drop).
        threshold: the pass mark used when DSPy calls the metric with a trace.

    Raises:
        InputError: fewer than two labels or fewer than two real examples per label.
    """

    def __init__(
        self,
        real_texts: Sequence[str],
        real_labels: Sequence[str],
        *,
        featurize: Featurizer | None = None,
        weights: tuple[float, float, float, float] = (0.4, 0.2, 0.2, 0.2),
        threshold: float = 0.5,
    ) -> None:
        from sklearn.linear_model import LogisticRegression

        from synalign.errors import InputError

        labels = sorted(set(real_labels))
        counts = {label: list(real_labels).count(label) for label in labels}
        if len(labels) < 2 or min(counts.values()) < 2:
            raise InputError(f"the metric needs ≥ 2 labels with ≥ 2 real examples each, got {counts}")
        if featurize is None:
            from synalign.embeddings import Embedder

            embedder = Embedder(device="cpu")
            featurize = embedder.encode
        self.featurize = featurize
        self.weights = np.asarray(weights, dtype=float) / float(np.sum(weights))
        self.threshold = threshold
        features = np.asarray(featurize(list(real_texts)), dtype=np.float32)
        self.classifier = LogisticRegression(max_iter=2000, C=4.0).fit(features, list(real_labels))
        self.real_by_label = {
            label: features[[i for i, y in enumerate(real_labels) if y == label]] for label in labels
        }
        from synalign.divergence import median_bandwidth

        self.bandwidth = {label: median_bandwidth(x) for label, x in self.real_by_label.items()}

    # -- components ------------------------------------------------------------------------------------
    def fidelity(self, label: str, features: np.ndarray) -> float:
        """Mean classifier probability of ``label`` over the texts."""
        classes = list(self.classifier.classes_)
        if label not in classes:
            return 0.0
        return float(self.classifier.predict_proba(features)[:, classes.index(label)].mean())

    @staticmethod
    def adherence(texts: Sequence[str], attributes: str, demonstrations: Sequence[str]) -> float:
        """Length-range (and topic-word) adherence in [0, 1]."""
        lengths = [len(t.split()) for t in texts]
        bounds = parse_length_range(attributes)
        if bounds is None:
            demo_lengths = [len(d.split()) for d in demonstrations] or lengths
            bounds = (min(demo_lengths), max(demo_lengths))
        low, high = bounds[0] * 0.8, bounds[1] * 1.2
        length_score = float(np.mean([low <= n <= high for n in lengths]))
        topic_words = _topic_words(attributes)
        if not topic_words:
            return length_score
        uses = [bool(topic_words & {w.lower() for w in _WORD.findall(t)}) for t in texts]
        return 0.5 * length_score + 0.5 * float(np.mean(uses))

    @staticmethod
    def novelty(texts: Sequence[str], demonstrations: Sequence[str]) -> float:
        """Mean of 1 − max difflib ratio to a demonstration."""
        if not demonstrations:
            return 1.0
        scores = []
        for text in texts:
            best = max(
                difflib.SequenceMatcher(None, text.lower(), d.lower(), autojunk=False).ratio() for d in demonstrations
            )
            scores.append(1.0 - best)
        return float(np.mean(scores))

    def mmd_drop(self, label: str, demo_features: np.ndarray, features: np.ndarray) -> float:
        """Relative drop of MMD²_b to the label's real embeddings when the texts join the demonstrations,
        clipped to [0, 1] (0 without demonstrations)."""
        from synalign.divergence import mmd2_weighted

        real = self.real_by_label.get(label)
        if real is None:
            return 0.0
        bw = self.bandwidth[label]

        def mmd2(x: np.ndarray) -> float:
            return mmd2_weighted(x, real, np.full(len(x), 1.0 / len(x)), bw, device="cpu")

        if len(demo_features) == 0:
            return 0.0
        before = mmd2(demo_features)
        if before <= 1e-12:
            return 0.0
        after = mmd2(np.concatenate([demo_features, features]))
        return float(np.clip((before - after) / before, 0.0, 1.0))

    def components(
        self, label: str, texts: Sequence[str], demonstrations: Sequence[str], attributes: str = ""
    ) -> dict[str, float]:
        """The four scores and their weighted mean (``score``) for one example; all 0 for no texts."""
        texts = [t for t in texts if isinstance(t, str) and t.strip()]
        if not texts:
            return {"fidelity": 0.0, "adherence": 0.0, "novelty": 0.0, "mmd_drop": 0.0, "score": 0.0}
        features = np.asarray(self.featurize(list(texts)), dtype=np.float32)
        demo_features = (
            np.asarray(self.featurize(list(demonstrations)), dtype=np.float32)
            if demonstrations
            else np.zeros((0, features.shape[1]))
        )
        parts = {
            "fidelity": self.fidelity(label, features),
            "adherence": self.adherence(texts, attributes, demonstrations),
            "novelty": self.novelty(texts, demonstrations),
            "mmd_drop": self.mmd_drop(label, demo_features, features),
        }
        parts["score"] = float(
            np.dot(self.weights, [parts["fidelity"], parts["adherence"], parts["novelty"], parts["mmd_drop"]])
        )
        return parts

    def __call__(self, example: Any, prediction: Any, trace: Any = None, *args: Any, **kwargs: Any) -> float | bool:
        """DSPy metric: ``metric(example, prediction, trace=None)`` → score in [0, 1] (bool with a trace)."""
        texts = _get(prediction, "texts", None) or []
        score = self.components(
            str(_get(example, "label", "")),
            list(texts),
            list(_get(example, "demonstrations", []) or []),
            str(_get(example, "attributes", "") or ""),
        )["score"]
        if trace is not None:
            return score >= self.threshold
        return score


def _topic_words(attributes: str) -> set[str]:
    lines = [ln for ln in (attributes or "").splitlines() if ln.lower().startswith(("topic:", "subtopics:"))]
    words = {w.lower() for ln in lines for w in _WORD.findall(ln.split(":", 1)[1])}
    return {w for w in words if w not in _STOP}
