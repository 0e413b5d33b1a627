"""Can the in-run utility estimate be trusted? The run's held-out Δ next to the real test split's Δ.

For each shared task (SST-2, AG News, Amazon-13 from ``../shared/data``), seed and condition, a few-shot real
set of ``k`` examples per label is drawn from ``train``; the run's validation slice is carved from it by the
run's own rule (:func:`synalign.holdout.split_validation`, 25 %: 8 of 32 per label), and the synthetic set is
made and selected on the rest. Three estimates of "does adding the accepted set help?" are set side by side:

- **in-run**: the run's own figure (``summary.json`` → ``utility``): Δ of held-out log-likelihood of the true
  label (nats/example) and accuracy, real fit part vs real fit part + accepted set, on the validation slice;
- **test**: the same two classifiers scored on the real ``test`` split (the truth; never seen by the run);
- **naive CV**: 5-fold cross-validation on the whole few-shot set (slice included), the accepted set added to
  each training fold: the leaky estimate the slice replaces.

Conditions: ``eda`` (``synalign run --llm eda``, the defaults: label filter, near-copies refused),
``local`` (``synalign run --llm local``, the embedded Gemma 3 270M, with the task's ``--item-name``; opt-in with
``--conditions``: minutes per run), ``eda-copies`` (the same with ``--allow-near-copies`` and ``--selection random``:
EDA's near-copies of real texts, the data the old verdict called green), and for SST-2 and AG News an LLM-written
pool from ``../shared/data/synthetic`` aligned to the few-shot set (:func:`synalign.alignment.align` with the
validation slice held out, near-copies refused) with ``filter`` and with ``random`` selection.

Rows go to ``evals/results/trust/rows.jsonl`` as they finish; a re-run skips rows already there (resumable).
``--table`` prints the Markdown tables of RESULTS.md from the rows.

    python evals/scripts/trust_study.py                      # all tasks, seeds 0-2, the fast conditions (~30 min)
    python evals/scripts/trust_study.py --conditions local --tasks sst2,agnews --seeds 0
    python evals/scripts/trust_study.py --table
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # the checkout (evals/scripts/../..)
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "evals" / "results" / "trust"
TASKS = {"sst2": "sst2-gemma2-9b-zeroshot", "agnews": "agnews-llama3.2-3b-zeroshot", "amazon_fdu13": None}
MAX_TEST = 2000
ITEM_NAMES = {"sst2": "Movie review", "agnews": "News article", "amazon_fdu13": "Product review"}


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _few_shot(rows: list[dict[str, Any]], k: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    labels = sorted({r["label"] for r in rows})
    picks = [i for lab in labels for i in rng.permutation([i for i, r in enumerate(rows) if r["label"] == lab])[:k]]
    return [rows[i] for i in sorted(picks)]


def _fit_scores(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray) -> tuple[float, float]:
    """(mean log-likelihood of the true label, accuracy) of the run's downstream classifier."""
    from synalign.utility import score_classifier

    ll, pred = score_classifier(x_tr, y_tr, x_te, y_te)
    return float(ll.mean()), float((pred == y_te).mean())


def _deltas(real: tuple, extra: tuple, test: tuple) -> tuple[float, float]:
    (xr, yr), (xs, ys), (xt, yt) = real, extra, test
    ll0, a0 = _fit_scores(xr, yr, xt, yt)
    ll1, a1 = _fit_scores(np.vstack([xr, xs]), np.concatenate([yr, ys]), xt, yt)
    return ll1 - ll0, a1 - a0


def _naive_cv(x: np.ndarray, y: np.ndarray, xs: np.ndarray, ys: np.ndarray, seed: int) -> tuple[float, float]:
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed).split(x, y)
    d = [_deltas((x[tr], y[tr]), (xs, ys), (x[te], y[te])) for tr, te in folds]
    return float(np.mean([a for a, _ in d])), float(np.mean([b for _, b in d]))


def _run_condition(task: str, task_dir: Path, work: Path, seed: int, condition: str) -> dict[str, Any]:
    """``synalign run`` (2 rounds) on the few-shot set: ``eda``, ``eda-copies`` or ``local`` (the local LM)."""
    from synalign.config import RunConfig
    from synalign.graphs import run

    extra: dict[str, Any] = {
        "eda": {"llm": "eda"},
        "eda-copies": {"llm": "eda", "allow_near_copies": True, "selection": "random"},
        "local": {"llm": "local", "item_name": ITEM_NAMES[task]},
    }[condition]
    config = RunConfig(data=task_dir, out=work / condition, max_rounds=2, seed=seed, max_real=5000, **extra)
    result = run(config, overwrite=True)
    acc = [(s.text, s.label) for s in result.accepted]
    s = result.summary
    return {"accepted": acc, "validation_ids": set(s.validation.ids or []),
            "utility": s.utility.model_dump() if s.utility else None,
            "verdict": s.verdict.level, "near_copy_share": s.novelty.accepted_share}


