"""Backend factory: one way to select the LLM for both frameworks (LangChain summariser, DSPy generator).

``--llm openai:MODEL`` (+ ``--base-url`` for vLLM, Ollama, llama.cpp server or any OpenAI-compatible
endpoint) builds a ``langchain_openai.ChatOpenAI`` and a ``dspy.LM("openai/MODEL")`` that share the
endpoint, key, sampling settings and one :class:`~synalign.agents.runner.LLMRunner` (cache, retries,
adaptive concurrency, usage, trace). From Python, any LangChain chat model and any ``dspy.LM`` can be
passed instead. With no LLM configured the offline backend runs, and says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from synalign.agents.runner import LLMRunner
from synalign.agents.settings import LLMSettings
from synalign.agents.trace import TRACE_FILE, Redactor, TraceWriter
from synalign.backends import Backend
from synalign.config import LLMSpec, RunConfig
from synalign.errors import InputError

__all__ = [
    "LLM_CACHE_FILE", "build_backend", "build_llm_backend", "make_chat_model", "make_dspy_lm", "make_runner",
    "require_llm_extra",
]

_log = logging.getLogger("synalign.agents")

LLM_CACHE_FILE = "llm_cache.sqlite"
"""Response cache file inside the run's cache directory (``config.cache_dir`` or the user cache)."""

STATISTICAL_NOTE = "statistical summary of the demonstrations (counts, no LLM)"
"""First ``other`` entry of the attributes a base-model backend uses (the statistical summariser)."""

STATISTICAL_NAME = "statistical (counts, no LLM)"
"""Name the statistical summariser of a base-model LLM backend reports (``Backend.info["summarizer"]``); the
EDA backend's keeps its own, ``offline:statistical``."""

_PLACEHOLDER_KEY = "EMPTY"  # what local OpenAI-compatible servers (vLLM, Ollama) accept when no key is set


def build_backend(
    config: RunConfig,
    run_dir: Path | None,
    *,
    reference: Mapping[str, Sequence[str]] | None = None,
    chat_model: Any = None,
    lm: Any = None,
    settings: LLMSettings | None = None,
    sleep: Callable[[float], None] = time.sleep,
    label_names: Mapping[str, str] | None = None,
) -> Backend:
    """The run's backend.

    Args:
        config: run configuration; ``config.llm`` (``"openai:MODEL"``, ``"local"``) selects the LLM backend,
            ``"eda"`` the offline backend (unless ``chat_model``/``lm`` are given).
        run_dir: the run directory; the LLM trace goes to ``run_dir/llm_trace.jsonl``.
        reference: real texts per label, passed to the offline backend's summariser (and, with ``label_check``
            lm, the LM label check's few-shot examples).
        chat_model: any LangChain chat model for the summariser (overrides the one ``config.llm`` builds).
        lm: any ``dspy.LM`` for the generator (overrides the one ``config.llm`` builds).
        settings: explicit :class:`LLMSettings` (default: :meth:`LLMSettings.from_config`).
        sleep: sleep function between retries (tests).
        label_names: label value → the name the prompts use (the LM label check's prompt).

    Returns:
        ``Backend(is_llm=True, name="openai:MODEL", usage=<counters>)`` or the offline backend.

    Raises:
        InputError: bad ``--llm``, missing API key for api.openai.com, unreadable ``--prompts`` file or a
            prompt state optimised for another spec.
    """
    custom = chat_model is not None or lm is not None or settings is not None
    kind = config.llm.kind
    if kind != "eda" or custom:
        require_llm_extra(f"`llm` {config.llm}" if kind != "eda" else "an LLM backend")
    if kind == "eda" and not custom:
        from synalign.offline import offline_backend

        _log.warning(
            "EDA backend (statistical summariser + EDA word swaps, no language model); its outputs are not "
            "LLM output"
        )
        backend = offline_backend(reference)
        backend.info = {"kind": "eda", "model": None, "prompt_style": None, "summarizer": backend.summarizer.name}
        return backend
    if kind == "local" and not custom:
        from synalign.agents.local import build_local_backend

        return build_local_backend(config, run_dir, reference=reference, sleep=sleep, label_names=label_names)
    return build_llm_backend(
        config, run_dir, chat_model=chat_model, lm=lm, settings=settings, reference=reference, sleep=sleep,
        label_names=label_names,
    )


_LLM_EXTRA = ("dspy", "langchain_openai", "openai")
"""The packages of the ``llm`` extra the LLM backends import (the fourth, the embedded GGUF, is checked where
the model is assembled)."""


