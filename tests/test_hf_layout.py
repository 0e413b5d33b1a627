"""Data as Hugging Face users have it (issue 21, item 2): a ``save_to_disk`` / ``push_to_hub`` dataset with
``train`` + ``validation`` splits, a ``ClassLabel`` label and ``large_string`` text; ``--label-names``; an
export that concatenates with that data; ``synalign compare`` on every synalign output directory; and one
same-size noise floor, the same in the run report and in ``synalign compare``.

One short EDA run (through the Python API, with a backend that records the requests the generator gets) feeds
the export, compare and floor tests. Nothing touches the network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ["HF_DATASETS_OFFLINE"] = "1"  # before datasets is imported: it reads them once
os.environ["HF_HUB_OFFLINE"] = "1"

import datasets  # noqa: E402
import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from synalign.app.cli import app  # noqa: E402
from synalign.artifacts.datacard import read_card  # noqa: E402
from synalign.artifacts.report_sections import with_spread  # noqa: E402
from synalign.backends import Backend, GenerationRequest, SummaryRequest  # noqa: E402
from synalign.config import RunConfig  # noqa: E402
from synalign.datafiles import load_dataset, validate_for_run  # noqa: E402
from synalign.errors import InputError  # noqa: E402
from synalign.graphs.runner import run  # noqa: E402
from synalign.labeltypes import label_names_for_run  # noqa: E402
from synalign.offline import offline_backend  # noqa: E402

NAMES = ["negative", "positive"]
FEATURES = datasets.Features({"sentence": datasets.Value("large_string"), "label": datasets.ClassLabel(names=NAMES)})


def _one_line_error(result: Any, *fragments: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("synalign: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def hf_data(tmp_path_factory: pytest.TempPathFactory, demo_rows: list[dict[str, str]]) -> Path:
    """Real SST-2 rows as ``DatasetDict.save_to_disk`` writes them: ``sentence`` (large_string), a ``ClassLabel``
    ``label`` (0/1), ``train`` (40 + 40) and ``validation`` (5 + 5), no test split."""
    def part(rows: list[dict[str, str]]) -> datasets.Dataset:
        data = {"sentence": [r["text"] for r in rows], "label": [NAMES.index(r["label"]) for r in rows]}
        return datasets.Dataset.from_dict(data, features=FEATURES)

    neg, pos = [r for r in demo_rows if r["label"] == "negative"], [r for r in demo_rows if r["label"] == "positive"]
    folder = tmp_path_factory.mktemp("hf") / "sst2"
    datasets.disable_progress_bars()
    datasets.DatasetDict(
        {"train": part(neg[:40] + pos[:40]), "validation": part(neg[40:45] + pos[40:45])}
    ).save_to_disk(str(folder))
    return folder


class _Recording:
    """Wraps the offline backend's summariser / generator and keeps the requests they get."""

    def __init__(self, inner: Any, requests: list[Any], method: str) -> None:
        self.inner, self.requests, self.name = inner, requests, inner.name
        setattr(self, method, self._call)
        self._method = method

    def _call(self, requests: list[Any]) -> list[Any]:
        self.requests.extend(requests)
        return getattr(self.inner, self._method)(requests)


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory: pytest.TempPathFactory, hf_data: Path) -> dict[str, Any]:
    """One short EDA run on ``hf_data`` (labels named by its ClassLabel), with the backend's requests recorded."""
    out = tmp_path_factory.mktemp("runs") / "run"
    config = RunConfig(data=hf_data, out=out, text_field="sentence", llm="eda", max_rounds=1, clusters_per_label=1,
                       cluster_size=4, samples_per_cluster=16, allow_near_copies=True)
    inner = offline_backend()
    summaries: list[SummaryRequest] = []
    generations: list[GenerationRequest] = []
    backend = Backend(name=inner.name, summarizer=_Recording(inner.summarizer, summaries, "summarize"),
                      generator=_Recording(inner.generator, generations, "generate"), usage=inner.usage,
                      info=inner.info)
    result = run(config, backend=backend)
    return {"dir": out, "result": result, "summaries": summaries, "generations": generations, "seed": config.seed}