def _pool_condition(task: str, fit: list[dict], val: list[dict], embedder: Any, selection: str, seed: int) -> dict:
    from synalign.alignment import align
    from synalign.evals.taskdata import canonical_label
    from synalign.novelty import near_copies
    from synalign.utility import estimate_utility
    from synalign.verdict import Fidelity, Novelty, judge

    names = {canonical_label(r["label"]): r["label"] for r in fit}  # "Sci/Tech" is "sci_tech"
    pool = [{"text": r["text"], "label": names[canonical_label(r["label"])]}
            for r in _read(SHARED / "synthetic" / TASKS[task] / "generated.jsonl")
            if canonical_label(r["label"]) in names]
    rng = np.random.default_rng(seed)
    pool = [pool[i] for i in sorted(rng.permutation(len(pool))[:2000])]
    xp = embedder.encode([r["text"] for r in pool])
    xr = embedder.encode([r["text"] for r in fit])
    yp, yr = [r["label"] for r in pool], [r["label"] for r in fit]
    novelty = near_copies([r["text"] for r in pool], [r["text"] for r in fit], xp, xr)
    result = align(xp, yp, xr, yr, strategy=selection, accept_fraction=0.25, seed=seed, eligible=~novelty.mask)
    mask = np.asarray(result.accepted)
    xv = embedder.encode([r["text"] for r in val])
    u = estimate_utility(xr, yr, xp[mask], np.asarray(yp, dtype=object)[mask], xv, [r["label"] for r in val],
                         pool=xp, pool_labels=yp, seed=seed)
    nov = Novelty(accepted_share=float(novelty.mask[mask].mean()) if mask.any() else 0.0,
                  pool_share=novelty.share, excluded=int(novelty.mask.sum()),
                  ratio_threshold=novelty.ratio_threshold, cosine_threshold=novelty.cosine_threshold)
    verdict = judge(u, nov, Fidelity(), accepted=int(mask.sum()))
    return {"accepted": [(pool[i]["text"], pool[i]["label"]) for i in np.flatnonzero(mask)],
            "utility": u.model_dump(), "verdict": verdict.level, "near_copy_share": nov.accepted_share}


