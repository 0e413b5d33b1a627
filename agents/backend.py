"""Backend factory: one way to select the LLM for both frameworks (LangChain summariser, DSPy generator).

``--llm openai:MODEL`` (+ ``--base-url`` for vLLM, Ollama, llama.cpp server or any OpenAI-compatible
endpoint) builds a ``langchain_openai.ChatOpenAI`` and a ``dspy.LM("openai/MODEL")`` that share the
endpoint, key, sampling settings and one :class:`~synalign.agents.llm.LLMRunner` (cache, retries,
adaptive concurrency, usage, trace). From Python, any LangChain chat model and any ``dspy.LM`` can be
passed instead. With no LLM configured the offline backend runs, and says so.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from synalign.backends import Backend
from synalign.config import RunConfig
from synalign.errors import InputError

from synalign.agents.llm import LLMRunner, LLMSettings
from synalign.agents.trace import TRACE_FILE, Redactor, TraceWriter

__all__ = ["LLM_CACHE_FILE", "build_backend", "build_llm_backend", "make_chat_model", "make_dspy_lm"]

_log = logging.getLogger("synalign.agents")

LLM_CACHE_FILE = "llm_cache.sqlite"
"""Response cache file inside the run's cache directory (``config.cache_dir`` or the user cache)."""

_PLACEHOLDER_KEY = "EMPTY"  # what local OpenAI-compatible servers (vLLM, Ollama) accept when no key is set


def build_backend(
    config: RunConfig,
    run_dir: Path,
    *,
    reference: Mapping[str, Sequence[str]] | None = None,
    chat_model: Any = None,
    lm: Any = None,
    settings: LLMSettings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Backend:
    """The run's backend.

    Args:
        config: run configuration; ``config.llm`` (``"openai:MODEL"``) selects the LLM backend, None the
            offline backend (unless ``chat_model``/``lm`` are given).
        run_dir: the run directory; the LLM trace goes to ``run_dir/llm_trace.jsonl``.
        reference: real texts per label, passed to the offline backend's summariser.
        chat_model: any LangChain chat model for the summariser (overrides the one ``config.llm`` builds).
        lm: any ``dspy.LM`` for the generator (overrides the one ``config.llm`` builds).
        settings: explicit :class:`LLMSettings` (default: :meth:`LLMSettings.from_config`).
        sleep: sleep function between retries (tests).

    Returns:
        ``Backend(is_llm=True, name="openai:MODEL", usage=<counters>)`` or the offline backend.

    Raises:
        InputError: bad ``--llm``, missing API key for api.openai.com, unreadable ``--prompts`` file or a
            prompt state optimised for another spec.
    """
    if not config.llm and chat_model is None and lm is None and settings is None:
        from synalign.offline import offline_backend

        _log.warning(
            "no LLM configured (--llm): using the offline backend (statistical summariser + EDA generator); "
            "its outputs are not LLM output"
        )
        return offline_backend(reference)
    return build_llm_backend(config, run_dir, chat_model=chat_model, lm=lm, settings=settings, sleep=sleep)


def _settings_for(config: RunConfig, chat_model: Any, lm: Any) -> LLMSettings:
    """Settings from ``config`` (and the ``SYNALIGN_LLM_*`` variables); for models passed in from Python, named
    after the model and with provider ``custom``."""
    if config.llm:
        return LLMSettings.from_config(config)
    name = getattr(lm, "model", None) or getattr(chat_model, "model_name", None) or "custom"
    model = str(name).split("/", 1)[-1]
    return LLMSettings.from_config(config.model_copy(update={"llm": f"openai:{model}"}), provider="custom")


def _api_key(settings: LLMSettings, needed: bool) -> str:
    key = settings.api_key()
    if key:
        return key
    if needed and settings.base_url is None:
        raise InputError(
            f"--llm {settings.name} needs an API key in ${settings.api_key_env}; set it, "
            "or point --base-url at a server that needs none"
        )
    return _PLACEHOLDER_KEY


def make_chat_model(settings: LLMSettings, api_key: str) -> Any:
    """``ChatOpenAI`` for the summariser: Chat Completions API, client retries off (the runner retries)."""
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=settings.model,
        base_url=settings.base_url,
        api_key=api_key,
        temperature=settings.summary_temperature if settings.summary_temperature is not None else settings.temperature,
        max_tokens=settings.max_tokens,
        max_retries=0,
        timeout=settings.timeout_s,
        use_responses_api=False,
    )


def make_dspy_lm(settings: LLMSettings, api_key: str) -> Any:
    """``dspy.LM("openai/MODEL")`` for the generator: DSPy cache and retries off (the runner does both)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import dspy

    kwargs: dict[str, Any] = {"api_key": api_key, "timeout": settings.timeout_s}
    if settings.base_url:
        kwargs["api_base"] = settings.base_url
    return dspy.LM(
        f"openai/{settings.model}",
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        cache=False,
        num_retries=0,
        **kwargs,
    )


def build_llm_backend(
    config: RunConfig,
    run_dir: Path,
    *,
    chat_model: Any = None,
    lm: Any = None,
    settings: LLMSettings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Backend:
    """The LLM backend (see :func:`build_backend`); ``chat_model``/``lm`` default to ones built from
    ``settings``. Raises as :func:`build_backend`."""
    from synalign.agents.cache import ResponseCache
    from synalign.agents.generator import DSPyGenerator, SampleGenerator
    from synalign.agents.specs import load_optimized
    from synalign.agents.summarizer import LLMSummarizer

    settings = settings or _settings_for(config, chat_model, lm)
    api_key = _api_key(settings, needed=chat_model is None or lm is None)
    redactor = Redactor([settings.api_key()])
    cache = None
    if settings.cache:
        from synalign.embeddings import default_cache_dir

        cache = ResponseCache(Path(config.cache_dir or default_cache_dir()) / LLM_CACHE_FILE)
    trace = TraceWriter(Path(run_dir) / TRACE_FILE, redactor)
    runner = LLMRunner(settings, cache=cache, trace=trace, redactor=redactor, sleep=sleep)

    module = SampleGenerator()
    if config.prompts is not None:
        load_optimized(module, config.prompts, module.spec)
    summarizer = LLMSummarizer(
        chat_model if chat_model is not None else make_chat_model(settings, api_key),
        runner,
        method=settings.structured_method,
    )
    generator = DSPyGenerator(
        lm if lm is not None else make_dspy_lm(settings, api_key), runner, module=module, max_topups=settings.max_topups
    )
    _log.info(
        "LLM backend %s at %s (concurrency ≤ %d, cache %s, trace %s)",
        settings.name,
        settings.base_url or "api.openai.com",
        settings.max_concurrency,
        "on" if cache is not None else "off",
        trace.path,
    )
    return Backend(name=settings.name, summarizer=summarizer, generator=generator, usage=runner.snapshot, is_llm=True)
