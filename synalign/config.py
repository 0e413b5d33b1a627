"""Run configuration (validated with pydantic), resolved once and written to ``DIR/config.json``."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from synalign.errors import InputError

__all__ = ["RunConfig", "Target", "parse_target", "parse_llm", "DEFAULT_LLM"]

DEFAULT_LLM = "local"
"""Backend of a run without ``--llm`` (and without ``$SYNALIGN_LLM``), decided by measurement
(``evals/backend_choice.py``, README "Which backend is the default"): on the bundled SST-2 demo and on AG News
the embedded local LM's accepted set reached ≥ 85 % label fidelity (0.94 on both) and real + its accepted set
beat real + the EDA accepted set in downstream accuracy at equal size (+1.7 and +0.5 points, paired p < 0.01)."""


def _default_llm() -> str:
    return os.environ.get("SYNALIGN_LLM") or DEFAULT_LLM


_TARGET_RE = re.compile(r"^\s*(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>x|×)?\s*$")


class Target(BaseModel):
    """Divergence target: ``value`` in MMD² units, or ``value`` × a noise floor.

    The loop resolves relative targets against the same-size noise floor: the MMD² a random subset of the
    real set, as large as the accepted synthetic set, gets to the rest of the real set
    (:func:`synalign.divergence.fixed_set_noise_floor`). ``"1x"`` therefore means "as close to the real data as
    real data of the same size".
    """

    value: float = Field(ge=0)
    relative: bool

    def resolve(self, noise_floor: float) -> float:
        """Absolute MMD² threshold given the noise floor (MMD² units)."""
        return self.value * max(noise_floor, 0.0) if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value:g}x noise floor" if self.relative else f"MMD² ≤ {self.value:g}"


def parse_target(text: str) -> Target:
    """Parse ``"0.002"`` (absolute MMD²) or ``"2x"`` (2 × noise floor).

    Raises:
        ValueError: for anything else.
    """
    match = _TARGET_RE.match(text)
    if not match:
        raise ValueError(f"target must be a number (absolute MMD²) or a multiple of the noise floor like '2x', got {text!r}")
    return Target(value=float(match["value"]), relative=bool(match["unit"]))


def parse_llm(spec: str) -> tuple[str, str]:
    """Split ``--llm`` into ``(kind, model)``.

    - ``"openai:MODEL"``: OpenAI or any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, LM
      Studio, ...) through ``--base-url``; ``model`` is the name the endpoint knows.
    - ``"local"`` / ``"local:PATH.gguf"``: the embedded local LM (:mod:`synalign.local`); ``model`` is
      ``""`` for the embedded Gemma 3 270M or the GGUF path.
    - ``"eda"``: the no-LLM EDA backend; ``model`` is ``""``.

    Raises:
        InputError: anything else.
    """
    provider, sep, model = spec.strip().partition(":")
    kind = provider.strip().lower()
    if kind in ("local", "eda") and (kind == "local" or not sep):
        if kind == "local" and sep and not model.strip():
            raise InputError("--llm local:PATH needs the path of a .gguf model file")
        return kind, model.strip()
    if not sep or not model.strip() or kind != "openai":
        raise InputError(
            "--llm must be 'eda', 'local', 'local:PATH.gguf' or 'openai:MODEL' (OpenAI or any "
            f"OpenAI-compatible server via --base-url), got {spec!r}"
        )
    return "openai", model.strip()


class RunConfig(BaseModel):
    """Everything a run needs; defaults suit a 2-core CPU machine and a few hundred real examples per label.

    Budgets: the loop stops when the accepted set's MMD² to the real set is at most ``target``, or after
    ``max_rounds`` rounds, or once ``max_samples`` synthetic samples have been generated.
    """

    model_config = ConfigDict(extra="forbid")

    data: Path
    out: Path
    text_field: str = "text"
    label_field: str = "label"
    task: str | None = Field(default=None, description="Task description given to the summariser and generator.")
    embedding_model: str | None = Field(default=None, description="sentence-transformers name or path; None = bundled MiniLM.")
    max_real: int = Field(default=2000, ge=2, description="Stratified sample of the real set used per run.")
    clusters_per_label: int = Field(default=2, ge=1, description="Demonstration clusters per label per round.")
    cluster_size: int = Field(default=8, ge=1, description="Pick + (cluster_size - 1) nearest neighbours.")
    samples_per_cluster: int = Field(default=16, ge=1)
    max_rounds: int = Field(default=4, ge=1)
    max_samples: int | None = Field(default=None, ge=1)
    target: str = Field(
        default="1x", description="Absolute MMD² ('0.002') or multiple of the same-size noise floor ('1.5x')."
    )
    selection: str = Field(
        default="filter",
        description="Selection strategy (synalign.alignment): 'filter' (label-consistency filter + random, the "
        "measured default), 'filter+NAME', or herding / top_weight / proportional / random.",
    )
    accept_fraction: float = Field(default=0.5, gt=0, le=1)
    length_scale: float | None = Field(default=None, gt=0, description="GP RBF length-scale; None = median heuristic.")
    witness_guided: bool = Field(default=True, description="From round 2, aim the explorer at under-covered real regions.")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache_dir: Path | None = None
    llm: str | None = Field(
        default_factory=_default_llm,
        validate_default=True,
        description="'eda' (no LLM), 'local' (embedded Gemma 3 270M), 'local:PATH.gguf' or 'openai:MODEL'; "
        "default $SYNALIGN_LLM, else DEFAULT_LLM. None (configs saved before the local LM existed) = 'eda'.",
    )
    item_name: str | None = Field(
        default=None, description="Base models: what one example is called in the continuation lines "
        "('Movie review', 'News article'); None = 'Text'."
    )
    prompt_style: Literal["auto", "chat", "completion"] = Field(
        default="auto", description="chat (instruction models) or completion (base models); auto = completion "
        "for --llm local, chat otherwise."
    )
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.8
    max_tokens: int | None = Field(default=None, description="Max output tokens per call; None = 1024 (chat), 96 (completion).")
    max_concurrency: int = 4
    llm_cache: bool = True
    prompts: Path | None = Field(default=None, description="Optimised DSPy generator state (synalign optimize).")

    @field_validator("llm")
    @classmethod
    def _check_llm(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_llm(value)
            except InputError as exc:
                raise ValueError(str(exc).removeprefix("--llm ")) from None
        return value

    @field_validator("target")
    @classmethod
    def _check_target(cls, value: str) -> str:
        parse_target(value)
        return value

    @field_validator("seed")
    @classmethod
    def _check_seed(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"must be >= 0, got {value}")
        return value

    @field_validator("temperature")
    @classmethod
    def _check_temperature(cls, value: float) -> float:
        if not math.isfinite(value) or not 0.0 <= value <= 2.0:
            raise ValueError(f"must be a number from 0 to 2, got {value}")
        return value

    @field_validator("max_tokens", "max_concurrency")
    @classmethod
    def _check_positive(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be >= 1, got {value}")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from pydantic import AnyHttpUrl, TypeAdapter, ValidationError

        try:
            TypeAdapter(AnyHttpUrl).validate_python(value)
        except ValidationError:
            raise ValueError(f"must be an http:// or https:// URL such as http://localhost:8000/v1, got {value!r}") from None
        return value

    @model_validator(mode="after")
    def _check_backend_options(self) -> RunConfig:
        """Options the chosen backend would ignore are refused, never silently dropped."""
        if self.base_url is not None and self.backend_kind != "openai":
            raise ValueError(
                f"--base-url needs --llm openai:MODEL (an OpenAI-compatible server); the {self.backend_kind} "
                "backend would ignore it"
            )
        if self.backend_kind == "eda":
            if self.prompts is not None:
                raise ValueError("--prompts needs an LLM backend (--llm ...); the EDA backend would ignore it")
        if self.prompts is not None:
            from synalign.io import read_json

            try:
                read_json(self.prompts, "optimised prompt state")
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return self

    @property
    def backend_kind(self) -> str:
        """``"eda"``, ``"local"`` or ``"openai"``: the backend ``llm`` selects (None = ``"eda"``, the default of
        runs saved before the local LM, so resuming one never switches its backend)."""
        return (self.llm or "eda").split(":", 1)[0].strip().lower()

    @property
    def parsed_target(self) -> Target:
        return parse_target(self.target)

    def task_description(self, labels: list[str]) -> str:
        """The given task, or a generic one naming the labels."""
        if self.task:
            return self.task
        return "Text classification into the labels: " + ", ".join(labels) + "."
