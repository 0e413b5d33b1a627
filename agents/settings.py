"""How the LLM backend talks to its endpoint: :class:`LLMSettings`, a frozen view derived from the run
configuration (:class:`~synalign.config.RunConfig`) and the environment (:class:`LLMEnvironment`, the one
pydantic-settings class of the ``SYNALIGN_LLM_*`` / ``SYNALIGN_LOCAL_*`` variables).

Each default is stated once: the run's options in ``RunConfig``, the environment's knobs in
:class:`LLMEnvironment`, the backend-dependent ones (timeout, ``max_tokens``, prompt style) and the fixed
retry constants here, in :meth:`LLMSettings.from_config`; ``LLMSettings`` has none of its own."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from synalign.agents.pricing import PriceTable
from synalign.config import LLMSpec, RunConfig
from synalign.errors import InputError, first_validation_error

__all__ = ["LLMEnvironment", "LLMSettings"]

_CHAT_MAX_TOKENS = 1024
_LOCAL_MAX_TOKENS = 256
"""Default ``max_tokens``: a chat reply holds all ``n`` texts; a completion is one text (one line), and the
generator asks for 3 × the longest demonstration's words within this cap."""

_CHAT_TIMEOUT_S = 120.0
_LOCAL_TIMEOUT_S = 180.0
"""Default per-call timeout (``SYNALIGN_LLM_TIMEOUT`` unset): a remote endpoint, the embedded local LM. The local
one covers a cold pass over a long prompt on a loaded machine: eight Amazon-review demonstrations (~2,900
tokens) took over 120 s on 2 cores shared with another model server (60 s made such a run fail)."""

_DRY: dict[str, Any] = {"dry_base": 1.75, "dry_allowed_length": 2, "dry_penalty_last_n": 8192}
"""llama.cpp's DRY sampler beside ``dry_multiplier``: its usual base and allowed length, and a window that covers
the whole prompt (the embedded server's slot context; this llama.cpp refuses -1 over the API)."""

_FIXED: dict[str, Any] = {
    "summary_temperature": None,
    "max_backoff_s": 60.0,
    "max_retry_after_s": 120.0,
    "rate_limit_window": 3,
    "max_topups": 3,
}
"""The settings neither the run configuration nor the environment sets (``from_config`` overrides may)."""

_STRUCTURED_METHODS = ("json_schema", "function_calling", "json_mode")

_ENV_PREFIX = "SYNALIGN_"


class LLMEnvironment(BaseSettings):
    """The LLM options that are not run configuration fields, read from the environment when built: each field
    is the variable ``SYNALIGN_`` + its name in capitals (``llm_timeout`` ← ``SYNALIGN_LLM_TIMEOUT``).

    An unset or empty variable keeps the default. The numbers must be finite and positive; the counts
    (attempts, threads, slots) are truncated to integers by :meth:`LLMSettings.from_config`.

    Attributes:
        llm_structured: ``SYNALIGN_LLM_STRUCTURED`` (``json_schema``, ``function_calling`` or ``json_mode``).
        llm_timeout: ``SYNALIGN_LLM_TIMEOUT``; None = the backend's default (180 s local, 120 s otherwise).
        llm_connect_timeout: ``SYNALIGN_LLM_CONNECT_TIMEOUT`` (10).
        llm_max_attempts: ``SYNALIGN_LLM_MAX_ATTEMPTS`` (6).
        llm_request_budget: ``SYNALIGN_LLM_REQUEST_BUDGET`` (600).
        llm_backoff: ``SYNALIGN_LLM_BACKOFF`` (1).
        llm_prices: ``SYNALIGN_LLM_PRICES``, path of a price table JSON file; None = cost not reported.
        local_threads, local_slots: ``SYNALIGN_LOCAL_THREADS`` / ``SYNALIGN_LOCAL_SLOTS`` (1, 1).
    """

    model_config = SettingsConfigDict(env_prefix=_ENV_PREFIX, case_sensitive=False, extra="ignore",
                                      frozen=True)

    llm_structured: Literal["json_schema", "function_calling", "json_mode"] = "json_schema"
    llm_timeout: float | None = None
    llm_connect_timeout: float = 10.0
    llm_max_attempts: float = 6
    llm_request_budget: float = 600.0
    llm_backoff: float = 1.0
    llm_prices: str | None = None
    local_threads: float = 1
    local_slots: float = 1

    @field_validator("llm_structured", mode="before")
    @classmethod
    def _check_method(cls, raw: Any) -> Any:
        if raw not in _STRUCTURED_METHODS:
            raise ValueError(
                f"SYNALIGN_LLM_STRUCTURED must be json_schema, function_calling or json_mode, got {raw!r}"
            )
        return raw

    @field_validator(
        "llm_timeout", "llm_connect_timeout", "llm_max_attempts", "llm_request_budget", "llm_backoff",
        "local_threads", "local_slots",
        mode="before",
    )
    @classmethod
    def _check_positive(cls, raw: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields[str(info.field_name)]
        if raw is None or raw == "":
            return field.default
        name = _ENV_PREFIX + str(info.field_name).upper()
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"environment variable {name} must be a positive number, got {raw!r}")
        return value

    @field_validator("llm_prices", mode="before")
    @classmethod
    def _empty_is_unset(cls, raw: Any) -> Any:
        return None if raw == "" else raw

    @classmethod
    def read(cls) -> LLMEnvironment:
        """The variables as now set.

        Raises:
            InputError: a bad value (one line naming the variable).
        """
        try:
            return cls()
        except ValidationError as exc:
            raise InputError(first_validation_error(exc)[1]) from None


