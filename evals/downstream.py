"""Downstream evaluation (``synalign eval``): does the selected synthetic data help a real classifier?

Protocol (DESIGN §3.5): for each seed, k real labelled examples per class are drawn from ``train`` (plus
an unlabelled real pool of other ``train`` texts, labels unused); a classifier is trained on

* ``real_only``: the k-shot real set,
* ``real+<strategy>``: the real set + m synthetic rows picked by a selection strategy
  (label-balanced, same per-label counts for every strategy, ``random`` included),
* ``real+whole_pool``: the real set + every synthetic row,

and scored (accuracy, macro-F1) on the real ``test`` split only. Nothing is fitted on test data: the
kernel bandwidth comes from the real train rows, thresholds from cross-validation on the few-shot set. The
test split is used once per condition for the scores, and for reporting the MMD² of each selection to it.

Outputs (``--out DIR``): ``results.json`` (config, per-seed rows, aggregates), ``results.md`` (markdown
table), ``results.png`` (bar plot, mean ± std over seeds).
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from synalign.errors import InputError
from synalign.evals.specs import EvalSpec

__all__ = ["EvalSpec", "run_eval", "aggregate", "markdown_table", "plot_results", "write_outputs"]

REAL_ONLY = "real_only"
WHOLE_POOL = "whole_pool"


def _validate(spec: EvalSpec) -> None:
    import synalign.evals.strategies  # noqa: F401 - registers the evaluation's strategies
    from synalign.evals.classifiers import CLASSIFIERS
    from synalign.selection import check_strategy

    if spec.classifier not in CLASSIFIERS:
        raise InputError(f"unknown classifier {spec.classifier!r}; known: {', '.join(CLASSIFIERS)}")
    for name in spec.strategies:
        check_strategy(name)
    if spec.k < 1 or spec.m < 1:
        raise InputError(f"--k and --m must be >= 1, got {spec.k} and {spec.m}")
    if not spec.seed_list():
        raise InputError("--seeds must be >= 1")
    if spec.unlabelled_split not in ("train", "dev"):
        raise InputError(f"unlabelled split must be 'train' or 'dev', got {spec.unlabelled_split!r}")


def run_eval(spec: EvalSpec, *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the downstream evaluation; returns the results dict (also written to ``spec.out`` when set).

    Raises:
        InputError: bad data, pools or options (no test split, unknown strategy, m larger than the pool, …).
    """
    from synalign.datafiles import load_dataset
    from synalign.divergence import median_bandwidth, mmd2_unbiased
    from synalign.embeddings import Embedder
    from synalign.evals.classifiers import FinetuneConfig, fit_predict_finetune, fit_predict_lr, scores
    from synalign.evals.strategies import (
        DEFAULT_STRATEGIES,
        SelectionTask,
        balanced_quotas,
        choose_tau,
        select,
    )
    from synalign.evals.taskdata import few_shot_split, load_pool
    from synalign.sampling import stratified_sample

    say = log or (lambda _msg: None)
    if not spec.strategies:
        spec = replace(spec, strategies=list(DEFAULT_STRATEGIES))
    _validate(spec)
    ds = load_dataset(spec.data)
    if not ds.test:
        raise InputError(f"{spec.data}: no test split (the evaluation scores on the real test split only)")
    test = ds.test if spec.max_test is None else stratified_sample(ds.test, spec.max_test, seed=0)
    labels = ds.labels
    pool = load_pool(
        spec.pools,
        labels,
        exclude_texts=[r.text for r in ds.test],
        cap_per_source=spec.cap_per_source,
        sources_filter=spec.sources_prefix,
    )
    pool_labels = np.asarray(pool.labels, dtype=object)
    quotas = balanced_quotas(pool_labels, labels, spec.m)
    say(f"pool: {len(pool)} rows {pool.label_counts()}; quotas {quotas}; test {len(test)} rows")

    embedder = Embedder(cache_dir=spec.cache_dir, device=spec.device)
    t0 = time.perf_counter()
    pool_x = embedder.encode(pool.texts)
    test_x = embedder.encode([r.text for r in test])
    test_y = np.asarray([r.label for r in test], dtype=object)
    say(f"embedded pool + test in {time.perf_counter() - t0:.1f} s")
    train_labels = [r.label for r in ds.train]
    dev_texts: list[str] = []
    if spec.unlabelled_split == "dev":
        from synalign.datafiles import load_examples

        dev_texts = [r.text for r in load_examples(spec.data, split="dev")]
    ft_config = FinetuneConfig(**spec.finetune) if spec.classifier == "finetune" else None

    def classify(
        x_real: np.ndarray, y_real: np.ndarray, texts_real: list[str], idx: np.ndarray | None, seed: int
    ) -> dict[str, float]:
        sel = np.arange(len(pool)) if idx is None else idx
        y = np.concatenate([y_real, pool_labels[sel]])
        if spec.classifier == "lr":
            pred = fit_predict_lr(np.concatenate([x_real, pool_x[sel]]), y, test_x)
        else:
            texts = texts_real + [pool.texts[i] for i in sel]
            pred = fit_predict_finetune(texts, list(y), [r.text for r in test], seed=seed, config=ft_config)
        return scores(test_y, pred)

    rows: list[dict[str, Any]] = []
    for seed in spec.seed_list():
        split = few_shot_split(train_labels, spec.k, spec.n_unlabelled, seed)
        real_texts = [ds.train[i].text for i in split.labelled]
        real_x = embedder.encode(real_texts)
        real_y = np.asarray([ds.train[i].label for i in split.labelled], dtype=object)
        if spec.unlabelled_split == "dev":
            pick = np.random.default_rng([seed, 99]).choice(
                len(dev_texts), min(spec.n_unlabelled, len(dev_texts)), replace=False
            )
            unl_texts = [dev_texts[i] for i in np.sort(pick)]
        else:
            unl_texts = [ds.train[i].text for i in split.unlabelled]
        unl_x = embedder.encode(unl_texts) if unl_texts else np.zeros((0, pool_x.shape[1]), np.float32)
        bw = median_bandwidth(np.concatenate([real_x, unl_x]) if len(unl_x) else real_x, seed=seed)
        base = {"seed": seed, "n_real": len(real_y), "bandwidth": float(bw)}
        if spec.real_only:
            t = time.perf_counter()
            rows.append(
                {
                    **base,
                    "condition": REAL_ONLY,
                    "n_synthetic": 0,
                    **classify(real_x, real_y, real_texts, np.zeros(0, int), seed),
                    "train_seconds": round(time.perf_counter() - t, 2),
                }
            )
            say(_row_line(rows[-1]))
        if spec.whole_pool:
            t = time.perf_counter()
            res = classify(real_x, real_y, real_texts, None, seed)
            rows.append(
                {
                    **base,
                    "condition": WHOLE_POOL,
                    "n_synthetic": len(pool),
                    **res,
                    "mmd2_test": float(
                        mmd2_unbiased(_sub(pool_x, 4000, seed), test_x, bw, device=spec.device)
                    ),
                    "sources": _shares(pool.sources, np.arange(len(pool))),
                    "train_seconds": round(time.perf_counter() - t, 2),
                }
            )
            say(_row_line(rows[-1]))
        task0 = SelectionTask(
            pool=pool_x,
            pool_labels=pool_labels,
            real=real_x,
            real_labels=real_y,
            unlabelled=unl_x,
            quotas=quotas,
            bandwidth=bw,
            seed=seed,
            device=spec.device,
        )
        tau, tau_info = spec.tau, {}
        if tau is None and any(s.startswith("filter") for s in spec.strategies):
            probe = replace(task0, info={})
            tau, tau_info = choose_tau(probe), dict(probe.info)
            say(f"seed {seed}: label-consistency threshold tau={tau} (cross-validated on the few-shot set)")
        for name in spec.strategies:
            task = replace(task0, tau=tau, info=dict(tau_info) if name.startswith("filter") else {})
            t = time.perf_counter()
            idx = select(name, task)
            select_s = time.perf_counter() - t
            t = time.perf_counter()
            res = classify(real_x, real_y, real_texts, idx, seed)
            rows.append(
                {
                    **base,
                    "condition": name,
                    "n_synthetic": int(len(idx)),
                    **res,
                    "mmd2_test": float(mmd2_unbiased(pool_x[idx], test_x, bw, device=spec.device)),
                    "sources": _shares(pool.sources, idx),
                    "selection_sha1": _digest(idx),
                    "select_seconds": round(select_s, 2),
                    "train_seconds": round(time.perf_counter() - t, 2),
                    **({"info": task.info} if task.info else {}),
                }
            )
            say(_row_line(rows[-1]))
    results = {
        "config": _config_dict(spec, len(test)),
        "pool": {"rows": len(pool), "labels": pool.label_counts(), "sources": pool.stats, "quotas": quotas},
        "rows": rows,
        "summary": aggregate(rows),
    }
    if spec.out is not None:
        write_outputs(results, spec.out)
    return results


