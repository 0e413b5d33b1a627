"""DSIR and IMP-Loss on the shared LM pools, under the protocol of ``synalign eval`` (RESULTS.md §1).

Per task (``sst2``, ``agnews``) the real data, pool and few-shot splits are exactly §1's: the pool is the union
of ``<data>/synthetic/<task>-*/generated.jsonl`` (:func:`evals.taskdata.load_pool`: label-mapped, rows verbatim
in the test split dropped, each source capped at 2,500 rows, seed 0); per seed s, k real rows per class and an
unlabelled pool of 1,000 other train rows (:func:`evals.taskdata.few_shot_split`); RBF bandwidth = median
pairwise distance of those real rows; τ of the filter by 4-fold CV on the few-shot set. Each training set is
the seed's k-per-class real rows + synthetic rows, scored by logistic regression (C = 1) on frozen MiniLM
embeddings on the real test split (accuracy, macro-F1):

* ``real only``; ``random``, ``filter`` (the default: label-consistency filter, then random) and ``herding``
  (kernel herding to the labelled real rows, KMM-based stage 3): m rows with the quotas of
  :func:`evals.strategies.balanced_quotas`, through :func:`evals.strategies.select` with §1's
  :class:`~evals.strategies.SelectionTask`, so their selections are §1's own (``selection_sha1`` in the rows);
* ``dsir``: m rows, :func:`evals.baselines.dsir_select` with the seed's few-shot real texts as target, same
  quotas (Xie et al. 2023);
* ``imp_loss``: the whole pool, each synthetic row weighted by :func:`evals.baselines.imp_loss_weights`
  (Kuo et al. 2025; real rows weight 1); ``whole pool``: the same rows unweighted, imp_loss's fair reference.

Table: mean ± std (ddof = 1) over seeds, Δ = paired per-seed difference to random (and, for imp_loss, to the
whole pool) with its two-sided paired t-test (``scipy.stats.ttest_rel``); verdict win/loss at p < 0.05, else
tie. Resumable: each (task, seed) is written to ``<out>/<task>/seed<s>.json`` atomically and skipped when
present; ``rows.json`` (per-seed rows) and ``summary.md`` are rewritten from the requested seeds.

    python -m synalign.evals.baselines_eval --tasks sst2,agnews --seeds 0-9 --m 1000 --k 32 \\
        --data ../shared/data --out evals/results/baselines
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from synalign.evals.tables import markdown

#: The checkout (``evals/..``): the defaults of ``--out`` and ``--data`` are in and beside it.
REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "evals" / "results" / "baselines"
CAP_PER_SOURCE = 2500  # §1's command: EvalSpec's default cap_per_source
N_UNLABELLED = 1000  # §1: EvalSpec's default n_unlabelled (sets the bandwidth)
METHODS = ("real only", "random", "filter", "herding", "dsir", "whole pool", "imp_loss")
SELECTED = ("random", "filter", "herding")


@dataclass(frozen=True)
class _TaskData:
    """One task's fixed inputs: train split, pool (+ embeddings), test embeddings, quotas."""

    train_texts: list[str]
    train_labels: list[str]
    pool_texts: list[str]
    pool_labels: np.ndarray
    pool_x: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    quotas: dict[str, int]


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _parse_seeds(text: str) -> list[int]:
    """``"0-9"``, ``"0,3,5"`` or a mix (``"0-2,7"``) → sorted distinct seeds."""
    seeds: set[int] = set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        lo, _, hi = part.partition("-")
        seeds.update(range(int(lo), int(hi or lo) + 1))
    if not seeds:
        raise SystemExit(f"--seeds {text!r}: no seed")
    return sorted(seeds)


def _load_task(task: str, data: Path, m: int, embedder: Any) -> _TaskData:
    from synalign.datafiles import load_dataset
    from synalign.errors import InputError
    from synalign.evals.strategies import balanced_quotas
    from synalign.evals.taskdata import load_pool, resolve_pool_paths

    ds = load_dataset(data / task)
    test = ds.test
    if test is None:
        raise InputError(f"{data / task}: no test split (the evaluation scores on the real test split only)")
    paths = resolve_pool_paths(str(data / "synthetic" / f"{task}-*" / "generated.jsonl"))
    pool = load_pool(paths, ds.labels, exclude_texts=[r.text for r in test], cap_per_source=CAP_PER_SOURCE)
    pool_labels = np.asarray(pool.labels, dtype=object)
    t0 = time.perf_counter()
    pool_x = embedder.encode(pool.texts)
    test_x = embedder.encode([r.text for r in test])
    _say(f"{task}: pool {len(pool)} rows {pool.label_counts()}, test {len(test)} rows, "
         f"embedded in {time.perf_counter() - t0:.1f} s")
    return _TaskData([r.text for r in ds.train], [r.label for r in ds.train], pool.texts, pool_labels, pool_x,
                     test_x, np.asarray([r.label for r in test], dtype=object),
                     balanced_quotas(pool_labels, ds.labels, m))


