"""Explorer evaluation: how well do the chosen demonstrations cover the real data? (SynAlign stage 1)

For each seed a stratified random subset of ``n_real`` train rows is the real set (as ``max_real`` in a
run). Per label, three ways of choosing ``budget`` demonstration clusters (pick + ``cluster_size − 1``
nearest neighbours of the same label, exactly as :func:`synalign.explorer.explore` builds them):

* ``gp``: the project's GP explorer (greedy maximum posterior variance, median-heuristic length-scale);
* ``random``: uniformly random picks;
* ``reference``: the reference code's setting, RBF length-scale 0.1 on unit-norm embeddings. There every
  unpicked point has posterior std 1.0 (k(x,x') ≈ exp(−1.3²/0.02) ≈ 0), so ``argmax`` returns the first
  unpicked row: picks in file order. The core refuses this length-scale (``DegenerateKernelError``), so it is
  emulated literally (the first ``budget`` rows of the label in file order) after checking the spread.

Coverage metrics of the demonstrations D_L of label L against the real rows R_L of that label, averaged
over labels: k-center radius max_{r∈R_L} min_{d∈D_L} ||r − d||, mean nearest-demonstration distance, and
unbiased MMD² (RBF, median bandwidth of the real set) of D_L to R_L. Lower is better for all three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ExplorerEvalSpec", "run_explorer_eval", "coverage", "explorer_markdown"]

METHODS: tuple[str, ...] = ("gp", "random", "reference")


@dataclass
class ExplorerEvalSpec:
    """Configuration: real data directory, real subset size, budgets (clusters per label), cluster size, seeds."""

    data: Path
    n_real: int = 2000
    budgets: Sequence[int] = (2, 8, 32)
    cluster_size: int = 8
    seeds: int = 5
    cache_dir: Path | None = None
    device: str = "cpu"


def coverage(real: np.ndarray, demos: np.ndarray, bandwidth: float, device: str = "cpu") -> dict[str, float]:
    """k-center radius, mean nearest-demonstration distance and unbiased MMD² of ``demos`` (q, d) to
    ``real`` (n, d) (Euclidean units; MMD² in kernel units, RBF bandwidth ``bandwidth``)."""
    from synalign.divergence import mmd2_unbiased

    d2 = (real * real).sum(1)[:, None] + (demos * demos).sum(1)[None, :] - 2.0 * real @ demos.T
    nearest = np.sqrt(np.clip(d2.min(axis=1), 0.0, None))
    mmd = mmd2_unbiased(demos, real, bandwidth, device=device) if len(demos) >= 2 else float("nan")
    return {"radius": float(nearest.max()), "mean_nn": float(nearest.mean()), "mmd2": float(mmd)}


def _clusters(x: np.ndarray, picks: Sequence[int], cluster_size: int) -> np.ndarray:
    """Rows of the clusters: each pick and its nearest neighbours (pick first), deduplicated."""
    sq = (x * x).sum(1)
    rows: list[int] = []
    for p in picks:
        d2 = sq + sq[p] - 2.0 * x @ x[p]
        d2[p] = -1.0
        rows.extend(np.argsort(d2, kind="stable")[:cluster_size].tolist())
    return np.asarray(list(dict.fromkeys(rows)), dtype=int)


def _reference_picks(x: np.ndarray, m: int) -> list[int]:
    """Greedy max-variance picks with ℓ = 0.1 exactly as a plain GP would compute them (argmax → first row)."""
    import logging

    from synalign.greedy_variance import DegenerateKernelError, greedy_variance_picks

    log = logging.getLogger("synalign.explorer")
    level = log.level
    log.setLevel(logging.ERROR)  # the degeneracy warning is expected here
    try:
        return greedy_variance_picks(x, m, length_scale=0.1, device="cpu").indices
    except DegenerateKernelError:
        # all posterior stds equal: np.argmax / max() returns the first unpicked row — file order
        return list(range(min(m, len(x))))
    finally:
        log.setLevel(level)


def run_explorer_eval(spec: ExplorerEvalSpec, *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the coverage comparison; returns ``{"config", "rows", "summary"}``."""
    from synalign.datafiles import load_dataset
    from synalign.divergence import median_bandwidth
    from synalign.embeddings import Embedder
    from synalign.greedy_variance import greedy_variance_picks
    from synalign.sampling import stratified_sample

    say = log or (lambda _m: None)
    ds = load_dataset(spec.data)
    emb = Embedder(cache_dir=spec.cache_dir, device=spec.device)
    rows: list[dict[str, Any]] = []
    for seed in range(spec.seeds):
        real = stratified_sample(ds.train, spec.n_real, seed)  # keeps file order
        x = emb.encode([r.text for r in real])
        y = np.asarray([r.label for r in real], dtype=object)
        bw = median_bandwidth(x, seed=seed)
        rng = np.random.default_rng(seed)
        for budget in spec.budgets:
            per: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
            for label in sorted(set(y.tolist())):
                xl = x[y == label]
                picks = {
                    "gp": greedy_variance_picks(xl, budget, device=spec.device).indices,
                    "random": rng.choice(len(xl), size=min(budget, len(xl)), replace=False).tolist(),
                    "reference": _reference_picks(xl, budget),
                }
                for method, p in picks.items():
                    per[method].append(coverage(xl, xl[_clusters(xl, p, spec.cluster_size)], bw, spec.device))
            for method, vals in per.items():
                row = {
                    "seed": seed,
                    "budget": budget,
                    "method": method,
                    **{k: float(np.mean([v[k] for v in vals])) for k in ("radius", "mean_nn", "mmd2")},
                }
                rows.append(row)
            say(
                f"seed {seed} budget {budget}: "
                + ", ".join(
                    f"{r['method']} R={r['radius']:.3f} nn={r['mean_nn']:.3f} mmd2={r['mmd2']:.4f}"
                    for r in rows[-3:]
                )
            )
    summary = []
    for budget in spec.budgets:
        for method in METHODS:
            sel = [r for r in rows if r["budget"] == budget and r["method"] == method]
            entry: dict[str, Any] = {"budget": budget, "method": method}
            for k in ("radius", "mean_nn", "mmd2"):
                v = np.asarray([r[k] for r in sel])
                entry[f"{k}_mean"], entry[f"{k}_std"] = (
                    float(v.mean()),
                    float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                )
            summary.append(entry)
    config = {
        "data": str(spec.data),
        "n_real": spec.n_real,
        "budgets": list(spec.budgets),
        "cluster_size": spec.cluster_size,
        "seeds": spec.seeds,
    }
    return {"config": config, "rows": rows, "summary": summary}


