"""Run configuration (validated with pydantic), resolved once and written to ``DIR/config.json``."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from synalign.errors import InputError

__all__ = ["RunConfig", "Target", "parse_target", "parse_llm", "DEFAULT_LLM", "option_flag", "config_error"]

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

    Each field's description is also its ``synalign run --help`` text (the CLI is generated from these fields,
    :mod:`synalign.app.options`); ``json_schema_extra`` may name a ``cli_flag`` other than ``--field-name``
    and mark a field ``resume_safe`` (``--resume`` may change it: how the run talks to the LLM, never what it
    computes).
    """

    model_config = ConfigDict(extra="forbid")

    data: Path = Field(description="Real data: JSONL/CSV/Parquet file or a directory with train/test splits.")
    out: Path = Field(description="Run directory (created; must not exist unless --resume/--overwrite).")
    text_field: str = Field(default="text", description="Text field/column.")
    label_field: str = Field(default="label", description="Label field/column.")
    task: str | None = Field(default=None, description="Task description for the summariser and generator "
                             "(default: one naming the labels).")
    embedding_model: str | None = Field(
        default=None, description="sentence-transformers name or path (default: the bundled all-MiniLM-L6-v2)."
    )
    max_seq_length: int | None = Field(
        default=None, ge=1, description="Embedding truncation length in tokens (default: the encoder's own, 256 "
        "for all-MiniLM-L6-v2; longer texts are cut)."
    )
    max_real: int = Field(default=2000, ge=2, description="Real examples used (a stratified sample).")
    clusters_per_label: int = Field(default=2, ge=1, description="Demonstration clusters per label per round.")
    cluster_size: int = Field(default=8, ge=1, description="Pick + nearest neighbours per cluster.")
    samples_per_cluster: int = Field(default=16, ge=1, description="Texts generated per cluster.")
    max_rounds: int = Field(default=4, ge=1, description="Maximum rounds.", json_schema_extra={"cli_flag": "--rounds"})
    max_samples: int | None = Field(default=None, ge=1, description="Maximum synthetic samples generated "
                                    "(default: no limit).")
    target: str = Field(
        default="1x", description="Stop at this MMD²: absolute ('0.002') or a multiple of the same-size noise "
        "floor ('1.5x')."
    )
    selection: str = Field(
        default="filter",
        description="Selection strategy: filter (label-consistency filter + random, the measured default), "
        "filter+NAME, herding, top_weight, proportional or random.",
    )
    accept_fraction: float = Field(default=0.5, gt=0, le=1, description="Fraction of each label's pool accepted.")
    length_scale: float | None = Field(default=None, gt=0, description="GP RBF length-scale (default: the median "
                                       "heuristic).")
    witness_guided: bool = Field(default=True, description="From round 2, aim the explorer at under-covered "
                                 "real regions.")
    holdout: float = Field(
        default=0.25, ge=0, lt=1, description="Share of each label's real examples held out as the validation "
        "slice that measures whether the data helps (never a demonstration, never fitted on); a validation/dev "
        "split in --data is used instead. 0 = no slice, no utility measurement."
    )
    patience: int | None = Field(
        default=2, ge=1, description="Stop when the held-out gain (log-likelihood Δ vs real only) has not "
        "improved for this many rounds (stop reason utility_plateau); 0 or none = never."
    )
    allow_near_copies: bool = Field(
        default=False, description="Accept synthetic texts that are near-copies of real examples (refused by "
        "default: they match the real distribution by construction and add nothing)."
    )
    seed: int = Field(default=0, description="Random seed.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto, cpu or cuda.")
    cache_dir: Path | None = Field(default=None, description="Embedding and LLM response caches (default: "
                                   "$SYNALIGN_CACHE_DIR, else $XDG_CACHE_HOME/synalign or ~/.cache/synalign).")
    llm: str | None = Field(  # None: a config saved before the local LM existed, = "eda" (see backend_kind)
        default_factory=_default_llm,
        validate_default=True,
        description="Backend: 'eda' (no LLM), 'local' (embedded Gemma 3 270M via llama.cpp), 'local:PATH.gguf' "
        "or 'openai:MODEL' (any OpenAI-compatible server).",
    )
    item_name: str | None = Field(
        default=None, description="Base models: what one example is called in the prompt lines, e.g. "
        "'Movie review' (default: 'Text')."
    )
    prompt_style: Literal["auto", "chat", "completion"] = Field(
        default="auto", description="chat (instruction models) or completion (base models: few-shot "
        "continuation lines); auto = completion for --llm local, chat otherwise."
    )
    base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint, e.g. "
                                 "http://localhost:8000/v1.")
    api_key_env: str = Field(default="OPENAI_API_KEY", description="Environment variable holding the API key.",
                             json_schema_extra={"resume_safe": True})
    temperature: float = Field(default=0.8, description="LLM sampling temperature.")
    max_tokens: int | None = Field(default=None, description="LLM max output tokens per call (default: 1024 "
                                   "for chat; a 3x-longest-demonstration budget capped at 256 for completion).")
    max_concurrency: int = Field(default=4, description="Concurrent LLM calls (capped by a llama.cpp "
                                 "server's slots).", json_schema_extra={"resume_safe": True})
    llm_cache: bool = Field(default=True, description="Use the on-disk LLM response cache.",
                            json_schema_extra={"resume_safe": True})
    prompts: Path | None = Field(default=None, description="Optimised generator state from 'synalign optimize'.")

    @model_validator(mode="before")
    @classmethod
    def _legacy_config(cls, data: object) -> object:
        """A ``config.json`` saved before the validation slice existed (every field dumped, no ``holdout``)
        resumes as it ran: no slice, no utility stop, near-copies allowed."""
        if isinstance(data, dict) and "holdout" not in data and {"api_key_env", "llm_cache", "witness_guided"} <= set(data):
            return {**data, "holdout": 0.0, "patience": None, "allow_near_copies": True}
        return data

    @field_validator("patience", mode="before")
    @classmethod
    def _patience_off(cls, value: object) -> object:
        return None if value in (0, "0", "none", "None") else value

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
            from synalign.fileio import read_json

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


def option_flag(name: str) -> str:
    """The command-line flag of RunConfig field ``name``: ``--field-name``, or the field's
    ``json_schema_extra["cli_flag"]`` (``max_rounds`` → ``--rounds``); other names get ``--name``."""
    field = RunConfig.model_fields.get(name)
    extra = field.json_schema_extra if field is not None and isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("cli_flag") or "--" + name.replace("_", "-"))


def config_error(exc: Exception) -> str:
    """One line for an invalid RunConfig: ``invalid option --rounds: ...`` (the message alone for a check across
    options, which names them itself). Used by every command that builds a RunConfig from options."""
    from synalign.errors import first_validation_error

    where, message, _ = first_validation_error(exc)
    return f"invalid option {option_flag(where.split('.')[0])}: {message}" if where else message
