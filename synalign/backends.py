"""The roles an LLM (or the offline backend) plays in the loop: attribute summariser, generator and (optional)
label checker.

Core code depends only on these protocols; ``synalign.agents`` provides LLM implementations and
:mod:`synalign.offline` the no-LLM ones. Both take a batch of requests so that LLM implementations can run
them concurrently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from synalign.records import AttributeSummary

__all__ = ["SummaryRequest", "GenerationRequest", "Generation", "Summarizer", "Generator", "LabelChecker", "Backend"]


class SummaryRequest(BaseModel):
    """Input of the attribute summariser: one demonstration cluster."""

    task: str
    label: str
    demonstrations: list[str]
    round: int = 0


class GenerationRequest(BaseModel):
    """Input of the generator: write ``n`` new texts of ``label`` that share ``attributes``.

    ``seed`` makes the request reproducible (offline backend, LLM response cache key). ``contrast`` holds
    real texts of the labels most confused with ``label`` (:mod:`synalign.contrast`), as ``(label name,
    texts)`` blocks an LLM generator shows before the demonstrations (``--contrast``); empty = none.
    """

    task: str
    label: str
    attributes: AttributeSummary
    demonstrations: list[str]
    n: int = Field(ge=1)
    seed: int = 0
    round: int = 0
    contrast: list[tuple[str, list[str]]] = Field(default_factory=list)


class Generation(BaseModel):
    """Output of the generator for one request.

    ``dropped`` counts discarded candidates by reason (``"empty"``, ``"duplicate"``,
    ``"near_duplicate"``, ``"copy_of_demonstration"``...).
    """

    texts: list[str]
    dropped: dict[str, int] = Field(default_factory=dict)


@runtime_checkable
class Summarizer(Protocol):
    """Turns demonstration clusters into :class:`AttributeSummary` objects (one per request, in order)."""

    name: str

    def summarize(self, requests: list[SummaryRequest]) -> list[AttributeSummary]: ...


@runtime_checkable
class Generator(Protocol):
    """Writes new label-conditioned texts (one :class:`Generation` per request, in order).

    A ``generate`` (or a summariser's ``summarize``) that also takes a keyword ``on_done(i, result)``, called
    as each request finishes, gets per-cluster progress in a run; one without it reports once per batch."""

    name: str

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]: ...


@runtime_checkable
class LabelChecker(Protocol):
    """The generating LM's own label check (:mod:`synalign.lmcheck`): one margin per text, in nats.

    ``margins(texts, labels)`` returns, for each text, the log-probability the LM gives the first token of its
    intended label's name minus the best other label's, in a few-shot classification prompt of real examples
    (> 0: the LM reads the text as its label). ``labels`` are the run's label values. A ``margins`` that also
    takes a keyword ``on_done(done, total)`` gets called as texts are scored (progress). ``calls`` counts
    the texts scored so far (one scoring request each) and ``seconds`` the time all their requests took.
    """

    name: str
    calls: int
    seconds: float

    def margins(self, texts: list[str], labels: list[str]) -> list[float]: ...


def _no_usage() -> dict[str, Any]:
    return {}


def _nothing() -> None:
    return None


@dataclass
class Backend:
    """A summariser and a generator that run together, plus where their usage counters come from.

    Attributes:
        name: ``"offline"`` or e.g. ``"openai:gpt-4o-mini"``; written into every synthetic record.
        summarizer, generator: the two roles.
        usage: returns counters for the run summary (calls, failures, retries, tokens in/out, cost...).
        is_llm: False only for the offline backend, whose outputs are never presented as LLM output.
        info: what made the data, for ``config.json``-adjacent outputs and the report: ``kind``
            (``eda``/``local``/``openai``/``custom``), ``model``, ``prompt_style``, ``summarizer``, and for a
            local model its ``gguf`` path, ``gguf_sha256``, server threads/slots and a ``terms`` note.
        close: releases what the backend holds (stops a local model server); the runner calls it once the
            run ends, fails or is interrupted. Idempotent.
        label_checker: the LM's own label check (``label_check`` lm), or None when the backend has none (the
            offline backend; an endpoint without next-token log-probabilities).
    """

    name: str
    summarizer: Summarizer
    generator: Generator
    usage: Callable[[], dict[str, Any]] = field(default=_no_usage)
    is_llm: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    close: Callable[[], None] = field(default=_nothing)
    label_checker: LabelChecker | None = None
