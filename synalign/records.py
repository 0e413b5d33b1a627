"""Typed records: real and synthetic examples, attribute summaries, demonstration clusters.

Synthetic examples carry their provenance (round, backend, the ids of the demonstrations they came from)
and the alignment weight of stage 3 of SynAlign (Ren et al., WWW 2025, §3.3).
"""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, computed_field
from pydantic.json_schema import JsonDict

__all__ = [
    "Example",
    "RealExample",
    "SyntheticExample",
    "AttributeSummary",
    "DemonstrationCluster",
]


class Example(BaseModel):
    """A labelled text. ``id`` is unique within a run."""

    model_config = ConfigDict(frozen=True)

    id: str
    text: str
    label: str


class RealExample(Example):
    """A real (human-written) example; ``source`` is ``"path:line"`` of the file it was read from."""

    source: str | None = None


class SyntheticExample(Example):
    """A generated example with its provenance and alignment state.

    Attributes:
        round: loop round (1-based) that generated it.
        backend: ``"offline:eda"`` for the no-LLM backend, ``"openai:MODEL"`` etc. for LLM backends.
        demonstration_ids: ids of the real examples (the demonstration cluster) it was conditioned on.
        kmm_weight: the kernel-mean-matching importance weight within its label (SynAlign §3.3, Eq. 6: the
            simplex weights minimising the weighted MMD² to the label's real examples; they sum to 1 over a
            label's pool; 0 before the first alignment). A diagnostic of how typical the text is, **not** a
            training weight: many accepted texts have 0 (the KMM solution is sparse). Read from the legacy
            key ``weight`` too.
        accepted: whether the selection strategy kept it in the accepted synthetic set.
        sample_weight: the training weight (computed): 1.0 for an accepted text, 0.0 otherwise. Every
            selection strategy keeps a subset and counts each kept text once, so train on the accepted set
            with this column (or with none).
        label_margin: with ``label_check`` lm, the generating LM's own label check (:mod:`synalign.lmcheck`):
            the log-probability (nats) of the intended label's first name token minus the best other label's,
            in a few-shot classification prompt (> 0: the LM reads the text as its label); absent otherwise.
    """

    model_config = ConfigDict(frozen=False, populate_by_name=True)

    round: int
    backend: str
    demonstration_ids: list[str] = Field(default_factory=list)
    kmm_weight: float = Field(default=0.0, validation_alias=AliasChoices("kmm_weight", "weight"))
    accepted: bool = False
    label_margin: float | None = Field(default=None, exclude_if=lambda v: v is None)

    @computed_field  # type: ignore[prop-decorator]  # mypy rejects decorators over @property; pydantic documents this
    @property
    def sample_weight(self) -> float:
        """Training weight: 1.0 when accepted, else 0.0 (selection keeps a subset; it does not reweight)."""
        return 1.0 if self.accepted else 0.0


_TEXT_BOUND: JsonDict = {"max_length": 200}
_LIST_BOUND: JsonDict = {"max_items": 8, "max_length": 120}


class AttributeSummary(BaseModel):
    """Latent attributes of a demonstration cluster (SynAlign stage 2, "latent attribute reasoning").

    Produced by the attribute summariser (LLM agent or the offline statistical summariser) and passed to
    the generator. All fields are short natural-language descriptions. This model is the one source of the
    summary schema: the ``summarize_attributes`` prompt spec takes its output fields from it (names, order,
    descriptions, and the ``json_schema_extra`` bounds a constrained-decoding server enforces); the model
    itself does not truncate what a summariser returns.
    """

    style: str = Field(description="Writing style, register and formatting.", json_schema_extra=_TEXT_BOUND)
    tone: str = Field(description="Emotional tone and polarity.", json_schema_extra=_TEXT_BOUND)
    topic: str = Field(description="Main topic of the demonstrations.", json_schema_extra=_TEXT_BOUND)
    subtopics: list[str] = Field(
        default_factory=list, description="Sub-topics or recurring aspects.", json_schema_extra=_LIST_BOUND
    )
    length: str = Field(description="Typical length in words.", json_schema_extra=_TEXT_BOUND)
    perspective: str = Field(description="Narrative perspective.", json_schema_extra=_TEXT_BOUND)
    other: list[str] = Field(
        default_factory=list,
        description="Other salient attributes (content proportions, vocabulary, punctuation, casing).",
        json_schema_extra=_LIST_BOUND,
    )

    def render(self) -> str:
        """One readable block, used in prompts and reports."""
        lines = [
            f"style: {self.style}",
            f"tone: {self.tone}",
            f"topic: {self.topic}",
            f"length: {self.length}",
            f"perspective: {self.perspective}",
        ]
        if self.subtopics:
            lines.append("subtopics: " + "; ".join(self.subtopics))
        if self.other:
            lines.append("other: " + "; ".join(self.other))
        return "\n".join(lines)

    def header_line(self) -> str:
        """One line for a base model's continuation prompt: length, tone and the distinctive terms
        (``"5-12 words; negative cues; about: plot, acting"``); style/perspective/other are left out, they
        read as prose a base model would continue."""
        parts = [self.length, self.tone.split(" (", 1)[0].split(";", 1)[0]]
        if self.subtopics:
            parts.append("about: " + ", ".join(self.subtopics[:6]))
        return "; ".join(" ".join(p.split()) for p in parts if p and p.strip())


class DemonstrationCluster(BaseModel):
    """A GP-explorer pick and its k nearest neighbours, all of one label (SynAlign stage 1).

    Attributes:
        label: the shared label.
        pick_id: id of the real example with the largest GP posterior std when it was picked.
        posterior_std: that std (kernel units, in [0, 1] for an RBF kernel with unit output scale).
        example_ids: ``[pick_id, neighbour ids...]`` in order of distance to the pick.
    """

    label: str
    pick_id: str
    posterior_std: float
    example_ids: list[str]
