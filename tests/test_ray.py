"""Scale-out on Ray (issue 13): embeddings with ``ray.data`` ``map_batches``, the Nyström KMM screen on sharded
actors, generation requests over two endpoints, each against the local path on real SST-2 text.

One local cluster (``ray.init(num_cpus=2)``) for the module; the endpoints are two scripted OpenAI-compatible
servers on 127.0.0.1 (no network).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
ray_data = pytest.importorskip("ray.data")

from synalign.alignment import align  # noqa: E402
from synalign.divergence import median_bandwidth, mmd2_unbiased  # noqa: E402
from synalign.embeddings import Embedder  # noqa: E402
from synalign.errors import InputError  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "synalign" / "data" / "sst2-demo"
LABELS = ("negative", "positive")


def _rows(split: str) -> list[dict[str, str]]:
    with open(DEMO / f"{split}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def cluster():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    ray_data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pool_rows() -> list[dict[str, str]]:
    """The pool: 400 real SST-2 train rows of the demo sample (202 negative, 198 positive)."""
    return _rows("train")[:400]


@pytest.fixture(scope="module")
def real_set() -> tuple[np.ndarray, np.ndarray]:
    """The target: 200 real SST-2 test rows embedded locally, and their labels."""
    rows = _rows("test")[:200]
    return Embedder().encode([r["text"] for r in rows]), np.asarray([r["label"] for r in rows], dtype=object)


@pytest.fixture(scope="module")
def local_pool(pool_rows: list[dict[str, str]]) -> np.ndarray:
    return Embedder().encode([r["text"] for r in pool_rows])


@pytest.fixture(scope="module")
def ray_pool(cluster, pool_rows: list[dict[str, str]]):
    """The pool embedded on two actors: a materialised Dataset with id, text, label and embedding columns."""
    import pyarrow as pa

    from synalign.scaleout.embed import embed_dataset

    blocks = [
        pa.table({
            "id": np.arange(i, i + 100),
            "text": [r["text"] for r in pool_rows[i : i + 100]],
            "label": [r["label"] for r in pool_rows[i : i + 100]],
        })
        for i in range(0, len(pool_rows), 100)
    ]
    return embed_dataset(ray_data.from_arrow(blocks), actors=2, batch_size=128).materialize()


def test_ray_embeddings_match_the_local_encoder(ray_pool, local_pool, pool_rows, real_set) -> None:
    from synalign.scaleout.embed import collect_embeddings, embed_texts

    got = collect_embeddings(ray_pool)
    assert got.shape == local_pool.shape == (400, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, local_pool, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # the other columns travel with their rows
    rows = sorted(ray_pool.select_columns(["id", "text", "label"]).take_all(), key=lambda r: r["id"])
    assert [(r["text"], r["label"]) for r in rows] == [(p["text"], p["label"]) for p in pool_rows]
    # the divergence a run reports does not see the difference
    real, _ = real_set
    bw = median_bandwidth(real, local_pool)
    assert abs(mmd2_unbiased(got, real, bw, device="cpu") - mmd2_unbiased(local_pool, real, bw, device="cpu")) < 1e-6
    # a plain list comes back in input order (reversed input: order is not an accident of the blocks)
    texts = [r["text"] for r in pool_rows[:64]][::-1]
    np.testing.assert_allclose(embed_texts(texts, actors=2, block_rows=8), local_pool[:64][::-1], atol=1e-5)


def test_collect_embeddings_and_embed_dataset_refuse_bad_input(cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from synalign.scaleout.embed import collect_embeddings, embed_dataset, embed_texts

    with pytest.raises(InputError, match="no text column 'text'"):
        embed_dataset(ray_data.from_items([{"sentence": "a fine film"}]))
    dup = ray_data.from_items([{"id": 0, "embedding": np.ones(3, np.float32)}] * 2)
    with pytest.raises(InputError, match="0 … 1 once each"):
        collect_embeddings(dup)
    monkeypatch.setitem(sys.modules, "ray.data", None)  # as without the extra: one line naming it
    with pytest.raises(InputError, match=r"needs Ray Data .*pip install 'synalign\[ray\]'"):
        embed_texts(["a fine film"])


def _label_rows(ray_pool, label: str):
    return ray_pool.map_batches(lambda b: {k: v[b["label"] == label] for k, v in b.items()}, batch_format="numpy")


def test_ray_nystrom_screen_gives_the_local_weights_and_selection(ray_pool, local_pool, pool_rows, real_set,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A 100-row working set (the local constant scaled down with the pool): the screen really discards rows."""
    from synalign import kmm
    from synalign.scaleout.align import ray_align, ray_kmm_weights
    from synalign.scaleout.embed import collect_embeddings

    monkeypatch.setattr(kmm, "NYSTROM_WORKING_SET", 100)
    real, real_labels = real_set
    labels = np.asarray([r["label"] for r in pool_rows], dtype=object)
    collected = collect_embeddings(ray_pool)
    xs, xr = collected[labels == "negative"], real[real_labels == "negative"]
    bw = median_bandwidth(xr, xs)
    local = kmm.kmm_weights(xs, xr, bandwidth=bw, features="nystrom", n_features=64, device="cpu")
    ids, got = ray_kmm_weights(_label_rows(ray_pool, "negative"), xr, bandwidth=bw, n_features=64, device="cpu")
    assert np.array_equal(ids, np.flatnonzero(labels == "negative"))
    assert 10 < (local > 0).sum() <= 100 < (labels == "negative").sum() and local.sum() == pytest.approx(1.0)
    assert np.array_equal(got > 0, local > 0)
    np.testing.assert_allclose(got, local, atol=1e-6)
    # and against the locally embedded pool (the whole local path): the same support
    from_local = kmm.kmm_weights(local_pool[labels == "negative"], xr, bandwidth=bw, features="nystrom",
                                 n_features=64, device="cpu")
    assert np.array_equal(from_local > 0, local > 0)

    # selection: per-label local Nyström weights + align, against ray_align on the Dataset
    weights = np.zeros(len(labels))
    for label in LABELS:
        rows = labels == label
        xr_l = real[real_labels == label]
        weights[rows] = kmm.kmm_weights(collected[rows], xr_l, bandwidth=median_bandwidth(xr_l, collected[rows]),
                                        features="nystrom", n_features=64, device="cpu")
    expected = align(collected, labels, real, real_labels, strategy="top_weight", accept_fraction=0.1,
                     weights=weights, device="cpu")
    pool_ids, result = ray_align(ray_pool, real, real_labels, strategy="top_weight", accept_fraction=0.1,
                                 n_features=64, device="cpu")
    assert np.array_equal(pool_ids, np.arange(400))
    assert result.accepted.sum() == 40 and np.array_equal(result.accepted, expected.accepted)
    np.testing.assert_allclose(result.weights, expected.weights, atol=1e-6)
    for label in LABELS:
        assert result.mmd2_accepted[label] == pytest.approx(expected.mmd2_accepted[label], abs=1e-9)


