"""The offline (no-LLM) backend: :class:`~synalign.statsummary.StatisticalSummarizer` +
:class:`~synalign.eda.EDAGenerator`, and the note that marks its output as not written by a language model.

Used when no LLM endpoint is configured so that the whole SynAlign loop (explore → summarise → generate →
align) runs anywhere. Nothing here is an LLM: every attribute summary says
``"offline statistical summary (no LLM)"`` (:data:`synalign.statsummary.OFFLINE_NOTE`) in its ``other``
field, generated records carry the backend name ``"offline:eda"``, :func:`offline_backend` returns a
:class:`~synalign.backends.Backend` with ``is_llm=False``, and a run's ``summary.json``, report and console
line carry :data:`OFFLINE_RUN_NOTE`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from synalign.backends import Backend
from synalign.eda import EDAGenerator
from synalign.statsummary import StatisticalSummarizer

__all__ = ["OFFLINE_RUN_NOTE", "offline_backend"]

OFFLINE_RUN_NOTE = (
    "produced by the EDA backend (no language model): statistical attribute summaries and EDA augmentation "
    "(Wei & Zou 2019) of real demonstrations"
)
"""What made a run's synthetic data when its backend is not an LLM (``summary.json`` ``backend.note``; the
report and the console print it after "Synthetic data")."""


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
