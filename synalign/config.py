"""Run configuration (validated with pydantic), resolved once and written to ``DIR/config.json``."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from synalign.errors import InputError
from synalign.runspecs import (
    LLMSpec,
    LLMText,
    StrategySpec,
    StrategyText,
    Target,
    TargetText,
    parse_llm,
    parse_target,
)

__all__ = ["RunConfig", "Target", "LLMSpec", "StrategySpec", "parse_target", "parse_llm", "DEFAULT_LLM",
           "MAX_SEED", "resume_safe_fields"]

DEFAULT_LLM = "local"
"""Backend of a run without ``--llm`` (and without ``$SYNALIGN_LLM``), decided by measurement
(``evals/scripts/backend_choice.py``, README "Which backend is the default"): on the bundled SST-2 demo and on
AG News the embedded local LM's accepted set reached ≥ 85 % label fidelity (0.94 on both) and real + its
accepted set beat real + the EDA accepted set in downstream accuracy at equal size (+1.7 and +0.5 points,
paired p < 0.01)."""


MAX_SEED = 2**32 - 1
"""Largest ``--seed``: the seed reaches NumPy and scikit-learn generators that take 32 bits."""

MAX_TOKENS = 131_072
"""Largest ``--max-tokens``: above any reply length an OpenAI-compatible server accepts today (128 Ki)."""


def _default_llm() -> str:
    return os.environ.get("SYNALIGN_LLM") or DEFAULT_LLM


def parse_endpoints(value: str) -> list[str]:
    """The OpenAI-compatible endpoints of ``--base-url``: one URL, or several separated by commas (the one parser
    of the option; :attr:`RunConfig.endpoints` reads it back). Each must be an http(s) URL on one line, without
    a user name or password; none may repeat.

    Raises:
        ValueError: an empty or malformed endpoint, credentials in one, or a repeated one.
    """
    from pydantic import AnyHttpUrl, TypeAdapter, ValidationError

    urls = [part.strip() for part in value.split(",")]
    for part in urls:
        try:
            url = TypeAdapter(AnyHttpUrl).validate_python(part)
        except ValidationError:
            got = f"{part!r} in {value!r}" if len(urls) > 1 else repr(value)
            raise ValueError(f"must be an http:// or https:// URL such as http://localhost:8000/v1 (several: "
                             f"separated by commas), got {got}") from None
        if any(ch.isspace() or not ch.isprintable() for ch in part):
            raise ValueError(f"must not contain spaces or control characters, got {value!r}")
        if url.username or url.password:  # never echo it: the password would reach config.json, traces and logs
            raise ValueError(
                "must not hold a user name or password (it would be written to config.json, the checkpoints and "
                "the LLM trace); put the key in an environment variable and name it with `api_key_env`"
            )
    stripped = [u.rstrip("/") for u in urls]
    repeated = next((u for u, bare in zip(urls, stripped, strict=True) if stripped.count(bare) > 1), None)
    if repeated is not None:
        raise ValueError(f"endpoint {repeated!r} is named twice")
    return urls


def _parse_ray_address(value: str) -> str:
    """``--ray``: ``"auto"``, or a Ray cluster's address ``HOST:PORT`` (the head's GCS port, 6379 by default)
    or ``ray://HOST:PORT`` (Ray Client, 10001 by default). Returns the value (``auto`` in lower case).

    Raises:
        ValueError: anything else.
    """
    from urllib.parse import urlsplit

    text = value.strip()
    if text.lower() == "auto":
        return "auto"
    scheme, sep, rest = text.rpartition("://")
    try:
        parts = urlsplit("//" + rest)
        valid = bool(parts.hostname and parts.port) and not (
            parts.username or parts.password or parts.path or parts.query or parts.fragment
        )
    except ValueError:  # a port out of range or not a number
        valid = False
    if not valid or (sep and scheme.lower() != "ray") or any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ValueError(f"must be 'auto' or a Ray cluster address HOST:PORT (e.g. head:6379) or ray://HOST:PORT, "
                         f"got {value!r}")
    return text


class RunConfig(BaseModel):
    """Everything a run needs; defaults suit a 2-core CPU machine and a few hundred real examples per label.

    Budgets: the loop stops when the accepted set's MMD² to the real set is at most ``target``, or after
    ``max_rounds`` rounds, or once ``max_samples`` synthetic samples have been generated.

    Each field's description is also its ``synalign run --help`` text (the CLI is generated from these fields,
    :mod:`synalign.app.options`, which also spells each field's flag); ``json_schema_extra`` may mark a field
    ``resume_safe`` (``--resume`` may change it: how the run talks to the LLM, never what it
    computes).

    Frozen, and parsed at construction: ``target``, ``selection`` and ``llm`` hold :class:`Target`,
    :class:`StrategySpec` and :class:`LLMSpec` (:mod:`synalign.runspecs`), each given and saved as its string.
    A changed copy is ``config.model_copy(update=...)`` with values of the fields' types, or
    ``RunConfig.model_validate({**config.model_dump(), ...})`` to parse and check strings again.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)  # refused: maybe secret

    data: Path = Field(description="Real data: JSONL/CSV/Parquet file or a directory with train/test splits.")
    out: Path | None = Field(
        default=None, description="Run directory (created; must not exist unless --resume/--overwrite).",
        json_schema_extra={"cli_required": True},
    )
    """Required by ``synalign run`` and :func:`synalign.graphs.run`; a graph embedded in an app
    (``make_context(RunConfig(data=...))``) needs none: it writes nothing, and an LLM backend keeps no trace."""
    text_field: str = Field(default="text", description="Text field/column.")
    label_field: str = Field(default="label", description="Label field/column.")
    label_names: dict[str, str] | None = Field(
        default=None, description="Names of the label values, e.g. '0=negative,1=positive': what the prompts "
        "and the card call each label (the outputs keep the values). Default: the data's ClassLabel names, if any."
    )
    task: str | None = Field(default=None, description="Task description for the summariser and generator "
                             "(default: one naming the labels).")
    embedding_model: str | None = Field(
        default=None, description="sentence-transformers name or path (default: the bundled all-MiniLM-L6-v2)."
    )
    max_seq_length: int | None = Field(
        default=None, ge=1, description="Embedding truncation length in tokens, at most the encoder's positions "
        "(default: the encoder's own, 256 for all-MiniLM-L6-v2, which has 512 positions; longer texts are cut)."
    )
    max_real: int = Field(default=2000, ge=2, description="Real examples used (a stratified sample).")
    clusters_per_label: int = Field(default=2, ge=1, description="Demonstration clusters per label per round.")
    cluster_size: int = Field(default=8, ge=1, description="Pick + nearest neighbours per cluster.")
    samples_per_cluster: int = Field(default=16, ge=1, description="Texts generated per cluster.")
    max_rounds: int = Field(default=4, ge=1, description="Maximum rounds.")
    max_samples: int | None = Field(default=None, ge=1, description="Maximum synthetic samples generated; a "
                                    "round that would pass it splits the rest across the labels by their share "
                                    "(default: no limit).")
    target: TargetText = Field(
        default="1x", validate_default=True, title="Target",  # the title: a WithJsonSchema type gets none
        description="Stop at this MMD²: absolute ('0.002') or a multiple of the same-size noise floor "
        "('1.5x').",
    )
    selection: StrategyText = Field(
        default="filter",
        validate_default=True,
        title="Selection",
        description="Selection strategy: filter (label-consistency filter + random, the measured default), "
        "filter+NAME, herding, top_weight, proportional or random.",
    )
    accept_fraction: float = Field(default=0.5, gt=0, le=1, description="Fraction of each label's pool accepted "
                                   "(of its nominal pool with --overgenerate).")
    overgenerate: float = Field(
        default=1.0, ge=1, le=4, exclude_if=lambda v: v == 1,
        description="Over-generation: each cluster writes this many times --samples-per-cluster texts and the run "
        "accepts as many as without it (accept_fraction / overgenerate of each label's pool), the best by the "
        "selection's filter and the LM's label check; costs that many times the generation.",
    )
    """Left out of ``config.json`` when 1, as ``label_check`` when off."""
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
    label_check: Literal["auto", "off", "lm"] = Field(
        default="auto", exclude_if=lambda v: v == "off",
        description="lm: the generating LM also classifies each text in context (few-shot real examples, its "
        "next-token log-probabilities; needs a llama.cpp endpoint: --llm local or --base-url), and "
        "each label's quota is filled with the label filter's kept texts of the largest LM margin; off: random "
        "among the kept; auto: lm with --llm local, off otherwise."
    )
    """Left out of ``config.json`` when off, so a config saved before the switch existed is unchanged, and a
    missing key reads as off (:meth:`_legacy_config`) whatever the default becomes."""
    contrast: int = Field(
        default=0, ge=0, le=8, exclude_if=lambda v: v == 0,
        description="Contrastive prompts: show this many real texts of the label most confused with each "
        "cluster's label (cross-validated on the real set; the texts nearest the cluster), each with its own "
        "label, before the cluster's demonstrations; 0 = off.",
    )
    """Left out of ``config.json`` when 0, as ``label_check`` when off."""
    keep: Literal["all", "heldout"] = Field(
        default="all", exclude_if=lambda v: v == "all", description="all: keep the whole accepted set; heldout: "
        "keep it, each label's better half of it, or none, whichever the validation slice says helps most (a "
        "change must beat the whole set by more than its 95 % interval)."
    )
    """Left out of ``config.json`` when ``all``, as ``label_check`` when off."""
    allow_near_copies: bool = Field(
        default=False, description="Accept synthetic texts that are near-copies of real examples (refused by "
        "default: they match the real distribution by construction and add nothing)."
    )
    seed: int = Field(default=0, description="Random seed.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto, cpu or cuda.")
    ray: str | None = Field(
        default=None, description="Run on a Ray cluster (needs the ray extra): 'auto' ($RAY_ADDRESS or the "
        "cluster 'ray start' began on this machine, else a new local one) or the head's address HOST:6379 / "
        "ray://HOST:10001. Embedding, the KMM screen of large pools and generation over the --base-url endpoints "
        "run on the cluster."
    )
    """Not ``resume_safe``: Ray's embeddings and screened weights agree with the local path's to float rounding,
    not bit for bit, so ``--resume`` keeps the run's setting (a resumed run then computes what the interrupted
    one would have)."""
    cache_dir: Path | None = Field(default=None, description="Embedding and LLM response caches (default: "
                                   "$SYNALIGN_CACHE_DIR, else $XDG_CACHE_HOME/synalign or ~/.cache/synalign).")
    llm: LLMText = Field(  # null in a config saved before the local LM existed: "eda" (LLMSpec.text None)
        default_factory=_default_llm,
        validate_default=True,
        title="Llm",
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
                                 "http://localhost:8000/v1; several, separated by commas, with --ray (generation "
                                 "is spread over them).")
    api_key_env: str = Field(default="OPENAI_API_KEY", description="Environment variable holding the API key.",
                             json_schema_extra={"resume_safe": True})
    temperature: float = Field(default=0.8, description="LLM sampling temperature.")
    max_tokens: int | None = Field(default=None, description="LLM max output tokens per call (default: 1024 "
                                   "for chat; a 3x-longest-demonstration budget capped at 256 for completion).")
    dry_multiplier: float = Field(
        default=0.0, ge=0, le=5, exclude_if=lambda v: v == 0,
        description="Base models on a llama.cpp server (--llm local or --base-url): the DRY sampler's "
        "multiplier over the whole prompt, which penalises writing a demonstration again (0.8 is llama.cpp's "
        "usual value); 0 = off.",
    )
    """Left out of ``config.json`` when 0, as ``label_check`` when off."""
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
        if (
            isinstance(data, dict)
            and "holdout" not in data
            and {"api_key_env", "llm_cache", "witness_guided"} <= set(data)
        ):
            data = {**data, "holdout": 0.0, "patience": None, "allow_near_copies": True}
        if isinstance(data, dict) and {"api_key_env", "llm_cache"} <= set(data):
            # a saved config.json dumps every field but the switches left out when off: missing means off
            return {"label_check": "off", "keep": "all", **data}
        return data

    @field_validator("label_names", mode="before")
    @classmethod
    def _parse_label_names(cls, value: object) -> object:
        """``"0=negative,1=positive"`` (the command line) or a mapping (``config.json``) → ``{value: name}``."""
        if isinstance(value, str):
            pairs = [part.partition("=") for part in value.split(",") if part.strip()]
            if not pairs or any(not sep for _, sep, _ in pairs):
                raise ValueError(
                    f"expected VALUE=NAME pairs separated by commas (0=negative,1=positive), got {value!r}"
                )
            keys = [key.strip() for key, _, _ in pairs]
            duplicate = next((key for key in keys if keys.count(key) > 1), None)
            if duplicate is not None:
                raise ValueError(f"label value {duplicate!r} is named twice")
            value = {key: name.strip() for key, (_, _, name) in zip(keys, pairs, strict=True)}
        if isinstance(value, dict):
            for key, name in value.items():
                if not str(key).strip() or not str(name).strip() or any(c in f"{key}{name}" for c in "\n\r"):
                    raise ValueError(
                        f"each label value and name must be non-empty and on one line, got {key!r}={name!r}"
                    )
        return value

    @field_validator("patience", mode="before")
    @classmethod
    def _patience_off(cls, value: object) -> object:
        return None if value in (0, "0", "none", "None") else value

    @field_validator("seed")
    @classmethod
    def _check_seed(cls, value: int) -> int:
        if not 0 <= value <= MAX_SEED:
            raise ValueError(f"must be >= 0 and <= {MAX_SEED} (2**32 - 1), got {value}")
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
        """One endpoint, or several separated by commas (each checked; stored as ``URL1,URL2``)."""
        return None if value is None else ",".join(parse_endpoints(value))

    @field_validator("ray")
    @classmethod
    def _check_ray(cls, value: str | None) -> str | None:
        return None if value is None else _parse_ray_address(value)

    @field_validator("max_tokens")
    @classmethod
    def _check_max_tokens(cls, value: int | None) -> int | None:
        if value is not None and value > MAX_TOKENS:
            raise ValueError(f"must be at most {MAX_TOKENS} (tokens of one reply), got {value}")
        return value

    @field_validator("item_name")
    @classmethod
    def _check_item_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or not value.isprintable()):
            raise ValueError(f"must be a non-empty name on one line, without control characters, got {value!r}")
        return value

    @field_validator("out")
    @classmethod
    def _check_out(cls, value: Path | None) -> Path | None:
        from synalign.filecheck import check_path_fits

        if value is None:
            return value
        try:
            check_path_fits(value, "`out`")
        except InputError as exc:
            raise ValueError(str(exc).removeprefix("`out` ")) from None
        return value

    @field_validator("cache_dir")
    @classmethod
    def _check_cache_dir(cls, value: Path | None) -> Path | None:
        from synalign.filecheck import check_creatable_dir

        if value is not None:
            try:
                check_creatable_dir(value, "`cache_dir`")
            except InputError as exc:
                raise ValueError(str(exc).removeprefix("`cache_dir` ")) from None
        return value

    @model_validator(mode="after")
    def _check_backend_options(self) -> RunConfig:
        """Options the chosen backend would ignore are refused, never silently dropped."""
        if self.base_url is not None and self.llm.kind != "openai":
            raise ValueError(
                f"`base_url` needs `llm` openai:MODEL (an OpenAI-compatible server); the {self.llm.kind} "
                "backend would ignore it"
            )
        if len(self.endpoints) > 1 and self.ray is None:
            raise ValueError(
                f"`base_url` names {len(self.endpoints)} endpoints; spreading generation over several needs `ray` "
                "auto|ADDRESS (the ray extra), or give one endpoint"
            )
        if self.llm.kind == "eda":
            if self.prompts is not None:
                raise ValueError("`prompts` needs an LLM backend (`llm` ...); the EDA backend would ignore it")
            if self.label_check == "lm":
                raise ValueError("`label_check` lm needs a language model (`llm` local, or openai:MODEL with "
                                 "`base_url` a llama.cpp server); the EDA backend has none")
        llama_cpp = self.llm.kind == "local" or (self.llm.kind == "openai" and self.base_url is not None)
        if self.dry_multiplier > 0 and (not llama_cpp or self.prompt_style == "chat"):
            raise ValueError("`dry_multiplier` is a llama.cpp sampler of base-model (completion) prompts: it needs "
                             "`llm` local, or openai:MODEL with `base_url` a llama.cpp server")
        if self.label_check == "lm" and self.llm.kind == "openai" and self.base_url is None:
            raise ValueError("`label_check` lm needs a llama.cpp endpoint's next-token log-probabilities: give its "
                             "`base_url`, or use `llm` local")
        if self.prompts is not None:
            from synalign.fileio import read_json

            try:
                read_json(self.prompts, "optimised prompt state")
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return self

    @property
    def accept_share(self) -> float:
        """The share of each label's pool the selection accepts: ``accept_fraction / overgenerate`` (the nominal
        accept fraction of a pool generated ``overgenerate`` times over)."""
        return self.accept_fraction / self.overgenerate

    @property
    def label_check_on(self) -> bool:
        """Whether the run makes the LM's own label check: ``label_check`` lm, or auto with ``llm`` local (the
        embedded llama.cpp server serves the log-probabilities it reads; measured in ``evals/RESULTS.md`` §16)."""
        return self.label_check == "lm" or (self.label_check == "auto" and self.llm.kind == "local")

    @property
    def backend_kind(self) -> str:
        """``self.llm.kind``: ``"eda"``, ``"local"`` or ``"openai"`` (``"eda"`` for a run saved before the
        local LM with ``"llm": null``, so resuming one never switches its backend)."""
        return self.llm.kind

    @property
    def endpoints(self) -> list[str]:
        """The ``base_url`` endpoints (:func:`parse_endpoints`); ``[]`` without one."""
        return parse_endpoints(self.base_url) if self.base_url else []

    def task_description(self, labels: list[str]) -> str:
        """The given task, or a generic one naming the labels."""
        if self.task:
            return self.task
        return "Text classification into the labels: " + ", ".join(labels) + "."


def resume_safe_fields() -> frozenset[str]:
    """RunConfig fields marked ``resume_safe``: ``--resume`` may change them (how the run talks to the LLM, never
    what it computes); every other field but ``out`` defines the run (what its checkpoint was written under)."""
    return frozenset(
        name for name, field in RunConfig.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("resume_safe")
    )