def test_align_refuses_weights_that_are_not_per_label_distributions(local_pool, pool_rows, real_set) -> None:
    real, real_labels = real_set
    labels = [r["label"] for r in pool_rows]
    with pytest.raises(InputError, match="sum to"):
        align(local_pool, labels, real, real_labels, weights=np.full(400, 1 / 400), device="cpu")
    with pytest.raises(InputError, match="400 finite non-negative"):
        align(local_pool, labels, real, real_labels, weights=np.ones(399), device="cpu")


def _requests():
    from synalign.backends import GenerationRequest, SummaryRequest
    from synalign.statsummary import StatisticalSummarizer

    rows = _rows("train")
    summarizer = StatisticalSummarizer()
    out = []
    for i in range(10):
        label = LABELS[i % 2]
        demos = [r["text"] for r in rows if r["label"] == label][4 * i : 4 * i + 4]
        (attributes,) = summarizer.summarize([SummaryRequest(task="t", label=label, demonstrations=demos)])
        out.append(GenerationRequest(task="Sentiment of movie reviews.", label=label, attributes=attributes,
                                     demonstrations=demos, n=5, seed=i, round=1))
    return out


def test_generation_over_two_endpoints_matches_one_local_endpoint(cluster, small_data: Path, tmp_path: Path) -> None:
    """Request by request (the generator alone) and in the whole loop (``synalign.graphs.run`` with
    :func:`ray_backend`): two endpoints on Ray give what one local endpoint gives."""
    from synalign.agents.backend import build_llm_backend
    from synalign.agents.testing import OpenAITestServer
    from synalign.config import RunConfig
    from synalign.graphs import run
    from synalign.scaleout.generation import RayGenerator, ray_backend

    requests = _requests()
    with OpenAITestServer() as first, OpenAITestServer() as second:
        options = dict(data=small_data, llm="openai:test-model", base_url=first.url, llm_cache=False,
                       max_concurrency=2, max_rounds=1, clusters_per_label=2, cluster_size=4, samples_per_cluster=6,
                       target="0")
        expected = build_llm_backend(RunConfig(out=tmp_path / "gen", **options), tmp_path / "gen").generator.generate(
            requests
        )
        local_calls = first.completions()
        local_run = run(RunConfig(out=tmp_path / "local", **options))
        before = {"first": first.completions(), "second": second.completions()}
        config = RunConfig(out=tmp_path / "ray", **options)
        backend = ray_backend(config, [first.url, second.url], tmp_path / "traces", chunk_size=2)
        got = backend.generator.generate(requests)
        after_generate = backend.usage()
        shares = {"first": first.completions() - before["first"], "second": second.completions() - before["second"]}
        fanned_run = run(config, backend=backend)  # closes the backend at the end
        calls = {"first": first.completions() - before["first"], "second": second.completions() - before["second"]}
        # the same from the run's options alone (synalign run --ray auto --base-url URL1,URL2)
        both = f"{first.url},{second.url}"
        run(RunConfig(out=tmp_path / "configured", **{**options, "base_url": both, "ray": "auto"}))
        configured = {"first": first.completions() - before["first"] - calls["first"],
                      "second": second.completions() - before["second"] - calls["second"]}

    assert isinstance(backend.generator, RayGenerator)
    assert got == expected
    assert all(len(g.texts) == 5 for g in got) and sum(sum(g.dropped.values()) for g in got) > 0  # filters ran
    assert shares["first"] > 0 and shares["second"] > 0  # both endpoints served requests
    assert after_generate["llm_calls"] == shares["first"] + shares["second"] == local_calls  # the same calls, spread
    assert after_generate["by_endpoint"][second.url]["llm_calls"] == shares["second"]
    # the loop: the same accepted samples; the summary (written after the backend closed) counts every call
    assert [(s.text, s.label, s.kmm_weight) for s in fanned_run.accepted] == [
        (s.text, s.label, s.kmm_weight) for s in local_run.accepted
    ]
    assert len(fanned_run.accepted) == 12 and calls["second"] > shares["second"]
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text(encoding="utf-8"))
    assert summary["backend"]["endpoints"] == [first.url, second.url]
    assert summary["usage"]["llm_calls"] == calls["first"] + calls["second"]
    assert _accepted(tmp_path / "configured") == _accepted(tmp_path / "local") and configured["second"] > 0
    summary = json.loads((tmp_path / "configured" / "summary.json").read_text(encoding="utf-8"))
    assert summary["backend"]["endpoints"] == [first.url, second.url] and summary["backend"]["generator"] == "ray"

    with pytest.raises(InputError, match="distinct endpoint"):
        RayGenerator(config, [first.url, first.url + "/"], tmp_path)
    # an endpoint whose backend cannot be built is one line naming it, from the actor
    bad = tmp_path / "prompts.json"
    bad.write_text('{"format": "something else"}', encoding="utf-8")
    with pytest.raises(InputError, match=r"endpoint http://127\.0\.0\.1:9/v1: .*not a synalign optimised-prompt"):
        RayGenerator(config.model_copy(update={"prompts": bad}), ["http://127.0.0.1:9/v1"], tmp_path)


