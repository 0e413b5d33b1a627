"""The local OpenAI-compatible test server, driven by the real clients (openai, langchain-openai, dspy.LM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from synalign.agents.testing import FAULT_KINDS, FaultPlan, OpenAITestServer

KEY = "sk-test-server-key-0123456789"
DEMOS = [
    "a gorgeous , witty , seductive movie .",
    "the performances are uniformly excellent",
    "an utterly charming and hilarious film that reminded me of the best of capra",
    "it 's a wonderful , sobering , heart-felt drama",
]


@pytest.fixture()
def server():
    with OpenAITestServer(api_key=KEY) as srv:
        yield srv


def _client(server: OpenAITestServer, timeout: float = 5.0):
    import openai

    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=timeout)


def _demo_prompt() -> list[dict[str, str]]:
    body = "Label: positive\n\nDemonstrations:\n" + "\n".join(f"{i}. {d}" for i, d in enumerate(DEMOS, 1))
    return [{"role": "system", "content": "Summarise."}, {"role": "user", "content": body}]


def test_chat_completion_with_n_usage_and_determinism(server: OpenAITestServer) -> None:
    client = _client(server)
    reply = client.chat.completions.create(model="test-model", messages=_demo_prompt(), n=3, seed=1)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert reply.usage.prompt_tokens == sum(len(m["content"].split()) for m in _demo_prompt())
    assert (
        reply.usage.completion_tokens > 0
        and reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    )
    again = client.chat.completions.create(model="test-model", messages=_demo_prompt(), n=3, seed=1)
    assert [c.message.content for c in again.choices] == [c.message.content for c in reply.choices]
    assert server.completions() == 2


def test_streaming_matches_the_plain_reply(server: OpenAITestServer) -> None:
    client = _client(server)
    plain = client.chat.completions.create(model="test-model", messages=_demo_prompt())
    chunks = list(
        client.chat.completions.create(
            model="test-model", messages=_demo_prompt(), stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # the body differs only by "stream", so content is derived from a different hash: compare shape instead
    assert text.startswith("test reply:") and plain.choices[0].message.content.startswith("test reply:")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(text.split())
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_wrong_key_is_rejected(server: OpenAITestServer) -> None:
    import openai

    client = openai.OpenAI(base_url=server.url, api_key="sk-wrong-key-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="test-model", messages=_demo_prompt())
    assert server.stats["unauthorized"] == 1


def test_every_fault_reaches_the_openai_client_as_it_would_from_a_real_server() -> None:
    import openai

    plan = FaultPlan(script=list(FAULT_KINDS), slow_s=1.5, retry_after=2)
    with OpenAITestServer(api_key=KEY, faults=plan) as srv:
        client = _client(srv, timeout=0.5)
        seen: dict[str, object] = {}
        for kind in FAULT_KINDS:
            try:
                seen[kind] = client.chat.completions.create(model="test-model", messages=_demo_prompt(), max_tokens=50)
            except Exception as exc:  # noqa: BLE001 - the point is which exception
                seen[kind] = exc
    assert isinstance(seen["rate_limit"], openai.RateLimitError)
    assert seen["rate_limit"].response.headers["retry-after"] == "2"
    assert isinstance(seen["server_error"], openai.InternalServerError)
    assert isinstance(seen["connection_reset"], openai.APIConnectionError)
    assert isinstance(seen["slow"], openai.APITimeoutError)
    assert isinstance(seen["malformed_json"], json.JSONDecodeError)
    assert getattr(seen["missing_fields"], "choices", None) is None  # SDK builds an object without choices
    truncated = seen["truncated"]
    assert truncated.choices[0].finish_reason == "length"
    assert seen["schema_violation"].choices[0].finish_reason == "stop"


def test_random_faults_follow_the_rate_and_seed() -> None:
    with OpenAITestServer(faults=FaultPlan(rate=0.3, kinds=("server_error",), seed=7)) as srv:
        client = _client(srv)
        failures = 0
        for _ in range(60):
            try:
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            except Exception:  # noqa: BLE001
                failures += 1
    assert failures == srv.stats["server_error"]
    assert 8 <= failures <= 30  # Binomial(60, 0.3): mean 18
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultPlan(kinds=("boom",))


def test_dspy_lm_gets_label_consistent_texts_built_from_the_demonstrations(server: OpenAITestServer) -> None:
    import dspy

    from synalign.agents.specs import to_signature

    lm = dspy.LM("openai/test-model", api_base=server.url, api_key=KEY, cache=False, num_retries=0)
    predict = dspy.Predict(to_signature("generate_samples"))
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
        out = predict(task="sentiment", label="positive", attributes="upbeat", demonstrations=DEMOS, n=6)
        again = predict(task="sentiment", label="positive", attributes="upbeat", demonstrations=DEMOS, n=6)
    assert len(out.texts) == 6 and out.texts == again.texts
    vocabulary = {w for d in DEMOS for w in d.split()}
    assert "" in out.texts and DEMOS[0] in out.texts  # the scripted junk the generator must filter
    for text in out.texts:
        assert set(text.split()) <= vocabulary
    assert lm.history[-1]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_structured_output_parses_the_scripted_summary(server: OpenAITestServer, method: str) -> None:
    from langchain_openai import ChatOpenAI

    from synalign.records import AttributeSummary

    chat = ChatOpenAI(model="test-model", base_url=server.url, api_key=KEY, max_retries=0, use_responses_api=False)
    out = chat.with_structured_output(AttributeSummary, method=method, include_raw=True).invoke(_demo_prompt())
    summary = out["parsed"]
    assert isinstance(summary, AttributeSummary) and out["parsing_error"] is None
    lengths = sorted(len(d.split()) for d in DEMOS)
    assert summary.length.startswith(f"{lengths[0]}-{lengths[-1]} words")
    assert "positive" in summary.tone
    assert out["raw"].usage_metadata["input_tokens"] > 0


def test_module_entry_point_prints_its_url() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "synalign.agents.testing.openai_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        with urllib.request.urlopen(url + "/models", timeout=5) as response:
            assert json.load(response)["data"][0]["id"] == "test-model"
        proc.terminate()  # SIGTERM: clean shutdown, then the request counts as JSON
        assert json.loads(proc.stdout.read().strip().splitlines()[-1]) == {"ok": 1}
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
