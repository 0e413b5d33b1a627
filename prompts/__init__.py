"""Declarative prompt specs (YAML): instructions plus ordered, typed input and output fields.

A spec is framework-free data; :mod:`synalign.agents.specs` turns it into a DSPy Signature, a pydantic
output schema and a LangChain chat prompt. Specs shipped with synalign:

- ``summarize_attributes``: demonstration cluster + label + task → typed attribute summary (style, tone,
  topic, sub-topics, length, perspective, other); SynAlign stage 2, "latent attribute reasoning"
  (Ren et al., WWW 2025, §3.2).
- ``generate_samples``: task + label + attributes + demonstrations + n → n new texts of that label.

:attr:`PromptSpec.sha256` hashes the spec's canonical JSON (field order included). Optimised DSPy state is
stored with that hash and refused on mismatch, because DSPy restores field descriptions by position.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synalign.errors import InputError, first_validation_error
from synalign.records import AttributeSummary

__all__ = ["FieldSpec", "CompletionTemplate", "PromptSpec", "FIELD_TYPES", "RECORD_SCHEMAS", "load_spec", "spec_names"]

FIELD_TYPES = ("str", "int", "float", "bool", "list[str]")
"""Field types a spec may use (kept to what DSPy, JSON schema and chat prompts all express the same way)."""

RECORD_SCHEMAS: dict[str, type[BaseModel]] = {"AttributeSummary": AttributeSummary}
"""Core records a spec may name as its ``outputs`` (``outputs: AttributeSummary``): the fields, their order,
descriptions and bounds then come from the record, so the prompt and the data model cannot drift apart."""

_ANNOTATION_TYPES: dict[object, str] = {str: "str", int: "int", float: "float", bool: "bool", list[str]: "list[str]"}


def _record_fields(name: str) -> list[dict[str, object]]:
    """:class:`FieldSpec` data of every field of the core record ``name`` (see :data:`RECORD_SCHEMAS`)."""
    if name not in RECORD_SCHEMAS:
        raise ValueError(f"outputs names no known record {name!r}; known: {', '.join(sorted(RECORD_SCHEMAS))}")
    fields: list[dict[str, object]] = []
    for field_name, info in RECORD_SCHEMAS[name].model_fields.items():
        kind = _ANNOTATION_TYPES.get(info.annotation)
        if kind is None:
            raise ValueError(f"record {name}.{field_name} has a type a spec cannot express: {info.annotation}")
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        fields.append({"name": field_name, "type": kind, "description": info.description or "", **extra})
    return fields


class FieldSpec(BaseModel):
    """One input or output field: an identifier, one of :data:`FIELD_TYPES`, a description and, for outputs,
    optional bounds (``max_length`` of a string, ``max_items`` of a list) that become JSON-schema ``maxLength`` /
    ``maxItems``: a constrained-decoding server (llama.cpp, vLLM) then cannot loop until ``max_tokens``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: Literal["str", "int", "float", "bool", "list[str]"] = "str"
    description: str = ""
    max_length: int | None = Field(
        default=None, ge=1, description="Output str (or each list item): at most this many characters."
    )
    max_items: int | None = Field(default=None, ge=1, description="Output list[str]: at most this many items.")


class CompletionTemplate(BaseModel):
    """The base-model (completion) form of a spec: few-shot *continuation lines* instead of instructions.

    A base model is not told what to do; it is shown a document to continue. The prompt is ``header`` (may
    be empty) followed by one ``line`` per demonstration and an open line for the model to finish::

        {header}
        {item} ({label}): <demonstration 1>
        ...
        {item} ({label}):

    and the reply up to the first ``stop`` sequence is one new text of ``output``. Placeholders: ``{item}``
    (:attr:`item`), ``{label}``, ``{text}``, and in ``header`` any input field by name.

    Attributes:
        header: first line(s) of the prompt (e.g. the attributes), ``""`` for none.
        line: one example line; must contain ``{label}`` and end with ``{text}``.
        item: what one example is called in the lines (``"Text"``, ``"Movie review"``...).
        stop: stop sequences; the default ends a text at the end of its line.
        output: the ``list[str]`` output field the texts fill.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: str = ""
    line: str = "{item} ({label}): {text}"
    item: str = "Text"
    stop: tuple[str, ...] = ("\n",)
    output: str = "texts"

    @field_validator("line")
    @classmethod
    def _line_shape(cls, value: str) -> str:
        if "{label}" not in value or not value.endswith("{text}") or "\n" in value:
            raise ValueError("line must be one line containing {label} and ending with {text}")
        return value


class PromptSpec(BaseModel):
    """A declarative prompt: ``instructions`` and ordered ``inputs`` → ``outputs``; optionally a
    :class:`CompletionTemplate` for base (completion) models beside the chat form."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int = 1
    instructions: str
    inputs: tuple[FieldSpec, ...]
    outputs: tuple[FieldSpec, ...]
    completion: CompletionTemplate | None = None

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs_from_record(cls, value: object) -> object:
        return _record_fields(value) if isinstance(value, str) else value

    @field_validator("instructions")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("instructions must not be empty")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> PromptSpec:
        if not self.inputs or not self.outputs:
            raise ValueError("a spec needs at least one input and one output field")
        names = [f.name for f in (*self.inputs, *self.outputs)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"field names must be unique, repeated: {', '.join(dupes)}")
        if self.completion is not None:
            outputs = {f.name: f.type for f in self.outputs}
            if outputs.get(self.completion.output) != "list[str]":
                raise ValueError(f"completion.output {self.completion.output!r} must name a list[str] output field")
        return self

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of the canonical JSON of the spec; changes when any field is renamed, retyped,
        re-described or reordered, or the instructions change."""
        canonical = json.dumps(
            self.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def input_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    def output_names(self) -> list[str]:
        return [f.name for f in self.outputs]


def spec_names() -> list[str]:
    """Names of the specs shipped in ``synalign.prompts`` (the ``*.yaml`` files)."""
    root = resources.files("synalign.prompts")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_spec(name_or_path: str | Path) -> PromptSpec:
    """Load a spec by shipped name (``"generate_samples"``) or from a YAML file path.

    Raises:
        InputError: unknown name, unreadable file, invalid YAML, or a spec that does not validate
            (one line naming the file and the problem).
    """
    text, where = _read(name_or_path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{where}{line}: invalid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: a prompt spec must be a YAML mapping with name, instructions, inputs, outputs")
    try:
        return PromptSpec.model_validate(data)
    except ValidationError as exc:
        loc, msg, _ = first_validation_error(exc)
        raise InputError(f"{where}: invalid prompt spec at {loc or 'spec'}: {msg}") from None


def _read(name_or_path: str | Path) -> tuple[str, str]:
    candidate = Path(name_or_path)
    if isinstance(name_or_path, Path) or candidate.suffix in (".yaml", ".yml") or "/" in str(name_or_path):
        try:
            return candidate.read_text(encoding="utf-8"), str(candidate)
        except OSError as exc:
            raise InputError(f"{candidate}: cannot read prompt spec ({exc.strerror or exc})") from None
    resource = resources.files("synalign.prompts") / f"{name_or_path}.yaml"
    if not resource.is_file():
        raise InputError(f"unknown prompt spec {str(name_or_path)!r}; shipped specs: {', '.join(spec_names())}")
    return resource.read_text(encoding="utf-8"), f"synalign/prompts/{name_or_path}.yaml"
