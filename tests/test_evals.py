"""The evaluation harness (``synalign.evals``): data handling, protocol, strategies, results and the CLI.

Real data only: slices of the bundled SST-2 sample; the "synthetic" pool of the constructed cases is made of
other real SST-2 rows (some with flipped labels), so the right answer is known.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synalign.errors import InputError
from synalign.evals import strategies as st
from synalign.evals.downstream import EvalSpec, run_eval
from synalign.evals.taskdata import canonical_label, few_shot_split, load_pool, resolve_pool_paths

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "synalign" / "data" / "sst2-demo"


def _rows(name: str) -> list[dict[str, str]]:
    with open(DEMO / name, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _by_label(rows: list[dict[str, str]], label: str) -> list[dict[str, str]]:
    return [r for r in rows if r["label"] == label]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real data dir (60 train rows per label, 30 test rows per label), a pool file of 80 other real train rows
    per label with every 4th label flipped, and a second test split of different real rows."""
    base = tmp_path_factory.mktemp("evaldata")
    train, test = _rows("train.jsonl"), _rows("test.jsonl")
    neg, pos = _by_label(train, "negative"), _by_label(train, "positive")
    tneg, tpos = _by_label(test, "negative"), _by_label(test, "positive")
    _write(base / "data" / "train.jsonl", neg[:60] + pos[:60])
    _write(base / "data" / "test.jsonl", tneg[:30] + tpos[:30])
    _write(base / "data2" / "train.jsonl", neg[:60] + pos[:60])
    _write(base / "data2" / "test.jsonl", tneg[30:60] + tpos[30:60])
    pool = []
    for i, r in enumerate(neg[60:140] + pos[60:140]):
        flipped = i % 4 == 0
        label = ("positive" if r["label"] == "negative" else "negative") if flipped else r["label"]
        # upper-case label names: the pool's spelling differs from the real data's on purpose
        pool.append({"text": r["text"], "label": label.upper(), "flipped": flipped})
    _write(base / "pool" / "gen-a" / "generated.jsonl", pool)
    return {
        "data": base / "data",
        "data2": base / "data2",
        "pool": base / "pool" / "gen-a" / "generated.jsonl",
        "base": base,
    }


@pytest.fixture(scope="module")
def task(setup: dict[str, Path]) -> tuple[st.SelectionTask, np.ndarray]:
    """A SelectionTask on real embeddings: 32 labelled per class, 50 unlabelled, the 160-row pool, 40 to pick;
    and the pool's flipped-label mask."""
    from synalign.datafiles import load_dataset
    from synalign.divergence import median_bandwidth
    from synalign.embeddings import Embedder

    ds = load_dataset(setup["data"])
    pool = load_pool([setup["pool"]], ds.labels)
    flipped = np.asarray([json.loads(line)["flipped"] for line in setup["pool"].read_text().splitlines()])
    split = few_shot_split([r.label for r in ds.train], 32, 50, seed=0)
    emb = Embedder()
    real = emb.encode([ds.train[i].text for i in split.labelled])
    unl = emb.encode([ds.train[i].text for i in split.unlabelled])
    px = emb.encode(pool.texts)
    labels = np.asarray(pool.labels, dtype=object)
    t = st.SelectionTask(
        pool=px,
        pool_labels=labels,
        real=real,
        real_labels=np.asarray([ds.train[i].label for i in split.labelled], dtype=object),
        unlabelled=unl,
        quotas=st.balanced_quotas(labels, ds.labels, 40),
        bandwidth=median_bandwidth(np.concatenate([real, unl])),
        seed=0,
        device="cpu",
    )
    return t, flipped


# --- data handling --------------------------------------------------------------------------------------


def test_canonical_label_matches_spellings() -> None:
    assert canonical_label("Sci/Tech") == canonical_label("sci_tech") == "sci_tech"
    assert canonical_label(" World ") == "world"
    assert canonical_label("Sci/Tech") != canonical_label("Sports")


def test_load_pool_maps_labels_decontaminates_and_caps(setup: dict[str, Path], tmp_path: Path) -> None:
    rows = [json.loads(line) for line in setup["pool"].read_text().splitlines()]
    pool = load_pool(
        [setup["pool"]], ["negative", "positive"], exclude_texts=[rows[0]["text"], rows[1]["text"]]
    )
    assert set(pool.labels) == {"negative", "positive"}  # "NEGATIVE" → the real spelling
    assert rows[0]["text"] not in pool.texts and rows[1]["text"] not in pool.texts
    assert pool.stats["gen-a"]["in_test"] == 2 and len(pool) == len(rows) - 2
    capped = load_pool([setup["pool"]], ["negative", "positive"], cap_per_source=40)
    assert len(capped) == 40 and capped.label_counts() == {"negative": 20, "positive": 20}
    other = _write(tmp_path / "b" / "generated.jsonl", [{"text": "x", "label": "World"}])
    with pytest.raises(InputError, match="no pool label matches"):
        load_pool([other], ["negative", "positive"])


