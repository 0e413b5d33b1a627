"""``summary.json``: what a finished run (or ``synalign align``) recorded, as one typed model.

:class:`RunSummary` is written by the runner (:func:`synalign.graphs.runner.write_outputs`) and read back by the
report, the dataset card, the export, the CLI and the evaluation scripts: nobody reads the file by key.

Every field may be missing from a summary written by an earlier version (``generated_per_label``, ``usage``,
``usage_processes``, ``embedding_max_seq_length`` and ``accept_fraction`` came later, the verdict and its
``utility`` / ``fidelity`` / ``novelty`` / ``validation`` later still), or from the partial summaries the
renderers accept; a missing field is ``None``, as ``dict.get`` read it. :meth:`RunSummary.to_json` writes the
same bytes the runner always wrote (the fields in their order, ``json.dumps(indent=2, ensure_ascii=False)``);
the align-only fields (``command``, ``real_data``, ``pool``) are left out when unset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, field_validator, model_serializer

from synalign.utility import UtilityEstimate
from synalign.verdict import Fidelity, Novelty, Verdict

__all__ = ["CostRecord", "RunSummary", "ValidationRecord", "as_summary"]

_ALIGN_ONLY = ("command", "real_data", "pool")
_LATER = ("cost",)
"""Fields added after summaries were first compared byte for byte: left out when unset, like the align-only ones."""


class CostRecord(BaseModel):
    """What one accepted text cost (issue 20, item 5), over every process of the run.

    Attributes:
        generated_per_accepted: texts generated per text accepted (over-generation).
        llm_calls_per_accepted: generation and summariser LM calls per accepted text (retries and top-ups
            included; label-check requests not).
        label_check_calls_per_accepted: one-token label-check requests per accepted text (``label_check`` lm).
        seconds_per_accepted: wall seconds of the run's last process per accepted text.
    """

    model_config = ConfigDict(frozen=True)

    generated_per_accepted: float | None = None
    llm_calls_per_accepted: float | None = None
    label_check_calls_per_accepted: float | None = None
    seconds_per_accepted: float | None = None

    @classmethod
    def of(cls, generated: int, accepted: int, usage: Mapping[str, Any] | None, wall_seconds: float) -> CostRecord:
        """The record of a run that generated / accepted that many texts with this merged ``usage``."""
        if accepted <= 0:
            return cls()
        usage = usage or {}
        calls = usage.get("llm_calls")
        checks = usage.get("label_check_calls")
        return cls(
            generated_per_accepted=round(generated / accepted, 3),
            llm_calls_per_accepted=round(float(calls) / accepted, 3) if calls is not None else None,
            label_check_calls_per_accepted=round(float(checks) / accepted, 3) if checks is not None else None,
            seconds_per_accepted=round(wall_seconds / accepted, 3),
        )


class ValidationRecord(BaseModel):
    """The run's validation slice (:mod:`synalign.holdout`): where it came from, its size, per label, its ids."""

    model_config = ConfigDict(frozen=True)

    source: str | None = None
    size: int | None = None
    per_label: dict[str, int] | None = None
    ids: list[str] | None = None


class RunSummary(BaseModel):
    """The content of ``summary.json``, in the order it is written.

    Attributes:
        stop_reason: why the loop stopped (``target``, ``max_rounds``, ``max_samples``, ``utility_plateau``,
            ``single_pass`` for ``synalign align``).
        rounds: rounds run.
        generated / accepted: samples generated / accepted; ``labels`` / ``generated_per_label``: the same per
            label.
        real_examples: real examples the run matched; ``label_names``: label value → name in the prompts.
        bandwidth, noise_floor, noise_floor_std, target, target_mmd2, noise_floor_same_size, final_mmd2: the
            divergence figures of the last round (``target`` as text, e.g. ``"1.5x noise floor"``).
        selection, accept_fraction: the selection strategy and the share of each label's pool it keeps.
        backend: ``name``, ``is_llm``, the backend's own ``info`` (kind, model, terms, endpoints...; its shape
            is the backend's, :attr:`synalign.backends.Backend.info`) and ``note``.
        usage / usage_processes: LLM usage summed over every process of the run
            (:func:`synalign.agents.usage.merge_usage`) and how many processes that is.
        dropped: samples dropped before alignment, by reason.
        embedding_model / embedding_max_seq_length: the embedder and its truncation.
        wall_seconds: the run's wall time; ``cost``: per accepted text (:class:`CostRecord`).
        verdict, utility, fidelity, novelty, validation: the judged last round (:mod:`synalign.verdict`).
        command, real_data, pool: ``synalign align`` only (``"align"``, its real data and pool paths).
    """

    model_config = ConfigDict(frozen=True)

    stop_reason: str | None = None
    rounds: int | None = None
    generated: int | None = None
    accepted: int | None = None
    labels: dict[str, int] | None = None
    generated_per_label: dict[str, int] | None = None
    real_examples: int | None = None
    label_names: dict[str, str] | None = None
    bandwidth: float | None = None
    noise_floor: float | None = None
    noise_floor_std: float | None = None
    target: str | None = None
    target_mmd2: float | None = None
    noise_floor_same_size: float | None = None
    final_mmd2: float | None = None
    selection: str | None = None
    backend: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    usage_processes: int | None = None
    dropped: dict[str, int] | None = None
    embedding_model: str | None = None
    embedding_max_seq_length: int | None = None
    wall_seconds: float | None = None
    cost: CostRecord | None = None
    accept_fraction: float | None = None
    verdict: Verdict | None = None
    utility: UtilityEstimate | None = None
    fidelity: Fidelity | None = None
    novelty: Novelty | None = None
    validation: ValidationRecord | None = None
    command: str | None = None
    real_data: str | None = None
    pool: str | None = None

    @field_validator("verdict", "utility", "fidelity", "novelty", "validation", "cost", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value or None  # an empty record (``{}``) is no record, as the renderers always read it

    @model_serializer(mode="wrap")
    def _drop_unset_align_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for key in (*_ALIGN_ONLY, *_LATER):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    def __getitem__(self, key: str) -> Any:
        """Item access: a key's value as ``summary.json`` holds it (plain dicts and lists), for code that read
        the dict; new code reads the attributes.

        Raises:
            KeyError: not a field of ``summary.json``.
        """
        data = self.model_dump()
        if key not in data:
            raise KeyError(key)
        return data[key]

    def to_json(self) -> str:
        """The text of ``summary.json``: the fields in order, indented by 2, non-ASCII kept, a final newline."""
        return json.dumps(self.model_dump(), indent=2, ensure_ascii=False) + "\n"


def as_summary(summary: RunSummary | Mapping[str, Any]) -> RunSummary:
    """``summary`` as a :class:`RunSummary` (a mapping, e.g. a parsed ``summary.json``, is validated)."""
    return summary if isinstance(summary, RunSummary) else RunSummary.model_validate(dict(summary))