def explorer_markdown(results: dict[str, Any]) -> str:
    """Markdown table of the coverage summary (mean ± std over seeds; lower is better)."""
    cfg = results["config"]
    lines = [
        f"{Path(cfg['data']).name}: real subset {cfg['n_real']}, clusters of {cfg['cluster_size']}, "
        f"{cfg['seeds']} seeds; per label, averaged over labels; lower is better",
        "",
        "| clusters/label | method | k-center radius | mean NN distance | MMD² to real |",
        "|---|---|---|---|---|",
    ]
    for e in results["summary"]:
        lines.append(
            f"| {e['budget']} | {e['method']} | {e['radius_mean']:.4f} ± {e['radius_std']:.4f} | "
            f"{e['mean_nn_mean']:.4f} ± {e['mean_nn_std']:.4f} | {e['mmd2_mean']:.5f} ± {e['mmd2_std']:.5f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``python -m synalign.evals.explorer_eval --data DIR [--out FILE.json]``: print the markdown table."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/sst2"))
    parser.add_argument("--n-real", type=int, default=2000)
    parser.add_argument("--budgets", default="2,8,32")
    parser.add_argument("--cluster-size", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    spec = ExplorerEvalSpec(
        data=args.data,
        n_real=args.n_real,
        budgets=[int(b) for b in args.budgets.split(",")],
        cluster_size=args.cluster_size,
        seeds=args.seeds,
    )
    res = run_explorer_eval(spec, log=print)
    print(explorer_markdown(res))
    if args.out:
        from synalign.fileio import atomic_write_text

        atomic_write_text(args.out, json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
