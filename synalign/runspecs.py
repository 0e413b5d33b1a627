"""The parsed values of :class:`~synalign.config.RunConfig`'s string options, each parsed once, when the
config is built.

- :class:`Target` (``target``): ``"1x"`` (a multiple of the noise floor) or ``"0.002"`` (absolute MMD²);
- :class:`StrategySpec` (``selection``): a selection strategy name, checked against the registry
  (:func:`synalign.selection.parse_strategy`), with the strategy object and its description for the card;
- :class:`LLMSpec` (``llm``): the backend kind and model of ``--llm``.

Each is a frozen pydantic model that accepts the option's string (a before-validator) and serialises back to
that same string, as given: a ``config.json`` reads and writes exactly as it did when these fields were plain
strings, so the checkpoint's config record (:func:`synalign.graphs.checkpoint.record_run_config`) and old run
directories are unchanged. ``LLMSpec`` and ``StrategySpec`` compare equal to their string
(``config.llm == "eda"``).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_serializer, model_validator

from synalign.errors import InputError

__all__ = ["LLMSpec", "LLMText", "StrategySpec", "StrategyText", "Target", "TargetText", "parse_llm",
           "parse_target"]

_TARGET_RE = re.compile(r"^\s*(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>x|×)?\s*$")


def _number_text(value: float) -> str:
    """``value`` as short as it reads back exactly (``1.0`` → ``"1"``)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


class Target(BaseModel):
    """Divergence target: ``value`` in MMD² units, or ``value`` × a noise floor.

    The loop resolves relative targets against the same-size noise floor: the MMD² a random subset of the
    real set, as large as the accepted synthetic set, gets to the rest of the real set
    (:func:`synalign.divergence.fixed_set_noise_floor`). ``"1x"`` therefore means "as close to the real data
    as real data of the same size". ``text``: the option as given (what it serialises to).
    """

    model_config = ConfigDict(frozen=True)

    value: float = Field(ge=0, allow_inf_nan=False)
    relative: bool
    text: str

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            return _target_parts(data)
        if isinstance(data, dict) and "text" not in data and {"value", "relative"} <= data.keys():
            number = _number_text(float(data["value"]))
            return {**data, "text": f"{number}x" if data["relative"] else number}
        return data

    @model_serializer
    def _to_text(self) -> str:
        return self.text

    def resolve(self, noise_floor: float) -> float:
        """Absolute MMD² threshold given the noise floor (MMD² units)."""
        return self.value * max(noise_floor, 0.0) if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value:g}x noise floor" if self.relative else f"MMD² ≤ {self.value:g}"


def _target_parts(text: str) -> dict[str, Any]:
    match = _TARGET_RE.match(text)
    if not match:
        raise ValueError(
            f"target must be a number (absolute MMD²) or a multiple of the noise floor like '2x', "
            f"got {text!r}"
        )
    if not math.isfinite(float(match["value"])):
        raise ValueError(f"target must be a finite number, got {text!r}")
    return {"value": float(match["value"]), "relative": bool(match["unit"]), "text": text}


def parse_target(text: str) -> Target:
    """Parse ``"0.002"`` (absolute MMD²) or ``"2x"`` (2 × noise floor).

    Raises:
        ValueError: for anything else.
    """
    return Target(**_target_parts(text))


def parse_llm(spec: str) -> tuple[str, str]:
    """Split ``--llm`` into ``(kind, model)``.

    - ``"openai:MODEL"``: OpenAI or any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, LM
      Studio, ...) through ``--base-url``; ``model`` is the name the endpoint knows.
    - ``"local"`` / ``"local:PATH.gguf"``: the embedded local LM (:mod:`synalign.agents.llamacpp`); ``model``
      is ``""`` for the embedded Gemma 3 270M or the GGUF path.
    - ``"eda"``: the no-LLM EDA backend; ``model`` is ``""``.

    Raises:
        InputError: anything else.
    """
    provider, sep, model = spec.strip().partition(":")
    kind = provider.strip().lower()
    if kind in ("local", "eda") and (kind == "local" or not sep):
        if kind == "local" and sep and not model.strip():
            raise InputError("`llm` local:PATH needs the path of a .gguf model file")
        return kind, model.strip()
    if not sep or not model.strip() or kind != "openai":
        raise InputError(
            "`llm` must be 'eda', 'local', 'local:PATH.gguf' or 'openai:MODEL' (OpenAI or any "
            f"OpenAI-compatible server via `base_url`), got {spec!r}"
        )
    return "openai", model.strip()


