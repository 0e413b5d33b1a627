"""Issue 20, item 2 (pilot): the local LM's own label check on committed generation pools.

Each generated text is classified in context by the same embedded base model that wrote it (Gemma 3 270M via
llama.cpp): a few-shot prompt of real examples, each followed by its label name (``Text: x\\nLabel: NAME``),
then the generated text and ``Label:``; the server's ``logprobs`` of the next token give, for each label, the
log-probability of its name's first token (in-context classification, as in Min et al., ACL 2022, "Noisy
Channel Language Model Prompting", direct model; SuperGen, Meng et al., NeurIPS 2022, selects by the LM's
own probabilities). The margin = log p(intended label) - max over the other labels.

Two steps, both resumable:

- ``score``: one JSONL row per pool text (``{"i": index, "logprobs": {label: lp}}``) appended to
  ``evals/results/lmcheck/<task>/seed<S>-<condition>.jsonl`` as it goes; a rerun skips the rows on disk. The
  demonstrations are the seed's real few-shot set (``seed<S>-fewshot.jsonl``, k = 32 per label), ``--demos`` per
  label, the same for every text (so llama.cpp's prompt cache serves the shared prefix).
- ``--table``: per task and seed, equal-size selections of m texts per label from the pool (m = half the
  smallest label's pool, as in RESULTS §7): random, ``filter`` (today's default: the real-set classifier filter
  with each label's quota m, then random among the kept), ``lm`` (the m texts with the largest LM margin),
  ``filter+lm`` (the filter, then the largest margins among the kept); downstream logistic regression on
  MiniLM (real few-shot + selection, the real test split) and label fidelity under a classifier fitted on the
  full real train split.

Usage (from the repository root, synalign installed with the llm extra)::

    python evals/scripts/lm_label_check.py --tasks sst2,agnews --seeds 0,1,2      # score (~3-6 min per pool)
    python evals/scripts/lm_label_check.py --tasks sst2,agnews --table           # the table (RESULTS §16)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from _bench import REPO, markdown

POOLS = REPO / "evals" / "results" / "ablation"
OUT = REPO / "evals" / "results" / "lmcheck"
TOP_K = 50
"""Next-token candidates read per text; a label whose first token is not among them gets the smallest of the
``TOP_K`` log-probabilities (an upper bound on its own)."""


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.loads(reply.read())


def _clip(text: str, words: int = 60) -> str:
    return " ".join(text.split()[:words])


def _prefix(few: list[dict[str, Any]], labels: list[str], per_label: int) -> str:
    """The few-shot classification prompt: ``per_label`` real examples of each label, interleaved."""
    by_label = {label: [r for r in few if r["label"] == label][:per_label] for label in labels}
    lines = [f"Text: {_clip(by_label[label][j]['text'])}\nLabel: {label}\n"
             for j in range(per_label) for label in labels if j < len(by_label[label])]
    return "\n".join(lines) + "\n"


def _first_tokens(root: str, labels: list[str]) -> dict[str, int]:
    ids = {label: _post(root + "/tokenize", {"content": " " + label})["tokens"][0] for label in labels}
    if len(set(ids.values())) < len(ids):
        raise SystemExit(f"labels share a first token, the one-token check cannot tell them apart: {ids}")
    return ids


def _score(base_url: str, prompt: str, first: dict[str, int]) -> dict[str, float]:
    reply = _post(base_url + "/completions", {"prompt": prompt, "max_tokens": 1, "logprobs": TOP_K,
                                              "temperature": 0, "cache_prompt": True})
    top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    by_id = {int(t["id"]): float(t["logprob"]) for t in top}
    floor = min(by_id.values())
    return {label: by_id.get(token, floor) for label, token in first.items()}


def score(tasks: list[str], seeds: list[int], condition: str, demos: int) -> None:
    """Append the LM's label log-probabilities of every pool text to ``OUT/<task>/seed<S>-<condition>.jsonl``."""
    from synalign.agents.llamacpp import LocalServer, resolve_model

    server = LocalServer.start(resolve_model(None), ctx_size=4096)
    root = server.base_url.removesuffix("/v1")
    try:
        for task in tasks:
            for seed in seeds:
                pool = _read(POOLS / task / f"seed{seed}-{condition}.jsonl")
                few = _read(POOLS / task / f"seed{seed}-fewshot.jsonl")
                labels = sorted({r["label"] for r in few})
                first = _first_tokens(root, labels)
                prefix = _prefix(few, labels, demos)
                target = OUT / task / f"seed{seed}-{condition}.jsonl"
                target.parent.mkdir(parents=True, exist_ok=True)
                done = {row["i"] for row in _read(target)} if target.is_file() else set()
                started, n = time.monotonic(), 0
                with target.open("a", encoding="utf-8") as sink:
                    for i, row in enumerate(pool):
                        if i in done:
                            continue
                        lps = _score(server.base_url, f"{prefix}Text: {_clip(row['text'])}\nLabel:", first)
                        sink.write(json.dumps({"i": i, "logprobs": lps}) + "\n")
                        sink.flush()
                        n += 1
                        if n % 50 == 0:
                            print(f"{task} seed {seed}: {len(done) + n}/{len(pool)} scored "
                                  f"({(time.monotonic() - started) / n:.2f} s each)", file=sys.stderr, flush=True)
                print(f"{task} seed {seed}: done ({n} new)", file=sys.stderr, flush=True)
    finally:
        server.stop()