# --------------------------------------------------------------------------------------------------------
# Reading the layouts; label names
# --------------------------------------------------------------------------------------------------------


def test_save_to_disk_and_hub_layouts_read_with_validation_split_and_class_names(hf_data: Path, tmp_path: Path) -> None:
    dataset = load_dataset(hf_data, text_field="sentence")
    assert len(dataset.train) == 80 and dataset.test is None and len(dataset.validation or []) == 10
    assert dataset.validation_path == hf_data / "validation"
    assert dataset.label_names == {"0": "negative", "1": "positive"} and dataset.labels == ["0", "1"]
    (note,) = validate_for_run(dataset, cluster_size=4)
    assert "the validation split is the run's validation slice" in note

    hub = tmp_path / "hub"  # the push_to_hub layout: data/{split}-NNNNN-of-NNNNN.parquet
    for split, part in datasets.load_from_disk(str(hf_data)).items():
        part.to_parquet(str(hub / "data" / f"{split}-00000-of-00001.parquet"))
    from_hub = load_dataset(hub, text_field="sentence")
    assert [r.text for r in from_hub.train] == [r.text for r in dataset.train]
    assert len(from_hub.validation or []) == 10 and from_hub.label_names == dataset.label_names
    single = tmp_path / "single.parquet"  # one Parquet file written by datasets keeps the ClassLabel names
    datasets.load_from_disk(str(hf_data))["train"].to_parquet(str(single))
    assert load_dataset(single, text_field="sentence").label_names == dataset.label_names


@pytest.mark.parametrize(
    ("given", "fragment"),
    [("0", "VALUE=NAME"), ("0=a,0=b", "named twice"), ("0=", "non-empty"), ("0=bad\nname", "one line")],
)
def test_label_names_option_is_validated(given: str, fragment: str) -> None:
    assert RunConfig(data="d", out="o", label_names="0=neg, 1=pos").label_names == {"0": "neg", "1": "pos"}
    with pytest.raises(ValueError, match=fragment):
        RunConfig(data="d", out="o", label_names=given)


def test_label_names_override_class_names_and_unknown_values_are_refused(hf_data: Path, tmp_path: Path) -> None:
    dataset = load_dataset(hf_data, text_field="sentence")
    assert label_names_for_run(dataset, None) == {"0": "negative", "1": "positive"}
    assert label_names_for_run(dataset, {"1": "upbeat"}) == {"1": "upbeat"}
    with pytest.raises(InputError, match="'7' is not a label"):
        label_names_for_run(dataset, {"7": "x"})
    with pytest.raises(InputError, match="two labels are named"):
        label_names_for_run(dataset, {"0": "x", "1": "x"})
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--data", str(hf_data), "--text-field", "sentence", "--out", str(out),
                                      "--label-names", "0=negative,7=positive"])
    _one_line_error(result, "--label-names", "'7' is not a label")
    assert not out.exists()
    help_text = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).stdout
    assert "--label-names" in help_text and "ClassLabel" in help_text


def test_prompts_and_card_use_label_names_and_outputs_keep_values(hf_run: dict[str, Any]) -> None:
    from synalign.agents.completion import ContinuationAdapter
    from synalign.prompts import load_spec

    assert {r.label for r in hf_run["summaries"]} == {r.label for r in hf_run["generations"]} == set(NAMES)
    request = next(r for r in hf_run["generations"] if r.label == "negative")
    assert "negative" in request.task and "positive" in request.task
    spec = load_spec("generate_samples")
    adapter = ContinuationAdapter(spec, item="Movie review")
    prompt = adapter.format(None, [], {"label": request.label, "demonstrations": request.demonstrations,
                                       "attributes": "short; negative", "task": request.task, "n": 1})[0]["content"]
    assert prompt.endswith("Movie review (negative):") and "(0)" not in prompt
    accepted = [json.loads(line) for line in (hf_run["dir"] / "synthetic.jsonl").read_text().splitlines()]
    assert accepted and {r["label"] for r in accepted} <= {"0", "1"}  # the records keep the source's values
    meta, body = read_card(hf_run["dir"] / "README.md")
    assert meta["synalign"]["label_names"] == {"0": "negative", "1": "positive"}
    assert meta["synalign"]["features"]["label"] == {"names": NAMES, "_type": "ClassLabel"}
    assert "`0` = negative, `1` = positive" in body and "`0` (negative) 40" in body
    assert "validation split `validation`" in body


