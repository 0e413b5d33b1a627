"""Statistical attribute summariser (no LLM): describes a demonstration cluster by counting.

:class:`StatisticalSummarizer` reports length (word counts), distinctive terms against the other labels'
real texts (log-odds ratio with an informative Dirichlet prior, Monroe, Colaresi & Quinn 2008, "Fightin'
Words", *Political Analysis* 16(4)), tone cues, style and narrative perspective. Every summary it writes
says ``"offline statistical summary (no LLM)"`` (:data:`OFFLINE_NOTE`) first in its ``other`` field.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from synalign.backends import SummaryRequest
from synalign.records import AttributeSummary
from synalign.wordlists import STOP_WORDS, is_negation, lower_words, wordset

__all__ = ["OFFLINE_NOTE", "StatisticalSummarizer"]

OFFLINE_NOTE = "offline statistical summary (no LLM)"
"""First entry of every offline :attr:`AttributeSummary.other`."""

# Tone cues (documented, deliberately small): intensifiers and a hand-picked polarity cue list of common
# English evaluative words. They only describe the cluster; they are not a sentiment model.
_INTENSIFIERS = wordset(
    "very really so too extremely incredibly utterly totally absolutely completely quite truly remarkably "
    "highly deeply awfully terribly most especially particularly"
)
_POSITIVE_CUES = wordset(
    "good great best better fine nice excellent wonderful beautiful brilliant enjoyable entertaining fun "
    "funny charming delightful moving powerful love loved lovely solid smart clever fresh engaging "
    "impressive remarkable perfect strong rich warm touching compelling success successful pleasure "
    "masterpiece effective satisfying winning"
)
_NEGATIVE_CUES = wordset(
    "bad worse worst poor awful terrible boring dull stupid mess messy weak fails failed failure "
    "disappointing dumb tedious lame ugly waste wasted annoying pointless bland flat tired mediocre "
    "unfunny silly predictable lifeless pretentious painful horrible ridiculous hate"
)

_FIRST_PERSON = wordset("i me my mine myself we us our ours ourselves")
_SECOND_PERSON = wordset("you your yours yourself yourselves")
_THIRD_PERSON = wordset(
    "he him his himself she her hers herself it its itself they them their theirs themselves"
)

_SENTENCE_END_RE = re.compile(r"[.!?][\"'”’)\]]*\s*$")
_PTB_TOKENS = frozenset(
    {",", ".", "'s", "n't", "'re", "'ve", "'ll", "'d", "'m", "-lrb-", "-rrb-", "--", "..."}
)


class StatisticalSummarizer:
    """Attribute summariser from counts (no LLM); implements :class:`synalign.backends.Summarizer`.

    For each demonstration cluster it reports:

    * ``length``: whitespace word-count range and median, e.g. ``"4-21 words (median 9)"``.
    * ``topic`` / ``subtopics``: the cluster's distinctive terms. With a reference corpus, terms are ranked
      by the z-score of the log-odds ratio with informative Dirichlet prior (Monroe et al. 2008)
      between the cluster and the reference texts of the *other* labels (all reference texts if the label
      has no reference); the prior is ``prior_strength`` pseudo-counts spread by the pooled frequency of
      cluster + whole reference corpus. Without a reference, terms are the cluster's most frequent
      content words. Stop words and negations are never terms.
    * ``tone``: polarity cue words (a small documented list, :data:`_POSITIVE_CUES` /
      :data:`_NEGATIVE_CUES`), share of texts with a negation, intensifiers per text, share with ``!``/``?``.
    * ``style``: casing, tokenisation (Penn-Treebank-style split punctuation or not), phrases vs full
      sentences (share ending in ``. ! ?``), mean word length in characters.
    * ``perspective``: first/second/third-person pronouns per text.
    * ``other``: ``"offline statistical summary (no LLM)"`` first, then how the terms were found.

    Deterministic: the same request gives the same summary.

    Args:
        reference: real training texts per label, ``{label: [text, ...]}``; optional.
        n_terms: number of distinctive terms reported (3 in ``topic``, up to ``n_terms`` in ``subtopics``).
        prior_strength: α₀, total pseudo-counts of the Dirichlet prior.
        note: first entry of every summary's ``other`` (default :data:`OFFLINE_NOTE`).
    """

    name = "offline:statistical"

    def __init__(
        self,
        reference: Mapping[str, Sequence[str]] | None = None,
        *,
        n_terms: int = 8,
        prior_strength: float = 500.0,
        note: str = OFFLINE_NOTE,
    ) -> None:
        if n_terms < 1:
            raise ValueError(f"n_terms must be >= 1, got {n_terms}")
        if prior_strength <= 0:
            raise ValueError(f"prior_strength must be > 0, got {prior_strength}")
        self.note = note
        self.n_terms = n_terms
        self.prior_strength = float(prior_strength)
        self._reference_counts: dict[str, Counter[str]] = {
            label: Counter(w for text in texts for w in lower_words(text) if _is_term(w))
            for label, texts in (reference or {}).items()
        }
        self._reference_sizes = {label: len(texts) for label, texts in (reference or {}).items()}
        self._reference_total: Counter[str] = Counter()
        for counts in self._reference_counts.values():
            self._reference_total.update(counts)
        self._reference_total_n = sum(self._reference_total.values())
        self._reference_label_n = {
            label: sum(counts.values()) for label, counts in self._reference_counts.items()
        }
        self.calls = 0

    def summarize(self, requests: list[SummaryRequest]) -> list[AttributeSummary]:
        """One :class:`AttributeSummary` per request, in order (see the class docstring)."""
        self.calls += len(requests)
        return [self._summarize_one(request) for request in requests]

    # -- parts ------------------------------------------------------------------------------------------

    def _summarize_one(self, request: SummaryRequest) -> AttributeSummary:
        texts = [t for t in request.demonstrations if t.strip()]
        terms, how = self.distinctive_terms(texts, request.label)
        topic = (
            f"texts labelled {request.label!r}; {how.split(' (')[0]}: " + ", ".join(terms[:3])
            if terms
            else f"texts labelled {request.label!r} (no content words to rank)"
        )
        return AttributeSummary(
            style=_style(texts),
            tone=_tone(texts),
            topic=topic,
            subtopics=terms,
            length=_length(texts),
            perspective=_perspective(texts),
            other=[self.note, how, f"{len(texts)} demonstrations"],
        )

    def distinctive_terms(self, texts: Sequence[str], label: str) -> tuple[list[str], str]:
        """Up to ``n_terms`` distinctive terms of ``texts`` (a cluster of ``label``) and how they were ranked.

        Log-odds ratio with informative Dirichlet prior (Monroe et al. 2008): with cluster counts ``y_i``,
        background counts ``y_j`` (other labels' reference texts), totals ``n_i``, ``n_j`` and prior
        ``α_w = α₀ · p_w`` (``p_w`` = pooled relative frequency in cluster + whole reference corpus),
        ``δ_w = log((y_iw+α_w)/(n_i+α₀−y_iw−α_w)) − log((y_jw+α_w)/(n_j+α₀−y_jw−α_w))``,
        ``σ²_w ≈ 1/(y_iw+α_w) + 1/(y_jw+α_w)``; terms with ``z = δ/σ > 0`` ranked by ``z``.
        """
        cluster = Counter(w for text in texts for w in lower_words(text) if _is_term(w))
        if not cluster:
            return [], "no content words"
        others = [lab for lab in self._reference_counts if lab != label]
        background_labels = others or list(self._reference_counts)
        if not background_labels:
            ranked = sorted(cluster, key=lambda w: (-cluster[w], w))
            return ranked[: self.n_terms], "most frequent content words (no reference corpus)"
        total = self._reference_total
        own = self._reference_counts.get(label) if others else None

        def background(word: str) -> int:  # count in the other labels' reference texts
            return total[word] - (own[word] if own is not None else 0)

        pooled_total = sum(cluster.values()) + self._reference_total_n
        n_i = sum(cluster.values())
        n_j = self._reference_total_n - (self._reference_label_n[label] if own is not None else 0)
        a0 = self.prior_strength
        scores: dict[str, float] = {}
        for word, y_i in cluster.items():
            alpha = a0 * (y_i + total[word]) / pooled_total
            y_j = background(word)
            delta = math.log((y_i + alpha) / (n_i + a0 - y_i - alpha)) - math.log(
                (y_j + alpha) / (n_j + a0 - y_j - alpha)
            )
            z = delta / math.sqrt(1.0 / (y_i + alpha) + 1.0 / (y_j + alpha))
            if z > 0:
                scores[word] = float(z)
        ranked = sorted(scores, key=lambda w: (-scores[w], w))
        n_ref = sum(self._reference_sizes[lab] for lab in background_labels)
        against = "other labels'" if others else "all"
        how = (
            f"distinctive terms (log-odds ratio with informative Dirichlet prior, Monroe et al. 2008, "
            f"vs {n_ref} {against} reference texts)"
        )
        return ranked[: self.n_terms], how


def _is_term(word: str) -> bool:
    return len(word) >= 2 and word not in STOP_WORDS and not is_negation(word)


def _word_counts(texts: Sequence[str]) -> list[int]:
    return [len(text.split()) for text in texts]


def _length(texts: Sequence[str]) -> str:
    counts = _word_counts(texts)
    if not counts:
        return "0 words"
    low, high, median = min(counts), max(counts), float(np.median(counts))
    span = f"{low} words" if low == high else f"{low}-{high} words"
    return f"{span} (median {median:g})"


def _share(count: int, total: int) -> str:
    return f"{count}/{total} texts"


def _unknown_without_texts(describe: Callable[[Sequence[str]], str]) -> Callable[[Sequence[str]], str]:
    """``describe(texts)``, or ``"unknown (no texts)"`` when there are no texts."""

    @functools.wraps(describe)
    def described(texts: Sequence[str]) -> str:
        return describe(texts) if len(texts) else "unknown (no texts)"

    return described


@_unknown_without_texts
def _tone(texts: Sequence[str]) -> str:
    total = len(texts)
    words = [lower_words(text) for text in texts]
    positive = sum(w in _POSITIVE_CUES for ws in words for w in ws)
    negative = sum(w in _NEGATIVE_CUES for ws in words for w in ws)
    if positive > negative:
        polarity = f"leans positive by cue words ({positive} positive vs {negative} negative)"
    elif negative > positive:
        polarity = f"leans negative by cue words ({negative} negative vs {positive} positive)"
    else:
        polarity = f"no clear polarity by cue words ({positive} positive, {negative} negative)"
    negated = sum(any(is_negation(w) for w in ws) for ws in words)
    intensifiers = sum(w in _INTENSIFIERS for ws in words for w in ws) / total
    exclaim = sum("!" in text for text in texts)
    question = sum("?" in text for text in texts)
    return (
        f"{polarity}; negation in {_share(negated, total)}; {intensifiers:.2f} intensifiers per text; "
        f"'!' in {_share(exclaim, total)}; '?' in {_share(question, total)}"
    )


@_unknown_without_texts
def _style(texts: Sequence[str]) -> str:
    total = len(texts)
    letters = "".join(ch for text in texts for ch in text if ch.isalpha())
    upper_share = sum(ch.isupper() for ch in letters) / max(len(letters), 1)
    starts_upper = sum(text.lstrip()[:1].isupper() for text in texts)
    if upper_share == 0:
        casing = "all lower-case"
    elif upper_share > 0.5:
        casing = "mostly upper-case"
    elif starts_upper * 2 >= total:
        casing = "sentence case"
    else:
        casing = "mostly lower-case"
    tokens = [tok.lower() for text in texts for tok in text.split()]
    split_punct = sum(tok in _PTB_TOKENS for tok in tokens)
    attached = sum(len(tok) > 1 and tok[-1] in ",.;:!?" for tok in tokens)
    if split_punct > attached:
        tokenisation = "Penn-Treebank-tokenised (punctuation and clitics split off by spaces)"
    else:
        tokenisation = "ordinary punctuation attached to words"
    sentences = sum(bool(_SENTENCE_END_RE.search(text)) for text in texts)
    form = "mostly full sentences" if sentences * 2 > total else "mostly phrases or fragments"
    words = [w for text in texts for w in lower_words(text)]
    mean_len = sum(map(len, words)) / max(len(words), 1)
    return (
        f"{casing}; {tokenisation}; {form} ({sentences}/{total} end with . ! ?); "
        f"mean word length {mean_len:.1f} characters"
    )


@_unknown_without_texts
def _perspective(texts: Sequence[str]) -> str:
    total = len(texts)
    words = [w for text in texts for w in lower_words(text)]
    first = sum(w in _FIRST_PERSON for w in words) / total
    second = sum(w in _SECOND_PERSON for w in words) / total
    third = sum(w in _THIRD_PERSON for w in words) / total
    if first >= 0.25 and first >= second:
        kind = "first person (writer's own view)"
    elif second >= 0.25:
        kind = "second person (addresses the reader)"
    else:
        kind = "third person / impersonal"
    return f"{kind}; pronouns per text: first {first:.2f}, second {second:.2f}, third {third:.2f}"