def _margins(rows: list[dict[str, Any]], pool: list[dict[str, Any]]) -> np.ndarray:
    by_i = {row["i"]: row["logprobs"] for row in rows}
    out = np.full(len(pool), np.nan)
    for i, r in enumerate(pool):
        if i in by_i:
            lps = by_i[i]
            out[i] = lps[r["label"]] - max(v for k, v in lps.items() if k != r["label"])
    return out


def table(tasks: list[str], condition: str, data: Path) -> None:
    """Print the selections' downstream accuracy and label fidelity, per task, over the scored seeds."""
    from scipy import stats

    from synalign.consistency import consistency_mask, label_consistency_scores
    from synalign.embeddings import Embedder
    from synalign.evals.classifiers import fit_predict_lr, scores
    from synalign.evals.fidelity import LabelOracle, read_jsonl
    from synalign.selection import choose_threshold

    embedder = Embedder()
    for task in tasks:
        oracle = LabelOracle(read_jsonl(data / task / "train.jsonl"))
        test = read_jsonl(data / task / "test.jsonl")
        x_test, y_test = embedder.encode([r["text"] for r in test]), [str(r["label"]) for r in test]
        rows: list[dict[str, Any]] = []
        filter_keeps: list[float] = []
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
            quotas = {label: m for label in label_set}  # as FilterThen at accept fraction m / pool (0.5)
            tau, _ = choose_threshold(few_emb, few_labels, emb, labels, quotas, seed=seed)
            kept = consistency_mask(label_consistency_scores(few_emb, few_labels, emb, labels), labels, quotas, tau)
            filter_keeps.append(float(kept.mean()))
            rng = np.random.default_rng(seed)
            picks: dict[str, list[int]] = {}
            for label in label_set:
                idx = np.array([i for i, x in enumerate(labels) if x == label])
                by_margin = idx[np.argsort(-margin[idx], kind="stable")]
                filtered = [i for i in rng.permutation(idx) if kept[i]]
                picks.setdefault("random", []).extend(rng.permutation(idx)[:m])
                picks.setdefault("filter", []).extend(filtered[:m])
                picks.setdefault("lm", []).extend(by_margin[:m])
                picks.setdefault("filter+lm", []).extend([i for i in by_margin if kept[i]][:m])
            real_only = scores(y_test, fit_predict_lr(few_emb, few_labels, x_test))
            rows.append({"seed": seed, "selection": "real only", **real_only})
            for how, idx in picks.items():
                chosen = [pool[i] for i in idx]
                pred = fit_predict_lr(np.vstack([few_emb, emb[idx]]), few_labels + [r["label"] for r in chosen], x_test)
                rows.append({"seed": seed, "selection": how, "n": len(idx), **scores(y_test, pred),
                             "fidelity": oracle.fidelity([r["text"] for r in chosen], [r["label"] for r in chosen]),
                             "lm_agree": float(np.mean(margin[idx] > 0))})
            rows.append({"seed": seed, "selection": "pool", "fidelity": oracle.fidelity(
                [r["text"] for r in pool], labels), "lm_agree": float(np.mean(margin > 0)), "n": len(pool)})
        seeds = sorted({r["seed"] for r in rows})
        if not seeds:
            continue
        lines = []
        for how in ("real only", "random", "filter", "lm", "filter+lm", "pool"):
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
            line += [f"{np.mean([r['fidelity'] for r in cell]):.4f}" if "fidelity" in cell[0] else "",
                     f"{np.mean([r['lm_agree'] for r in cell]):.4f}" if "lm_agree" in cell[0] else ""]
            lines.append(line)
        print(f"\n**{task}** ({condition} pools, {len(seeds)} seeds: {seeds}; the filter keeps "
              f"{np.mean(filter_keeps):.0%} of the pool)\n")
        print(markdown(["selection", "texts", "accuracy", "macro-F1", "Δ vs real only", "Δ vs filter",
                        "label fidelity", "LM agrees"], lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,agnews")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--condition", default="gp+attributes", help="pool condition (today's default prompt)")
    parser.add_argument("--demos", type=int, default=4, help="real examples per label in the check's prompt")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--table", action="store_true", help="print the table from the scores on disk")
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    if args.table:
        table(tasks, args.condition, args.data)
    else:
        score(tasks, [int(s) for s in args.seeds.split(",")], args.condition, args.demos)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
