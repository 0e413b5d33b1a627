"""Benchmark 2: time and peak memory of the kernel-mean-matching weight solve versus synthetic pool size.

``synalign.kmm.kmm_weights`` against a real set of ``--real`` rows, pool sizes 1k … 100k, each
configuration in a fresh subprocess (so peak RSS is its own), 2 torch threads:

* Frank–Wolfe and exponentiated gradient (EG), each on
* the exact RBF kernel (Frank–Wolfe never builds the m×m matrix: kernel columns on demand; exact EG keeps
  it and stops fitting beyond ~10k rows),
* Nyström features (r = 2,048 uniform landmarks) with the FITC diagonal correction (the project's
  linear-memory approximation), and
* random Fourier features (D = 2,048), for comparison.

Peak memory is the rise of the process's peak RSS during the solve. Quality: the MMD² (exact kernel,
weighted V-statistic) of the weighted pool to the real set, computed on the weights' support; each
approximation's solution is compared with the exact solution's where both run. A second table repeats the
quality comparison over five landmark / frequency seeds (the approximations are random).

Data: MiniLM embeddings of the real SST-2 LM-generated pools (``../shared/data/synthetic/sst2-*``) and
SST-2 train rows as the real set; pool sizes beyond the available rows are filled with rows drawn with
replacement plus N(0, 0.02²) noise, renormalised (timing and memory do not depend on the content). Without
the shared data, the bundled demo is used the same way.

    python evals/scripts/bench_alignment.py [--quick] [--sizes 1000,3000,10000,30000,100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

from _bench import (
    demo_dir,
    jittered,
    machine_note,
    markdown,
    peak_rss_mb,
    shared_data,
    shown,
)

CONFIGS = tuple((solver, f) for solver in ("frank_wolfe", "eg") for f in ("exact", "nystrom", "rff"))
EG_EXACT_LIMIT = 10_000  # 4·m² bytes for K plus a same-size distance buffer: ~0.8 GB at 10k


def _mmd2_support(pool, real, w, bandwidth: float) -> float:  # noqa: ANN001
    """Exact weighted MMD² ||Σ w_i φ(s_i) − mean φ(r)||² using only rows with w_i > 0 (float64 tiles)."""
    import numpy as np

    idx = np.flatnonzero(w > 0)
    s, ws = pool[idx].astype(np.float64), w[idx]
    r = real.astype(np.float64)

    def kmat(a, b):  # noqa: ANN001, ANN202
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return np.exp(-np.clip(d2, 0, None) / (2 * bandwidth**2))

    kss = 0.0
    for i in range(0, len(s), 2048):
        kss += float(ws[i : i + 2048] @ (kmat(s[i : i + 2048], s) @ ws))
    ksr = (
        float(ws @ kmat(s, r).mean(axis=1))
        if len(s) <= 20000
        else sum(
            float(ws[i : i + 2048] @ kmat(s[i : i + 2048], r).mean(axis=1)) for i in range(0, len(s), 2048)
        )
    )
    krr = float(kmat(r, r).mean())
    return kss - 2 * ksr + krr


class _RSSSampler:
    """Peak resident set size during a block, sampled from /proc/self/statm every 2 ms in a thread (MiB)."""

    def __enter__(self) -> "_RSSSampler":
        import os
        import threading

        self._page = os.sysconf("SC_PAGE_SIZE") / 2**20
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from synalign.kmm import kmm_weights

    torch.set_num_threads(2)
    data = np.load(args.npz)
    pool, real, bw = np.ascontiguousarray(data["pool"][: args.m]), data["real"], float(data["bandwidth"])
    del data
    kmm_weights(
        pool[:200],
        real[:200],
        bandwidth=bw,
        solver=args.solver,
        features=args.features,
        n_iter=5,
        n_features=args.n_features,
        device="cpu",
    )  # warm-up (imports, first allocations)
    with _RSSSampler() as rss:
        t = time.perf_counter()
        w = kmm_weights(
            pool,
            real,
            bandwidth=bw,
            solver=args.solver,
            features=args.features,
            n_iter=args.n_iter,
            n_features=args.n_features,
            device="cpu",
            seed=0,
        )
        seconds = time.perf_counter() - t
    out = {
        "seconds": seconds,
        "peak_mb": rss.peak - rss.base,
        "support": int((w > 0).sum()),
        "peak_rss_mb": peak_rss_mb(),
    }
    if args.with_mmd:
        out["mmd2"] = _mmd2_support(pool, real, w, bw)
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="KMM weight-solve benchmark")
    parser.add_argument("--quick", action="store_true", help="sizes 1k and 3k, 2 seeds at 3k, ablation at 3k")
    parser.add_argument("--sizes", default="1000,3000,10000,30000,100000")
    parser.add_argument("--real", type=int, default=2000, help="real rows")
    parser.add_argument("--n-iter", type=int, default=200)
    parser.add_argument("--mmd-max", type=int, default=30000, help="compute exact MMD² up to this pool size")
    parser.add_argument("--shared", default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--npz", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--m", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--solver", default="frank_wolfe", help=argparse.SUPPRESS)
    parser.add_argument("--features", default="exact", help=argparse.SUPPRESS)
    parser.add_argument("--with-mmd", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--n-features", type=int, default=None, help="Nyström landmarks r / RFF features D [1024 / 2048]"
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the approximation-spread table")
    parser.add_argument("--seed-sizes", default="1000,3000,10000", help="pool sizes for that table")
    parser.add_argument(
        "--ablation-size", type=int, default=10000, help="pool size of the ablation (0: skip)"
    )
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    if args.quick:
        args.sizes, args.seeds, args.seed_sizes, args.ablation_size = "1000,3000", 2, "3000", 3000

    import numpy as np

    from synalign.datafiles import load_examples
    from synalign.divergence import median_bandwidth
    from synalign.embeddings import Embedder

    sizes = [int(s) for s in args.sizes.split(",")]
    data = shared_data(args.shared)
    emb = Embedder(cache_dir=args.cache_dir, device="cpu")
    if data is not None and (data / "sst2" / "train.jsonl").exists():
        real_texts = [r.text for r in load_examples(data / "sst2" / "train.jsonl")][: args.real]
        from taskdata import load_pool

        files = sorted((data / "synthetic").glob("sst2-*/generated.jsonl"))
        pool_texts = load_pool(files, ["negative", "positive"], cap_per_source=2500).texts
        src = f"{shown(data)}/sst2 train + synthetic/sst2-* pools (≤2,500 rows each, label-stratified)"
    else:
        real_texts = [r.text for r in load_examples(demo_dir() / "train.jsonl")][: args.real]
        pool_texts = [r.text for r in load_examples(demo_dir() / "test.jsonl")]
        src = "bundled demo (shared data not found)"
    real = emb.encode(real_texts)
    base = emb.encode(pool_texts)
    seed_sizes = [int(v) for v in args.seed_sizes.split(",")] if args.seeds > 0 else []
    pool = jittered(base, max([*sizes, *seed_sizes, args.ablation_size]), seed=0)
    bw = median_bandwidth(real, pool[:2000])
    from synalign.divergence import noise_floor

    floor, floor_std = noise_floor(real, bw, device="cpu")
    rows = []
    exact_mmd: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "data.npz"
        np.savez(npz, pool=pool, real=real, bandwidth=bw)
        for m in sizes:
            for solver, features in CONFIGS:
                if solver == "eg" and features == "exact" and m > EG_EXACT_LIMIT:
                    rows.append(
                        (m, solver, features, "skipped: m×m kernel matrix does not fit", "", "", "", "")
                    )
                    continue
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    "--npz",
                    str(npz),
                    "--m",
                    str(m),
                    "--solver",
                    solver,
                    "--features",
                    features,
                    "--n-iter",
                    str(args.n_iter),
                ]
                if args.n_features:
                    cmd += ["--n-features", str(args.n_features)]
                with_mmd = m <= args.mmd_max and (solver == "frank_wolfe" or m <= EG_EXACT_LIMIT)
                if with_mmd:
                    cmd.append("--with-mmd")
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    rows.append(
                        (
                            m,
                            solver,
                            features,
                            f"failed: {proc.stderr.strip().splitlines()[-1][:80]}",
                            "",
                            "",
                            "",
                            "",
                        )
                    )
                    continue
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                mmd = res.get("mmd2")
                rel = ""
                if mmd is not None and features == "exact":
                    exact_mmd[(m, solver)] = mmd
                elif mmd is not None and (m, solver) in exact_mmd:
                    rel = f"{100 * (mmd - exact_mmd[(m, solver)]) / exact_mmd[(m, solver)]:+.2f}%"
                rows.append(
                    (
                        m,
                        solver,
                        features,
                        f"{res['seconds']:.2f}",
                        f"{res['peak_mb']:.0f}",
                        res["support"],
                        "" if mmd is None else f"{mmd:.5f}",
                        rel,
                    )
                )
                print(
                    f"m={m} {solver}/{features}: {res['seconds']:.2f} s, +{res['peak_mb']:.0f} MiB",
                    flush=True,
                )
    print()
    print(machine_note())
    print(
        f"data: {src}; real rows {len(real)}; RBF bandwidth {bw:.4f} (median heuristic); {args.n_iter} solver "
        f"iterations; Nyström r = {args.n_features or 1024} landmarks (screen; working set 2,048 solved exactly), "
        f"RFF D = {args.n_features or 2048}; 2 torch threads; each row a fresh process; peak MiB = rise of the "
        "resident set during the solve (sampled every 2 ms)\n"
    )
    print(
        markdown(
            [
                "pool m",
                "solver",
                "kernel",
                "seconds",
                "peak MiB (rise)",
                "non-zero weights",
                "MMD² (exact kernel)",
                "MMD² vs exact",
            ],
            rows,
        )
    )
    print(
        f"\nreal-vs-real noise floor (unbiased MMD² between halves of the {len(real)} real rows): "
        f"{floor:.5f} ± {floor_std:.5f}"
    )
    if args.seeds > 0:
        print()
        print(markdown(*_seed_spread(pool, real, bw, args)))
    if args.ablation_size > 0:
        print()
        print(markdown(*_ablation(pool, real, bw, args)))
    return 0


def _ablation(
    pool: np.ndarray, real: np.ndarray, bw: float, args: argparse.Namespace
) -> tuple[list[str], list[tuple]]:
    """What each part of ``features="nystrom"`` contributes (one pool size, seed 0, quality only).

    Solving on the Nyström features themselves (plain, and with the FITC diagonal) versus the shipped
    screen + exact working-set solve, each judged by the exact kernel against the exact solve.
    """
    import numpy as np
    import torch

    from synalign.kmm import NystromMap, kmm_weights, kmm_weights_on_features, nystrom_landmarks

    torch.set_num_threads(2)
    m = args.ablation_size
    p = np.ascontiguousarray(pool[:m])
    st, rt = torch.as_tensor(p), torch.as_tensor(real)
    rows = []
    for solver in ("frank_wolfe", "eg"):
        kw = {"bandwidth": bw, "solver": solver, "n_iter": args.n_iter, "device": "cpu"}
        exact = _mmd2_support(p, real, kmm_weights(p, real, features="exact", **kw), bw)
        for rank in (1024, 2048):
            syn, re_ = nystrom_landmarks(m, len(real), rank, 0)  # the landmarks features="nystrom" takes
            fmap = NystromMap(torch.cat([st[torch.as_tensor(syn)], rt[torch.as_tensor(re_)]]), bw)
            (phi, resid), mu = fmap.transform(st, 4096), fmap.mean(rt, 4096)
            for name, diag in (("Nyström features", None), ("Nyström features + FITC diagonal", resid)):
                w = kmm_weights_on_features(phi, mu, diag, solver=solver, n_iter=args.n_iter, tol=1e-8)
                rel = 100 * (_mmd2_support(p, real, w, bw) / exact - 1)
                rows.append((m, solver, f"solve on {name}, r = {rank}", f"{rel:+.1f}%"))
                print(f"ablation m={m} {solver} r={rank} {name}: {rel:+.1f}%", flush=True)
        w = kmm_weights(p, real, features="nystrom", **kw)
        rel = 100 * (_mmd2_support(p, real, w, bw) / exact - 1)
        rows.append(
            (m, solver, "screen (r = 1024, FITC) + exact solve on 2,048 rows (shipped)", f"{rel:+.1f}%")
        )
    return ["pool m", "solver", "variant", "MMD² vs exact"], rows


def _seed_spread(
    pool: np.ndarray, real: np.ndarray, bw: float, args: argparse.Namespace
) -> tuple[list[str], list[tuple]]:
    """MMD² of each approximation's solution vs the exact one's, over seeds (in-process; quality only)."""
    import numpy as np
    import torch

    from synalign.kmm import kmm_weights

    torch.set_num_threads(2)
    rows = []
    for m in [int(v) for v in args.seed_sizes.split(",")]:
        p = np.ascontiguousarray(pool[:m])
        for solver in ("frank_wolfe", "eg"):
            if solver == "eg" and m > EG_EXACT_LIMIT:
                continue
            kw = {"bandwidth": bw, "solver": solver, "n_iter": args.n_iter, "device": "cpu"}
            exact = _mmd2_support(p, real, kmm_weights(p, real, features="exact", **kw), bw)
            for features in ("nystrom", "rff"):
                rel = []
                for k in range(args.seeds):
                    w = kmm_weights(p, real, features=features, n_features=args.n_features, seed=k, **kw)
                    rel.append(100 * (_mmd2_support(p, real, w, bw) / exact - 1))
                rows.append(
                    (
                        m,
                        solver,
                        features,
                        f"{np.mean(rel):+.1f}%",
                        f"{min(rel):+.1f}%",
                        f"{max(rel):+.1f}%",
                        f"{sum(r <= 5.0 for r in rel)}/{len(rel)}",
                    )
                )
                print(f"seeds m={m} {solver}/{features}: " + ", ".join(f"{r:+.1f}%" for r in rel), flush=True)
    headers = [
        "pool m",
        "solver",
        "kernel",
        f"MMD² vs exact: mean of {args.seeds} seeds",
        "best seed",
        "worst seed",
        "seeds within 5 %",
    ]
    return headers, rows


if __name__ == "__main__":
    raise SystemExit(main())
