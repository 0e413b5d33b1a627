"""Prompt optimisation: the measurable DSPy metric, `optimize` with DummyLM and against the test server,
and the saved state used by a run (`--prompts`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synalign.agents.testing import OpenAITestServer
from synalign.app.cli import app
from synalign.config import RunConfig
from synalign.errors import InputError


@pytest.fixture(scope="module")
def test_rows(demo_dir: Path) -> list[dict[str, str]]:
    with open(demo_dir / "test.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def metric(demo_rows: list[dict[str, str]]):
    """The metric fitted on the first 600 real rows; rows 600-799 stay held out."""
    from synalign.evals.metrics import GenerationMetric, tfidf_featurizer

    texts = [r["text"] for r in demo_rows[:600]]
    return GenerationMetric(texts, [r["label"] for r in demo_rows[:600]], featurize=tfidf_featurizer(texts))


def test_metric_components_measure_what_they_claim(metric, demo_rows) -> None:  # noqa: ANN001
    fit, held = demo_rows[:600], demo_rows[600:]
    pos_demos = [r["text"] for r in fit if r["label"] == "positive"][:8]
    pos_new = [r["text"] for r in held if r["label"] == "positive"][:40]
    neg_new = [r["text"] for r in held if r["label"] == "negative"][:40]
    right = metric.components("positive", pos_new, pos_demos, "length: 1-40 words")
    wrong = metric.components("positive", neg_new, pos_demos, "length: 1-40 words")
    # held-out real texts of the intended label vs of the other label
    assert right["fidelity"] > wrong["fidelity"] + 0.05
    assert right["mmd_drop"] > wrong["mmd_drop"] > 0.0
    copies = metric.components("positive", pos_demos, pos_demos)
    assert copies["novelty"] == pytest.approx(0.0) and right["novelty"] > 0.3
    # copies leave the demonstrations' empirical distribution unchanged
    assert copies["mmd_drop"] == pytest.approx(0.0, abs=1e-4)
    assert metric.adherence(["one two three", "a b c d e f g h i j k l"], "length: 3-5 words (median 4)", []) == 0.5
    # length ok, topic word missing
    assert metric.adherence(["one two three"], "topic: a film about zombies", []) == 0.5
    assert metric.components("positive", ["", "  "], pos_demos)["score"] == 0.0
    example = {"label": "positive", "demonstrations": pos_demos, "attributes": "length: 1-40 words"}
    score = metric(example, {"texts": pos_new[:10]})
    assert 0.0 < score < 1.0
    assert metric(example, {"texts": pos_new[:10]}, trace=[]) is (score >= metric.threshold)


def test_metric_rejects_single_label_data() -> None:
    from synalign.evals.metrics import GenerationMetric

    with pytest.raises(InputError, match="needs ≥ 2 labels"):
        GenerationMetric(["a", "b"], ["x", "x"], featurize=lambda t: [[0.0]] * len(t))


def _small(tmp_path: Path, demo_rows: list[dict[str, str]]) -> Path:
    rows = (
        [r for r in demo_rows if r["label"] == "negative"][:48]
        + [r for r in demo_rows if r["label"] == "positive"][:48]
    )
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_optimize_with_dummy_lm_writes_state_that_a_run_loads(tmp_path: Path, demo_rows, test_rows) -> None:  # noqa: ANN001
    from dspy.utils import DummyLM

    from synalign.agents import build_backend
    from synalign.agents.generator import SampleGenerator
    from synalign.agents.specs import load_optimized
    from synalign.evals.optimize import optimize

    answers = {
        f"[[ ## label ## ]]\n{label}": {"texts": json.dumps([r["text"] for r in test_rows if r["label"] == label][:4])}
        for label in ("negative", "positive")
    }
    result = optimize(
        _small(tmp_path, demo_rows), out=tmp_path / "opt" / "prompts.json", lm=DummyLM(answers), train_size=4,
        val_size=2, cluster_size=4, n=4, featurize="tfidf", pass_mark=0.0,
    )
    assert result.path.is_file()
    # DummyLM answers by label whatever the prompt, so every candidate ties and the scores agree
    assert 0.0 < result.baseline_score <= 1.0 and result.optimized_score == pytest.approx(result.baseline_score)
    payload = json.loads(result.path.read_text())
    assert payload["meta"]["optimizer"] == "bootstrap" and payload["meta"]["holdout"] == 2
    assert payload["meta"]["baseline_score"] == result.baseline_score
    assert result.baseline_stderr >= 0 and payload["meta"]["unchanged"] == result.unchanged == (result.demos == 0)
    demos = payload["state"]["generate"]["demos"]
    assert len(demos) == result.demos
    assert all(isinstance(d["texts"], list) and len(d["texts"]) == 4 for d in demos)

    program = load_optimized(SampleGenerator(), result.path, SampleGenerator().spec)
    assert len(program.generate.demos) == result.demos
    config = RunConfig(data=tmp_path, out=tmp_path / "run", llm="openai:m", base_url="http://127.0.0.1:9/v1",
                       prompts=result.path, cache_dir=tmp_path / "cache")
    backend = build_backend(config, config.out)
    assert backend.generator.module.generate.signature.instructions == program.generate.signature.instructions
    assert len(backend.generator.module.generate.demos) == result.demos


def test_cli_optimize_against_the_test_server_and_use_the_result(tmp_path: Path, demo_rows) -> None:  # noqa: ANN001
    from synalign.agents import build_backend, read_trace
    from synalign.backends import GenerationRequest
    from synalign.records import AttributeSummary

    data = _small(tmp_path, demo_rows)
    out = tmp_path / "prompts.json"
    with OpenAITestServer() as srv:
        runner = CliRunner()
        result = runner.invoke(app, [
            "optimize", "--data", str(data), "--llm", "openai:test-model", "--base-url", srv.url, "--out", str(out),
            "--train", "4", "--val", "2", "--cluster-size", "4", "-n", "4", "--metric-embeddings", "tfidf",
        ])
        assert result.exit_code == 0, result.output
        assert "held-out score" in result.output and out.is_file()
        optimize_calls = srv.completions()
        assert optimize_calls >= 4 + 2 * 2  # bootstrapping + baseline and optimised held-out scoring

        config = RunConfig(data=data, out=tmp_path / "run", llm="openai:test-model", base_url=srv.url, prompts=out,
                           cache_dir=tmp_path / "cache")
        backend = build_backend(config, config.out)
        demos = backend.generator.module.generate.demos
        request = GenerationRequest(task="t", label="positive", attributes=AttributeSummary(
            style="s", tone="t", topic="films", length="3-9 words", perspective="p"),
            demonstrations=[r["text"] for r in demo_rows if r["label"] == "positive"][:4], n=3)
        [generation] = backend.generator.generate([request])
    assert len(generation.texts) == 3
    prompt = read_trace(tmp_path / "run")[0]["prompt"]
    assert len(prompt) == 2 + 2 * len(demos)  # system, (user, assistant) per few-shot demo, user


def test_cli_optimize_and_trace_bad_input_is_one_line_exit_2(tmp_path: Path, demo_rows) -> None:  # noqa: ANN001
    runner = CliRunner()
    data = _small(tmp_path, demo_rows)
    for args, message in [
        (["optimize", "--data", str(data), "--llm", "openai:m", "--base-url", "http://127.0.0.1:9/v1",
          "--optimizer", "magic"],
         "--optimizer must be one of bootstrap, mipro, gepa"),
        (["optimize", "--data", str(data)], "needs --llm openai:MODEL"),
        (["optimize", "--data", str(tmp_path / "none.jsonl"), "--llm", "openai:m", "--base-url", "http://x/v1"],
         "no such file"),
        (["trace", str(tmp_path)], "no LLM trace"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("synalign: error:") and message in lines[0], result.output


def test_optimize_output_is_quiet_unless_verbose(tmp_path: Path, demo_rows) -> None:  # noqa: ANN001
    """The console script as a user runs it: DSPy's optimiser draws tqdm bars and logs at INFO; without
    --verbose none of that reaches the terminal, only synalign's own lines."""
    import os
    import subprocess
    import sys

    data = _small(tmp_path, demo_rows)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TQDM_", "LITELLM_LOG"))}
    outputs = {}
    with OpenAITestServer() as srv:
        for verbose in ([], ["--verbose"]):
            out = tmp_path / f"prompts{len(verbose)}.json"
            proc = subprocess.run(
                [sys.executable, "-m", "synalign.app", *verbose, "optimize", "--data", str(data), "--llm",
                 "openai:test-model", "--base-url", srv.url, "--out", str(out), "--train", "4", "--val", "2",
                 "--cluster-size", "4", "-n", "4", "--metric-embeddings", "tfidf"],
                capture_output=True, text=True, timeout=600, env=env,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            outputs[bool(verbose)] = proc.stdout + proc.stderr
    assert "it/s]" in outputs[True] or "INFO" in outputs[True]  # the chatter exists ...
    quiet = outputs[False]
    assert "it/s]" not in quiet and " INFO " not in quiet and "LiteLLM" not in quiet, quiet[-2000:]  # ... and is off
    assert "held-out score" in quiet


def test_an_optimiser_that_keeps_nothing_says_the_program_is_unchanged(tmp_path: Path, demo_rows, test_rows) -> None:  # noqa: ANN001
    """No bootstrapped demonstration passes a pass mark above any score: 0 demos, same instructions, and the
    result says so instead of reporting a gain (the two scores differ only by the LM's sampling)."""
    from dspy.utils import DummyLM

    from synalign.evals.optimize import optimize

    answers = {
        f"[[ ## label ## ]]\n{label}": {"texts": json.dumps([r["text"] for r in test_rows if r["label"] == label][:4])}
        for label in ("negative", "positive")
    }
    result = optimize(
        _small(tmp_path, demo_rows), out=tmp_path / "prompts.json", lm=DummyLM(answers), train_size=4,
        val_size=4, cluster_size=4, n=4, featurize="tfidf", pass_mark=2.0,
    )
    assert result.demos == 0 and result.unchanged
    assert json.loads(result.path.read_text())["meta"]["unchanged"] is True
