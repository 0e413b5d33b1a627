"""End-to-end: a run measures leak-free whether its data helps, and its verdict and stop rule say so.

The generators here are scripted stand-ins with known truth: held-back real texts of the requested label (the
data helps), the same texts under shuffled labels (it hurts), and copies of the demonstrations (near-copies).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synalign.backends import Backend, Generation, GenerationRequest, SummaryRequest
from synalign.config import RunConfig
from synalign.graphs import run
from synalign.records import AttributeSummary

DEMO = Path(__file__).resolve().parents[1] / "synalign" / "data" / "sst2-demo"
LABELS = ("negative", "positive")


@pytest.fixture(scope="module")
def rows() -> dict[str, list[str]]:
    """The demo's train texts by label, in a fixed random order."""
    data = [json.loads(line) for line in (DEMO / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    rng = np.random.default_rng(2)
    return {lab: [data[i]["text"] for i in rng.permutation([i for i, r in enumerate(data) if r["label"] == lab])]
            for lab in LABELS}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, rows: dict[str, list[str]]) -> Path:
    """24 real train examples per label and a validation split of 100 per label (the run's slice)."""
    path = tmp_path_factory.mktemp("verdict-data")
    for name, part in (("train", slice(0, 24)), ("validation", slice(100, 200))):
        lines = [json.dumps({"text": t, "label": lab}) for lab in LABELS for t in rows[lab][part]]
        (path / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class _Summarizer:
    name = "fixed"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def summarize(self, requests: list[SummaryRequest]) -> list[AttributeSummary]:
        self.seen += [t for r in requests for t in r.demonstrations]
        return [AttributeSummary(style="plain", tone=r.label, topic="film", subtopics=[], length="short",
                                 perspective="third person", other=[]) for r in requests]


class _Scripted:
    """Round 1..n: held-back real texts of the label ("real"), of a random label ("shuffled"), or the request's
    demonstrations in capitals ("copies"); ``plan`` gives the mode per round."""

    name = "scripted"

    def __init__(self, reserve: dict[str, list[str]], plan: dict[int, str]) -> None:
        self.reserve, self.plan, self.cursor = reserve, plan, dict.fromkeys(LABELS, 0)
        self.rng = np.random.default_rng(0)
        self.seen: list[str] = []

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        out = []
        for r in requests:
            self.seen += r.demonstrations
            mode = self.plan.get(r.round, "real")
            if mode == "copies":
                out.append(Generation(texts=[d.upper() for d in r.demonstrations][: r.n]))
                continue
            label = r.label if mode == "real" else str(self.rng.choice(LABELS))
            start = self.cursor[label]
            self.cursor[label] += r.n
            out.append(Generation(texts=self.reserve[label][start : start + r.n]))
        return out


def _run(data: Path, out: Path, generator: Any, **overrides: Any) -> tuple[Any, _Summarizer]:
    summarizer = _Summarizer()
    backend = Backend(name="scripted", summarizer=summarizer, generator=generator, is_llm=False,
                      info={"kind": "custom", "note": "scripted test data"})
    fields = {"data": data, "out": out, "llm": "eda", "selection": "random", "accept_fraction": 1.0,
              "max_rounds": 2, "target": "0", "patience": None, "samples_per_cluster": 16, **overrides}
    return run(RunConfig(**fields), backend=backend), summarizer


def _reserve(rows: dict[str, list[str]]) -> dict[str, list[str]]:
    return {lab: rows[lab][200:400] for lab in LABELS}  # never in the run's data


@pytest.mark.slow
def test_held_back_real_texts_are_green(data_dir: Path, rows: dict[str, list[str]], tmp_path: Path) -> None:
    result, _ = _run(data_dir, tmp_path / "real", _Scripted(_reserve(rows), {}))
    s = result.summary
    assert s["validation"]["source"] == "validation split" and s["validation"]["size"] == 200
    assert s["utility"]["delta_log_likelihood"]["low"] > 0, s["utility"]["delta_log_likelihood"]
    assert s["verdict"]["level"] == "green", s["verdict"]
    assert s["stop_reason"] == "max_rounds"
    card = (result.run_dir / "README.md").read_text(encoding="utf-8")
    assert s["verdict"]["headline"].split(":")[0] in card


@pytest.mark.slow
def test_shuffled_labels_are_red(data_dir: Path, rows: dict[str, list[str]], tmp_path: Path) -> None:
    result, _ = _run(data_dir, tmp_path / "shuffled", _Scripted(_reserve(rows), {1: "shuffled", 2: "shuffled"}))
    verdict = result.summary["verdict"]
    assert verdict["level"] == "red", verdict
    assert "don't train on them as they are" in verdict["headline"]


@pytest.mark.slow
def test_patience_stops_when_the_held_out_gain_stops_improving(
    data_dir: Path, rows: dict[str, list[str]], tmp_path: Path
) -> None:
    plan = {2: "shuffled", 3: "shuffled", 4: "shuffled"}
    result, _ = _run(data_dir, tmp_path / "plateau", _Scripted(_reserve(rows), plan), max_rounds=4, patience=1)
    assert result.summary["stop_reason"] == "utility_plateau"
    assert [m["round"] for m in result.metrics] == [1, 2]
    gains = [m["utility"]["delta_log_likelihood"]["mean"] for m in result.metrics]
    assert gains[1] < gains[0]


@pytest.mark.slow
def test_copies_of_demonstrations_are_never_accepted_and_never_green(
    data_dir: Path, rows: dict[str, list[str]], tmp_path: Path
) -> None:
    result, _ = _run(data_dir, tmp_path / "copies", _Scripted(_reserve(rows), {1: "copies", 2: "copies"}),
                     target="1000x")  # an MMD² target any set meets: near-copies must not end the run on it
    s = result.summary
    assert s["novelty"]["pool_share"] > 0.9 and s["accepted"] == 0
    assert s["verdict"]["level"] != "green" and s["stop_reason"] == "max_rounds"
    allowed, _ = _run(data_dir, tmp_path / "allowed", _Scripted(_reserve(rows), {1: "copies", 2: "copies"}),
                      allow_near_copies=True, target="1000x")
    assert allowed.summary["accepted"] > 0 and allowed.summary["novelty"]["accepted_share"] > 0.9
    assert allowed.summary["verdict"]["level"] != "green" and allowed.summary["stop_reason"] == "max_rounds"


@pytest.mark.slow
def test_the_carved_slice_never_reaches_generation_selection_or_the_target(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EDA on the demo with the default --holdout: the slice is in no demonstration, summary request, filter or
    KMM fit, and EDA's paraphrases of the demonstrations score no gain."""
    import synalign.alignment as alignment
    import synalign.consistency as consistency
    from synalign.graphs.runner import make_context
    from synalign.offline import offline_backend

    fitted: list[np.ndarray] = []
    kmm, fit_filter = alignment.kmm_weights, consistency.fit_filter_classifier
    monkeypatch.setattr(alignment, "kmm_weights", lambda xs, xr, **kw: (fitted.append(xr), kmm(xs, xr, **kw))[1])
    monkeypatch.setattr(consistency, "fit_filter_classifier",
                        lambda x, y, *a, **kw: (fitted.append(x), fit_filter(x, y, *a, **kw))[1])
    config = RunConfig(data=demo_dir, out=tmp_path / "eda", llm="eda", max_rounds=2, max_real=400)
    ctx = make_context(config)
    inner = offline_backend({lab: [r.text for r in ctx.real if r.label == lab] for lab in ctx.labels})
    summarizer = _Summarizer()
    spy = Backend(name=inner.name, summarizer=summarizer, generator=_Spy(inner.generator), info=inner.info)
    result = run(config, backend=spy)
    s = result.summary
    validation = set(s["validation"]["ids"])
    assert s["validation"]["source"] == "25% of train" and len(validation) == s["validation"]["size"] > 0
    assert validation == {r.id for r in ctx.validation} and validation.isdisjoint(r.id for r in ctx.real)
    assert all(validation.isdisjoint(x.demonstration_ids) for x in result.pool)
    texts = {r.text for r in ctx.validation} - {r.text for r in ctx.real}  # (the demo repeats a few phrases)
    assert texts.isdisjoint(summarizer.seen) and texts.isdisjoint(spy.generator.seen)
    val = ctx.validation_embeddings
    assert fitted and all(not (np.abs(x[:, None, :] - val[None]).max(-1) < 1e-6).any() for x in fitted)
    assert s["verdict"]["level"] != "green", s["verdict"]


class _Spy:
    name = "spy"

    def __init__(self, inner: Any) -> None:
        self.inner, self.seen = inner, []

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        self.seen += [t for r in requests for t in r.demonstrations]
        return self.inner.generate(requests)
