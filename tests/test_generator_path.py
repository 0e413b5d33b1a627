"""One generator path (issue 19, item 4): ``synalign run`` executes the DSPy module ``forward`` that
``synalign optimize`` tunes, so an optimised program state is what the run sends to the LM.

The run side goes over real HTTP to the scripted test server (whose request bodies are recorded as it
receives them); the optimise side uses DSPy's ``DummyLM``. No network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from synalign.agents.generator import SampleGenerator
from synalign.agents.testing import OpenAITestServer
from synalign.backends import GenerationRequest
from synalign.config import RunConfig
from synalign.records import AttributeSummary

KEY_ENV = "SYNALIGN_TEST_GENPATH_KEY"
TUNED = "Write new movie reviews in the voice of the demonstrations (tuned instruction 7f3a)."
DEMO_TEXT = "a few-shot demonstration text the tuned program shows"


@pytest.fixture()
def forward_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every call of ``SampleGenerator.forward``: the module it ran on and its keyword arguments."""
    original = SampleGenerator.forward
    calls: list[dict[str, Any]] = []

    def recording(self: SampleGenerator, *args: Any, **kwargs: Any) -> Any:
        calls.append({"module": self, **kwargs})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SampleGenerator, "forward", recording)
    return calls


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The scripted server; ``server.bodies`` holds each request body as it arrived."""
    import synalign.agents.testing.openai_server as http_side

    monkeypatch.setenv(KEY_ENV, "sk-genpath")
    bodies: list[dict[str, Any]] = []
    reply = http_side.scripted_reply

    def recording(body: dict[str, Any], **kwargs: Any) -> Any:
        bodies.append(body)
        return reply(body, **kwargs)

    monkeypatch.setattr(http_side, "scripted_reply", recording)
    with OpenAITestServer() as srv:
        srv.bodies = bodies  # type: ignore[attr-defined]
        yield srv


def _backend(tmp_path: Path, server: OpenAITestServer, prompts: Path | None) -> Any:
    from synalign.agents import build_backend

    config = RunConfig(
        data=tmp_path / "unused.jsonl", out=tmp_path / "run", llm="openai:test-model", base_url=server.url,
        api_key_env=KEY_ENV, llm_cache=False, max_concurrency=1, prompts=prompts,
    )
    return build_backend(config, config.out)


def _request(demo_rows: list[dict[str, str]], label: str, n: int, seed: int) -> GenerationRequest:
    demos = [r["text"] for r in demo_rows if r["label"] == label][seed * 6 : seed * 6 + 6]
    attributes = AttributeSummary(style="plain", tone=f"{label} cues", topic="films", length="5-20 words",
                                  perspective="critic")
    return GenerationRequest(task="Sentiment of movie reviews.", label=label, attributes=attributes,
                             demonstrations=demos, n=n, seed=seed, round=1)


def _prompt_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content")) for m in body.get("messages", []))


def test_the_run_calls_forward_and_sends_the_optimised_program(
    tmp_path: Path, server: Any, forward_calls: list[dict[str, Any]], demo_rows: list[dict[str, str]]
) -> None:
    import dspy

    from synalign.agents.specs import save_optimized

    tuned = SampleGenerator()
    tuned.generate.signature = tuned.generate.signature.with_instructions(TUNED)
    tuned.generate.demos = [dspy.Example(task="Sentiment of movie reviews.", label="positive", attributes="a",
                                         demonstrations=["x y z"], n=1, texts=[DEMO_TEXT])]
    state = save_optimized(tuned, tmp_path / "prompts.json", tuned.spec, extra={"optimizer": "manual"})

    backend = _backend(tmp_path, server, state)
    # n = 6: the server writes one empty text and one copied demonstration into lists of >= 4, so each
    # request needs a top-up call
    requests = [_request(demo_rows, "negative", 6, 0), _request(demo_rows, "positive", 6, 1)]
    generations = backend.generator.generate(requests)

    assert [len(g.texts) for g in generations] == [6, 6]
    llm_calls = backend.usage()["by_node"]["generate"]["llm_calls"]
    assert llm_calls == 4 and len(server.bodies) == 4
    # every LM call of the run is one forward of the loaded (optimised) module
    assert len(forward_calls) == llm_calls
    assert all(call["module"] is backend.generator.module for call in forward_calls)
    for request, generation in zip(requests, generations, strict=True):
        mine = [c for c in forward_calls if c["label"] == request.label]
        assert len(mine) == 2 and mine[0]["seed"] == request.seed and mine[1]["seed"] != request.seed
        # a top-up asks for the missing texts, with the texts kept so far as ``existing``
        for call in mine:
            kept = list(call["existing"])
            assert kept == generation.texts[: len(kept)] and call["n"] == request.n - len(kept)
        assert mine[0]["existing"] == () and 0 < len(mine[1]["existing"]) < request.n
    # what the server received carries the tuned instruction and the few-shot demo
    assert all(TUNED in _prompt_text(body) and DEMO_TEXT in _prompt_text(body) for body in server.bodies)

    plain = _backend(tmp_path / "plain", server, None)
    plain.generator.generate(requests[:1])
    assert TUNED not in _prompt_text(server.bodies[-1]) and DEMO_TEXT not in _prompt_text(server.bodies[-1])


def test_optimize_tunes_the_forward_the_run_calls(
    tmp_path: Path, server: Any, forward_calls: list[dict[str, Any]], demo_rows: list[dict[str, str]]
) -> None:
    from dspy.utils import DummyLM

    from synalign.evals.optimize import optimize

    by_label = {label: [r for r in demo_rows if r["label"] == label] for label in ("negative", "positive")}
    rows = by_label["negative"][:24] + by_label["positive"][:24]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    answers = {
        f"[[ ## label ## ]]\n{label}": {
            "texts": json.dumps([r["text"] for r in demo_rows if r["label"] == label][-3:])
        }
        for label in ("negative", "positive")
    }
    result = optimize(data, out=tmp_path / "prompts.json", lm=DummyLM(answers), train_size=2, val_size=1,
                      cluster_size=3, n=3, featurize="tfidf", pass_mark=0.0)
    # the optimiser scored and bootstrapped the program through SampleGenerator.forward
    assert len(forward_calls) >= 2 * result.val
    assert all(isinstance(c["module"], SampleGenerator) for c in forward_calls)
    saved = json.loads(result.path.read_text())["state"]

    forward_calls.clear()
    backend = _backend(tmp_path, server, result.path)
    [generation] = backend.generator.generate([_request(demo_rows, "positive", 3, 2)])
    assert len(generation.texts) == 3
    # the run's every LM call is a forward of the saved program
    assert [c["module"] for c in forward_calls] == [backend.generator.module]
    state = backend.generator.module.dump_state()
    assert state["generate"]["demos"] == saved["generate"]["demos"]
    assert state["generate"]["signature"] == saved["generate"]["signature"]
