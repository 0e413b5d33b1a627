"""Issue 20, items 2 and 3: the local LM's own label check and the held-out keep choice on committed pools.

Each generated text is classified in context by the same embedded base model that wrote it (Gemma 3 270M via
llama.cpp), with the checker a run uses (``--label-check lm``: :class:`synalign.agents.labelcheck.
InContextLabelChecker`, :mod:`synalign.lmcheck`): a few-shot prompt of the seed's real examples, each followed by
its label name, then the text and ``Label:``; the margin = log p(intended label's first token) − the best other
label's (in-context classification, Min et al., ACL 2022; SuperGen, Meng et al., NeurIPS 2022, selects generated
texts by the LM's own probabilities).

Two steps:

- score (resumable): one JSONL row per pool text (``{"i": index, "margin": nats}``) appended to
  ``evals/results/lmcheck/<task>/seed<S>-<condition>.jsonl``; a rerun skips the rows on disk.
- ``--table``: per task and seed, equal-size selections of m texts per label from the pool (m = half the
  smallest label's pool, as RESULTS §7): random; ``filter`` (today's default: the real-set classifier filter with
  each label's quota m, then random among the kept); ``lm`` (the m largest margins); ``filter+lm`` (the
  filter, then the largest margins among the kept: ``--label-check lm``); ``filter+lm ¾`` (the same at accept
  fraction 3/4: three quarters of the smallest label's pool per label); ``filter+lm 1×`` / ``2×`` (over-generation:
  a quarter of the smallest label's pool per label, from the first half of each label's clusters, as a run that
  asked for half the texts, or from the whole pool, as one that generated twice as many); and each of ``filter`` /
  ``filter+lm`` followed by the run's ``--keep heldout`` choice (:func:`synalign.keepchoice.choose_keep`: 24 real
  per label to train on, 8 as the validation slice). Downstream: logistic regression on MiniLM (the seed's real
  few-shot set + the selection, the real test split); label fidelity under a classifier fitted on the full real
  train split; distinct-2.

Usage (from the repository root, synalign installed with the llm extra)::

    python evals/scripts/lm_label_check.py --tasks sst2,agnews,amazon_fdu13 --seeds 0,1,2   # score
    python evals/scripts/lm_label_check.py --tasks sst2,agnews,amazon_fdu13 --table        # RESULTS §16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _bench import REPO, markdown

POOLS = REPO / "evals" / "results" / "ablation"
OUT = REPO / "evals" / "results" / "lmcheck"


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def score(tasks: list[str], seeds: list[int], condition: str, chunk: int = 25) -> None:
    """Append the run's LM label-check margin of every pool text to ``OUT/<task>/seed<S>-<condition>.jsonl``
    (``{"i": index, "margin": nats}``), ``chunk`` texts at a time, with the checker a run uses
    (:class:`synalign.agents.labelcheck.InContextLabelChecker`; the seed's few-shot set as its real examples)."""
    from synalign.agents.labelcheck import InContextLabelChecker
    from synalign.agents.llamacpp import LocalServer, resolve_model

    server = LocalServer.start(resolve_model(None), ctx_size=8192)
    try:
        for task in tasks:
            for seed in seeds:
                pool = _read(POOLS / task / f"seed{seed}-{condition}.jsonl")
                few = _read(POOLS / task / f"seed{seed}-fewshot.jsonl")
                reference: dict[str, list[str]] = {}
                for r in few:
                    reference.setdefault(str(r["label"]), []).append(r["text"])
                checker = InContextLabelChecker(server.base_url, "gemma", reference)
                target = OUT / task / f"seed{seed}-{condition}.jsonl"
                target.parent.mkdir(parents=True, exist_ok=True)
                done = {row["i"] for row in _read(target)} if target.is_file() else set()
                todo = [i for i in range(len(pool)) if i not in done]
                started = time.monotonic()
                with target.open("a", encoding="utf-8") as sink:
                    for at in range(0, len(todo), chunk):
                        part = todo[at:at + chunk]
                        margins = checker.margins([pool[i]["text"] for i in part], [pool[i]["label"] for i in part])
                        sink.write("".join(json.dumps({"i": i, "margin": m}) + "\n" for i, m in zip(part, margins)))
                        sink.flush()
                        print(f"{task} seed {seed}: {len(done) + at + len(part)}/{len(pool)} scored "
                              f"({(time.monotonic() - started) / (at + len(part)):.2f} s each; prompt: "
                              f"{checker.per_label} real examples per label)", file=sys.stderr, flush=True)
                checker.close()
    finally:
        server.stop()


def _margins(rows: list[dict[str, Any]], pool: list[dict[str, Any]]) -> np.ndarray:
    by_i = {row["i"]: row["margin"] for row in rows}
    return np.asarray([by_i.get(i, np.nan) for i in range(len(pool))], dtype=np.float64)


def _filter_kept(few_emb: np.ndarray, few_labels: list[str], emb: np.ndarray, labels: list[str], quota: int,
                 seed: int, within: np.ndarray | None) -> np.ndarray:
    """(len(pool),) bool: the label filter's kept rows with each label's quota ``quota``, over the rows of
    ``within`` only (None: all); rows outside it are False."""
    from synalign.consistency import consistency_mask, label_consistency_scores
    from synalign.selection import choose_threshold

    rows = np.arange(len(labels)) if within is None else np.flatnonzero(within)
    sub_labels = [labels[i] for i in rows]
    quotas = {label: quota for label in sorted(set(sub_labels))}
    tau, _ = choose_threshold(few_emb, few_labels, emb[rows], sub_labels, quotas, seed=seed)
    mask = consistency_mask(label_consistency_scores(few_emb, few_labels, emb[rows], sub_labels), sub_labels, quotas,
                            tau)
    out = np.zeros(len(labels), dtype=bool)
    out[rows[mask]] = True
    return out


def _finetuned_cached(task: str, condition: str, seed: int, how: str, few: list[dict[str, Any]],
                      chosen: list[dict[str, Any]], test_rows: list[dict[str, Any]]) -> dict[str, float]:
    """``ft_accuracy`` / ``ft_macro_f1`` of MiniLM fine-tuned on ``few + chosen`` (:func:`synalign.evals.
    ablation_eval.finetuned_scores`, as §7), cached in ``OUT/<task>/finetune.json`` by condition, seed, selection and
    the digest of the chosen texts (a fine-tune takes minutes on 2 cores)."""
    import hashlib

    from synalign.evals.ablation_eval import finetuned_scores
    from synalign.fileio import atomic_write_text

    path = OUT / task / "finetune.json"
    cache = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    digest = hashlib.sha256("\n".join(f"{r['label']}\t{r['text']}" for r in chosen).encode()).hexdigest()[:16]
    key = f"{condition}|{seed}|{how}|{digest}"
    if key not in cache:
        started = time.time()
        cache[key] = finetuned_scores(few, chosen, test_rows, seed)
        print(f"{task} seed {seed} {how}: fine-tuned in {time.time() - started:.0f} s", file=sys.stderr, flush=True)
        atomic_write_text(path, json.dumps(cache, indent=1, sort_keys=True) + "\n")
    return dict(cache[key])


def _task_rows(task: str, condition: str, embedder: Any, oracle: Any, x_test: np.ndarray, y_test: list[str],
               test_rows: list[dict[str, Any]] | None = None, finetune: tuple[str, ...] = ()
               ) -> tuple[list[dict[str, Any]], list[float], dict[str, list[str]]]:
    """Per scored seed of ``condition``: one row per selection (accuracy, macro-F1, fidelity, ...; with
    ``finetune``, the fine-tuned MiniLM's ``ft_accuracy`` for those selections and real only), the share of the
    pool the filter keeps, and the held-out keep choices."""
    from synalign.consistency import label_consistency_scores
    from synalign.evals.classifiers import fit_predict_lr, scores
    from synalign.evals.fidelity import distinct_n
    from synalign.keepchoice import choose_keep
    from synalign.verdict import MIN_LOG_LIKELIHOOD_EFFECT

    rows: list[dict[str, Any]] = []
    filter_keeps: list[float] = []
    choices: dict[str, list[str]] = {}
    for path in sorted((OUT / task).glob(f"seed*-{condition}.jsonl")):
        seed = int(path.name[4:].split("-")[0])
        pool = _read(POOLS / task / path.name)
        margin = _margins(_read(path), pool)
        if np.isnan(margin).any():
            print(f"{task} seed {seed}: {int(np.isnan(margin).sum())} texts not scored yet; skipped",
                  file=sys.stderr)
            continue
        few = _read(POOLS / task / f"seed{seed}-fewshot.jsonl")
        few_emb, few_labels = embedder.encode([r["text"] for r in few]), [r["label"] for r in few]
        emb, labels = embedder.encode([r["text"] for r in pool]), [r["label"] for r in pool]
        label_set = sorted(set(labels))
        m = min(labels.count(label) for label in label_set) // 2
        kept = _filter_kept(few_emb, few_labels, emb, labels, m, seed, None)  # as FilterThen at accept 0.5
        filter_keeps.append(float(kept.mean()))
        # accept fraction 3/4 instead of 1/2: fewer LM calls per accepted text (item 5's target), same pool
        m34 = 3 * min(labels.count(label) for label in label_set) // 4
        kept34 = _filter_kept(few_emb, few_labels, emb, labels, m34, seed, None)
        # over-generation (item 4): the first half of each label's clusters is what a run asks for; "1×"
        # accepts half of it, "2×" the same number from the whole pool (twice the texts generated)
        half = np.zeros(len(pool), dtype=bool)
        for label in label_set:
            mine = sorted({int(r["cluster"]) for r in pool if r["label"] == label})
            first = set(mine[: len(mine) // 2])
            half |= np.array([r["label"] == label and int(r["cluster"]) in first for r in pool])
        m_half = min(int(half[np.asarray(labels) == label].sum()) for label in label_set) // 2
        kept_half = _filter_kept(few_emb, few_labels, emb, labels, m_half, seed, half)
        kept_over = _filter_kept(few_emb, few_labels, emb, labels, m_half, seed, None)
        rng = np.random.default_rng(seed)
        rng_over = np.random.default_rng(seed + 202)
        picks: dict[str, list[int]] = {}
        for label in label_set:
            idx = np.array([i for i, x in enumerate(labels) if x == label])
            by_margin = idx[np.argsort(-margin[idx], kind="stable")]
            filtered = [i for i in rng.permutation(idx) if kept[i]]
            picks.setdefault("random", []).extend(rng.permutation(idx)[:m])
            picks.setdefault("filter", []).extend(filtered[:m])
            picks.setdefault("lm", []).extend(by_margin[:m])
            picks.setdefault("filter+lm", []).extend([i for i in by_margin if kept[i]][:m])
            picks.setdefault("filter+lm ¾", []).extend([i for i in by_margin if kept34[i]][:m34])
            order = rng_over.permutation(idx)  # its own stream: the other selections draw as before
            picks.setdefault("filter 1×", []).extend([i for i in order if kept_half[i]][:m_half])
            picks.setdefault("filter 2×", []).extend([i for i in order if kept_over[i]][:m_half])
            picks.setdefault("filter+lm 1×", []).extend([i for i in by_margin if kept_half[i]][:m_half])
            picks.setdefault("filter+lm 2×", []).extend([i for i in by_margin if kept_over[i]][:m_half])
        # the run's --keep heldout on each selection: 24 real per label train, 8 are the validation slice
        split = np.random.default_rng(seed + 101)
        val = np.zeros(len(few), dtype=bool)
        for label in label_set:
            idx = np.flatnonzero(np.asarray(few_labels) == label)
            val[split.permutation(idx)[: len(idx) // 4]] = True
        p_other = label_consistency_scores(few_emb[~val], np.asarray(few_labels)[~val], emb, labels)
        for base, rank in (("filter", 1.0 - p_other), ("filter+lm", margin)):
            idx = np.asarray(picks[base])
            choice, kept_at = choose_keep(
                few_emb[~val], np.asarray(few_labels)[~val].tolist(), emb[idx], [labels[i] for i in idx],
                rank[idx], few_emb[val], np.asarray(few_labels)[val].tolist(), min_effect=MIN_LOG_LIKELIHOOD_EFFECT,
                seed=seed)
            picks[f"{base} → keep"] = idx[kept_at].tolist()
            choices.setdefault(base, []).append(choice.chosen)
        real_only = scores(y_test, fit_predict_lr(few_emb, few_labels, x_test))
        tuned = {"real only": [], **{how: [pool[i] for i in picks[how]] for how in finetune if how in picks}
                 } if finetune else {}
        ft = {how: _finetuned_cached(task, condition, seed, how, few, chosen, test_rows) for how, chosen in
              tuned.items()}
        rows.append({"seed": seed, "selection": "real only", **real_only, **ft.get("real only", {})})
        for how, idx in picks.items():
            if not len(idx):  # kept none: real only
                rows.append({"seed": seed, "selection": how, "n": 0, **real_only})
                continue
            chosen = [pool[i] for i in idx]
            pred = fit_predict_lr(np.vstack([few_emb, emb[idx]]), few_labels + [r["label"] for r in chosen], x_test)
            rows.append({"seed": seed, "selection": how, "n": len(idx), **scores(y_test, pred),
                         "fidelity": oracle.fidelity([r["text"] for r in chosen], [r["label"] for r in chosen]),
                         "distinct2": distinct_n([r["text"] for r in chosen], 2),
                         "lm_agree": float(np.mean(margin[idx] > 0)), **ft.get(how, {})})
        rows.append({"seed": seed, "selection": "pool", "fidelity": oracle.fidelity(
            [r["text"] for r in pool], labels), "lm_agree": float(np.mean(margin > 0)), "n": len(pool)})
    return rows, filter_keeps, choices


def table(tasks: list[str], condition: str, data: Path, versus: str | None = None,
          finetune: tuple[str, ...] = ()) -> None:
    """Print the selections' downstream accuracy and label fidelity, per task, over the scored seeds; with
    ``versus``, each selection's paired difference to the same selection on that condition's pools."""
    from scipy import stats

    from synalign.embeddings import Embedder
    from synalign.evals.fidelity import LabelOracle, read_jsonl

    embedder = Embedder()
    for task in tasks:
        oracle = LabelOracle(read_jsonl(data / task / "train.jsonl"))
        test = read_jsonl(data / task / "test.jsonl")
        x_test, y_test = embedder.encode([r["text"] for r in test]), [str(r["label"]) for r in test]
        rows, filter_keeps, choices = _task_rows(task, condition, embedder, oracle, x_test, y_test, test,
                                                 finetune)
        seeds = sorted({r["seed"] for r in rows})
        if not seeds:
            continue
        lines = []
        for how in ("real only", "random", "filter", "lm", "filter+lm", "filter+lm ¾", "filter 1×", "filter 2×",
                    "filter+lm 1×", "filter+lm 2×", "filter → keep", "filter+lm → keep", "pool"):
            cell = [r for r in rows if r["selection"] == how]
            line = [how, str(int(np.mean([r.get("n", 0) for r in cell])))]
            if "accuracy" in cell[0]:
                acc = np.array([r["accuracy"] for r in cell])
                line += [f"{acc.mean():.4f} ± {acc.std():.4f}", f"{np.mean([r['macro_f1'] for r in cell]):.4f}"]
                for base in ("real only", "filter"):
                    ref = np.array([r["accuracy"] for r in rows if r["selection"] == base])
                    if how in (base, "real only") or len(ref) != len(acc):
                        line.append("")
                        continue
                    p = stats.ttest_rel(acc, ref).pvalue if len(acc) > 1 and (acc - ref).std() > 0 else float("nan")
                    line.append(f"{(acc - ref).mean():+.4f} (p={p:.2g})")
            else:
                line += ["", "", "", ""]
            line += [f"{np.mean([r['fidelity'] for r in cell if 'fidelity' in r]):.4f}"
                     if any("fidelity" in r for r in cell) else "",
                     f"{np.mean([r['distinct2'] for r in cell if 'distinct2' in r]):.4f}"
                     if any("distinct2" in r for r in cell) else "",
                     f"{np.mean([r['lm_agree'] for r in cell if 'lm_agree' in r]):.4f}"
                     if any("lm_agree" in r for r in cell) else ""]
            if finetune:
                ft = np.array([r["ft_accuracy"] for r in cell if "ft_accuracy" in r])
                line.append(f"{ft.mean():.4f} ± {ft.std():.4f}" if len(ft) == len(cell) and len(ft) else "")
            lines.append(line)
        print(f"\n**{task}** ({condition} pools, {len(seeds)} seeds: {seeds}; the filter keeps "
              f"{np.mean(filter_keeps):.0%} of the pool)\n")
        print(markdown(["selection", "texts", "accuracy", "macro-F1", "Δ vs real only", "Δ vs filter",
                        "label fidelity", "distinct-2", "LM agrees"] + (["fine-tuned MiniLM acc"] if finetune else []),
                       lines))
        one = {r["seed"]: r for r in rows if r["selection"] == "filter+lm 1×"}
        two = {r["seed"]: r for r in rows if r["selection"] == "filter+lm 2×"}
        common = sorted(set(one) & set(two))
        if common:
            gain = np.array([two[s]["accuracy"] - one[s]["accuracy"] for s in common])
            p = stats.ttest_1samp(gain, 0.0).pvalue if len(gain) > 1 and gain.std() > 0 else float("nan")
            print(f"\nover-generation, filter+lm 2× − 1× (same accepted count): {gain.mean():+.4f} accuracy "
                  f"(p={p:.2g}; per seed {', '.join(f'{g:+.4f}' for g in gain)})")
        print("\nheld-out keep choices per seed: "
              + "; ".join(f"{base}: {', '.join(c)}" for base, c in choices.items()))
        if versus:
            _versus(task, condition, versus, rows, _task_rows(task, versus, embedder, oracle, x_test, y_test)[0])


SWITCHES = (
    ("today's default (filter)", "base", "filter 1×"),
    ("+ LM label check (the default since §16)", "base", "filter+lm 1×"),
    ("+ over-generation 2× alone", "base", "filter 2×"),
    ("+ contrast 3 alone", "contrast", "filter 1×"),
    ("+ LM check + over-generation", "base", "filter+lm 2×"),
    ("+ LM check + contrast", "contrast", "filter+lm 1×"),
    ("+ LM check + contrast + over-generation", "contrast", "filter+lm 2×"),
)
"""The switch table: (row, pools, selection); every row accepts the same number of texts (a quarter of the
smallest label's pool per label), "1×" from the first half of each label's clusters, "2×" from all of them."""


def switches(tasks: list[str], data: Path, base: str, contrast: str) -> None:
    """Print, per task, each switch alone and together at the same accepted count (:data:`SWITCHES`), with the
    paired difference to today's default."""
    from scipy import stats

    from synalign.embeddings import Embedder
    from synalign.evals.fidelity import LabelOracle, read_jsonl

    embedder = Embedder()
    for task in tasks:
        oracle = LabelOracle(read_jsonl(data / task / "train.jsonl"))
        test = read_jsonl(data / task / "test.jsonl")
        x_test, y_test = embedder.encode([r["text"] for r in test]), [str(r["label"]) for r in test]
        pools = {"base": _task_rows(task, base, embedder, oracle, x_test, y_test)[0],
                 "contrast": _task_rows(task, contrast, embedder, oracle, x_test, y_test)[0]}
        cells = {name: {r["seed"]: r for r in pools[which] if r["selection"] == how} for name, which, how in SWITCHES}
        seeds = sorted(set.intersection(*(set(c) for c in cells.values())))
        if not seeds:
            continue
        today = np.array([cells[SWITCHES[0][0]][s]["accuracy"] for s in seeds])
        real = np.array([r["accuracy"] for r in pools["base"] if r["selection"] == "real only" and r["seed"] in seeds])
        lines = [["real only", "0", f"{real.mean():.4f} ± {real.std():.4f}", "", "", "", ""]]
        for name, _, _ in SWITCHES:
            acc = np.array([cells[name][s]["accuracy"] for s in seeds])
            d = acc - today
            p = stats.ttest_1samp(d, 0.0).pvalue if len(d) > 1 and d.std() > 0 else float("nan")
            lines.append([name, str(cells[name][seeds[0]]["n"]), f"{acc.mean():.4f} ± {acc.std():.4f}",
                          f"{np.mean([cells[name][s]['macro_f1'] for s in seeds]):.4f}",
                          "" if name == SWITCHES[0][0] else f"{d.mean():+.4f} (p={p:.2g})",
                          f"{np.mean([cells[name][s]['fidelity'] for s in seeds]):.4f}",
                          f"{np.mean([cells[name][s]['distinct2'] for s in seeds]):.4f}"])
        print(f"\n**{task}** ({len(seeds)} seeds: {seeds}; pools {base} and {contrast})\n")
        print(markdown(["switches", "texts", "accuracy", "macro-F1", "Δ vs today's default", "label fidelity",
                        "distinct-2"], lines))


def _versus(task: str, condition: str, versus: str, rows: list[dict[str, Any]], other: list[dict[str, Any]]) -> None:
    """Print, per selection, ``condition`` − ``versus`` in accuracy, macro-F1 and fidelity over the common seeds
    (the pools share clusters, demonstrations and sampling seeds; paired t-test)."""
    from scipy import stats

    lines = []
    for how in ("random", "filter", "filter+lm", "filter+lm ¾", "filter 1×", "filter 2×", "filter+lm 1×",
                "filter+lm 2×", "pool"):
        mine = {r["seed"]: r for r in rows if r["selection"] == how}
        theirs = {r["seed"]: r for r in other if r["selection"] == how}
        common = sorted(set(mine) & set(theirs))
        line = [how, str(len(common))]
        for key in ("accuracy", "macro_f1", "fidelity", "lm_agree"):
            if not common or key not in mine[common[0]]:
                line.append("")
                continue
            d = np.array([mine[s][key] - theirs[s][key] for s in common])
            p = stats.ttest_1samp(d, 0.0).pvalue if len(d) > 1 and d.std() > 0 else float("nan")
            line.append(f"{d.mean():+.4f} (p={p:.2g})")
        lines.append(line)
    print(f"\n**{task}**: {condition} − {versus}, same selection, paired by seed\n")
    print(markdown(["selection", "seeds", "Δ accuracy", "Δ macro-F1", "Δ label fidelity", "Δ LM agrees"], lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,agnews")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--condition", default="gp+attributes", help="pool condition (today's default prompt)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--table", action="store_true", help="print the table from the scores on disk")
    parser.add_argument("--versus", default=None, help="with --table: a second condition to compare with, paired")
    parser.add_argument("--switches", action="store_true", help="print each switch alone and together (the "
                        "gp+attributes and gp+attributes+contrast pools, the same accepted count)")
    parser.add_argument("--finetune", default="", help="with --table: also fine-tune MiniLM on real only and these "
                        "selections (e.g. filter,filter+lm; cached in evals/results/lmcheck/<task>/finetune.json)")
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    if args.switches:
        switches(tasks, args.data, "gp+attributes", "gp+attributes+contrast")
    elif args.table:
        table(tasks, args.condition, args.data, args.versus, tuple(h for h in args.finetune.split(",") if h))
    else:
        score(tasks, [int(s) for s in args.seeds.split(",")], args.condition)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