def test_resolve_pool_paths_accepts_dirs_globs_and_lists(setup: dict[str, Path]) -> None:
    base = setup["base"] / "pool"
    assert resolve_pool_paths(str(base)) == [setup["pool"]]
    assert resolve_pool_paths(f"{base}/*/generated.jsonl") == [setup["pool"]]
    assert resolve_pool_paths(f"{setup['pool']},{setup['pool']}") == [setup["pool"]] * 2
    with pytest.raises(InputError, match="no such pool file"):
        resolve_pool_paths(str(base / "missing.jsonl"))


def test_a_synalign_run_directory_is_a_pool(setup: dict[str, Path], tmp_path: Path) -> None:
    from synalign.config import RunConfig
    from synalign.graphs import run

    out = tmp_path / "run-a"
    result = run(RunConfig(data=setup["data"], out=out, llm="eda", clusters_per_label=1, cluster_size=4,
                           samples_per_cluster=6, max_rounds=1))
    assert resolve_pool_paths(str(out)) == [out / "pool.parquet"]
    pool = load_pool(resolve_pool_paths(str(out)), ["negative", "positive"])
    distinct = {(s.text, s.label) for s in result.pool}
    assert len(pool) == len(distinct) > len(result.accepted) > 0  # the whole pool, not only the accepted set
    assert set(pool.sources) == {"run-a"}


def test_few_shot_split_is_stratified_disjoint_and_seeded() -> None:
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    s0 = few_shot_split(labels, 8, 40, seed=0)
    assert sorted(np.asarray(labels)[s0.labelled].tolist()) == ["a"] * 8 + ["b"] * 8 + ["c"] * 8
    assert len(s0.unlabelled) == 40 and not set(s0.labelled) & set(s0.unlabelled)
    assert np.array_equal(few_shot_split(labels, 8, 40, seed=0).labelled, s0.labelled)
    assert not np.array_equal(few_shot_split(labels, 8, 40, seed=1).labelled, s0.labelled)
    with pytest.raises(InputError, match="fewer than k=21"):
        few_shot_split(labels, 21, 0, seed=0)


def test_balanced_quotas_equal_and_redistributed() -> None:
    labels = np.asarray(["a"] * 100 + ["b"] * 100 + ["c"] * 10, dtype=object)
    q = st.balanced_quotas(labels, ["a", "b", "c"], 90)
    assert q == {"a": 40, "b": 40, "c": 10}
    assert st.balanced_quotas(labels, ["a", "b", "c"], 31) == {"a": 11, "b": 10, "c": 10}
    with pytest.raises(InputError, match="cannot select"):
        st.balanced_quotas(labels, ["a", "b", "c"], 211)


# --- strategies -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(st.EVAL_STRATEGIES))
def test_every_strategy_keeps_the_quotas(task: tuple[st.SelectionTask, np.ndarray], name: str) -> None:
    t, _ = task
    chosen = st.select(name, st.with_tau(t, 0.5))
    assert len(np.unique(chosen)) == len(chosen) == 40
    assert {lab: int(np.sum(t.pool_labels[chosen] == lab)) for lab in t.quotas} == t.quotas


def test_label_filter_removes_flipped_labels(task: tuple[st.SelectionTask, np.ndarray]) -> None:
    t, flipped = task
    p_other = st.label_consistency_scores(t.real, t.real_labels, t.pool, t.pool_labels)
    # a logistic regression fitted on 64 real rows finds most of the flipped labels ...
    assert p_other[flipped].mean() > p_other[~flipped].mean() + 0.15
    kept = p_other <= 0.5
    assert flipped.mean() == 0.25 and flipped[kept].mean() < 0.6 * flipped.mean()
    # ... and the "filter" strategy selects only among the rows it keeps (enough are kept for the quotas)
    filt_task = st.with_tau(t, 0.5)
    chosen = st.select("filter", filt_task)
    assert filt_task.info["filtered_out"] == int((~kept).sum()) > 0
    assert kept[chosen].all()
    assert not kept[st.select("random", t)].all()


def test_cross_validated_tau_uses_only_the_few_shot_set(task: tuple[st.SelectionTask, np.ndarray]) -> None:
    t, _ = task
    probe = st.with_tau(t, None)
    tau = st.choose_tau(probe)
    assert tau in st.TAU_GRID
    assert set(probe.info["tau_cv_logloss"]) == {str(v) for v in st.TAU_GRID}
    assert st.choose_tau(st.with_tau(t, None)) == tau  # deterministic for a seed