def require_llm_extra(what: str) -> None:
    """Check that the ``llm`` extra is installed before a language model is used.

    Raises:
        InputError: one of :data:`_LLM_EXTRA` is missing (the message names it and the install command).
    """
    import importlib.util

    def _installed(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    missing = [name for name in _LLM_EXTRA if not _installed(name)]
    if missing:
        raise InputError(
            f"{what} needs the language-model extra (missing: {', '.join(missing)}): pip install 'synalign[llm]'"
        )


def _settings_for(config: RunConfig, chat_model: Any, lm: Any) -> LLMSettings:
    """Settings from ``config`` (and the ``SYNALIGN_LLM_*`` variables); for models passed in from Python, named
    after the model and with provider ``custom`` (chat style, the LLM summariser), unless ``config.llm`` names an
    OpenAI-compatible endpoint: the default ``local`` (or ``eda``) never labels a passed-in model as the
    embedded Gemma, nor sends it completion prompts."""
    if config.llm.kind == "openai":
        return LLMSettings.from_config(config)
    name = getattr(lm, "model", None) or getattr(chat_model, "model_name", None) or "custom"
    model = str(name).split("/", 1)[-1]
    llm = LLMSpec.model_validate({"kind": "openai", "model": model})  # `text` derived as from a saved config
    return LLMSettings.from_config(config, llm=llm, provider="custom")


def _api_key(settings: LLMSettings, needed: bool) -> str:
    key = settings.api_key()
    if key:
        return key
    if needed and settings.base_url is None:
        raise InputError(
            f"`llm` {settings.name} needs an API key in ${settings.api_key_env}; set it, "
            "or point `base_url` at a server that needs none"
        )
    return _PLACEHOLDER_KEY


def make_chat_model(settings: LLMSettings, api_key: str) -> Any:
    """``ChatOpenAI`` for the summariser: Chat Completions API, client retries off (the runner retries)."""
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    return ChatOpenAI(
        model=settings.model,
        base_url=settings.base_url,
        api_key=SecretStr(api_key),
        temperature=settings.summary_temperature if settings.summary_temperature is not None else settings.temperature,
        max_completion_tokens=settings.max_tokens,  # the alias of its `max_tokens` field
        max_retries=0,
        timeout=settings.timeout_s,
        use_responses_api=False,
    )


def make_dspy_lm(settings: LLMSettings, api_key: str) -> Any:
    """``dspy.LM("openai/MODEL")`` for the generator: DSPy cache and retries off (the runner does both)."""
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


def _follow_server_slots(settings: LLMSettings) -> LLMSettings:
    """Never more calls in flight than a llama.cpp endpoint has slots (its ``/props`` says; other servers
    do not answer there and keep ``--max-concurrency``).

    Raises:
        InputError: the endpoint accepted no connection or sent no answer within ``connect_timeout_s``.
    """
    if not settings.base_url or settings.provider not in ("openai", "local"):
        return settings
    from dataclasses import replace
    from urllib.parse import urlsplit

    from synalign.agents.llamacpp.server import server_slots

    try:
        slots = server_slots(settings.base_url, timeout=settings.connect_timeout_s)
    except TimeoutError:
        parts = urlsplit(settings.base_url)
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # never the userinfo
        raise InputError(
            f"the LLM endpoint {shown} sent no answer within {settings.connect_timeout_s:g} s "
            "(SYNALIGN_LLM_CONNECT_TIMEOUT); check `base_url` and that the server is up"
        ) from None
    if slots is not None and slots < settings.max_concurrency:
        _log.info("%s has %d slot(s): concurrency %d -> %d", settings.base_url, slots, settings.max_concurrency, slots)
        return replace(settings, max_concurrency=slots)
    return settings


def make_runner(
    config: RunConfig, settings: LLMSettings, run_dir: Path | None, *, sleep: Callable[[float], None] = time.sleep
) -> LLMRunner:
    """The shared :class:`LLMRunner` of a run: response cache (unless ``--no-llm-cache``), trace in
    ``run_dir/llm_trace.jsonl``, redaction of the API key."""
    from synalign.agents.cache import ResponseCache

    redactor = Redactor([settings.api_key()])
    cache = None
    if settings.cache:
        from synalign.embeddings import default_cache_dir

        cache = ResponseCache(Path(config.cache_dir or default_cache_dir()) / LLM_CACHE_FILE)
    trace = TraceWriter(Path(run_dir) / TRACE_FILE, redactor) if run_dir is not None else None
    return LLMRunner(settings, cache=cache, trace=trace, redactor=redactor, sleep=sleep)


def make_completion_lm(settings: LLMSettings, api_key: str) -> Any:
    """``dspy.LM`` whose engine sends prompts verbatim to ``/v1/completions`` (base models)."""
    import dspy

    from synalign.agents.completion import CompletionEngine

    if not settings.base_url:
        raise InputError("`prompt_style` completion needs `base_url` (an OpenAI-compatible /v1/completions server)")
    # the extra prompt pass that makes a resumed run replay-exact only on the embedded llama-server: a remote
    # endpoint would bill it, and its caching is not ours to control
    engine = CompletionEngine(
        settings.base_url, settings.model, api_key=api_key, timeout=settings.timeout_s,
        reproducible=settings.provider == "local", sampler=settings.sampler,
    )
    return dspy.LM(
        f"openai/{settings.model}", engine=engine, temperature=settings.temperature, max_tokens=settings.max_tokens,
        cache=False, num_retries=0,
    )


def build_llm_backend(
    config: RunConfig,
    run_dir: Path | None,
    *,
    chat_model: Any = None,
    lm: Any = None,
    settings: LLMSettings | None = None,
    reference: Mapping[str, Sequence[str]] | None = None,
    identity: dict[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    label_names: Mapping[str, str] | None = None,
) -> Backend:
    """The LLM backend (see :func:`build_backend`); ``chat_model``/``lm`` default to ones built from
    ``settings``.

    With ``settings.prompt_style == "completion"`` (base models) the generator renders the spec's completion
    template through :class:`~synalign.agents.completion.ContinuationAdapter` on a ``/v1/completions``
    engine, and the attributes come from the statistical summariser (:class:`synalign.statsummary.
    StatisticalSummarizer` over ``reference``): on Gemma 3 270M chat prompts and schema-constrained summaries
    did not give usable output. Raises as :func:`build_backend`."""
    from synalign.agents.generator import DSPyGenerator, SampleGenerator
    from synalign.agents.specs import load_optimized

    settings = settings or _settings_for(config, chat_model, lm)
    api_key = _api_key(settings, needed=chat_model is None or lm is None)
    settings = _follow_server_slots(settings)
    runner = make_runner(config, settings, run_dir, sleep=sleep)
    module = SampleGenerator()
    if config.prompts is not None:
        load_optimized(module, config.prompts, module.spec)
    summarizer: Any
    if settings.prompt_style == "completion":
        from synalign.agents.completion import ContinuationAdapter
        from synalign.statsummary import StatisticalSummarizer

        if module.spec.completion is None:
            raise InputError(f"prompt spec {module.spec.name!r} has no completion template for a base model")
        summarizer = StatisticalSummarizer(reference, note=STATISTICAL_NOTE)
        summarizer.name = STATISTICAL_NAME  # this use's name, reported by the summariser itself
        generator = DSPyGenerator(
            lm if lm is not None else make_completion_lm(settings, api_key), runner, module=module,
            adapter=ContinuationAdapter(module.spec, item=config.item_name), max_topups=settings.max_topups,
            identity={**(identity or {}), **({"sampler": settings.sampler} if settings.sampler else {})},
        )
    else:
        from synalign.agents.summarizer import LLMSummarizer

        summarizer = LLMSummarizer(
            chat_model if chat_model is not None else make_chat_model(settings, api_key),
            runner,
            method=settings.structured_method,
        )
        generator = DSPyGenerator(
            lm if lm is not None else make_dspy_lm(settings, api_key), runner, module=module,
            max_topups=settings.max_topups, identity=identity,
        )
    _log.info(
        "LLM backend %s at %s (%s prompts, concurrency ≤ %d, cache %s, trace %s)",
        settings.name,
        settings.base_url or "api.openai.com",
        settings.prompt_style,
        settings.max_concurrency,
        "on" if runner.cache is not None else "off",
        runner.trace.path if runner.trace is not None else None,
    )
    info = {"kind": settings.provider, "model": settings.model, "base_url": settings.base_url,
            "prompt_style": generator.prompt_style, "summarizer": summarizer.name}
    checker = None
    if config.label_check == "lm" or (config.label_check_on and settings.base_url and lm is None):
        from synalign.agents.labelcheck import InContextLabelChecker

        if not settings.base_url or reference is None:
            raise InputError("`label_check` lm needs a llama.cpp endpoint (`base_url`) and the real examples")
        checker = InContextLabelChecker(settings.base_url, settings.model, reference, label_names=label_names,
                                        api_key=api_key or "EMPTY", timeout=settings.timeout_s)
        info["label_check"] = {"name": checker.name, "per_label": checker.per_label,
                               "label_groups": [list(g) for g in checker.groups.values() if len(g) > 1]}
    usage = runner.snapshot
    if checker is not None:
        label_checker = checker

        def usage() -> dict[str, Any]:  # the label check's requests count as the run's LM usage too
            return {**runner.snapshot(), "label_check_calls": label_checker.calls,
                    "label_check_seconds": round(label_checker.seconds, 3)}

    return Backend(
        name=settings.name, summarizer=summarizer, generator=generator, usage=usage, is_llm=True, info=info,
        label_checker=checker, close=checker.close if checker is not None else lambda: None,
    )
