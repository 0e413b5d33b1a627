"""Hugging Face datasets interop: a run directory loads with ``datasets.load_dataset`` (train = accepted, a
``pool`` config), its dataset card, and ``synalign export --to-dir / --to-hub`` (the Hub is a local fake).

No test touches the network: ``datasets`` and ``huggingface_hub`` run offline, ``HfApi`` is replaced.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

os.environ["HF_DATASETS_OFFLINE"] = "1"  # before datasets is imported: it reads them once
os.environ["HF_HUB_OFFLINE"] = "1"

import datasets  # noqa: E402
import httpx  # noqa: E402
import huggingface_hub  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from synalign.agents.llamacpp import GEMMA_TERMS_NOTE  # noqa: E402
from synalign.app.cli import app  # noqa: E402
from synalign.artifacts.datacard import build_card, read_card, size_category  # noqa: E402
from synalign.datafiles import validation_splits  # noqa: E402
from synalign.labeltypes import detect_label_dtype  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--llm", "eda", "--rounds", "1", "--clusters-per-label", "1", "--cluster-size", "4",
        "--samples-per-cluster", "8",
        "--allow-near-copies"]  # EDA keeps near-copies of real texts: half of each pool is accepted, as asserted
EXPORT_FILES = {"README.md", "data/train-00000-of-00001.parquet", "pool/train-00000-of-00001.parquet"}


def _load(path: Path, *args: str, cache: Path) -> datasets.DatasetDict:
    return datasets.load_dataset(str(path), *args, cache_dir=str(cache))


def _one_line_error(result: Any, code: int, *fragments: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("synalign: error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def int_data(tmp_path_factory: pytest.TempPathFactory, demo_rows: list[dict[str, str]]) -> Path:
    """Real SST-2 rows as a user with GLUE-style columns has them: ``sentence`` text, int ``label`` (0/1), and
    train / validation / test splits."""
    rows = [{"sentence": r["text"], "label": int(r["label"] == "positive")} for r in demo_rows]
    neg, pos = [r for r in rows if r["label"] == 0], [r for r in rows if r["label"] == 1]
    splits = {"train": neg[:40] + pos[:40], "validation": neg[40:45] + pos[40:45], "test": neg[45:55] + pos[45:55]}
    folder = tmp_path_factory.mktemp("glue-style")
    for split, part in splits.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, int_data: Path) -> dict[str, Any]:
    """One real short EDA run on ``int_data``: its directory, what the CLI printed and the lines it logged
    (under pytest, log records go to pytest's handler rather than stderr)."""
    out = tmp_path_factory.mktemp("hf") / "run"
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("synalign").addHandler(handler)
    try:
        result = CliRunner().invoke(
            app, ["run", "--data", str(int_data), "--text-field", "sentence", "--out", str(out), *FAST]
        )
    finally:
        logging.getLogger("synalign").removeHandler(handler)
    assert result.exit_code == 0, result.output + result.stderr
    return {"dir": out, "stdout": result.stdout, "log": [r.getMessage() for r in records],
            "summary": json.loads((out / "summary.json").read_text(encoding="utf-8"))}


@pytest.fixture()
def cache(tmp_path: Path) -> Path:
    return tmp_path / "hf-cache"


# --------------------------------------------------------------------------------------------------------
# The run directory as a dataset
# --------------------------------------------------------------------------------------------------------


def test_run_dir_loads_train_as_accepted_and_pool_as_a_config(run: dict[str, Any], cache: Path) -> None:
    run_dir = run["dir"]
    accepted_ids = [json.loads(line)["id"] for line in (run_dir / "synthetic.jsonl").read_text().splitlines()]
    loaded = _load(run_dir, cache=cache)
    assert isinstance(loaded, datasets.DatasetDict) and list(loaded) == ["train"]
    assert loaded["train"]["id"] == accepted_ids and len(accepted_ids) == run["summary"]["accepted"] == 8
    provenance = {"text", "label", "round", "kmm_weight", "sample_weight", "backend", "demonstration_ids"}
    assert provenance <= set(loaded["train"].column_names)

    assert datasets.get_dataset_config_names(str(run_dir)) == ["default", "pool"]
    pool = _load(run_dir, "pool", cache=cache)
    assert list(pool) == ["train"] and pool["train"].num_rows == run["summary"]["generated"] == 16
    assert sum(pool["train"]["accepted"]) == 8
    assert {i for i, a in zip(pool["train"]["id"], pool["train"]["accepted"]) if a} == set(accepted_ids)
    assert "README.md" in run["stdout"]  # listed with the other outputs


def test_card_yaml_and_sections(run: dict[str, Any]) -> None:
    text = (run["dir"] / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    meta, body = read_card(run["dir"] / "README.md")
    assert meta == yaml.safe_load(text.split("---\n")[1])
    assert meta["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "synthetic.parquet"}]},
        {"config_name": "pool", "data_files": [{"split": "train", "path": "pool.parquet"}]},
    ]
    assert meta["task_categories"] == ["text-classification"] and meta["size_categories"] == ["n<1K"]
    assert meta["tags"] == ["synthetic", "synalign"] and meta["license"] == "other"
    assert "language" not in meta  # not known from the run
    assert meta["synalign"] == {"text_field": "sentence", "label_field": "label", "label_dtype": "int",
                                "backend": "offline:eda", "selection": "filter",
                                "features": {"sentence": {"dtype": "string", "_type": "Value"},
                                             "label": {"dtype": "int64", "_type": "Value"}}}
    summary = run["summary"]
    for fragment in (
        "## Source data", "`0` 40, `1` 40", "## Backend and model", "`offline:eda`", "## Selection strategy",
        "- `filter`: drop samples", "## Divergence to the real data", f"{summary['final_mmd2']:.3e}",
        f"{summary['target_mmd2']:.3e}", f"{summary['noise_floor']:.3e}", "| Sinkhorn accepted |", "## License",
        "derived from the user's data", "test split `test.jsonl`: never used to fit anything",
    ):
        assert fragment in body, fragment
    # the verdict opens the body, right after the description and before the divergence
    judged = summary["verdict"]
    section = body[body.index("## Should you train on this?"):body.index("## Loading")]
    assert body.index("# Synthetic text-classification data") < body.index("## Should you train on this?")
    assert f"**{judged['level'].upper()}**: {judged['headline']}" in section
    assert all(f"- {line}" in section for line in judged["evidence"])


def test_validation_split_is_named_as_the_validation_slice(run: dict[str, Any], tmp_path: Path) -> None:
    (line,) = [line for line in run["log"] if "validation" in line]
    assert line.startswith("note: ") and "validation.jsonl: the validation split is the run's validation slice" in line
    _, body = read_card(run["dir"] / "README.md")
    assert "validation split `validation.jsonl`: the run's validation slice: never a demonstration" in body
    assert "Validation slice: 10 real examples (the validation/dev split of the source data), never a " in body
    (tmp_path / "dev.csv").write_text("text,label\n", encoding="utf-8")
    (tmp_path / "train.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("", encoding="utf-8")
    assert validation_splits(tmp_path) == [tmp_path / "dev.csv"]
    assert validation_splits(tmp_path / "train.jsonl") == []


def test_card_license_for_the_embedded_gemma_model_and_an_endpoint() -> None:
    summary = {"accepted": 1500, "generated": 3000, "selection": "filter+herding",
               "backend": {"name": "local:gemma-3-270m-q4_k_m", "is_llm": True, "kind": "local",
                           "model": "gemma-3-270m-q4_k_m", "terms": GEMMA_TERMS_NOTE, "note": GEMMA_TERMS_NOTE}}
    meta, body = read_card_text(build_card(config={"data": "x.jsonl"}, summary=summary, metrics=[]))
    assert meta["license"] == "other" and meta["license_link"] == "https://ai.google.dev/gemma/terms"
    assert meta["size_categories"] == ["1K<n<10K"]
    assert "Gemma Terms of Use apply to the use of these outputs" in body
    assert "then `herding`" in body and "model: `gemma-3-270m-q4_k_m`" in body
    summary["backend"] = {"name": "openai:gpt-4o-mini", "is_llm": True, "kind": "openai", "model": "gpt-4o-mini"}
    meta, body = read_card_text(build_card(config={}, summary=summary, metrics=[]))
    assert "license_link" not in meta and "model provider's terms of use apply" in body
    assert [size_category(n) for n in (0, 999, 1000, 10_000, 2_500_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"]


def test_card_verdict_section_and_its_absence() -> None:
    verdict = {"level": "red", "headline": "adding these 40 texts lowered held-out accuracy by 8.3 points (95 % CI "
               "-14.6 to -2.1): don't train on them as they are",
               "evidence": ["novelty: 2% of the accepted texts are near-copies of real texts"],
               "advice": ["keep fewer: a lower --accept-fraction"]}
    summary = {"accepted": 40, "generated": 80, "stop_reason": "utility_plateau", "rounds": 3, "verdict": verdict,
               "validation": {"source": "25% of train", "size": 24, "per_label": {"a": 12, "b": 12}, "ids": []}}
    _, body = read_card_text(build_card(config={}, summary=summary, metrics=[]))
    section = body[body.index("## Should you train on this?"):body.index("## Loading")]
    assert body.index("Stop reason: `utility_plateau`") < body.index("## Should you train on this?")
    assert f"**RED**: {verdict['headline']}" in section and "- novelty: 2% of the accepted" in section
    assert "What to try next: keep fewer: a lower --accept-fraction." in section
    assert "Validation slice: 24 real examples (25% of train), never a demonstration nor fitted on" in section
    summary["validation"] = {"source": "none", "size": 0}
    _, body = read_card_text(build_card(config={}, summary=summary, metrics=[]))
    assert "There was no validation slice" in body
    # a summary from before the verdict (or synalign align's, without one): no section, the rest unchanged
    del summary["verdict"], summary["validation"]
    _, body = read_card_text(build_card(config={}, summary=summary, metrics=[]))
    assert "Should you train" not in body and "Validation slice" not in body and "## Loading" in body


def read_card_text(text: str) -> tuple[dict[str, Any], str]:
    _, header, body = text.split("---\n", 2)
    return yaml.safe_load(header), body


def test_detect_label_dtype(tmp_path: Path) -> None:
    def jsonl(name: str, labels: list[Any]) -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps({"text": "t", "y": v}) + "\n" for v in labels), encoding="utf-8")
        return path

    assert detect_label_dtype(jsonl("i.jsonl", [0, 1, 1]), "y") == "int"
    assert detect_label_dtype(jsonl("f.jsonl", [0.5, 1]), "y") == "float"
    assert detect_label_dtype(jsonl("b.jsonl", [True, False]), "y") == "bool"
    assert detect_label_dtype(jsonl("s.jsonl", ["pos", 1]), "y") == "str"
    (tmp_path / "c.csv").write_text("text,y\na,1\nb,0\n", encoding="utf-8")
    assert detect_label_dtype(tmp_path / "c.csv", "y") == "int"
    pq.write_table(pa.table({"text": ["a", "b"], "y": pa.array([1, 0], pa.int8())}), tmp_path / "p.parquet")
    assert detect_label_dtype(tmp_path / "p.parquet", "y") == "int"
    assert detect_label_dtype(tmp_path / "missing.jsonl", "y") is None


# --------------------------------------------------------------------------------------------------------
# export --to-dir
# --------------------------------------------------------------------------------------------------------


def test_export_to_dir_keeps_column_names_and_int_labels(
    run: dict[str, Any], int_data: Path, tmp_path: Path, cache: Path
) -> None:
    target = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", str(run["dir"]), "--to-dir", str(target)])
    assert result.exit_code == 0, result.output + result.stderr
    assert "sentence (string), label (int64)" in result.stdout and "default 8, pool 16" in result.stdout
    assert result.stderr == ""  # no progress bars
    assert {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()} == EXPORT_FILES

    loaded = _load(target, cache=cache)
    assert list(loaded) == ["train"] and loaded["train"].num_rows == 8
    assert loaded["train"].features == datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.Value("int64")})
    accepted = [json.loads(line) for line in (run["dir"] / "synthetic.jsonl").read_text().splitlines()]
    assert loaded["train"]["sentence"] == [r["text"] for r in accepted]
    assert loaded["train"]["label"] == [int(r["label"]) for r in accepted]
    assert _load(target, "pool", cache=cache)["train"].num_rows == 16
    # same features as the user's real data: the two concatenate
    real = datasets.load_dataset("json", data_files=str(int_data / "train.jsonl"), cache_dir=str(cache))["train"]
    assert datasets.concatenate_datasets([real, loaded["train"]]).num_rows == 80 + 8

    meta, body = read_card(target / "README.md")
    assert [c["data_files"][0]["path"] for c in meta["configs"]] == sorted(EXPORT_FILES - {"README.md"})
    assert meta["synalign"]["label_dtype"] == "int" and "## Divergence to the real data" in body

    full = tmp_path / "export-all"
    result = CliRunner().invoke(app, ["export", str(run["dir"]), "--to-dir", str(full), "--columns", "all"])
    assert result.exit_code == 0, result.stderr
    train = _load(full, cache=cache)["train"]
    assert train.column_names == ["sentence", "label", "id", "round", "kmm_weight", "sample_weight", "backend",
                                  "demonstration_ids"]
    assert train["id"] == [r["id"] for r in accepted] and set(train["backend"]) == {"offline:eda"}
    assert isinstance(train[0]["demonstration_ids"], list) and isinstance(train[0]["label"], int)
    pool = _load(full, "pool", cache=cache)["train"]
    assert pool.column_names[-1] == "accepted" and sum(pool["accepted"]) == 8


def test_export_of_a_run_without_card_detects_or_says_the_label_type(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A committed local-LM run from before cards: the card is built from its records (Gemma terms); its data
    path is relative to the repository, so from elsewhere the labels stay strings, with a note."""
    run_dir = tmp_path / "sst2-local"
    shutil.copytree(ROOT / "evals" / "results" / "backend-choice" / "sst2-local", run_dir)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["export", str(run_dir), "--to-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    assert "note: labels exported as strings" in result.stderr
    meta, body = read_card(tmp_path / "out" / "README.md")
    assert meta["license_link"] == "https://ai.google.dev/gemma/terms" and "Gemma Terms of Use apply" in body
    assert "per-label counts not recorded" in body
    summary = json.loads((run_dir / "summary.json").read_text())
    assert _load(tmp_path / "out", cache=cache)["train"].num_rows == summary["accepted"]


# --------------------------------------------------------------------------------------------------------
# export --to-hub, against a local fake of the Hub API
# --------------------------------------------------------------------------------------------------------


class FakeHub:
    """Stands in for ``huggingface_hub.HfApi``: records the calls, keeps the uploaded folder on disk."""

    def __init__(self, root: Path, fail: bool = False) -> None:
        self.root, self.fail, self.calls = root, fail, []

    def __call__(self, token: str | None = None, **_: Any) -> FakeHub:
        self.calls.append(("HfApi", {"token": token}))
        return self

    def create_repo(self, repo_id: str, **kwargs: Any) -> Any:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        if self.fail:
            request = httpx.Request("POST", "https://huggingface.co/api/repos/create")
            raise huggingface_hub.errors.HfHubHTTPError(
                "403 Forbidden: you cannot write to\nthis namespace", response=httpx.Response(403, request=request)
            )
        return huggingface_hub.RepoUrl(f"https://huggingface.co/datasets/{repo_id}")

    def upload_folder(self, *, repo_id: str, folder_path: str, **kwargs: Any) -> None:
        self.calls.append(("upload_folder", {"repo_id": repo_id, **kwargs}))
        shutil.copytree(folder_path, self.root / repo_id)


def test_export_to_hub_uploads_the_export_to_the_repo(
    run: dict[str, Any], tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub, "HfApi", hub)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    result = CliRunner().invoke(app, ["export", str(run["dir"]), "--to-hub", "someone/synth-sst2", "--private"])
    assert result.exit_code == 0, result.output + result.stderr
    assert "https://huggingface.co/datasets/someone/synth-sst2" in result.stdout
    assert [name for name, _ in hub.calls] == ["HfApi", "create_repo", "upload_folder"]
    assert hub.calls[0][1] == {"token": "hf_test_token"}
    assert hub.calls[1][1] == {"repo_id": "someone/synth-sst2", "repo_type": "dataset", "private": True,
                               "exist_ok": True}
    assert hub.calls[2][1]["repo_type"] == "dataset" and hub.calls[2][1]["delete_patterns"] == ["data/*", "pool/*"]
    repo = tmp_path / "hub" / "someone" / "synth-sst2"
    assert {str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()} == EXPORT_FILES
    train = _load(repo, cache=cache)["train"]
    assert train.num_rows == 8 and train.features["label"] == datasets.Value("int64")


def test_export_to_hub_errors(run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub(tmp_path / "hub", fail=True))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    failed = CliRunner().invoke(app, ["export", str(run["dir"]), "--to-hub", "someone/synth"])
    _one_line_error(failed, 1, "upload to someone/synth failed", "403 Forbidden")
    _one_line_error(CliRunner().invoke(app, ["export", str(run["dir"]), "--to-hub", "no-namespace"]), 2, "user/name")
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    _one_line_error(CliRunner().invoke(app, ["export", str(run["dir"]), "--to-hub", "someone/synth"]), 2, "HF_TOKEN")


# --------------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2
# --------------------------------------------------------------------------------------------------------


def test_export_bad_input_is_one_line_exit_2(
    run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def export(*args: str) -> Any:
        return CliRunner().invoke(app, ["export", *args])

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("not a run", encoding="utf-8")
    _one_line_error(export(str(plain), "--to-dir", str(tmp_path / "x")), 2, str(plain), "not a synalign run directory")
    _one_line_error(export(str(tmp_path / "missing"), "--to-dir", str(tmp_path / "x")), 2, "not a directory")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run["dir"], unfinished)
    (unfinished / "summary.json").unlink()
    _one_line_error(export(str(unfinished), "--to-dir", str(tmp_path / "x")), 2, "has not finished")
    _one_line_error(export(str(run["dir"])), 2, "--to-dir", "--to-hub")
    _one_line_error(export(str(run["dir"]), "--to-dir", str(tmp_path / "x"), "--to-hub", "a/b"), 2, "exactly one")
    _one_line_error(export(str(run["dir"]), "--to-dir", str(plain)), 2, "already exists")
    _one_line_error(export(str(run["dir"]), "--to-dir", str(tmp_path / "x"), "--columns", "some"), 2, "--columns")
    assert not (tmp_path / "x").exists()
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if the hf extra were not installed
    _one_line_error(export(str(run["dir"]), "--to-dir", str(tmp_path / "x")), 2, "pip install 'synalign[hf]'")
    assert not (tmp_path / "x").exists()
