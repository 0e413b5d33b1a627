"""Build framework objects from a declarative :class:`~synalign.prompts.PromptSpec`.

One spec, three views that cannot drift apart:

- :func:`to_signature`: a ``dspy.Signature`` (inputs, outputs, types and descriptions in spec order);
- :func:`output_model`: a pydantic model of the outputs (every field required), the structured-output
  schema of a LangChain chat model;
- :func:`to_chat_prompt`: a LangChain ``ChatPromptTemplate`` (system = instructions + field descriptions,
  human = the inputs, with list inputs pre-rendered as numbered lines by :func:`render_inputs`).

Optimised DSPy state is saved by :func:`save_optimized` as JSON together with the spec's SHA-256, and
:func:`load_optimized` refuses a file whose hash differs from the spec in use: DSPy restores field
descriptions by position (``Signature.load_state`` zips saved fields with current ones), so a renamed or
reordered spec would otherwise silently get the wrong descriptions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field, create_model

from synalign.errors import InputError
from synalign.fileio import atomic_write_text, read_json
from synalign.prompts import FieldSpec, PromptSpec, load_spec

if TYPE_CHECKING:
    import dspy
    from langchain_core.prompts import ChatPromptTemplate

__all__ = [
    "STATE_FORMAT",
    "to_signature",
    "output_model",
    "to_chat_prompt",
    "render_inputs",
    "save_optimized",
    "load_optimized",
]

STATE_FORMAT = "synalign-dspy-state/1"
"""Value of the ``format`` key of optimised-state files."""

_PY_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "list[str]": list[str]}


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) or "Spec"


def to_signature(spec: PromptSpec | str) -> type[dspy.Signature]:
    """The DSPy Signature of ``spec``: fields in spec order, typed, described; instructions as docstring.

    Raises:
        InputError: when ``spec`` is a name or path that does not load.
    """
    import dspy

    spec = load_spec(spec) if isinstance(spec, str) else spec
    fields: dict[str, tuple[Any, Any]] = {}
    for f in spec.inputs:
        fields[f.name] = (_PY_TYPES[f.type], dspy.InputField(desc=f.description))
    for f in spec.outputs:
        fields[f.name] = (_PY_TYPES[f.type], dspy.OutputField(desc=f.description))
    return dspy.make_signature(fields, spec.instructions.strip(), signature_name=_camel(spec.name) + "Signature")


def output_model(spec: PromptSpec | str) -> type[BaseModel]:
    """Pydantic model of the spec's outputs, every field required (OpenAI strict structured output needs
    all properties required), with the spec's ``max_length`` / ``max_items`` bounds; the model's docstring is
    the first line of the instructions."""
    spec = load_spec(spec) if isinstance(spec, str) else spec
    fields: dict[str, Any] = {}
    for f in spec.outputs:
        if f.type == "list[str]":
            item = Annotated[str, Field(max_length=f.max_length)] if f.max_length else str
            # `item` is a type built at run time (a bounded str), which mypy cannot take as a type argument
            fields[f.name] = (list[item], Field(description=f.description, max_length=f.max_items))  # type: ignore[valid-type]
        else:
            fields[f.name] = (_PY_TYPES[f.type], Field(description=f.description, max_length=f.max_length))
    model = create_model(_camel(spec.name), **fields)
    model.__doc__ = spec.instructions.strip().splitlines()[0]
    return model


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _describe(fields: tuple[FieldSpec, ...]) -> str:
    return "\n".join(f"- {f.name} ({f.type}): {f.description}".rstrip(": ") for f in fields)


def to_chat_prompt(spec: PromptSpec | str) -> ChatPromptTemplate:
    """LangChain chat prompt of ``spec``. Variables are the input field names; fill them with
    :func:`render_inputs` (list inputs become numbered lines, which the test server also reads)."""
    from langchain_core.prompts import ChatPromptTemplate

    spec = load_spec(spec) if isinstance(spec, str) else spec
    system = (
        f"{spec.instructions.strip()}\n\n"
        f"Inputs:\n{_describe(spec.inputs)}\n\n"
        f"Reply with these fields:\n{_describe(spec.outputs)}"
    )
    human = "\n\n".join(
        f"{f.name.replace('_', ' ').capitalize()}:" + ("\n" if f.type == "list[str]" else " ") + "{" + f.name + "}"
        for f in spec.inputs
    )
    return ChatPromptTemplate.from_messages([("system", _escape(system)), ("human", human)])


def render_inputs(spec: PromptSpec, values: dict[str, Any]) -> dict[str, str]:
    """String values for :func:`to_chat_prompt` (``list[str]`` → ``"1. a\\n2. b"``).

    Raises:
        ValueError: when an input field of the spec is missing from ``values``.
    """
    out: dict[str, str] = {}
    for f in spec.inputs:
        if f.name not in values:
            raise ValueError(f"missing input field {f.name!r} for prompt {spec.name!r}")
        value = values[f.name]
        if f.type == "list[str]":
            out[f.name] = "\n".join(f"{i}. {' '.join(str(v).split())}" for i, v in enumerate(value, 1))
        else:
            out[f.name] = str(value)
    return out


def save_optimized(
    program: dspy.Module, path: Path | str, spec: PromptSpec, *, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``program``'s DSPy state (``dump_state()``) with the spec's name and SHA-256 to ``path`` (JSON).

    No LM settings are written (predictors run under ``dspy.context``; any ``lm`` entry is dropped), so no
    endpoint or key can leak into the file. ``extra`` (e.g. optimiser name and scores) is stored as is.
    """
    state = program.dump_state()
    for value in state.values():
        if isinstance(value, dict) and "lm" in value:
            value["lm"] = None
    payload = {
        "format": STATE_FORMAT,
        "spec": spec.name,
        "spec_version": spec.version,
        "spec_sha256": spec.sha256,
        "state": state,
        "meta": extra or {},
    }
    path = Path(path)
    atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False, default=str))
    return path


def load_optimized(program: dspy.Module, path: Path | str, spec: PromptSpec) -> dspy.Module:
    """Load state written by :func:`save_optimized` into ``program`` (built from ``spec``); returns it.

    Raises:
        InputError: unreadable or non-JSON file, not a synalign state file, a state for another spec, or a
            spec hash mismatch (the spec changed since optimisation; re-run ``synalign optimize``).
    """
    path = Path(path)
    payload = read_json(path, "optimised prompt state")
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise InputError(f"{path}: not a synalign optimised-prompt file (expected format {STATE_FORMAT!r})")
    if payload.get("spec") != spec.name:
        raise InputError(f"{path}: optimised state is for prompt {payload.get('spec')!r}, not {spec.name!r}")
    if payload.get("spec_sha256") != spec.sha256:
        raise InputError(
            f"{path}: prompt spec {spec.name!r} changed since this state was optimised "
            f"(spec sha256 {str(payload.get('spec_sha256'))[:12]}… ≠ current {spec.sha256[:12]}…); "
            "DSPy restores fields by position, so re-run `synalign optimize`"
        )
    try:
        program.load_state(payload["state"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: optimised state does not fit the program ({type(exc).__name__}: {exc})") from None
    return program
