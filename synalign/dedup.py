"""Text de-duplication for generated texts: one normalised key and one seen-set, shared by every generator.

A generated text is compared with the demonstrations it came from and with the texts already kept, after
:func:`normalise` (whitespace collapsed, case folded). :class:`SeenTexts` says why a candidate is dropped
(``"empty"``, ``"copy_of_demonstration"``, ``"duplicate"``, ``"near_duplicate"``) or ``None`` to keep it.
With a ``threshold`` it also catches near copies: a ``difflib.SequenceMatcher`` ratio ≥ ``threshold`` on
the normalised strings (Ratcliff–Obershelp similarity, 2·matches / total length; 0.9 ≈ one changed word
in a 10-word sentence). The EDA generator (:mod:`synalign.eda`) checks exact copies only; the LLM
generator (``synalign.agents.generator``) checks near copies too, through :func:`filter_texts`.

:func:`filter_texts` is the LLM generator's whole text clean-up and dedup: each candidate a model wrote is
cleaned (whitespace collapsed, a leading list marker such as ``"3. "`` or ``"- "`` and enclosing quotes
removed), then dropped, and counted by reason, as ``empty``, ``copy_of_demonstration``, ``duplicate``,
``near_duplicate`` or ``surplus`` (beyond the number asked for). :func:`candidate_texts` turns a model's
``texts`` output (a list, or one string of lines) into the candidate list. Pure functions: no LLM framework.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "NEAR_DUPLICATE_RATIO", "SeenTexts", "candidate_texts", "filter_texts", "is_near_duplicate", "normalise"
]

NEAR_DUPLICATE_RATIO = 0.9
"""``difflib.SequenceMatcher.ratio`` at or above which two normalised texts count as near-duplicates."""


def normalise(text: str) -> str:
    """The comparison key of a text: whitespace runs collapsed to one space, ends stripped, case folded."""
    return " ".join(text.split()).casefold()


def _near(a: str, b: str, threshold: float) -> bool:
    """Whether two *normalised* texts are equal or have a SequenceMatcher ratio ≥ ``threshold``."""
    if a == b:
        return True
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return (
        matcher.real_quick_ratio() >= threshold
        and matcher.quick_ratio() >= threshold
        and matcher.ratio() >= threshold
    )


def is_near_duplicate(a: str, b: str, threshold: float = NEAR_DUPLICATE_RATIO) -> bool:
    """Whether normalised ``a`` and ``b`` are equal or have a SequenceMatcher ratio ≥ ``threshold``."""
    return _near(normalise(a), normalise(b), threshold)


class SeenTexts:
    """The demonstrations and the texts kept so far, as normalised keys; classifies new candidates.

    Args:
        demonstrations: texts a candidate must not copy.
        existing: texts kept earlier (e.g. by a previous call for the same request); a candidate must not
            repeat them.
        threshold: near-duplicate ratio (see :func:`is_near_duplicate`); ``None`` checks exact copies only.
    """

    def __init__(
        self, demonstrations: Iterable[str], existing: Iterable[str] = (), *, threshold: float | None = None
    ) -> None:
        self.threshold = threshold
        self._demos = [normalise(text) for text in demonstrations]
        self._demo_keys = set(self._demos)
        self._kept = [normalise(text) for text in existing]
        self._seen = set(self._kept)

    def reason(self, text: str) -> str | None:
        """Why ``text`` would be dropped, checked in this order: ``"empty"``, ``"copy_of_demonstration"``
        (exact, or near with a threshold), ``"duplicate"`` of a kept text, ``"near_duplicate"`` of a kept
        text (with a threshold); ``None`` when it is new."""
        key = normalise(text)
        near = self.threshold
        if not key:
            return "empty"
        if key in self._demo_keys or (near is not None and any(_near(key, d, near) for d in self._demos)):
            return "copy_of_demonstration"
        if key in self._seen:
            return "duplicate"
        if near is not None and any(_near(key, k, near) for k in self._kept):
            return "near_duplicate"
        return None

    def add(self, text: str) -> None:
        """Record ``text`` as kept."""
        key = normalise(text)
        self._kept.append(key)
        self._seen.add(key)


_LIST_MARK = re.compile(r"^\s*(?:\d{1,3}[.):]|[-*•])\s+")


def _clean(text: Any) -> str:
    """A candidate as a text: whitespace collapsed, a leading list marker and enclosing quotes removed."""
    text = " ".join(str(text).split())
    text = _LIST_MARK.sub("", text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def candidate_texts(value: Any) -> list[Any]:
    """A model's ``texts`` output as a list of candidates: a list as is, a string split into its non-blank
    lines, None as no candidate."""
    if value is None:
        return []
    if isinstance(value, str):
        return [line for line in value.splitlines() if line.strip()]
    return list(value)


def filter_texts(
    candidates: Iterable[Any],
    demonstrations: Sequence[str],
    *,
    existing: Sequence[str] = (),
    limit: int | None = None,
    threshold: float = NEAR_DUPLICATE_RATIO,
) -> tuple[list[str], Counter[str]]:
    """Keep the usable candidates, in order.

    Candidates are cleaned first (whitespace collapsed, a leading list marker such as ``"3. "`` or ``"- "``
    and enclosing quotes removed). Then each is dropped as ``empty``, ``copy_of_demonstration``,
    ``duplicate`` (of an ``existing`` or earlier kept text), ``near_duplicate`` (ratio ≥ ``threshold``) or
    ``surplus`` (beyond ``limit`` kept texts).

    Returns:
        (kept texts, Counter of dropped candidates by reason).
    """
    kept: list[str] = []
    dropped: Counter[str] = Counter()
    seen = SeenTexts(demonstrations, existing, threshold=threshold)
    for candidate in candidates:
        text = _clean(candidate) if candidate is not None else ""
        reason = seen.reason(text)
        if reason is None and limit is not None and len(kept) >= limit:
            reason = "surplus"
        if reason is None:
            kept.append(text)
            seen.add(text)
        else:
            dropped[reason] += 1
    return kept, dropped