class LLMSpec(BaseModel):
    """``--llm``, parsed once (:func:`parse_llm`).

    Attributes:
        kind: ``"eda"``, ``"local"`` or ``"openai"``.
        model: the model the endpoint knows (``openai``), the GGUF path (``local:PATH``), else ``""``.
        text: the option as given (what it serialises to); ``None`` for a ``config.json`` saved before the
            local LM existed (``"llm": null``), which ran, and so resumes, with the EDA backend.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["eda", "local", "openai"]
    model: str
    text: str | None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if data is None:
            return {"kind": "eda", "model": "", "text": None}
        if isinstance(data, str):
            try:
                kind, model = parse_llm(data)
            except InputError as exc:
                raise ValueError(str(exc).removeprefix("`llm` ")) from None
            return {"kind": kind, "model": model, "text": data}
        if isinstance(data, dict) and "text" not in data and "kind" in data:
            model = data.get("model") or ""
            return {**data, "model": model, "text": f"{data['kind']}:{model}" if model else data["kind"]}
        return data

    @model_serializer
    def _to_text(self) -> str | None:
        return self.text

    def __str__(self) -> str:
        return self.text if self.text is not None else self.kind

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.text == other
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(self.text)


_NOTES = {
    "filter": "drop samples a classifier fitted on the real examples confidently assigns to another label "
    "(threshold by cross-validation on the real set), then select at random",
    "random": "a uniform random subset of each label's pool",
    "herding": "kernel herding: greedily the samples that move the selected set's kernel mean closest to the "
    "real examples'",
    "top_weight": "the samples with the largest kernel-mean-matching weights",
    "proportional": "samples drawn in proportion to their kernel-mean-matching weights",
}
"""One line per built-in selection strategy, for the dataset card (:attr:`StrategySpec.description`)."""


class StrategySpec(BaseModel):
    """``--selection``, checked against the strategy registry once
    (:func:`synalign.selection.parse_strategy`).

    Attributes:
        name: the name as given (what it serialises to): a registered strategy, ``"filter"`` or
            ``"filter+NAME"``.
        strategy: the :class:`synalign.selection.Strategy` object the name stands for.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    strategy: Any = Field(repr=False)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "strategy" not in data and isinstance(data.get("name"), str):
            data = data["name"]
        if isinstance(data, str):
            from synalign.selection import parse_strategy

            try:
                return {"name": data, "strategy": parse_strategy(data)}
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return data

    @model_serializer
    def _to_name(self) -> str:
        return self.name

    @property
    def description(self) -> str:
        """What the strategy does, in one line (the dataset card's)."""
        return self.describe(self.name)

    @staticmethod
    def describe(name: str) -> str:
        """:attr:`description` of the strategy called ``name``, registered in this process or not (the card of
        a run directory written by another process, :mod:`synalign.artifacts.export`)."""
        base = name.split("+", 1)
        if len(base) == 2 and base[0] == "filter":
            note = f"{_NOTES['filter'].rsplit(', then', 1)[0]}, then `{base[1]}`"
            return note + (f" ({_NOTES[base[1]]})" if base[1] in _NOTES else "")
        return _NOTES.get(name, "a registered selection strategy")

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.name == other
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(self.name)


_STRING = WithJsonSchema({"type": "string"})

TargetText = Annotated[Target, _STRING]
StrategyText = Annotated[StrategySpec, _STRING]
LLMText = Annotated[LLMSpec, WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "null"}]})]
"""The field types of a settings model (``RunConfig``, ``StudioConfig``): the parsed option, whose JSON schema
(a form's, e.g. LangGraph Studio's) is that of the string it is given and saved as."""
