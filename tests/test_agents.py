"""LLM backend: summariser agent, DSPy generator, retries, adaptive concurrency, cache, trace, key hygiene.

Every LLM call goes over real HTTP to the local test server (no network); the bundled real SST-2 sample
supplies the demonstrations.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from synalign.agents.testing import FaultPlan, OpenAITestServer
from synalign.backends import GenerationRequest, SummaryRequest
from synalign.config import RunConfig
from synalign.errors import InputError

KEY_ENV = "SYNALIGN_TEST_LLM_KEY"
KEY = "sk-agents-test-key-5f2c9e71d0"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture()
def server():
    with OpenAITestServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def clusters(demo_rows: list[dict[str, str]]) -> list[tuple[str, list[str]]]:
    """Four real 6-text demonstration clusters, two per label."""
    out = []
    for label in ("negative", "positive"):
        texts = [r["text"] for r in demo_rows if r["label"] == label]
        out += [(label, texts[0:6]), (label, texts[6:12])]
    return out


def _config(tmp_path: Path, server: OpenAITestServer, **overrides: object) -> RunConfig:
    base: dict[str, object] = dict(
        data=tmp_path / "unused.jsonl", out=tmp_path / "run", llm="openai:test-model", base_url=server.url,
        api_key_env=KEY_ENV, cache_dir=tmp_path / "cache", max_concurrency=4,
    )
    base.update(overrides)
    return RunConfig(**base)


def _backend(
    tmp_path: Path,
    server: OpenAITestServer,
    sleeps: list[float] | None = None,
    config: RunConfig | None = None,
    **settings: object,
):
    from synalign.agents import LLMSettings, build_backend

    config = config or _config(tmp_path, server)
    llm_settings = LLMSettings.from_config(config, timeout_s=0.5, backoff_s=0.01, **settings)
    return build_backend(
        config, config.out, settings=llm_settings, sleep=(sleeps.append if sleeps is not None else lambda s: None)
    )


def _summary_requests(clusters: list[tuple[str, list[str]]]) -> list[SummaryRequest]:
    return [
        SummaryRequest(task="Sentiment of movie reviews.", label=label, demonstrations=demos, round=1)
        for label, demos in clusters
    ]


def _generation_requests(clusters, summaries, n: int = 6) -> list[GenerationRequest]:  # noqa: ANN001
    return [
        GenerationRequest(
            task="Sentiment of movie reviews.", label=label, attributes=s, demonstrations=demos, n=n, seed=i, round=1
        )
        for i, ((label, demos), s) in enumerate(zip(clusters, summaries))
    ]


# ---------------------------------------------------------------------------------------------------------
# text filters


def test_filter_texts_drops_and_counts_by_reason() -> None:
    from synalign.agents.generator import filter_texts
    from synalign.dedup import is_near_duplicate

    demos = ["the film is an earnest try at beachcombing verismo", "brave and challenging"]
    candidates = [
        "1. a quietly moving portrait of two sisters",
        "",
        "   ",
        "Brave and  challenging",  # the demonstration, other case/spacing
        "the film is an earnest try at beachcombing verism",  # near copy of a demonstration
        "a quietly moving portrait of two sisters",  # duplicate of the first (list marker removed)
        "a quietly moving portrait of two sister",  # near duplicate
        '"an odd little comedy that works"',
        "one more new text",
        "and one beyond the limit",
    ]
    kept, dropped = filter_texts(candidates, demos, limit=3)
    assert kept == ["a quietly moving portrait of two sisters", "an odd little comedy that works", "one more new text"]
    assert dropped == {"empty": 2, "copy_of_demonstration": 2, "duplicate": 1, "near_duplicate": 1, "surplus": 1}
    kept2, dropped2 = filter_texts(["one more new text", "fresh"], demos, existing=kept)
    assert kept2 == ["fresh"] and dropped2 == {"duplicate": 1}
    assert is_near_duplicate("a b c d e f g h i j", "a b c d e f g h i j.")
    assert not is_near_duplicate("brave and challenging", "timid and boring")


# ---------------------------------------------------------------------------------------------------------
# retries, concurrency, errors


def test_retry_after_is_parsed_from_headers_dates_and_dspy_errors() -> None:
    from email.utils import formatdate

    from synalign.agents.errors import classify_error, retry_after_seconds

    class _Resp:
        def __init__(self, headers: dict[str, str]) -> None:
            self.headers = headers
            self.status_code = 429

    class RateLimitError(Exception):
        def __init__(self, headers: dict[str, str]) -> None:
            super().__init__("429")
            self.response = _Resp(headers)

    assert retry_after_seconds(RateLimitError({"retry-after": "7"})) == 7.0
    assert retry_after_seconds(RateLimitError({"retry-after-ms": "250", "retry-after": "7"})) == 0.25
    date = retry_after_seconds(RateLimitError({"retry-after": formatdate(time.time() + 30, usegmt=True)}))
    assert 25 <= date <= 31
    assert retry_after_seconds(RateLimitError({})) is None
    info = classify_error(RateLimitError({"retry-after": "3"}))
    assert (info.kind, info.retryable, info.retry_after) == ("rate_limited", True, 3.0)

    class LMServerError(Exception):
        status = 503
        retry_after = 1.5

    assert classify_error(LMServerError()).kind == "server_error" and classify_error(LMServerError()).retry_after == 1.5

    class BadRequestError(Exception):
        status_code = 400

    assert classify_error(BadRequestError()).retryable is False


def test_adaptive_limiter_bounds_concurrency_and_halves_under_sustained_429s() -> None:
    from synalign.agents.limiter import AdaptiveLimiter

    limiter = AdaptiveLimiter(4, window=3)
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal peak
        limiter.acquire()
        with lock:
            peak = max(peak, limiter.in_flight)
        time.sleep(0.01)
        limiter.release("ok")

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 4
    for _ in range(2):
        limiter.acquire()
        limiter.release("rate_limited")
    assert limiter.limit == 4  # two 429s are not sustained
    limiter.acquire()
    limiter.release("rate_limited")
    assert (limiter.limit, limiter.reductions) == (2, 1)
    for _ in range(3):
        limiter.acquire()
        limiter.release("rate_limited")
    assert limiter.limit == 1 and limiter.lowest == 1
    for _ in range(2):
        limiter.acquire()
        limiter.release("ok")
    assert limiter.limit == 2  # additive increase after 2 × limit successes
    for _ in range(100):
        limiter.acquire()
        limiter.release("ok")
    assert limiter.limit == 4  # never above the maximum


def test_summariser_retries_each_fault_honours_retry_after_and_reports(tmp_path: Path, clusters) -> None:  # noqa: ANN001
    script = ["rate_limit", "server_error", "connection_reset", "slow", "malformed_json", "missing_fields",
              "schema_violation", "truncated"]
    with OpenAITestServer(api_key=KEY, faults=FaultPlan(script=script, retry_after=2, slow_s=1.0)) as srv:
        sleeps: list[float] = []
        backend = _backend(tmp_path, srv, sleeps, config=_config(tmp_path, srv, max_concurrency=1), max_attempts=10)
        [summary] = backend.summarizer.summarize(_summary_requests(clusters[:1]))
        usage = backend.usage()
    label, demos = clusters[0]
    lengths = sorted(len(d.split()) for d in demos)
    assert summary.length.startswith(f"{lengths[0]}-{lengths[-1]} words") and label in summary.tone
    assert usage["llm_calls"] == 9 and usage["ok"] == 1 and usage["retries"] == 8 and usage["failed_requests"] == 0
    assert usage["failures_by_kind"] == {
        "connection": 1, "malformed": 3, "rate_limited": 1, "server_error": 1, "timeout": 1, "truncated": 1
    }
    assert len(sleeps) == 8 and 2.0 <= sleeps[0] <= 2.25  # Retry-After: 2 honoured
    # then exponential backoff from backoff_s=0.01 with full jitter (malformed replies: a short jittered pause)
    assert all(s <= 0.01 * 2**i for i, s in enumerate(sleeps[1:], start=1))
    assert usage["tokens_in"] > 0 and usage["tokens_out"] > 0


def test_exhausted_retries_raise_a_redacted_llm_error(tmp_path: Path, clusters) -> None:  # noqa: ANN001
    from synalign.agents import LLMError

    with OpenAITestServer(api_key=KEY, faults=FaultPlan(rate=1.0, kinds=("server_error",))) as srv:
        backend = _backend(tmp_path, srv, max_attempts=3)
        with pytest.raises(
            LLMError, match=r"summarize request 0 \(round 1\) failed after 3 attempt\(s\): server_error \(HTTP 500\)"
        ) as err:
            backend.summarizer.summarize(_summary_requests(clusters[:1]))
    assert KEY not in str(err.value) and "\n" not in str(err.value)
    usage = backend.usage()
    assert usage["failed_requests"] == 1 and usage["retries"] == 2 and usage["llm_calls"] == 3


def test_bad_key_model_or_spec_are_input_errors(tmp_path: Path, clusters, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from synalign.agents import build_backend

    with OpenAITestServer(api_key="sk-another-key-entirely-0000") as srv:
        backend = _backend(tmp_path, srv)
        with pytest.raises(InputError, match=f"rejected the API key \\(HTTP 401\\); check \\${KEY_ENV}"):
            backend.summarizer.summarize(_summary_requests(clusters[:1]))
        assert backend.usage()["llm_calls"] == 1  # 401 is not retried
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must be 'eda', 'local', 'local:PATH.gguf' or 'openai:MODEL'"):
        RunConfig(data=tmp_path, out=tmp_path / "r", llm="anthropic:claude")
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(InputError, match=f"needs an API key in \\${KEY_ENV}"):
        build_backend(
            RunConfig(data=tmp_path, out=tmp_path / "r", llm="openai:gpt-4o-mini", api_key_env=KEY_ENV), tmp_path / "r"
        )
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    with pytest.raises(InputError, match="not a synalign optimised-prompt file"):
        build_backend(
            RunConfig(
                data=tmp_path, out=tmp_path / "r", llm="openai:m", base_url="http://127.0.0.1:9/v1",
                prompts=tmp_path / "bad.json",
            ),
            tmp_path / "r",
        )


def test_sustained_rate_limits_lower_concurrency(tmp_path: Path, clusters) -> None:  # noqa: ANN001
    plan = FaultPlan(script=["rate_limit"] * 6, retry_after=0)
    with OpenAITestServer(api_key=KEY, faults=plan) as srv:
        backend = _backend(tmp_path, srv, max_attempts=8)
        summaries = backend.summarizer.summarize(_summary_requests(clusters))
        usage = backend.usage()
    assert len(summaries) == 4
    assert usage["failures_by_kind"] == {"rate_limited": 6}
    assert usage["concurrency"]["reductions"] >= 1 and usage["concurrency"]["lowest"] < 4


# ---------------------------------------------------------------------------------------------------------
# generator, cache, trace


def test_generator_returns_n_filtered_label_consistent_texts(
    tmp_path: Path, server: OpenAITestServer, clusters  # noqa: ANN001
) -> None:
    backend = _backend(tmp_path, server)
    assert backend.is_llm and backend.name == "openai:test-model"
    summaries = backend.summarizer.summarize(_summary_requests(clusters))
    generations = backend.generator.generate(_generation_requests(clusters, summaries, n=6))
    usage = backend.usage()
    for (_label, demos), gen in zip(clusters, generations):
        assert len(gen.texts) == 6 and len(set(gen.texts)) == 6
        # the server writes junk into lists of ≥ 4 texts: one empty string and one copied demonstration
        assert gen.dropped["empty"] == 1 and gen.dropped["copy_of_demonstration"] >= 1
        vocabulary = {w for d in demos for w in d.split()}
        assert all(set(t.split()) <= vocabulary for t in gen.texts)  # built from this cluster's words only
        assert not set(gen.texts) & set(demos)
    # one call per request plus one top-up each for the 2 dropped texts
    assert usage["by_node"]["generate"]["llm_calls"] == 8 and usage["shortfall"] == 0
    assert usage["dropped"]["empty"] == 4


def test_cache_makes_a_repeat_free_and_can_be_disabled(tmp_path: Path, server: OpenAITestServer, clusters) -> None:  # noqa: ANN001
    first = _backend(tmp_path, server)
    s1 = first.summarizer.summarize(_summary_requests(clusters))
    g1 = first.generator.generate(_generation_requests(clusters, s1))
    calls = server.completions()
    assert calls == first.usage()["llm_calls"] == 12

    second = _backend(tmp_path, server)
    s2 = second.summarizer.summarize(_summary_requests(clusters))
    g2 = second.generator.generate(_generation_requests(clusters, s2))
    assert server.completions() == calls  # no call at all
    assert s2 == s1 and [g.texts for g in g2] == [g.texts for g in g1]
    usage = second.usage()
    assert usage["llm_calls"] == 0 and usage["cache_hits"] == 12 and usage["cache_hit_rate"] == 1.0

    # a different seed is a different request
    second.generator.generate(_generation_requests(clusters[:1], s2[:1])[:1] and [
        _generation_requests(clusters[:1], s2[:1])[0].model_copy(update={"seed": 99})
    ])
    assert server.completions() > calls

    uncached = _backend(tmp_path, server, config=_config(tmp_path, server, llm_cache=False))
    before = server.completions()
    uncached.summarizer.summarize(_summary_requests(clusters[:1]))
    assert server.completions() == before + 1 and uncached.usage()["cache_hits"] == 0


def test_trace_records_every_call_and_never_the_key(tmp_path: Path, clusters) -> None:  # noqa: ANN001
    from synalign.agents import format_trace, read_trace

    with OpenAITestServer(api_key=KEY, faults=FaultPlan(script=["ok", "server_error"])) as srv:
        backend = _backend(tmp_path, srv, config=_config(tmp_path, srv, max_concurrency=1))
        summaries = backend.summarizer.summarize(_summary_requests(clusters[:2]))
        backend.generator.generate(_generation_requests(clusters[:2], summaries, n=3))
    records = read_trace(tmp_path / "run")
    assert [r["status"] for r in records].count("error") == 1
    assert len([r for r in records if r["status"] in ("ok", "error")]) == backend.usage()["llm_calls"]
    first = records[0]
    assert first["node"] == "summarize" and first["round"] == 1 and first["status"] == "ok"
    assert first["tokens_in"] > 0 and first["latency_s"] >= 0 and first["prompt"][0]["role"] == "system"
    assert json.loads(first["response"])["tone"] == summaries[0].tone
    error = next(r for r in records if r["status"] == "error")
    assert error["error_kind"] == "server_error" and error["http_status"] == 500
    gen = [r for r in records if r["node"] == "generate"]
    assert gen and "[[ ## texts ## ]]" in gen[0]["response"] and gen[0]["topup"] == 0
    text = format_trace(tmp_path / "run")
    assert text.startswith(f"{len(records)} trace records") and "failures: server_error=1" in text
    assert "round 1 generate #0 attempt 1 OK" in text
    assert format_trace(tmp_path / "run", errors_only=True).count("ERROR") == 1
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    with pytest.raises(InputError, match="no LLM trace"):
        read_trace(tmp_path)


def test_redactor_scrubs_keys_and_credential_shapes() -> None:
    from synalign.agents import Redactor

    redact = Redactor([KEY])
    text = redact(
        f'key {KEY} header "Authorization": "Bearer abc.def-123" api_key=hunter2hunter sk-proj-AAAAAAAAAAAAAAAAAAAA'
    )
    assert KEY not in text and "abc.def-123" not in text and "hunter2hunter" not in text and "sk-proj-" not in text
    assert text.count("[REDACTED]") == 4


def test_twenty_percent_faults_still_deliver_every_sample(tmp_path: Path, clusters) -> None:  # noqa: ANN001
    with OpenAITestServer(api_key=KEY, faults=FaultPlan(rate=0.2, seed=11, slow_s=1.0)) as srv:
        backend = _backend(tmp_path, srv)
        summaries = backend.summarizer.summarize(_summary_requests(clusters))
        generations = backend.generator.generate(_generation_requests(clusters, summaries, n=8))
        usage = backend.usage()
        faults = sum(v for k, v in srv.stats.items() if k != "ok")
    assert [len(g.texts) for g in generations] == [8, 8, 8, 8]
    assert usage["failed_requests"] == 0 and usage["failures"] >= 1 and usage["retries"] == usage["failures"]
    assert usage["failures"] == faults


def test_python_api_accepts_any_chat_model_and_dspy_lm(tmp_path: Path, server: OpenAITestServer, clusters) -> None:  # noqa: ANN001
    from dspy.utils import DummyLM
    from langchain_openai import ChatOpenAI

    from synalign.agents import build_backend

    chat = ChatOpenAI(model="test-model", base_url=server.url, api_key=KEY, max_retries=0, use_responses_api=False)
    label, demos = clusters[0]
    lm = DummyLM([{"texts": json.dumps(["a wholly new review", "another new one", demos[0]])}])
    config = RunConfig(data=tmp_path, out=tmp_path / "run", api_key_env=KEY_ENV, cache_dir=tmp_path / "cache")
    backend = build_backend(config, tmp_path / "run", chat_model=chat, lm=lm)
    assert backend.is_llm and backend.name == "custom:dummy"
    [summary] = backend.summarizer.summarize(_summary_requests(clusters[:1]))
    [gen] = backend.generator.generate(_generation_requests(clusters[:1], [summary], n=2))
    assert gen.texts == ["a wholly new review", "another new one"] and gen.dropped == {"copy_of_demonstration": 1}
    # the default backend is the local LM: models passed in are still their own backend, never labelled as Gemma
    local = RunConfig(data=tmp_path, out=tmp_path / "run2", llm="local", api_key_env=KEY_ENV, cache_dir=tmp_path / "c")
    backend = build_backend(local, tmp_path / "run2", chat_model=chat, lm=lm)
    assert backend.name == "custom:dummy" and backend.info["kind"] == "custom"
    assert backend.info["prompt_style"] == "chat" and backend.info["summarizer"] != "statistical"
    assert "gguf" not in backend.info and "terms" not in backend.info


def test_price_table_turns_tokens_into_cost(tmp_path: Path, server: OpenAITestServer, clusters, monkeypatch) -> None:  # noqa: ANN001
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"test-model": {"input": 2.0, "output": 8.0}}), encoding="utf-8")
    monkeypatch.setenv("SYNALIGN_LLM_PRICES", str(prices))
    backend = _backend(tmp_path, server)
    backend.summarizer.summarize(_summary_requests(clusters[:2]))
    usage = backend.usage()
    assert usage["cost_usd"] == pytest.approx((usage["tokens_in"] * 2.0 + usage["tokens_out"] * 8.0) / 1e6)
    assert usage["tokens_in"] > 0
    prices.write_text(json.dumps({"test-model": {"input": "cheap"}}), encoding="utf-8")
    with pytest.raises(InputError, match="price table must map model names"):
        _backend(tmp_path, server)
    monkeypatch.delenv("SYNALIGN_LLM_PRICES")
    assert _backend(tmp_path, server).usage()["cost_usd"] is None  # no price table: cost not reported


def test_offline_backend_without_llm_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from synalign.agents import build_backend

    with caplog.at_level("WARNING", logger="synalign.agents"):
        backend = build_backend(
            RunConfig(data=tmp_path, out=tmp_path / "r"), tmp_path / "r", reference={"a": ["x y"], "b": ["z"]}
        )
    assert backend.is_llm is False and backend.name.startswith("offline")
    assert "EDA backend" in caplog.text and "not LLM output" in caplog.text
    assert not (tmp_path / "r").exists()


def test_models_passed_from_python_get_the_same_reliability_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A LangChain model / dspy.LM passed in from Python is run with the SYNALIGN_LLM_* settings too."""
    from types import SimpleNamespace

    from synalign.agents.backend import _settings_for
    from synalign.config import RunConfig

    monkeypatch.setenv("SYNALIGN_LLM_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("SYNALIGN_LLM_TIMEOUT", "7.5")
    config = RunConfig(data=tmp_path, out=tmp_path / "out", temperature=0.3)
    settings = _settings_for(config, None, SimpleNamespace(model="openai/my-model"))
    assert (settings.provider, settings.model, settings.name) == ("custom", "my-model", "custom:my-model")
    assert settings.max_attempts == 2 and settings.timeout_s == 7.5 and settings.temperature == 0.3
