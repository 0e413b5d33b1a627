"""The samples live in the run's LangGraph store, the state holds references: a checkpoint's size does not grow
with the pool, the store holds each sample once, a lost item is one clear error, never a smaller pool."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from langgraph.store.memory import InMemoryStore

from synalign.config import RunConfig
from synalign.errors import InputError
from synalign.graphs import RunResult, run
from synalign.graphs.samplestore import (
    MissingItemError,
    get_alignment,
    get_samples,
    namespace_for,
    put_alignment,
    put_samples,
)

PREFIX = namespace_for("t")


def _records(round_: int, n: int) -> list[dict]:
    return [{"id": f"syn-r{round_:02d}-c000-{j:03d}", "text": f"text {round_} {j}", "label": "pos", "round": round_,
             "backend": "offline-eda", "demonstration_ids": ["a", "b"]} for j in range(n)]


def test_batches_come_back_in_pool_order_and_a_lost_or_short_item_is_an_error() -> None:
    store = InMemoryStore()
    refs = [put_samples(store, PREFIX, r, _records(r, n)) for r, n in ((1, 3), (2, 0), (3, 2))]
    assert [s["id"] for s in get_samples(store, PREFIX, refs)] == [
        *(f"syn-r01-c000-{j:03d}" for j in range(3)), *(f"syn-r03-c000-{j:03d}" for j in range(2))]
    assert put_samples(store, PREFIX, 1, _records(1, 3)) == refs[0]  # a node re-run writes the same item
    assert get_samples(store, namespace_for("other"), []) == []
    with pytest.raises(MissingItemError, match="round 1"):
        get_samples(store, namespace_for("other"), refs)  # another thread's namespace holds nothing
    cache: dict[str, list[dict]] = {}
    assert get_samples(store, PREFIX, refs, cache=cache) == get_samples(store, PREFIX, refs)
    assert sorted(cache) == sorted(r["key"] for r in refs)
    store.delete((*PREFIX, "samples"), refs[0]["key"])  # a batch read once in this process is not read again
    assert len(get_samples(store, PREFIX, refs, cache=cache)) == 5
    with pytest.raises(MissingItemError, match="round 1"):
        get_samples(store, PREFIX, refs)
    store.put((*PREFIX, "samples"), refs[0]["key"], {"round": 1, "samples": _records(1, 3)})
    store.put((*PREFIX, "samples"), refs[2]["key"], {"round": 3, "samples": _records(3, 1)})
    with pytest.raises(MissingItemError, match=r"round 3 .*2 samples; found 1 samples"):
        get_samples(store, PREFIX, refs)


def test_alignments_round_trip_exactly_and_only_the_latest_two_are_kept_when_pruning() -> None:
    rng = np.random.default_rng(0)
    for prune, kept in ((True, 2), (False, 4)):
        store, ref = InMemoryStore(), None
        for round_, n in enumerate((5, 9, 13, 17), start=1):
            weights, mask = rng.random(n), rng.random(n) < 0.4
            ref = put_alignment(store, PREFIX, round_, weights, mask, previous=ref, prune=prune)
            w, m = get_alignment(store, PREFIX, ref, n + 4)  # 4 samples generated since: weight 0, not accepted
            np.testing.assert_array_equal(w[:n], weights)
            np.testing.assert_array_equal(m[:n], mask)
            assert not w[n:].any() and not m[n:].any() and ref["accepted"] == int(mask.sum())
        assert len(store.search((*PREFIX, "alignment"), limit=10)) == kept
    assert ref is not None
    with pytest.raises(MissingItemError, match="alignment of round 4"):
        get_alignment(InMemoryStore(), PREFIX, ref, 17)


def _run(data: Path, out: Path, per_cluster: int, rounds: int = 3) -> tuple[RunResult, list[int]]:
    sizes: list[int] = []

    def on_event(event: dict) -> None:  # after each round's align: the newest checkpoint row's size
        if event.get("node") == "explore" and event.get("done") == 0 and event.get("round", 0) > 1:
            with sqlite3.connect(out / "checkpoints.sqlite") as conn:
                row = conn.execute("SELECT length(checkpoint) FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1")
                sizes.append(int(row.fetchone()[0]))

    config = RunConfig(data=data, out=out, llm="eda", selection="random", max_rounds=rounds, target="0",
                       clusters_per_label=2, cluster_size=4, samples_per_cluster=per_cluster)
    return run(config, on_event=on_event), sizes


def test_a_checkpoint_stays_the_same_size_as_the_pool_grows_and_the_store_holds_each_sample_once(
    small_data: Path, tmp_path: Path
) -> None:
    small, small_sizes = _run(small_data, tmp_path / "small", per_cluster=4)
    large, large_sizes = _run(small_data, tmp_path / "large", per_cluster=40)
    assert large.summary["generated"] >= 8 * small.summary["generated"] > 0
    # the checkpoint after align(r) (read as explore(r+1) starts) holds references and metrics only: ten times
    # the samples add no bytes to it (the state held every sample's text and weight before)
    assert len(large_sizes) == 2 and max(large_sizes) < 1.1 * max(small_sizes)
    with sqlite3.connect(tmp_path / "large" / "checkpoints.sqlite") as conn:
        rows = conn.execute("SELECT prefix, key, value FROM store ORDER BY key").fetchall()
    samples = [s for p, _, v in rows if p.endswith(".samples") for s in json.loads(v)["samples"]]
    assert len(samples) == len({s["id"] for s in samples}) == large.summary["generated"]
    assert [s["id"] for s in samples] == [s.id for s in large.pool]  # the outputs are the store's pool, in order
    assert sum(p.endswith(".alignment") for p, _, _ in rows) == 2  # the latest and the one before: pruned


def test_a_store_that_lost_a_round_is_refused_on_resume_with_one_error(small_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run(small_data, out, per_cluster=4, rounds=2)
    with sqlite3.connect(out / "checkpoints.sqlite") as conn:
        conn.execute("DELETE FROM store WHERE prefix LIKE '%.samples' AND key LIKE 'r0001-%'")
    config = RunConfig.model_validate_json((out / "config.json").read_text())
    with pytest.raises(InputError, match=r"checkpoint is corrupt \(the samples of round 1 .* start the run over"):
        run(config, resume=True)


def test_a_checkpoint_that_held_the_pool_in_its_state_is_refused_not_resumed_with_an_empty_pool(
    small_data: Path, tmp_path: Path
) -> None:
    from synalign.graphs.checkpoint import open_checkpoints

    out = tmp_path / "run"
    _run(small_data, out, per_cluster=4, rounds=1)
    conn, saver = open_checkpoints(out, resume=True)
    thread = {"configurable": {"thread_id": "synalign", "checkpoint_ns": ""}}
    saved = saver.get_tuple(thread)
    assert saved is not None
    legacy = {**saved.checkpoint, "channel_values": {**saved.checkpoint["channel_values"], "samples": [{"id": "x"}]}}
    saver.put(saved.config, legacy, saved.metadata, {})  # what an earlier synalign's checkpoint looked like
    conn.close()
    config = RunConfig.model_validate_json((out / "config.json").read_text())
    with pytest.raises(InputError, match="earlier synalign that kept the samples in the state"):
        run(config, resume=True)