# --------------------------------------------------------------------------------------------------------
# The export concatenates with the source data
# --------------------------------------------------------------------------------------------------------


def test_export_keeps_class_label_and_large_string_so_it_concatenates(
    hf_run: dict[str, Any], hf_data: Path, tmp_path: Path
) -> None:
    target = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", str(hf_run["dir"]), "--to-dir", str(target)])
    assert result.exit_code == 0, result.output + result.stderr
    assert "sentence (large_string), label (ClassLabel: negative, positive)" in result.stdout
    exported = datasets.load_dataset(str(target), cache_dir=str(tmp_path / "cache"))["train"]
    real = datasets.load_from_disk(str(hf_data))["train"]
    assert exported.features == real.features
    both = datasets.concatenate_datasets([real, exported])
    assert both.num_rows == 80 + hf_run["result"].summary["accepted"] and set(exported["label"]) <= {0, 1}


# --------------------------------------------------------------------------------------------------------
# compare reads every synalign output directory; one noise floor
# --------------------------------------------------------------------------------------------------------


def _compare(a: Path, b: Path, *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--json", *extra])
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def test_compare_reads_run_align_and_export_dirs(hf_run: dict[str, Any], hf_data: Path, tmp_path: Path) -> None:
    accepted = hf_run["result"].summary["accepted"]
    export = tmp_path / "export"
    assert CliRunner().invoke(app, ["export", str(hf_run["dir"]), "--to-dir", str(export)]).exit_code == 0
    pool = tmp_path / "pool.jsonl"
    rows = [s.model_dump() for s in hf_run["result"].pool]  # every generated text (32), labels "0" / "1"
    pool.write_text("".join(json.dumps({"sentence": r["text"], "label": int(r["label"])}) + "\n" for r in rows))
    aligned = tmp_path / "aligned"
    result = CliRunner().invoke(app, ["align", "--real", str(hf_data), "--pool", str(pool), "--out", str(aligned),
                                      "--text-field", "sentence", "--allow-near-copies"])
    assert result.exit_code == 0, result.output + result.stderr
    for b, size in ((hf_run["dir"], accepted), (export, accepted),
                    (aligned, json.loads((aligned / "summary.json").read_text())["accepted"])):
        compared = _compare(hf_data, b, "--text-field", "sentence")
        assert compared["n_a"] == 80 and compared["n_b"] == size, b
    same = _compare(hf_run["dir"], export)  # a run and its export hold the same texts: closer than any real subset
    assert same["n_a"] == same["n_b"] == accepted and same["mmd2"] < same["noise_floor"]


def test_report_and_compare_give_the_same_noise_floor(hf_run: dict[str, Any], hf_data: Path) -> None:
    """The run's real set is the whole train split here (80 rows ≤ --max-real; the validation split is the
    slice), so ``compare TRAIN RUN --seed SEED`` measures the same sets as the run's last round."""
    last = hf_run["result"].metrics[-1]
    compared = _compare(hf_data, hf_run["dir"], "--text-field", "sentence", "--seed", str(hf_run["seed"]))
    assert compared["n_b"] == last["accepted"]
    assert compared["noise_floor"] == pytest.approx(last["noise_floor_same_size"], rel=1e-9)
    assert compared["noise_floor_std"] == pytest.approx(last["noise_floor_same_size_std"], rel=1e-9)
    assert compared["noise_floor_draws"] >= 32 and compared["mmd2_over_floor_std"] > 0
    report = (hf_run["dir"] / "report.html").read_text(encoding="utf-8")
    assert with_spread(last["noise_floor_same_size"], last["noise_floor_same_size_std"]) in report
    table = CliRunner().invoke(app, ["compare", str(hf_data), str(hf_run["dir"]), "--text-field", "sentence"]).stdout
    assert f"{compared['noise_floor']:.3e} ± {compared['noise_floor_std']:.1e}" in table
    assert f"{compared['mmd2_over_floor']:.2f}x ± {compared['mmd2_over_floor_std']:.2f}" in table