def _one(task: str, seed: int, condition: str, k: int, embedder: Any, val_k: int = 0) -> dict[str, Any]:
    from synalign.holdout import split_validation
    from synalign.records import RealExample

    every = _read(SHARED / task / "train.jsonl")
    train = _few_shot(every, k, seed)
    given = None
    if val_k:  # a validation split of val_k per label, other train rows: the slice a user's dataset brings
        taken = {r["text"] for r in train}
        given = _few_shot([r for r in every if r["text"] not in taken], val_k, seed + 1000)
    test_rows = _read(SHARED / task / "test.jsonl")
    test_rows = [test_rows[i] for i in sorted(np.random.default_rng(0).permutation(len(test_rows))[:MAX_TEST])]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
        examples = [RealExample(id=f"train-{i}", text=r["text"], label=r["label"]) for i, r in enumerate(train)]
        split = None
        if given is not None:
            (data / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in given), encoding="utf-8")
            split = [RealExample(id=f"validation-{i}", text=r["text"], label=r["label"]) for i, r in enumerate(given)]
        fit, val, _ = split_validation(examples, split, fraction=0.25, seed=seed)  # the run's own rule and seed
        if not condition.startswith("pool-"):
            got = _run_condition(task, data, work, seed, condition)
            assert got["validation_ids"] == {r.id for r in val}, "the study's slice must be the run's"
        else:
            fit_rows = [{"text": r.text, "label": r.label} for r in fit]
            val_rows = [{"text": r.text, "label": r.label} for r in val]
            got = _pool_condition(task, fit_rows, val_rows, embedder, condition.removeprefix("pool-"), seed)
    enc = embedder.encode
    xf, yf = enc([r.text for r in fit]), np.asarray([r.label for r in fit], dtype=object)
    xall, yall = enc([r["text"] for r in train]), np.asarray([r["label"] for r in train], dtype=object)
    xs = enc([t for t, _ in got["accepted"]]) if got["accepted"] else np.zeros((0, xf.shape[1]), np.float32)
    ys = np.asarray([lab for _, lab in got["accepted"]], dtype=object)
    xt, yt = enc([r["text"] for r in test_rows]), np.asarray([r["label"] for r in test_rows], dtype=object)
    test_ll, test_acc = _deltas((xf, yf), (xs, ys), (xt, yt))
    cv_ll, cv_acc = _naive_cv(xall, yall, xs, ys, seed)
    u = got["utility"]
    return {
        "task": task, "seed": seed, "condition": condition, "k": k, "val_k": val_k, "accepted": len(ys),
        "verdict": got["verdict"], "near_copy_share": got["near_copy_share"],
        "inrun_ll": u["delta_log_likelihood"]["mean"] if u else None,
        "inrun_ll_low": u["delta_log_likelihood"]["low"] if u else None,
        "inrun_ll_high": u["delta_log_likelihood"]["high"] if u else None,
        "inrun_acc": u["delta_accuracy"]["mean"] if u else None,
        "test_ll": test_ll, "test_acc": test_acc, "cv_ll": cv_ll, "cv_acc": cv_acc,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    from scipy.stats import pearsonr, spearmanr

    lines = ["| task | condition | seeds | accepted | near-copies | verdicts | in-run Δ LL (nats) | test Δ LL | "
             "in-run Δ acc (pts) | test Δ acc (pts) | naive CV Δ acc (pts) |", "|" + "---|" * 11]
    keys = sorted({(r["task"], r["condition"]) for r in rows})
    for task, cond in keys:
        cell = [r for r in rows if r["task"] == task and r["condition"] == cond and r["inrun_ll"] is not None]
        task = f"{task} (slice {cell[0]['val_k']}/label)" if cell and cell[0].get("val_k") else task
        if not cell:
            continue

        def ms(key: str, scale: float = 1.0, cell: list = cell) -> str:
            v = np.asarray([r[key] for r in cell]) * scale
            return f"{v.mean():+.3f} ± {v.std():.3f}" if scale == 1 else f"{v.mean():+.1f} ± {v.std():.1f}"

        verdicts = "/".join(r["verdict"][0].upper() for r in sorted(cell, key=lambda r: r["seed"]))
        lines.append(f"| {task} | {cond} | {len(cell)} | {np.mean([r['accepted'] for r in cell]):.0f} | "
                     f"{np.mean([r['near_copy_share'] for r in cell]):.0%} | {verdicts} | {ms('inrun_ll')} | "
                     f"{ms('test_ll')} | {ms('inrun_acc', 100)} | {ms('test_acc', 100)} | {ms('cv_acc', 100)} |")
    ok = [r for r in rows if r["inrun_ll"] is not None]
    a = np.asarray([[r["inrun_ll"], r["test_ll"], r["inrun_acc"], r["test_acc"], r["cv_acc"], r["cv_ll"]] for r in ok])
    sign = lambda x, y: float(np.mean(np.sign(x) == np.sign(y)))  # noqa: E731
    lines += ["", f"Over {len(ok)} runs: sign agreement with the test Δ: in-run log-likelihood "
              f"{sign(a[:, 0], a[:, 1]):.0%}, in-run accuracy {sign(a[:, 2], a[:, 3]):.0%}, naive CV accuracy "
              f"{sign(a[:, 4], a[:, 3]):.0%}, naive CV log-likelihood {sign(a[:, 5], a[:, 1]):.0%}. "
              f"Correlation with the test Δ (Pearson / Spearman): in-run LL {pearsonr(a[:, 0], a[:, 1])[0]:.2f} / "
              f"{spearmanr(a[:, 0], a[:, 1])[0]:.2f}; in-run accuracy {pearsonr(a[:, 2], a[:, 3])[0]:.2f} / "
              f"{spearmanr(a[:, 2], a[:, 3])[0]:.2f}; naive CV accuracy {pearsonr(a[:, 4], a[:, 3])[0]:.2f} / "
              f"{spearmanr(a[:, 4], a[:, 3])[0]:.2f}."]
    green = [r for r in ok if r["verdict"] == "green"]
    red = [r for r in ok if r["verdict"] == "red"]
    lines.append(f"Green runs: {len(green)}, of which the test Δ accuracy is ≥ 0 in "
                 f"{sum(r['test_acc'] >= 0 for r in green)} and Δ LL > 0 in {sum(r['test_ll'] > 0 for r in green)}; "
                 f"red runs: {len(red)}, of which the test Δ accuracy is < 0 in {sum(r['test_acc'] < 0 for r in red)}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--val-k", type=int, default=0, help="a validation split of this many other train rows "
                        "per label (default 0: the run carves its slice from the k per label)")
    parser.add_argument("--conditions", default="eda,eda-copies,pool-filter,pool-random",
                        help="comma-separated; 'local' (the local LM, minutes per run) is opt-in")
    parser.add_argument("--table", action="store_true", help="print the tables from the rows and exit")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "rows.jsonl"
    rows = _read(path) if path.exists() else []
    if args.table:
        print(_table([r for r in rows if r.get("val_k", 0) == args.val_k and r["k"] == args.k]))
        return 0
    from synalign.embeddings import Embedder

    embedder = Embedder()
    done = {(r["task"], r["seed"], r["condition"], r["k"], r.get("val_k", 0)) for r in rows}
    for task in args.tasks.split(","):
        conditions = [c for c in args.conditions.split(",") if TASKS[task] or not c.startswith("pool-")]
        for seed in (int(s) for s in args.seeds.split(",")):
            for condition in conditions:
                if (task, seed, condition, args.k, args.val_k) in done:
                    continue
                row = _one(task, seed, condition, args.k, embedder, args.val_k)
                with path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(f"{task} seed {seed} {condition}: in-run ΔLL {row['inrun_ll']}, test ΔLL {row['test_ll']:+.3f}, "
                      f"test Δacc {100 * row['test_acc']:+.1f}, verdict {row['verdict']}", file=sys.stderr, flush=True)
    print(_table([r for r in _read(path) if r.get("val_k", 0) == args.val_k and r["k"] == args.k]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