def _digest(idx: np.ndarray) -> str:
    """§1's ``selection_sha1`` (evals.downstream._digest) of a selection."""
    import hashlib

    return hashlib.sha1(np.sort(np.asarray(idx, dtype=np.int64)).tobytes()).hexdigest()[:16]


def _seed_rows(t: _TaskData, seed: int, k: int, embedder: Any) -> list[dict[str, Any]]:
    """The seven rows of one seed (see the module docstring)."""
    from synalign.divergence import median_bandwidth
    from synalign.evals.baselines import dsir_select, imp_loss_weights
    from synalign.evals.classifiers import fit_predict_lr, scores
    from synalign.evals.strategies import SelectionTask, choose_tau, select
    from synalign.evals.taskdata import few_shot_split

    split = few_shot_split(t.train_labels, k, N_UNLABELLED, seed)
    real_texts = [t.train_texts[i] for i in split.labelled]
    real_x = embedder.encode(real_texts)
    real_y = np.asarray([t.train_labels[i] for i in split.labelled], dtype=object)
    unl_x = embedder.encode([t.train_texts[i] for i in split.unlabelled])
    bw = median_bandwidth(np.concatenate([real_x, unl_x]), seed=seed)
    task = SelectionTask(pool=t.pool_x, pool_labels=t.pool_labels, real=real_x, real_labels=real_y,
                         unlabelled=unl_x, quotas=t.quotas, bandwidth=bw, seed=seed, device="cpu")
    rows: list[dict[str, Any]] = []

    def fit(method: str, idx: np.ndarray, t0: float, weights: np.ndarray | None = None, **extra: Any) -> None:
        x = np.concatenate([real_x, t.pool_x[idx]])
        sample_weight = None if weights is None else np.concatenate([np.ones(len(real_y)), weights])
        pred = fit_predict_lr(x, np.concatenate([real_y, t.pool_labels[idx]]), t.test_x,
                              sample_weight=sample_weight)
        rows.append({"seed": seed, "method": method, "n_synthetic": int(len(idx)), **scores(t.test_y, pred),
                     "seconds": round(time.perf_counter() - t0, 2), **extra})
        _say(f"  seed {seed} {method:<10} acc {rows[-1]['accuracy']:.4f} F1 {rows[-1]['macro_f1']:.4f} "
             f"(+{len(idx)} syn, {rows[-1]['seconds']:.1f} s)")

    fit("real only", np.zeros(0, np.int64), time.perf_counter())
    for method in SELECTED:
        t0 = time.perf_counter()
        sub = replace(task, info={})
        if method == "filter":
            sub = replace(sub, tau=choose_tau(replace(task, info={})))
        idx = select(method, sub)
        tau: dict[str, Any] = {"tau": sub.tau} if method == "filter" else {}
        fit(method, idx, t0, selection_sha1=_digest(idx), **tau)
    t0 = time.perf_counter()
    idx = dsir_select(t.pool_texts, t.pool_labels, real_texts, t.quotas, seed=seed)
    fit("dsir", idx, t0, selection_sha1=_digest(idx))
    whole = np.arange(len(t.pool_labels))
    fit("whole pool", whole, time.perf_counter())
    t0 = time.perf_counter()
    w = imp_loss_weights(t.pool_x, t.pool_labels, real_x, real_y, seed=seed)
    fit("imp_loss", whole, t0, weights=w, weight_max=round(float(w.max()), 3),
        ess=round(float(w.sum() ** 2 / np.sum(w**2)), 1))
    return rows


