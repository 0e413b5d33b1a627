"""Contrastive prompts (issue "Data that helps", item 1): the confusable labels of the real set, the near-miss
examples shown, and their way into the generator's prompt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synalign.contrast import confusable_labels, contrast_examples, label_confusion

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _few_shot(task: str, per_label: int, seed: int = 0) -> list[dict]:
    rows = [json.loads(line) for line in (SHARED_DATA / task / "train.jsonl").read_text().splitlines() if line]
    rng = np.random.default_rng(seed)
    labels = sorted({r["label"] for r in rows})
    return [rows[i] for label in labels
            for i in rng.permutation([j for j, r in enumerate(rows) if r["label"] == label])[:per_label]]


@pytest.mark.skipif(not (SHARED_DATA / "agnews").is_dir(), reason="needs ../shared/data")
def test_news_business_and_technology_are_each_others_nearest_label() -> None:
    from synalign.embeddings import Embedder

    few = _few_shot("agnews", 32)
    emb, labels = Embedder().encode([r["text"] for r in few]), [r["label"] for r in few]
    names, confusion = label_confusion(emb, labels)
    assert names == ["Business", "Sci/Tech", "Sports", "World"]
    assert confusion.shape == (4, 4) and np.allclose(confusion.sum(axis=1), 1.0)
    assert (np.diag(confusion) > confusion.max(axis=1, where=~np.eye(4, dtype=bool), initial=0)).all()
    neighbours = confusable_labels(emb, labels)
    assert neighbours["Business"] == ["Sci/Tech"] and neighbours["Sci/Tech"] == ["Business"]
    assert "Sports" not in neighbours["Business"] + neighbours["Sci/Tech"]
    assert confusable_labels(emb, labels, neighbours=5)["Sports"] == sorted(
        set(names) - {"Sports"}, key=lambda b: -(confusion[2, names.index(b)] + confusion[names.index(b), 2]))


def test_overlapping_labels_are_neighbours_and_a_far_one_is_nobodys_first() -> None:
    rng = np.random.default_rng(0)
    centres = {"a": np.r_[1.0, 0, 0], "b": np.r_[1.0, 0.3, 0], "c": np.r_[0, 0, 1.0]}
    x = np.vstack([c + 0.25 * rng.standard_normal((20, 3)) for c in centres.values()])
    y = [label for label in centres for _ in range(20)]
    neighbours = confusable_labels(x, y)
    assert neighbours["a"] == ["b"] and neighbours["b"] == ["a"] and neighbours["c"][0] in ("a", "b")
    # one example of a label is too few to cross-validate: the centroid similarities stand in
    names, confusion = label_confusion(np.vstack([x[:20], x[20:21], x[40:]]), y[:20] + ["b"] + y[40:])
    assert names == ["a", "b", "c"] and np.allclose(confusion.sum(axis=1), 1.0)
    assert confusion[0, 1] > confusion[0, 2]


def test_contrast_examples_are_the_neighbours_texts_nearest_the_cluster() -> None:
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.2], [0.2, 0.8], [0.6, 0.4]])
    y = ["a", "a", "b", "b", "b", "b"]
    assert contrast_examples(x, y, [0, 1], ["b"], 2) == [("b", [3, 5])]
    assert contrast_examples(x, y, [0], ["b", "z"], 10) == [("b", [3, 5, 4, 2])]  # capped; no row of "z"
    with pytest.raises(ValueError, match="demonstrations"):
        contrast_examples(x, y, [], ["b"], 2)
    with pytest.raises(ValueError, match="at least two labels"):
        label_confusion(x[:2], y[:2])


def test_contrast_lines_come_before_the_targets_demonstrations_in_the_prompt(tmp_path: Path) -> None:
    from dspy.utils import DummyLM

    from synalign.agents.completion import ContinuationAdapter
    from synalign.agents.generator import DSPyGenerator, SampleGenerator
    from synalign.agents.runner import LLMRunner
    from synalign.agents.settings import LLMSettings
    from synalign.backends import GenerationRequest
    from synalign.config import RunConfig
    from synalign.records import AttributeSummary

    prompts: list[str] = []

    class Recording(ContinuationAdapter):  # the prompt each LM call is sent
        def format(self, signature, demos, inputs):  # noqa: ANN001, ANN202
            messages = super().format(signature, demos, inputs)
            prompts.append(messages[0]["content"])
            return messages

    module = SampleGenerator()
    runner = LLMRunner(LLMSettings.from_config(RunConfig(data=tmp_path, llm="openai:m", llm_cache=False)))
    generator = DSPyGenerator(DummyLM([{"texts": "[]"}] * 8), runner, module=module,
                              adapter=Recording(module.spec, item="Movie review"))
    attributes = AttributeSummary(style="plain", tone="flat", topic="films", length="short", perspective="critic")
    request = GenerationRequest(task="t", label="negative", attributes=attributes, n=1,
                                demonstrations=["a dull , lifeless film", "the plot goes nowhere"],
                                contrast=[("positive", ["a dull start gives way to a lovely film"])])
    generator.generate([request])
    lines = prompts[0].splitlines()
    assert lines[-4:] == ["Movie review (positive): a dull start gives way to a lovely film",
                          "Movie review (negative): a dull , lifeless film",
                          "Movie review (negative): the plot goes nowhere", "Movie review (negative):"]
    # a request without contrast asks with the target's lines only
    generator.generate([request.model_copy(update={"contrast": [], "seed": 1})])
    assert len(prompts) > 1 and "(positive)" not in prompts[-1] and prompts[-1].endswith("Movie review (negative):")


def test_contrast_and_dry_are_left_out_of_a_saved_config_when_off_and_refused_where_ignored(tmp_path: Path) -> None:
    from synalign.config import RunConfig

    off = RunConfig(data=tmp_path).model_dump(mode="json")
    assert "contrast" not in off and "dry_multiplier" not in off
    on = RunConfig(data=tmp_path, llm="local", contrast=3, dry_multiplier=0.8).model_dump(mode="json")
    assert on["contrast"] == 3 and on["dry_multiplier"] == 0.8
    for bad in ({"llm": "eda"}, {"llm": "openai:gpt-4o-mini"}, {"llm": "local", "prompt_style": "chat"}):
        with pytest.raises(ValueError, match="dry_multiplier"):
            RunConfig(data=tmp_path, dry_multiplier=0.8, **bad)
    with pytest.raises(ValueError, match="contrast"):
        RunConfig(data=tmp_path, contrast=-1)


@pytest.mark.skipif(not (SHARED_DATA / "agnews").is_dir(), reason="needs ../shared/data")
def test_a_runs_contrast_shows_the_confusable_labels_real_texts_by_name(tmp_path: Path) -> None:
    """The generate node's contrast (``graphs.quality.contrast_blocks``): for a Business cluster, N real Sci/Tech
    texts under the prompt's label name; none with ``--contrast 0``; the confusion computed once."""
    from synalign.config import RunConfig
    from synalign.embeddings import Embedder
    from synalign.graphs.context import SynAlignContext
    from synalign.graphs.quality import contrast_blocks
    from synalign.records import RealExample

    few = _few_shot("agnews", 32)
    real = [RealExample(id=f"r{i}", text=r["text"], label=r["label"]) for i, r in enumerate(few)]
    emb = Embedder().encode([r.text for r in real])
    ctx = SynAlignContext(config=RunConfig(data=tmp_path, contrast=2), real=real, real_embeddings=emb,
                          embedder=None, backend=None, task="news", run_dir=None,  # type: ignore[arg-type]
                          label_names={"Sci/Tech": "science and technology"})
    business = [r.id for r in real if r.label == "Business"][:8]
    sports = [r.id for r in real if r.label == "Sports"][:8]
    [one, two] = contrast_blocks(ctx, [(business, "Business"), (sports, "Sports")])
    sci_tech = {r.text for r in real if r.label == "Sci/Tech"}
    assert len(one) == 1 and one[0][0] == "science and technology" and len(one[0][1]) == 2
    assert set(one[0][1]) <= sci_tech
    assert len(two) == 1 and two[0][0] == ctx.neighbours["Sports"][0] != "Sports" and len(two[0][1]) == 2
    assert ctx.neighbours is not None and ctx.neighbours["Business"] == ["Sci/Tech"]
    off = SynAlignContext(config=RunConfig(data=tmp_path), real=real, real_embeddings=emb, embedder=None,
                          backend=None, task="news", run_dir=None)  # type: ignore[arg-type]
    assert contrast_blocks(off, [(business, "Business")]) == [[]] and off.neighbours is None