def test_herding_to_unlabelled_pool_matches_it_better_than_random(
    task: tuple[st.SelectionTask, np.ndarray],
) -> None:
    from synalign.divergence import mmd2_unbiased

    t, _ = task
    herd = st.select("herding_unlabelled", t)
    rand = st.select("random", t)
    assert mmd2_unbiased(t.pool[herd], t.unlabelled, t.bandwidth) < mmd2_unbiased(
        t.pool[rand], t.unlabelled, t.bandwidth
    )


def test_unknown_strategy_is_an_input_error(task: tuple[st.SelectionTask, np.ndarray]) -> None:
    with pytest.raises(InputError, match="unknown selection strategy 'nope'"):
        st.select("nope", task[0])


# --- protocol and results -------------------------------------------------------------------------------


def _spec(data: Path, pool: Path, out: Path | None) -> EvalSpec:
    return EvalSpec(
        data=data,
        pools=[pool],
        out=out,
        k=8,
        m=40,
        seeds=2,
        n_unlabelled=30,
        strategies=["random", "herding_unlabelled", "filter"],
        cap_per_source=None,
    )


def test_selection_never_depends_on_the_test_split(setup: dict[str, Path], tmp_path: Path) -> None:
    a = run_eval(_spec(setup["data"], setup["pool"], tmp_path / "a"))
    b = run_eval(_spec(setup["data2"], setup["pool"], None))
    sel_a = {(r["seed"], r["condition"]): r for r in a["rows"]}
    sel_b = {(r["seed"], r["condition"]): r for r in b["rows"]}
    assert sel_a.keys() == sel_b.keys()
    for key, row in sel_a.items():
        assert row["bandwidth"] == sel_b[key]["bandwidth"]
        if "selection_sha1" in row:
            assert row["selection_sha1"] == sel_b[key]["selection_sha1"], key
            assert row.get("info", {}).get("tau") == sel_b[key].get("info", {}).get("tau")
    # ... while the scores, computed on different test rows, do change
    assert any(row["accuracy"] != sel_b[key]["accuracy"] for key, row in sel_a.items())


def test_results_files_and_table_shape(setup: dict[str, Path], tmp_path: Path) -> None:
    res = run_eval(_spec(setup["data"], setup["pool"], tmp_path / "out"))
    conditions = ["real_only", "whole_pool", "random", "herding_unlabelled", "filter"]
    assert [e["condition"] for e in res["summary"]] == conditions
    assert len(res["rows"]) == 2 * len(conditions)
    for row in res["rows"]:
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["macro_f1"] <= 1.0
        assert row["n_synthetic"] == {"real_only": 0, "whole_pool": 160}.get(row["condition"], 40)
    for e in res["summary"]:
        assert e["n_seeds"] == 2 and e["accuracy_std"] >= 0.0
        assert ("accuracy_delta_random" in e) == (e["condition"] != "random")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["summary"] == res["summary"] and saved["config"]["seeds"] == [0, 1]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| condition | accuracy | macro-F1 |" in table and "real + whole pool" in table
    assert table.count("\n| ") == len(conditions) + 1
    assert (tmp_path / "out" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_requires_a_test_split(setup: dict[str, Path], tmp_path: Path) -> None:
    only_train = _write(tmp_path / "train.jsonl", _rows("train.jsonl")[:50])
    with pytest.raises(InputError, match="no test split"):
        run_eval(_spec(only_train, setup["pool"], None))


# --- CLI ------------------------------------------------------------------------------------------------


def test_eval_command_writes_results(setup: dict[str, Path], tmp_path: Path) -> None:
    from synalign.app.cli import app

    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--data",
            str(setup["data"]),
            "--pool",
            str(setup["pool"]),
            "--out",
            str(tmp_path / "cli"),
            "--k",
            "8",
            "--m",
            "40",
            "--seeds",
            "1",
            "--n-unlabelled",
            "30",
            "--strategy",
            "random,filter",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| real + filter |" in result.stdout
    saved = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert [e["condition"] for e in saved["summary"]] == ["real_only", "whole_pool", "random", "filter"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--pool", "/nonexistent/pool.jsonl"], "no such pool file or directory"),
        (["--strategy", "random,nope"], "unknown selection strategy 'nope'"),
        (["--m", "100000"], "cannot select m=100000"),
        (["--classifier", "svm"], "unknown classifier 'svm'"),
    ],
)
def test_eval_command_bad_input_is_one_line(
    setup: dict[str, Path], tmp_path: Path, args: list[str], fragment: str
) -> None:
    from synalign.app.cli import app

    base = {"--data": str(setup["data"]), "--pool": str(setup["pool"]), "--out": str(tmp_path / "o")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    result = CliRunner().invoke(app, ["eval", *[x for kv in base.items() for x in kv]])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("synalign: error: ") and fragment in lines[0], (
        result.stderr
    )
    assert not (tmp_path / "o").exists()