def _accepted(run_dir: Path) -> list[tuple[str, str, str]]:
    """(id, text, label) of each row of ``synthetic.jsonl``, in file order."""
    rows = [json.loads(line) for line in (run_dir / "synthetic.jsonl").read_text(encoding="utf-8").splitlines()]
    return [(r["id"], r["text"], r["label"]) for r in rows]


def test_run_with_ray_accepts_what_the_local_run_accepts(cluster, small_data: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """``RunConfig(ray="auto")`` (the module's ``ray.init(num_cpus=2)``): every text embedded by Ray actors (a cache
    of its own), each label's KMM weights from the Ray screen (a 2-row working set so that it runs), and the same
    accepted set as the local run, id by id."""
    from synalign import kmm
    from synalign.config import RunConfig
    from synalign.graphs import run
    from synalign.scaleout import align as ray_align
    from synalign.scaleout import embed as ray_embed

    options = dict(data=small_data, llm="eda", max_rounds=1, clusters_per_label=2, cluster_size=4,
                   samples_per_cluster=8, target="0")
    local = run(RunConfig(out=tmp_path / "local", **options))

    embedded: list[int] = []
    screened: list[set[str]] = []
    embed_texts, screen = ray_embed.embed_texts, ray_align.ray_kmm_weights_by_label

    def counted_embed(texts, **options):  # noqa: ANN001, ANN202
        embedded.append(len(texts))
        return embed_texts(texts, **options)

    def counted_screen(*args, **options):  # noqa: ANN002, ANN202
        result = screen(*args, **options)
        screened.append(set(result[1].tolist()))
        return result

    monkeypatch.setattr(ray_embed, "embed_texts", counted_embed)
    monkeypatch.setattr(ray_align, "ray_kmm_weights_by_label", counted_screen)
    monkeypatch.setattr(kmm, "NYSTROM_WORKING_SET", 2)  # so that the screen runs on these small pools
    fanned = run(RunConfig(out=tmp_path / "ray", ray="auto", cache_dir=tmp_path / "cache", **options))

    assert _accepted(tmp_path / "ray") == _accepted(tmp_path / "local") == [
        (s.id, s.text, s.label) for s in local.accepted
    ]
    assert len(fanned.accepted) == len(local.accepted) > 0 and len(fanned.pool) == 32
    # two Ray embedding calls: the real and validation sets (120 texts), then the round's 32 new texts; the
    # report re-read them from the run's cache
    assert embedded == [120, 32]
    assert screened == [set(LABELS)]  # one screen, both labels' eligible pools above the 2-row working set
    weights = np.asarray([s.kmm_weight for s in fanned.pool])
    assert (weights > 0).sum() <= 4 and weights.sum() == pytest.approx(2.0)  # at most 2 rows per label
    assert json.loads((tmp_path / "ray" / "config.json").read_text(encoding="utf-8"))["ray"] == "auto"


def _run_cli(*args: str):  # noqa: ANN202
    from typer.testing import CliRunner

    from synalign.app.cli import app

    return CliRunner().invoke(app, ["run", *args])


@pytest.mark.parametrize(("options", "fragments"), [
    (["--llm", "openai:m", "--base-url", "http://127.0.0.1:9/v1,http://127.0.0.1:10/v1"],
     ["--base-url names 2 endpoints", "needs --ray"]),
    (["--llm", "openai:m", "--base-url", "http://127.0.0.1:9/v1,http://127.0.0.1:9/v1/", "--ray", "auto"],
     ["invalid option --base-url", "named twice"]),
    (["--llm", "openai:m", "--base-url", "http://127.0.0.1:9/v1,ftp://x", "--ray", "auto"],
     ["invalid option --base-url", "'ftp://x'"]),
    (["--ray", "head"], ["invalid option --ray", "HOST:PORT"]),
    (["--ray", "http://head:6379"], ["invalid option --ray"]),
    (["--ray", "127.0.0.1:9"], ["--ray 127.0.0.1:9: no Ray head answers at 127.0.0.1:9", "ray start --head"]),
])
def test_run_refuses_bad_ray_and_endpoint_options(small_data: Path, tmp_path: Path, options: list[str],
                                                  fragments: list[str]) -> None:
    out = tmp_path / "run"
    result = _run_cli("--data", str(small_data), "--out", str(out), *options)
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("synalign: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not out.exists()


def test_run_with_ray_without_the_extra_names_it(small_data: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as without the ray extra
    monkeypatch.setitem(sys.modules, "ray.data", None)
    result = _run_cli("--data", str(small_data), "--out", str(tmp_path / "run"), "--ray", "auto")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--ray needs Ray Data" in lines[0] and "pip install 'synalign[ray]'" in lines[0], lines
    assert not (tmp_path / "run").exists()
