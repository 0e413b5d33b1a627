"""How the LLM backend talks to its endpoint: :class:`LLMSettings`, built from the run configuration and the
``SYNALIGN_LLM_*`` / ``SYNALIGN_LOCAL_*`` environment variables (read by :class:`LLMEnvironment`, a
pydantic-settings class)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from synalign.agents.pricing import PriceTable
from synalign.config import parse_llm
from synalign.errors import InputError, first_validation_error

__all__ = ["LLMEnvironment", "LLMSettings"]

_CHAT_MAX_TOKENS = 1024
_LOCAL_MAX_TOKENS = 256
"""Default ``max_tokens``: a chat reply holds all ``n`` texts; a completion is one text (one line), and the
generator asks for 3 × the longest demonstration's words within this cap."""

_STRUCTURED_METHODS = ("json_schema", "function_calling", "json_mode")


class LLMEnvironment(BaseSettings):
    """The LLM options that are not run configuration fields, read from the environment when built.

    An unset or empty variable keeps the default. The numbers must be finite and positive; the counts
    (attempts, threads, slots) are truncated to integers by :meth:`LLMSettings.from_config`.

    Attributes:
        structured_method: ``SYNALIGN_LLM_STRUCTURED`` (``json_schema``, ``function_calling`` or
            ``json_mode``).
        timeout_s: ``SYNALIGN_LLM_TIMEOUT``; None = the backend's default (60 s local, 120 s otherwise).
        connect_timeout_s: ``SYNALIGN_LLM_CONNECT_TIMEOUT`` (10).
        max_attempts: ``SYNALIGN_LLM_MAX_ATTEMPTS`` (6).
        request_budget_s: ``SYNALIGN_LLM_REQUEST_BUDGET`` (600).
        backoff_s: ``SYNALIGN_LLM_BACKOFF`` (1).
        prices_path: ``SYNALIGN_LLM_PRICES``, path of a price table JSON file; None = cost not reported.
        local_threads, local_slots: ``SYNALIGN_LOCAL_THREADS`` / ``SYNALIGN_LOCAL_SLOTS`` (1, 1).
    """

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    structured_method: Literal["json_schema", "function_calling", "json_mode"] = Field(
        "json_schema", validation_alias="SYNALIGN_LLM_STRUCTURED"
    )
    timeout_s: float | None = Field(None, validation_alias="SYNALIGN_LLM_TIMEOUT")
    connect_timeout_s: float = Field(10.0, validation_alias="SYNALIGN_LLM_CONNECT_TIMEOUT")
    max_attempts: float = Field(6, validation_alias="SYNALIGN_LLM_MAX_ATTEMPTS")
    request_budget_s: float = Field(600.0, validation_alias="SYNALIGN_LLM_REQUEST_BUDGET")
    backoff_s: float = Field(1.0, validation_alias="SYNALIGN_LLM_BACKOFF")
    prices_path: str | None = Field(None, validation_alias="SYNALIGN_LLM_PRICES")
    local_threads: float = Field(1, validation_alias="SYNALIGN_LOCAL_THREADS")
    local_slots: float = Field(1, validation_alias="SYNALIGN_LOCAL_SLOTS")

    @field_validator("structured_method", mode="before")
    @classmethod
    def _check_method(cls, raw: Any) -> Any:
        if raw not in _STRUCTURED_METHODS:
            raise ValueError(
                f"SYNALIGN_LLM_STRUCTURED must be json_schema, function_calling or json_mode, got {raw!r}"
            )
        return raw

    @field_validator(
        "timeout_s", "connect_timeout_s", "max_attempts", "request_budget_s", "backoff_s", "local_threads", "local_slots",
        mode="before",
    )
    @classmethod
    def _check_positive(cls, raw: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields[info.field_name]
        if raw is None or raw == "":
            return field.default
        name = field.validation_alias
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"environment variable {name} must be a positive number, got {raw!r}")
        return value

    @field_validator("prices_path", mode="before")
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
    """How the LLM backend talks to its endpoint.

    Built from :class:`~synalign.config.RunConfig` by :meth:`from_config`; the options that are not run
    configuration fields can be set through environment variables (documented per field, read by
    :class:`LLMEnvironment`).

    Attributes:
        model: model name at the endpoint (``gpt-4o-mini``, ``Qwen/Qwen2.5-7B-Instruct``, ``llama3.1``).
        provider: ``openai`` (any OpenAI-compatible endpoint) or ``custom`` (models passed from Python).
        base_url: OpenAI-compatible base URL (``http://localhost:8000/v1``); None = api.openai.com.
        api_key_env: environment variable holding the API key (its value is never written anywhere).
        temperature: generator sampling temperature.
        summary_temperature: summariser temperature; None = ``temperature``.
        max_tokens: maximum completion tokens per call.
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
        max_backoff_s: backoff cap in seconds.
        max_retry_after_s: cap on a server's ``Retry-After``.
        rate_limit_window: consecutive 429s that halve the concurrency limit.
        max_topups: extra generator calls per request when filtering leaves fewer than ``n`` texts.
        structured_method: LangChain structured-output method (``json_schema``, ``function_calling`` or
            ``json_mode``; ``SYNALIGN_LLM_STRUCTURED``).
        prompt_style: ``"chat"`` (instructions, DSPy ChatAdapter, structured-output summariser) or
            ``"completion"`` (base models: few-shot continuation lines, statistical summariser); ``--llm
            local`` defaults to completion, every other backend to chat (``--prompt-style``).
        local_threads, local_slots: ``llama-server`` threads and parallel slots of ``--llm local``
            (``SYNALIGN_LOCAL_THREADS`` / ``SYNALIGN_LOCAL_SLOTS``, default 1 and 1: measured fastest on 2
            loaded cores).
        prices: USD per million tokens by model, ``{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}``
            (``SYNALIGN_LLM_PRICES`` = path of such a JSON file); None = cost not reported.
    """

    model: str
    provider: str = "openai"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.8
    summary_temperature: float | None = None
    max_tokens: int = 1024
    max_concurrency: int = 4
    cache: bool = True
    timeout_s: float = 120.0
    connect_timeout_s: float = 10.0
    max_attempts: int = 6
    request_budget_s: float = 600.0
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_retry_after_s: float = 120.0
    rate_limit_window: int = 3
    max_topups: int = 3
    structured_method: str = "json_schema"
    prices: dict[str, dict[str, float]] | None = None
    prompt_style: str = "chat"
    local_threads: int = 1
    local_slots: int = 1

    @property
    def name(self) -> str:
        """Backend name written into every synthetic record, e.g. ``openai:gpt-4o-mini``."""
        return f"{self.provider}:{self.model}"

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> LLMSettings:
        """Settings from a :class:`~synalign.config.RunConfig` with ``config.llm`` set, the
        ``SYNALIGN_LLM_*`` environment variables, then ``overrides``.

        Raises:
            InputError: bad ``--llm``, bad environment values, unreadable price table.
        """
        if not config.llm:
            raise InputError("no LLM configured (--llm openai:MODEL or --llm local)")
        kind, model = parse_llm(config.llm)
        if kind == "eda":
            raise InputError("--llm eda is not a language model")
        local = kind == "local"
        if local:
            from synalign.agents.llamacpp.model import EMBEDDED_MODEL

            model = Path(model).stem if model else EMBEDDED_MODEL
        style = getattr(config, "prompt_style", "auto") or "auto"
        env = LLMEnvironment.read()
        settings = cls(
            model=model,
            provider=kind,
            base_url=config.base_url,
            api_key_env=config.api_key_env,
            temperature=config.temperature,
            max_tokens=config.max_tokens or (_LOCAL_MAX_TOKENS if local else _CHAT_MAX_TOKENS),
            max_concurrency=max(1, config.max_concurrency),
            cache=config.llm_cache,
            timeout_s=env.timeout_s if env.timeout_s is not None else (60.0 if local else 120.0),
            connect_timeout_s=env.connect_timeout_s,
            max_attempts=max(1, int(env.max_attempts)),
            request_budget_s=env.request_budget_s,
            backoff_s=env.backoff_s,
            structured_method=env.structured_method,
            prices=PriceTable.load(env.prices_path).prices if env.prices_path else None,
            prompt_style=("completion" if local else "chat") if style == "auto" else style,
            local_threads=int(env.local_threads),
            local_slots=int(env.local_slots),
        )
        return replace(settings, **overrides) if overrides else settings

    def api_key(self) -> str | None:
        """The API key from ``api_key_env``, or None when unset."""
        return os.environ.get(self.api_key_env) or None
