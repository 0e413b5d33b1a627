"""Which backend should be the default: the embedded local LM or EDA? (the rule of the "real LM" issue)

The local LM becomes the default only if, on the bundled SST-2 demo **and** on AG News, (1) its accepted set
reaches ≥ 85 % label fidelity under a classifier fitted on the real train split, and (2) real + its accepted
set beats real + the EDA accepted set in downstream accuracy at equal size.

Per task and backend: one ``synalign run`` with the same config and seed (``--rounds 2 --target 0``: both
spend the same generation budget). Downstream: k = 32 real train examples per class (seeds 0-4) plus ``m``
accepted synthetic texts (m = the smaller accepted set, a random subset per seed), logistic regression on
frozen MiniLM, accuracy / macro-F1 on the real test split; paired t-test local vs EDA over seeds.

Runs are kept in ``evals/results/backend-choice/<task>-<backend>/`` and resumed or reused when the script
is run again; the table goes to ``evals/results/backend-choice/summary.md``.

    python evals/scripts/backend_choice.py [--tasks sst2,agnews] [--rounds 2] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _bench import REPO, markdown

OUT = REPO / "evals" / "results" / "backend-choice"
BACKENDS = ("eda", "local")


ITEM_NAMES = {"sst2": "Movie review", "agnews": "News article"}
"""``--item-name`` given to the local LM, as the README recommends (evals/scripts/local_lm_prompts.py)."""


def _tasks(shared: Path) -> dict[str, tuple[Path, Path]]:
    """task → (data given to ``synalign run``, directory of the real train/test splits)."""
    return {
        "sst2": (REPO / "synalign" / "data" / "sst2-demo", shared / "sst2"),
        "agnews": (shared / "agnews", shared / "agnews"),
    }


def _run(task: str, backend: str, data: Path, rounds: int) -> Path:
    from synalign.artifacts.rundir import RunDir
    from synalign.config import RunConfig
    from synalign.graphs import run

    out = OUT / f"{task}-{backend}"
    run_dir = RunDir(out)
    if run_dir.is_finished():
        return out
    resume = run_dir.is_run()
    print(f"{task} {backend}: {'resuming' if resume else 'running'} synalign run", file=sys.stderr, flush=True)
    config = RunConfig(data=data, out=out, llm=backend, max_rounds=rounds, target="0", seed=0,
                       item_name=ITEM_NAMES[task] if backend == "local" else None)
    if resume:
        config = run_dir.read_config()
    run(config, resume=resume, on_event=lambda e: None)
    return out


def _downstream(real_dir: Path, synthetic: dict[str, list[dict]], seeds: int, k: int = 32) -> dict[str, list[dict]]:
    from synalign.embeddings import Embedder
    from synalign.evals.classifiers import fit_predict_lr, scores
    from synalign.evals.fidelity import read_jsonl

    train, test = read_jsonl(real_dir / "train.jsonl"), read_jsonl(real_dir / "test.jsonl")
    embedder = Embedder()
    x_test = embedder.encode([r["text"] for r in test])
    y_test = [str(r["label"]) for r in test]
    m = min(len(rows) for rows in synthetic.values())
    labels = sorted({str(r["label"]) for r in train})
    results: dict[str, list[dict]] = {"real only": [], **{f"real + {b}": [] for b in synthetic}}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        few = [
            train[i]
            for label in labels
            for i in rng.permutation([j for j, r in enumerate(train) if str(r["label"]) == label])[:k]
        ]
        x_real = embedder.encode([r["text"] for r in few])
        y_real = [str(r["label"]) for r in few]
        results["real only"].append(scores(y_test, fit_predict_lr(x_real, y_real, x_test)))
        for name, rows in synthetic.items():
            pick = [rows[i] for i in rng.permutation(len(rows))[:m]]
            x = np.vstack([x_real, embedder.encode([r["text"] for r in pick])])
            y = y_real + [str(r["label"]) for r in pick]
            results[f"real + {name}"].append(scores(y_test, fit_predict_lr(x, y, x_test)))
    return results


def main(argv: list[str] | None = None) -> int:
    from scipy import stats

    from synalign.artifacts.rundir import RunDir
    from synalign.evals.fidelity import LabelOracle, distinct_n, read_jsonl
    from synalign.fileio import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,agnews")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    fidelity_rows, down_rows, verdict = [], [], {}
    for task in args.tasks.split(","):
        data, real_dir = _tasks(args.data)[task]
        oracle = LabelOracle(read_jsonl(real_dir / "train.jsonl"))
        accepted = {}
        for backend in BACKENDS:
            out = _run(task, backend, data, args.rounds)
            run_dir = RunDir(out)
            accepted[backend] = read_jsonl(run_dir.synthetic_jsonl)
            summary = run_dir.read_summary()
            texts, labels = [r["text"] for r in accepted[backend]], [r["label"] for r in accepted[backend]]
            fidelity_rows.append([
                task, backend, summary.generated, len(texts), round(oracle.fidelity(texts, labels), 3),
                round(distinct_n(texts, 2), 3), round(summary.final_mmd2, 4), round(summary.wall_seconds),
            ])
        results = _downstream(real_dir, accepted, args.seeds)
        acc = {name: np.array([r["accuracy"] for r in rows]) for name, rows in results.items()}
        f1 = {name: np.array([r["macro_f1"] for r in rows]) for name, rows in results.items()}
        diff = acc["real + local"] - acc["real + eda"]
        p = (
            float(stats.ttest_rel(acc["real + local"], acc["real + eda"]).pvalue)
            if len(diff) > 1 and diff.std() > 0
            else float("nan")
        )
        for name in results:
            down_rows.append([task, name, f"{acc[name].mean():.4f} ± {acc[name].std():.4f}",
                              f"{f1[name].mean():.4f} ± {f1[name].std():.4f}"])
        down_rows.append([task, "Δ local − eda (paired p)", f"{diff.mean():+.4f} (p={p:.3g})", ""])
        local_fid = next(r[4] for r in fidelity_rows if r[0] == task and r[1] == "local")
        verdict[task] = {"fidelity_ok": local_fid >= 0.85, "beats_eda": bool(diff.mean() > 0)}
    local_default = all(v["fidelity_ok"] and v["beats_eda"] for v in verdict.values())
    text = "\n\n".join([
        markdown(["task", "backend", "generated", "accepted", "label fidelity (accepted)", "distinct-2",
                  "MMD² accepted", "wall s"], fidelity_rows),
        markdown(["task", "training set", f"accuracy (mean ± std, {args.seeds} seeds)", "macro-F1"], down_rows),
        f"verdict: {json.dumps(verdict)}; local LM as default: {'yes' if local_default else 'no'}",
    ])
    atomic_write_text(OUT / "summary.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