def _delta(rows: list[dict[str, Any]], method: str, base: str) -> tuple[str, str]:
    """(paired Δ accuracy ``method − base`` ``"+0.0123 (p=0.004)"``, verdict win/tie/loss), or blanks."""
    from scipy import stats

    a = {r["seed"]: r["accuracy"] for r in rows if r["method"] == method}
    b = {r["seed"]: r["accuracy"] for r in rows if r["method"] == base}
    seeds = sorted(set(a) & set(b))
    if method == base or not seeds:
        return "", ""
    x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    diff = x - y
    if len(seeds) < 2 or diff.std() == 0:
        return f"{diff.mean():+.4f} (p n/a)", "n/a (1 seed)" if len(seeds) < 2 else "tie"
    p = float(stats.ttest_rel(x, y).pvalue)
    verdict = "tie" if p >= 0.05 else ("win" if diff.mean() > 0 else "loss")
    return f"{diff.mean():+.4f} ± {diff.std(ddof=1):.4f} (p={p:.2g})", verdict


def _mean_sd(v: np.ndarray) -> str:
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v.mean():.4f}"


def _summary(task: str, rows: list[dict[str, Any]], head: str) -> str:
    """Markdown: one line per method (mean ± std over seeds, Δ vs random, Δ vs whole pool for imp_loss)."""
    table = []
    for method in METHODS:
        cell = [r for r in rows if r["method"] == method]
        acc, f1 = np.array([r["accuracy"] for r in cell]), np.array([r["macro_f1"] for r in cell])
        vs_random, verdict = _delta(rows, method, "random")
        vs_whole, whole_verdict = _delta(rows, method, "whole pool") if method == "imp_loss" else ("", "")
        table.append([method, _mean_sd(acc), _mean_sd(f1), vs_random, verdict,
                      vs_whole, whole_verdict, f"{np.mean([r['seconds'] for r in cell]):.1f}"])
    seeds = sorted({r["seed"] for r in rows})
    pool = next((r["n_synthetic"] for r in rows if r["method"] == "whole pool"), "?")
    return (f"{task}: {head}, pool {pool} rows, seeds {seeds}\n\n"
            + markdown(["method", f"accuracy ({len(seeds)} seeds)", "macro-F1", "Δacc vs random (paired t)",
                        "vs random", "Δacc vs whole pool", "vs whole pool", "s / seed"], table) + "\n")


def main(argv: list[str] | None = None) -> int:
    from synalign.embeddings import Embedder
    from synalign.fileio import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,agnews")
    parser.add_argument("--seeds", default="0-9", help="'0-9', '0,3,5' or a mix")
    parser.add_argument("--m", type=int, default=1000, help="synthetic rows per selection")
    parser.add_argument("--k", type=int, default=32, help="real examples per class")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    seeds, embedder = _parse_seeds(args.seeds), Embedder(device="cpu")
    for task in (t.strip() for t in args.tasks.split(",") if t.strip()):
        folder = args.out / task
        folder.mkdir(parents=True, exist_ok=True)
        config = {"task": task, "k": args.k, "m": args.m, "cap_per_source": CAP_PER_SOURCE,
                  "n_unlabelled": N_UNLABELLED, "data": os.path.relpath(args.data.resolve(), REPO)}
        data: _TaskData | None = None
        rows: list[dict[str, Any]] = []
        for seed in seeds:
            path = folder / f"seed{seed}.json"
            if path.is_file():
                saved = json.loads(path.read_text(encoding="utf-8"))
                if saved["config"] != config:
                    raise SystemExit(f"{path} was made with {saved['config']}, not {config}: use another --out")
                _say(f"{task} seed {seed}: done before ({path.name}), skipped")
                rows += saved["rows"]
                continue
            if data is None:
                data = _load_task(task, args.data, args.m, embedder)
            t0 = time.perf_counter()
            seed_rows = _seed_rows(data, seed, args.k, embedder)
            seconds = round(time.perf_counter() - t0, 1)
            atomic_write_text(path, json.dumps({"config": config, "seconds": seconds, "rows": seed_rows},
                                               indent=1) + "\n")
            _say(f"{task} seed {seed}: {seconds:.1f} s")
            rows += seed_rows
        head = f"k={args.k} real/class, m={args.m} synthetic, cap {CAP_PER_SOURCE}/source"
        text = _summary(task, rows, head)
        atomic_write_text(folder / "rows.json", json.dumps(rows, indent=1) + "\n")
        atomic_write_text(folder / "summary.md", text)
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