@dataclass(frozen=True)
class LLMSettings:
    """How the LLM backend talks to its endpoint: a frozen view of the run configuration and the environment,
    built by :meth:`from_config` (no defaults of its own).

    Attributes:
        model: model name at the endpoint (``gpt-4o-mini``, ``Qwen/Qwen2.5-7B-Instruct``, ``llama3.1``).
        provider: ``openai`` (any OpenAI-compatible endpoint), ``local`` (the embedded local LM) or ``custom``
            (models passed from Python).
        base_url: OpenAI-compatible base URL (``http://localhost:8000/v1``); None = api.openai.com.
        api_key_env: environment variable holding the API key (its value is never written anywhere).
        temperature: generator sampling temperature.
        summary_temperature: summariser temperature; None = ``temperature``.
        max_tokens: maximum completion tokens per call (``--max-tokens``, default 1024 for chat, 256 for
            completion).
        max_concurrency: maximum calls in flight (the adaptive limit starts here).
        cache: use the on-disk response cache.
        timeout_s: per-call client timeout in seconds (``SYNALIGN_LLM_TIMEOUT``, default 60 for ``--llm
            local``, 120 otherwise).
        connect_timeout_s: seconds a ``--base-url`` endpoint has to answer the probe sent when the backend is
            built (``GET /props``, which also reads a llama.cpp server's slots; any HTTP answer will do). An
            endpoint that accepts no connection or sends no answer in that time (a black hole) is refused with
            one line at once, not after ``request_budget_s`` of retries (``SYNALIGN_LLM_CONNECT_TIMEOUT``,
            default 10).
        max_attempts: attempts per request, first included (``SYNALIGN_LLM_MAX_ATTEMPTS``, default 6).
        request_budget_s: total seconds one request may take, all attempts and backoff waits included
            (``SYNALIGN_LLM_REQUEST_BUDGET``, default 600): a server that accepts connections but never
            answers costs at most this, not ``max_attempts × timeout_s``. No attempt starts after it.
        backoff_s: first backoff in seconds; doubles per attempt with full jitter (``SYNALIGN_LLM_BACKOFF``).
        max_backoff_s: backoff cap in seconds (60).
        max_retry_after_s: cap on a server's ``Retry-After`` (120).
        rate_limit_window: consecutive 429s that halve the concurrency limit (3).
        max_topups: extra generator calls per request when filtering leaves fewer than ``n`` texts (3).
        structured_method: LangChain structured-output method (``json_schema``, ``function_calling`` or
            ``json_mode``; ``SYNALIGN_LLM_STRUCTURED``).
        prompt_style: ``"chat"`` (instructions, DSPy ChatAdapter, structured-output summariser) or
            ``"completion"`` (base models: few-shot continuation lines, statistical summariser); ``--llm
            local`` defaults to completion, every other backend to chat (``--prompt-style``).
        local_threads, local_slots: ``llama-server`` threads and parallel slots of ``--llm local``
            (``SYNALIGN_LOCAL_THREADS`` / ``SYNALIGN_LOCAL_SLOTS``, default 1 and 1: measured fastest on 2
            loaded cores).
        sampler: extra sampling fields of every completion request (llama.cpp names): the DRY sampler when
            ``dry_multiplier`` > 0, else empty.
        prices: USD per million tokens by model, ``{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}``
            (``SYNALIGN_LLM_PRICES`` = path of such a JSON file); None = cost not reported.
    """

    model: str
    provider: str
    base_url: str | None
    api_key_env: str
    temperature: float
    summary_temperature: float | None
    max_tokens: int
    max_concurrency: int
    cache: bool
    timeout_s: float
    connect_timeout_s: float
    max_attempts: int
    request_budget_s: float
    backoff_s: float
    max_backoff_s: float
    max_retry_after_s: float
    rate_limit_window: int
    max_topups: int
    structured_method: str
    prices: dict[str, dict[str, float]] | None
    prompt_style: str
    local_threads: int
    local_slots: int
    sampler: dict[str, Any]

    @property
    def name(self) -> str:
        """Backend name written into every synthetic record, e.g. ``openai:gpt-4o-mini``."""
        return f"{self.provider}:{self.model}"

    @classmethod
    def from_config(cls, config: RunConfig, *, llm: LLMSpec | None = None, **overrides: Any) -> LLMSettings:
        """Settings from a :class:`~synalign.config.RunConfig` whose ``llm`` names a language model, the
        ``SYNALIGN_LLM_*`` / ``SYNALIGN_LOCAL_*`` environment variables (:class:`LLMEnvironment`), then
        ``overrides`` (any attribute). ``llm``: the backend to describe instead of ``config.llm`` (a model
        passed in from Python).

        Raises:
            InputError: ``llm`` is ``eda``, bad environment values, unreadable price table.
        """
        spec = config.llm if llm is None else llm
        if spec.text is None:  # "llm": null, a config saved before the local LM: the EDA backend
            raise InputError("no LLM configured (`llm` openai:MODEL or `llm` local)")
        if spec.kind == "eda":
            raise InputError("`llm` eda is not a language model")
        local = spec.kind == "local"
        model = spec.model
        if local:
            from synalign.agents.llamacpp.model import EMBEDDED_MODEL

            model = Path(model).stem if model else EMBEDDED_MODEL
        env = LLMEnvironment.read()
        default_timeout = _LOCAL_TIMEOUT_S if local else _CHAT_TIMEOUT_S
        style = config.prompt_style if config.prompt_style != "auto" else "completion" if local else "chat"
        settings = cls(
            model=model,
            provider=spec.kind,
            base_url=config.base_url,
            api_key_env=config.api_key_env,
            temperature=config.temperature,
            max_tokens=config.max_tokens or (_LOCAL_MAX_TOKENS if local else _CHAT_MAX_TOKENS),
            max_concurrency=max(1, config.max_concurrency),
            cache=config.llm_cache,
            timeout_s=env.llm_timeout if env.llm_timeout is not None else default_timeout,
            connect_timeout_s=env.llm_connect_timeout,
            max_attempts=max(1, int(env.llm_max_attempts)),
            request_budget_s=env.llm_request_budget,
            backoff_s=env.llm_backoff,
            structured_method=env.llm_structured,
            prices=PriceTable.load(env.llm_prices).prices if env.llm_prices else None,
            prompt_style=style,
            local_threads=int(env.local_threads),
            local_slots=int(env.local_slots),
            sampler={"dry_multiplier": config.dry_multiplier, **_DRY} if config.dry_multiplier > 0 else {},
            **_FIXED,
        )
        return replace(settings, **overrides) if overrides else settings

    def api_key(self) -> str | None:
        """The API key from ``api_key_env``, or None when unset."""
        return os.environ.get(self.api_key_env) or None
