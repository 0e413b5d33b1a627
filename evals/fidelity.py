"""Label fidelity and diversity of generated texts, measured against the real data.

* :class:`LabelOracle`: logistic regression on frozen MiniLM embeddings fitted on a real train split (a
  label-stratified sample of at most ``max_train`` rows); ``fidelity(texts, labels)`` is the share of texts it
  assigns to the label they were generated for (the "label fidelity" / "label consistency" of synthetic-data
  papers, e.g. Ye et al. 2022, ZeroGen; Yu et al. 2023, AttrPrompt).
* :func:`distinct_n`: distinct-n (Li et al. 2016, NAACL): unique n-grams / all n-grams over a set of texts.
* :func:`self_bleu`: Self-BLEU (Zhu et al. 2018, Texygen, SIGIR): mean BLEU of each text against all the
  others as references; higher = less diverse. Computed with NLTK's BLEU, as Texygen does.
* :func:`copy_share`: share of texts that are near-copies of a demonstration
  (:func:`synalign.dedup.is_near_duplicate`, SequenceMatcher ratio ≥ 0.9).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["LabelOracle", "copy_share", "distinct_n", "read_jsonl", "self_bleu"]


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file (``{"text", "label", ...}``)."""
    import json

    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class LabelOracle:
    """A classifier of the real task, fitted on real training data only.

    Args:
        train_rows: real ``{"text", "label"}`` rows (the train split).
        max_train: stratified cap on the rows used (embedding cost: ~500 texts/s on 2 cores).
        seed: seed of the cap's sample.
    """

    def __init__(self, train_rows: Sequence[dict], *, max_train: int = 10_000, seed: int = 0) -> None:
        from sklearn.linear_model import LogisticRegression

        from synalign.embeddings import Embedder

        rows = list(train_rows)
        if len(rows) > max_train:
            rng = np.random.default_rng(seed)
            labels = sorted({r["label"] for r in rows})
            per = max_train // len(labels)
            keep: list[dict] = []
            for label in labels:
                idx = [i for i, r in enumerate(rows) if r["label"] == label]
                keep += [rows[i] for i in rng.permutation(idx)[:per]]
            rows = keep
        self.n_train = len(rows)
        self.embedder = Embedder()
        x = self.embedder.encode([r["text"] for r in rows])
        self.model = LogisticRegression(max_iter=3000).fit(x, [str(r["label"]) for r in rows])

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """(n,) predicted labels."""
        if not texts:
            return np.asarray([], dtype=object)
        return self.model.predict(self.embedder.encode(list(texts)))

    def fidelity(self, texts: Sequence[str], labels: Sequence[str]) -> float:
        """Share of ``texts`` predicted as their ``labels`` (nan for no texts)."""
        if not texts:
            return float("nan")
        return float(np.mean(self.predict(texts) == np.asarray([str(x) for x in labels], dtype=object)))


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Unique word n-grams / all word n-grams over ``texts`` (lower-cased, whitespace tokens); nan if none."""
    grams = [tuple(words[i : i + n]) for t in texts for words in [t.lower().split()] for i in range(len(words) - n + 1)]
    return float(len(set(grams)) / len(grams)) if grams else float("nan")


def self_bleu(texts: Sequence[str], *, n: int = 4, max_hypotheses: int = 100, seed: int = 0) -> float:
    """Self-BLEU-n of a set of texts (Zhu et al. 2018, Texygen): for each hypothesis text, sentence BLEU with
    uniform weights over 1…n-grams (NLTK ``sentence_bleu``, smoothing method 1) against every *other* text as a
    reference; the mean over hypotheses. Lower-cased whitespace tokens. At most ``max_hypotheses`` hypotheses
    (a seeded random sample; every text stays a reference) bound the O(h·m) cost.

    Returns:
        a float in [0, 1] (1 = every text repeats the others); nan for fewer than two texts.

    Raises:
        ImportError: NLTK missing (``pip install 'synalign[eval]'``).
    """
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    tokens = [t.lower().split() for t in texts]
    if len(tokens) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    hyps = rng.permutation(len(tokens))[:max_hypotheses] if len(tokens) > max_hypotheses else range(len(tokens))
    smooth, weights = SmoothingFunction().method1, tuple([1.0 / n] * n)
    scores = [
        sentence_bleu(tokens[:i] + tokens[i + 1 :], tokens[i], weights=weights, smoothing_function=smooth)
        for i in hyps
    ]
    return float(np.mean(scores))


def copy_share(texts: Sequence[str], demonstrations: Sequence[Sequence[str]]) -> float:
    """Share of ``texts[i]`` that are near-copies of one of ``demonstrations[i]``; nan if no texts."""
    from synalign.dedup import is_near_duplicate

    if not texts:
        return float("nan")
    hits = sum(any(is_near_duplicate(t, d) for d in demos) for t, demos in zip(texts, demonstrations))
    return hits / len(texts)
