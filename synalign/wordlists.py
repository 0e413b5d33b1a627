"""English word lists and the word tokeniser shared by the offline summariser and the EDA generator.

Stop words (never replaced, used as synonym sources, or reported as distinctive terms), negation cues
(never replaced, deleted, swapped or inserted) and :func:`lower_words`, the lower-case word tokeniser.
"""

from __future__ import annotations

import re

__all__ = ["NEGATIONS", "STOP_WORDS", "is_negation", "lower_words", "wordset"]


def wordset(words: str) -> frozenset[str]:
    """The whitespace-separated words of ``words`` as a frozenset."""
    return frozenset(words.split())


# Stop list of the EDA reference implementation (github.com/jasonwei20/eda_nlp, code/eda.py; NLTK's English
# list), plus the clitics and bracket tokens of Penn-Treebank-tokenised text (SST, GLUE). Stop words are
# never replaced, used as synonym sources, or reported as distinctive terms.
STOP_WORDS = wordset(
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
NEGATIONS = wordset("not n't no never nor cannot none nothing nobody neither nowhere without")

_WORD_RE = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def lower_words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, with internal apostrophes: ``n't``, ``don't``)."""
    return _WORD_RE.findall(text.lower())


def is_negation(word: str) -> bool:
    """Whether ``word`` is a negation cue (any case, curly apostrophe allowed, or ending in ``n't``)."""
    word = word.lower().replace("’", "'")
    return word in NEGATIONS or word.endswith("n't")
