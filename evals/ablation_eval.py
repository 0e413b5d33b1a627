"""Generation ablation, part 2: select from each pool and measure (issue "Does SynAlign work?", §1).

Reads the pools of ``evals/scripts/ablation_generate.py``
(``evals/results/ablation/<task>/seed<s>-<condition>.jsonl``)
and, per seed and condition, selects the same number ``m`` of texts per label (the smallest pool of that seed,
at most half of any other pool) five ways — ``none`` (the first m generated), ``random``, ``filter`` (the project's
default: label-consistency filter, then random), ``herding`` (kernel herding toward the real few-shot set, KMM-based
stage 3) and ``dsir`` (DSIR importance resampling toward the few-shot texts, :mod:`evals.baselines`) — plus one
weighted row, ``imp_loss``: the few-shot rows (weight 1) and the WHOLE pool, each pool row weighted by its IMP-Loss
weight (:func:`evals.baselines.imp_loss_weights`). IMP-Loss is defined as a weighting of all synthetic data, not a
selection, so that row trains on every pool row (``n_synthetic`` in rows.json; ``m`` there is still the seed's m,
for reference) and its fidelity, distinct-2, near-copies and MMD² are those of the whole, unweighted pool.
Each row is measured:

- downstream: the seed's k real examples per class + the selection, logistic regression on frozen MiniLM,
  accuracy and macro-F1 on the real test split;
- label fidelity under a classifier fitted on the real train split (:class:`evals.fidelity.LabelOracle`);
- distinct-2 and Self-BLEU-4 (:func:`evals.fidelity.self_bleu`), near-copies of the cluster's demonstrations,
  MMD² (fixed-set) to the real test split;
- with ``--finetune random,filter``: also the fine-tuned MiniLM classifier (:func:`evals.classifiers.
  fit_predict_finetune`) for those selections and the real-only row.

Prints one table (mean ± std over seeds; paired Δ vs ``zerogen`` and vs ``random`` demonstrations at the same
selection, and vs random selection from the same pool) and writes ``evals/results/ablation/<task>/summary.md``
and ``rows.json``. Everything it reads is committed (pools, few-shot sets) or bundled; with the embedding cache
warm a task takes a few minutes (``synalign ablate`` runs it).

    python -m synalign.evals.ablation_eval --tasks sst2,agnews [--finetune random,filter]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synalign.evals.tables import markdown

if TYPE_CHECKING:
    from synalign.evals.fidelity import LabelOracle

#: The checkout (``evals/..``): the defaults of ``--out`` and ``--data`` are in and beside it.
REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "evals" / "results" / "ablation"
CONDITIONS = ("zerogen", "random", "gp", "gp+attributes")
SELECTIONS = ("none", "random", "filter", "herding", "dsir")
WEIGHTINGS = ("imp_loss",)


def _select(how: str, pool: list[dict], emb: np.ndarray, few: list[dict], few_emb: np.ndarray,
            few_labels: list[str], m: int, seed: int) -> list[int]:
    from synalign.alignment import align
    from synalign.evals.baselines import dsir_select

    labels = [r["label"] for r in pool]
    if how == "dsir":
        quotas = {label: m for label in sorted(set(labels))}
        return dsir_select([r["text"] for r in pool], labels, [r["text"] for r in few], quotas, seed=seed).tolist()
    if how == "none":
        return [i for label in sorted(set(labels)) for i in [j for j, x in enumerate(labels) if x == label][:m]]
    if how == "random":
        rng = np.random.default_rng(seed)
        return [i for label in sorted(set(labels))
                for i in rng.permutation([j for j, x in enumerate(labels) if x == label])[:m]]
    fraction = min(1.0, m / min(labels.count(label) for label in set(labels)))
    result = align(emb, labels, few_emb, few_labels, strategy=how, accept_fraction=fraction, seed=seed,
                   device="cpu", compute_mmd=False)
    chosen = [i for i, keep in enumerate(result.accepted) if keep]
    per: dict[str, list[int]] = {}
    for i in chosen:
        per.setdefault(labels[i], []).append(i)
    return [i for label in sorted(per) for i in per[label][:m]]


def _measure(picked: list[dict], emb: np.ndarray, weights: np.ndarray | None, few_emb: np.ndarray,
             few_labels: list[str], x_test: np.ndarray, y_test: list[str], oracle: LabelOracle,
             bandwidth: float) -> dict:
    """Scores of one row: LR on the few-shot rows (weight 1) + ``picked`` (embeddings ``emb``, optional
    ``weights``), and the fidelity, distinct-2, near-copies and MMD² of ``picked`` itself (unweighted)."""
    from synalign.divergence import mmd2_fixed_set
    from synalign.evals.classifiers import fit_predict_lr, scores
    from synalign.evals.fidelity import copy_share, distinct_n, self_bleu

    texts, labels = [r["text"] for r in picked], [r["label"] for r in picked]
    sample_weight = None if weights is None else np.concatenate([np.ones(len(few_labels)), weights])
    pred = fit_predict_lr(np.vstack([few_emb, emb]), few_labels + labels, x_test, sample_weight=sample_weight)
    return {
        **scores(y_test, pred), "n_synthetic": len(picked),
        "fidelity": oracle.fidelity(texts, labels), "distinct2": distinct_n(texts, 2), "self_bleu4": self_bleu(texts),
        "copies": copy_share(texts, [r["demonstrations"] for r in picked]),
        "mmd2_test": float(mmd2_fixed_set(emb, x_test, bandwidth, device="cpu")),
    }


def finetuned_scores(few: list[dict], picked: list[dict], test: list[dict], seed: int) -> dict:
    """Accuracy and macro-F1 of the fine-tuned MiniLM classifier (:func:`evals.classifiers.fit_predict_finetune`)
    trained on the few-shot rows + ``picked``, on the test split."""
    from synalign.evals.classifiers import fit_predict_finetune, scores

    train = few + picked
    pred = fit_predict_finetune([r["text"] for r in train], [str(r["label"]) for r in train],
                                [r["text"] for r in test], seed=seed)
    return {f"ft_{k}": v for k, v in scores([str(r["label"]) for r in test], pred).items()}


def main(argv: list[str] | None = None) -> int:
    from scipy import stats

    from synalign.divergence import median_bandwidth
    from synalign.embeddings import Embedder
    from synalign.evals.baselines import imp_loss_weights
    from synalign.evals.classifiers import fit_predict_lr, scores
    from synalign.evals.fidelity import LabelOracle, read_jsonl
    from synalign.fileio import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the pools (one subfolder per task)")
    parser.add_argument("--finetune", default="", help="also fine-tune MiniLM for these selections (e.g. "
                        "'random,filter'; the real-only row too): slow, ~20 s per fit on 2 cores")
    args = parser.parse_args(argv)
    finetune = [h for h in args.finetune.split(",") if h]
    embedder = Embedder()
    for task in args.tasks.split(","):
        folder = args.out / task
        seeds = sorted(int(p.name[4:].split("-")[0]) for p in folder.glob("seed*-fewshot.jsonl"))
        seeds = [s for s in seeds if all((folder / f"seed{s}-{c}.jsonl").is_file() for c in CONDITIONS)]
        if not seeds:
            print(f"{task}: no seed has all four pools yet", file=sys.stderr)
            continue
        oracle = LabelOracle(read_jsonl(args.data / task / "train.jsonl"))
        test = read_jsonl(args.data / task / "test.jsonl")
        x_test, y_test = embedder.encode([r["text"] for r in test]), [str(r["label"]) for r in test]
        bandwidth = float(median_bandwidth(x_test, seed=0))
        rows: list[dict[str, Any]] = []
        for seed in seeds:
            few = read_jsonl(folder / f"seed{seed}-fewshot.jsonl")
            few_emb, few_labels = embedder.encode([r["text"] for r in few]), [str(r["label"]) for r in few]
            pools = {c: read_jsonl(folder / f"seed{seed}-{c}.jsonl") for c in CONDITIONS}
            sizes = {c: min(sum(r["label"] == label for r in p) for label in set(few_labels)) for c, p in pools.items()}
            # equal final size: no more than the smallest pool holds (zerogen loses many duplicates) and at most
            # half of every other pool, so that each selection really selects
            m = min(min(sizes.values()), min(v for c, v in sizes.items() if c != "zerogen") // 2)
            real_only = scores(y_test, fit_predict_lr(few_emb, few_labels, x_test))
            if finetune:
                real_only |= finetuned_scores(few, [], test, seed)
            rows.append({"seed": seed, "condition": "real only", "selection": "-", "m": 0, **real_only})
            for condition, pool in pools.items():
                emb = embedder.encode([r["text"] for r in pool])
                common = (few_emb, few_labels, x_test, y_test, oracle, bandwidth)
                for how in SELECTIONS:
                    idx = _select(how, pool, emb, few, few_emb, few_labels, m, seed)
                    result = _measure([pool[i] for i in idx], emb[idx], None, *common)
                    if how in finetune:
                        result |= finetuned_scores(few, [pool[i] for i in idx], test, seed)
                    rows.append({"seed": seed, "condition": condition, "selection": how, "m": m, **result})
                weights = imp_loss_weights(emb, [r["label"] for r in pool], few_emb, few_labels, seed=seed)
                result = _measure(pool, emb, weights, *common)
                rows.append({"seed": seed, "condition": condition, "selection": "imp_loss", "m": m, **result})
                print(f"{task} seed {seed} {condition}: done", file=sys.stderr, flush=True)
        table = []
        for condition in ("real only", *CONDITIONS):
            for how in (["-"] if condition == "real only" else (*SELECTIONS, *WEIGHTINGS)):
                cell = [r for r in rows if r["condition"] == condition and r["selection"] == how]
                acc = np.array([r["accuracy"] for r in cell])
                line = [condition, how, f"{acc.mean():.4f} ± {acc.std():.4f}",
                        f"{np.mean([r['macro_f1'] for r in cell]):.4f}"]
                for base in ("zerogen", "random"):
                    ref = [r for r in rows if r["condition"] == base and r["selection"] == how]
                    if condition in ("real only", base) or len(ref) != len(cell):
                        line.append("")
                        continue
                    diff = acc - np.array([r["accuracy"] for r in ref])
                    p = (
                        stats.ttest_rel(acc, [r["accuracy"] for r in ref]).pvalue
                        if len(diff) > 1 and diff.std() > 0
                        else float("nan")
                    )
                    line.append(f"{diff.mean():+.4f} (p={p:.2g})")
                ref = [r for r in rows if r["condition"] == condition and r["selection"] == "random"]
                if condition == "real only" or how == "random" or len(ref) != len(cell):
                    line.append("")
                else:
                    diff = acc - np.array([r["accuracy"] for r in ref])
                    p = stats.ttest_rel(acc, [r["accuracy"] for r in ref]).pvalue if diff.std() > 0 else float("nan")
                    line.append(f"{diff.mean():+.4f} (p={p:.2g})")
                for key in ("fidelity", "distinct2", "self_bleu4", "copies", "mmd2_test"):
                    line.append(f"{np.mean([r[key] for r in cell]):.4g}" if condition != "real only" else "")
                ft = [r["ft_accuracy"] for r in cell if "ft_accuracy" in r]
                line.append(f"{np.mean(ft):.4f} ± {np.std(ft):.4f}" if ft and len(ft) == len(cell) else "")
                table.append(line)
        text = markdown(["condition", "selection", f"accuracy ({len(seeds)} seeds)", "macro-F1", "Δ vs zerogen",
                         "Δ vs random demos", "Δ vs random selection", "label fidelity", "distinct-2",
                         "self-BLEU-4", "near-copies", "MMD² to test", "fine-tuned MiniLM acc"], table)
        atomic_write_text(folder / "summary.md", text + "\n")
        atomic_write_text(folder / "rows.json", json.dumps(rows, indent=1) + "\n")
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
