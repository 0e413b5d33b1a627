"""RunDir: the one object that names a run directory's files and answers about it; RunSummary: summary.json typed.

One tiny EDA run (module fixture) is the finished run; a copy of its config.json alone is a run that has not
finished; an empty folder and a data folder are not runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from synalign.artifacts.rundir import RUN_FILES, InvalidRunConfig, RunDir, read_compare_side
from synalign.artifacts.summary import RunSummary
from synalign.config import RunConfig
from synalign.errors import InputError
from synalign.graphs import run
from synalign.graphs.runner import RunResult

# the keys of summary.json in the first version of synalign (commit 1796395): every later key may be missing
_FIRST_KEYS = (
    "stop_reason", "rounds", "generated", "accepted", "labels", "real_examples", "bandwidth", "noise_floor",
    "noise_floor_std", "target", "target_mmd2", "final_mmd2", "selection", "backend", "usage", "dropped",
    "embedding_model", "wall_seconds",
)


@pytest.fixture(scope="module")
def finished(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """A finished one-round EDA run on 60 real examples per label."""
    out = tmp_path_factory.mktemp("rundir") / "run"
    return run(RunConfig(data=small_data, out=out, llm="eda", clusters_per_label=1, cluster_size=4,
                         samples_per_cluster=4, max_rounds=1, seed=1, target="0"))


def test_answers_on_a_finished_run(finished: RunResult) -> None:
    run_dir = RunDir(finished.run_dir)
    assert run_dir.is_run() and run_dir.is_finished()
    # every output the runner reports is a file RunDir names (one name each), and each is in RUN_FILES
    named = {run_dir.config_file, run_dir.summary_file, run_dir.metrics_file, run_dir.synthetic_jsonl,
             run_dir.synthetic_parquet, run_dir.pool_file, run_dir.attributes_file, run_dir.report_file,
             run_dir.card_file, run_dir.usage_file, run_dir.trace_file, run_dir.checkpoint_file}
    assert set(finished.outputs.values()) <= named and all(p.name in RUN_FILES for p in named)
    assert all(p.is_file() for p in finished.outputs.values())
    config = run_dir.read_config()
    assert isinstance(config, RunConfig) and config.out == finished.run_dir and config.max_rounds == 1
    summary = run_dir.read_summary()
    assert summary == finished.summary and summary.stop_reason == finished.stop_reason == "max_rounds"
    assert summary.generated == len(finished.pool) == 8 and summary.accepted == len(finished.accepted)
    assert summary.verdict is not None and summary.verdict.level in ("green", "amber", "red")
    assert summary.validation is not None and summary.validation.size == len(summary.validation.ids or [])
    # read back by key as the dict it was: nested records are plain dicts, as in the file
    on_disk = json.loads(run_dir.summary_file.read_text(encoding="utf-8"))
    assert finished.summary["verdict"] == on_disk["verdict"] and finished.summary["backend"] == on_disk["backend"]
    with pytest.raises(KeyError):
        finished.summary["command"]  # noqa: B018  (an align-only key a run does not write)
    # the compare side of a run is its accepted samples
    assert [r.text for r in read_compare_side(finished.run_dir)] == [s.text for s in finished.accepted]


def test_summary_round_trips_byte_for_byte(finished: RunResult) -> None:
    run_dir = RunDir(finished.run_dir)
    written = run_dir.summary_file.read_bytes()
    assert finished.summary.to_json().encode("utf-8") == written
    assert run_dir.read_summary().to_json().encode("utf-8") == written
    # the writer's format: the dict's keys in order, indent 2, non-ASCII kept
    assert written.decode("utf-8") == json.dumps(json.loads(written), indent=2, ensure_ascii=False) + "\n"


def test_an_old_summary_without_later_keys_loads(finished: RunResult, tmp_path: Path) -> None:
    on_disk = json.loads(RunDir(finished.run_dir).summary_file.read_text(encoding="utf-8"))
    old = {key: on_disk[key] for key in _FIRST_KEYS}
    old["backend"] = {"name": "offline:eda", "is_llm": False, "note": "offline note"}  # that version's backend
    (tmp_path / "summary.json").write_text(json.dumps(old, indent=2), encoding="utf-8")
    summary = RunDir(tmp_path).read_summary()
    assert summary.final_mmd2 == on_disk["final_mmd2"] and summary.labels == on_disk["labels"]
    assert summary.verdict is None and summary.validation is None and summary.usage_processes is None
    assert summary.generated_per_label is None and summary.accept_fraction is None
    assert summary["stop_reason"] == "max_rounds" and summary["verdict"] is None


def test_a_run_that_has_not_finished(finished: RunResult, tmp_path: Path) -> None:
    out = tmp_path / "unfinished"
    out.mkdir()
    shutil.copy(RunDir(finished.run_dir).config_file, out)  # config.json is written first, summary.json last
    run_dir = RunDir(out)
    assert run_dir.is_run() and not run_dir.is_finished()
    assert run_dir.read_config() == RunDir(finished.run_dir).read_config()
    with pytest.raises(InputError, match=r"missing .*summary\.json"):
        run_dir.read_summary()


def test_folders_that_are_not_runs(small_data: Path, tmp_path: Path) -> None:
    for folder in (tmp_path / "absent", tmp_path, small_data):
        run_dir = RunDir(folder)
        assert not run_dir.is_run() and not run_dir.is_finished()
        with pytest.raises(InputError, match=r"no synalign run in .* \(missing config\.json\)"):
            run_dir.read_config()
    assert RunDir(tmp_path / "absent").entries() == []
    (tmp_path / "config.json").write_text('{"data": 3}', encoding="utf-8")  # a run's file name, not a run config
    with pytest.raises(InvalidRunConfig, match=r"config\.json is not a valid run config \(data: ") as caught:
        RunDir(tmp_path).read_config()
    assert caught.value.path == tmp_path / "config.json"
    (tmp_path / "summary.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match=r"cannot read .*summary\.json"):
        RunDir(tmp_path).read_summary()


def test_summary_validates_what_the_renderers_are_given() -> None:
    """A partial summary (as tests and old files hold) is valid; a wrong type is refused."""
    partial = RunSummary.model_validate({"stop_reason": "target", "verdict": {}, "validation": {"source": "none"}})
    assert partial.verdict is None and partial.validation is not None and partial.validation.size is None
    with pytest.raises(ValueError, match="rounds"):
        RunSummary.model_validate({"rounds": "two"})
