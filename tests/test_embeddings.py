"""The embedder's truncation length (``max_seq_length``: configurable, part of the cache key, stated in runs),
and the threads a run embeds and aligns on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synalign.embeddings import Embedder
from synalign.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _reviews() -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "synalign/data/sst2-demo/train.jsonl").open(encoding="utf-8")]
    return [r["text"] for r in rows]


def test_truncation_changes_long_texts_only_and_keys_the_cache(tmp_path: Path) -> None:
    texts = _reviews()
    long = [t for t in texts if len(t.split()) >= 30][:5]
    short = [t for t in texts if len(t.split()) <= 3][:5]
    default = Embedder(cache_dir=tmp_path)
    cut = Embedder(cache_dir=tmp_path, max_seq_length=8)
    assert default.truncation == 256 and cut.truncation == 8
    assert cut.model_id != default.model_id
    a, b = default.encode(long + short), cut.encode(long + short)
    cos = np.sum(a * b, axis=1)
    assert np.all(cos[:5] < 0.99)  # long reviews cut at 8 tokens embed differently
    np.testing.assert_allclose(cos[5:], 1.0, atol=1e-5)  # texts under 8 tokens are not cut
    assert default.model.max_seq_length == 256  # the shared model keeps its own setting
    again = Embedder(cache_dir=tmp_path)
    np.testing.assert_array_equal(again.encode(long), a[:5])
    assert again.stats["cache_hits"] == 5  # the default's vectors, not the truncated ones
    with pytest.raises(InputError, match="max_seq_length"):
        Embedder(max_seq_length=0)


def test_a_run_states_its_truncation_length(tmp_path: Path) -> None:
    from synalign.config import RunConfig
    from synalign.graphs import run

    out = tmp_path / "run"
    config = RunConfig(data=ROOT / "synalign/data/sst2-demo", out=out, llm="eda", max_rounds=1, max_real=60,
                       clusters_per_label=1, samples_per_cluster=4, max_seq_length=64, cache_dir=tmp_path / "cache")
    run(config)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["embedding_max_seq_length"] == 64
    assert "@max_seq_length=64" in summary["embedding_model"]
    assert "embedding truncation: 64 tokens" in (out / "README.md").read_text()


def test_the_align_step_runs_on_one_thread_and_embeds_on_the_usual_ones(tmp_path: Path, monkeypatch) -> None:
    """The run's align step (KMM, filter, divergences) runs with torch and BLAS on one thread each, which is
    5-38x faster with a busy core (evals/RESULTS.md §10); new samples are embedded before it, on the encoder's
    usual threads, and the caller's torch thread count comes back."""
    import torch
    from threadpoolctl import threadpool_info

    import synalign.alignment as alignment
    from synalign.config import RunConfig
    from synalign.graphs import run

    seen: list[tuple[int, int]] = []
    encoded_on: list[int] = []
    original = alignment.align

    def spy(*args, **kwargs):
        blas = max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")
        seen.append((torch.get_num_threads(), blas))
        return original(*args, **kwargs)

    encode = Embedder.encode

    def encode_spy(self, texts, **kwargs):
        encoded_on.append(torch.get_num_threads())
        return encode(self, texts, **kwargs)

    monkeypatch.setattr(alignment, "align", spy)
    monkeypatch.setattr(Embedder, "encode", encode_spy)
    torch.set_num_threads(2)
    config = RunConfig(data=ROOT / "synalign/data/sst2-demo", out=tmp_path / "run", llm="eda", max_rounds=2,
                       target="0", max_real=60, clusters_per_label=1, samples_per_cluster=4,
                       cache_dir=tmp_path / "cache")
    run(config)
    assert seen == [(1, 1), (1, 1)]
    assert encoded_on and set(encoded_on) == {2}
    assert torch.get_num_threads() == 2