def _digest(idx: np.ndarray) -> str:
    import hashlib

    return hashlib.sha1(np.sort(np.asarray(idx, dtype=np.int64)).tobytes()).hexdigest()[:16]


def _sub(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(x) <= n:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))]


def _shares(sources: list[str], idx: np.ndarray) -> dict[str, float]:
    counts = Counter(sources[i] for i in idx)
    total = max(len(idx), 1)
    return {k: round(v / total, 4) for k, v in sorted(counts.items())}


def _row_line(row: dict[str, Any]) -> str:
    extra = f" tau={row['info']['tau']}" if "info" in row and "tau" in row["info"] else ""
    return (
        f"seed {row['seed']} {row['condition']:<28} acc {row['accuracy']:.4f} F1 {row['macro_f1']:.4f} "
        f"(+{row['n_synthetic']} syn){extra}"
    )


def _config_dict(spec: EvalSpec, n_test: int) -> dict[str, Any]:
    d = asdict(spec)
    d["data"] = str(spec.data)
    d["pools"] = [str(p) for p in spec.pools]
    d["out"] = None if spec.out is None else str(spec.out)
    d["cache_dir"] = None if spec.cache_dir is None else str(spec.cache_dir)
    d["seeds"] = spec.seed_list()
    d["n_test"] = n_test
    return d


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per condition: mean and std (ddof=1) over seeds of accuracy and macro-F1, the paired difference to
    ``random`` (mean ± std over seeds), and whether the condition beats random by more than one seed-std
    (Δmean > max(std of the condition, std of random)), for both metrics.

    Returns one dict per condition, in first-appearance order.
    """
    by: dict[str, dict[int, dict[str, Any]]] = {}
    for row in rows:
        by.setdefault(row["condition"], {})[row["seed"]] = row
    out = []
    rand = by.get("random")
    for cond, seeds in by.items():
        entry: dict[str, Any] = {"condition": cond, "n_seeds": len(seeds)}
        for metric in ("accuracy", "macro_f1"):
            vals = np.asarray([seeds[s][metric] for s in sorted(seeds)])
            entry[f"{metric}_mean"] = float(vals.mean())
            entry[f"{metric}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
            if rand is not None and cond != "random":
                common = sorted(set(seeds) & set(rand))
                diff = np.asarray([seeds[s][metric] - rand[s][metric] for s in common])
                rvals = np.asarray([rand[s][metric] for s in common])
                entry[f"{metric}_delta_random"] = float(diff.mean()) if len(diff) else None
                entry[f"{metric}_delta_random_std"] = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
                std_r = float(rvals.std(ddof=1)) if len(rvals) > 1 else 0.0
                entry[f"{metric}_beats_random_1std"] = bool(
                    len(diff) and diff.mean() > max(entry[f"{metric}_std"], std_r)
                )
                entry[f"{metric}_p_paired"] = _paired_p(diff)
        mmd = [seeds[s]["mmd2_test"] for s in seeds if "mmd2_test" in seeds[s]]
        if mmd:
            entry["mmd2_test_mean"] = float(np.mean(mmd))
        secs = [v for v in (seeds[s].get("select_seconds") for s in seeds) if v is not None]
        if secs:
            entry["select_seconds_mean"] = float(np.mean(secs))
        taus = [seeds[s]["info"]["tau"] for s in seeds if "tau" in seeds[s].get("info", {})]
        if taus:
            entry["tau"] = taus
        out.append(entry)
    return out


def _paired_p(diff: np.ndarray) -> float | None:
    """Two-sided paired t-test p-value of the per-seed differences (None for < 2 seeds or zero variance)."""
    if len(diff) < 2 or float(np.std(diff)) == 0.0:
        return None
    from scipy.stats import ttest_1samp

    return float(ttest_1samp(diff, 0.0).pvalue)


def _mean_std(e: dict[str, Any], metric: str) -> str:
    return f"{e[f'{metric}_mean']:.4f} ± {e[f'{metric}_std']:.4f}"


def _delta(e: dict[str, Any], metric: str) -> str:
    d = e.get(f"{metric}_delta_random")
    return "" if d is None else f"{d:+.4f} ± {e[f'{metric}_delta_random_std']:.4f}"


def markdown_table(results: dict[str, Any]) -> str:
    """The summary as a markdown table (mean ± std over seeds; Δ = paired difference to random, with its
    two-sided paired t-test p-value over seeds)."""
    cfg = results["config"]
    lines = [
        f"k={cfg['k']} real/class, m={cfg['m']} synthetic, seeds {cfg['seeds']}, classifier {cfg['classifier']}, "
        f"pool {results['pool']['rows']} rows, test {cfg['n_test']} rows",
        "",
        "| condition | accuracy | macro-F1 | Δacc vs random | p (paired t) | ΔF1 vs random "
        "| > random by 1 std (acc/F1) | MMD² to test | select s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in results["summary"]:
        pm = functools.partial(_mean_std, e)
        delta = functools.partial(_delta, e)
        beat = ""
        if "accuracy_beats_random_1std" in e:
            beat = (
                f"{'yes' if e['accuracy_beats_random_1std'] else 'no'}/"
                f"{'yes' if e['macro_f1_beats_random_1std'] else 'no'}"
            )
        mmd = f"{e['mmd2_test_mean']:.4f}" if "mmd2_test_mean" in e else ""
        secs = f"{e['select_seconds_mean']:.1f}" if "select_seconds_mean" in e else ""
        name = e["condition"] if e["condition"] in (REAL_ONLY, WHOLE_POOL) else f"real + {e['condition']}"
        if e["condition"] == WHOLE_POOL:
            name = "real + whole pool"
        pval = e.get("accuracy_p_paired")
        ptxt = "" if pval is None else (f"{pval:.3f}" if pval >= 0.001 else "<0.001")
        lines.append(
            f"| {name} | {pm('accuracy')} | {pm('macro_f1')} | {delta('accuracy')} | {ptxt} | {delta('macro_f1')} "
            f"| {beat} | {mmd} | {secs} |"
        )
    return "\n".join(lines) + "\n"


def plot_results(results: dict[str, Any], path: Path) -> None:
    """Bar plot of accuracy and macro-F1 (mean ± std over seeds) per condition, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results["summary"]
    names = [e["condition"] for e in summary]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(names) + 2), 4.2))
    for off, metric, label in ((-0.2, "accuracy", "accuracy"), (0.2, "macro_f1", "macro-F1")):
        ax.bar(
            x + off,
            [e[f"{metric}_mean"] for e in summary],
            0.4,
            yerr=[e[f"{metric}_std"] for e in summary],
            capsize=3,
            label=label,
        )
    lo = min(min(e[f"{k}_mean"] - e[f"{k}_std"] for e in summary) for k in ("accuracy", "macro_f1"))
    hi = max(max(e[f"{k}_mean"] + e[f"{k}_std"] for e in summary) for k in ("accuracy", "macro_f1"))
    ax.set_ylim(max(0.0, lo - 0.03), min(1.0, hi + 0.03))
    rand = next((e for e in summary if e["condition"] == "random"), None)
    if rand is not None:
        ax.axhline(
            rand["accuracy_mean"], color="grey", linestyle="--", linewidth=0.8, label="random: accuracy"
        )
    ax.set_xticks(x, names, rotation=40, ha="right", fontsize=8)
    cfg = results["config"]
    ax.set_title(
        f"{Path(cfg['data']).name}: k={cfg['k']}/class + m={cfg['m']} synthetic ({cfg['classifier']}), "
        f"{len(cfg['seeds'])} seeds",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    import io

    from synalign.fileio import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def write_outputs(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``results.png`` into ``out`` (atomically per file)."""
    from synalign.fileio import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md", "plot": out / "results.png"}
    atomic_write_text(paths["json"], json.dumps(results, indent=1, default=_json_default) + "\n")
    atomic_write_text(paths["markdown"], markdown_table(results))
    plot_results(results, paths["plot"])
    return paths


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj).__name__)
