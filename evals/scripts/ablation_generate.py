"""Generation ablation with the embedded local LM (issue "Does SynAlign work?", part 1: the pools).

Per task, few-shot seed and condition, the same LM (Gemma 3 270M base, ``--llm local``) writes the same number
of texts per label from the same real few-shot set (k real train examples per class):

- ``zerogen``: label-only prompt, no demonstrations (``Movie review (negative):``; ZeroGen, Ye et al. 2022);
- ``random``: continuation lines with 8 demonstrations drawn at random from the few-shot set;
- ``gp``: the GP explorer's clusters (SynAlign stage 1: max posterior variance pick + 7 nearest neighbours,
  picks spread over the few-shot set);
- ``gp+attributes``: the same clusters with the statistical attribute summary as the header line (stages 1+2).
- ``gp+attributes+contrast``: the same, with contrast lines first (``--contrast 3``, :mod:`synalign.contrast`):
  3 real texts of the label most confused with the cluster's label (cross-validated logistic regression on the
  few-shot set), those nearest the cluster's demonstrations, each with its own label.

Each cluster gets ``per_cluster`` texts (one completion each, prefix-cached); the pool of a condition goes to
``evals/results/ablation/<task>/seed<s>-<condition>.jsonl`` (text, label, cluster, demonstration texts). A
condition is written cluster by cluster to a ``.partial`` file and renamed when complete, so an interrupted
run resumes where it stopped. Selection and downstream evaluation of these pools are a separate step.

    python evals/scripts/ablation_generate.py --tasks sst2 --seeds 0,1,2 [--per-label 150] [--k 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from _bench import REPO

OUT = REPO / "evals" / "results" / "ablation"
CONDITIONS = ("zerogen", "random", "gp", "gp+attributes", "gp+attributes+contrast")
CONTRAST = 3
"""Contrast lines per cluster of the ``+contrast`` condition."""
ITEM = {"sst2": "Movie review", "agnews": "News article", "amazon_fdu13": "Product review"}


def _few_shot(train: list[dict], k: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    labels = sorted({str(r["label"]) for r in train})
    return [train[i] for label in labels
            for i in rng.permutation([j for j, r in enumerate(train) if str(r["label"]) == label])[:k]]


def _contrast(few: list[dict], clusters: list[tuple[str, list[str]]], seed: int) -> list[list[tuple[str, list[str]]]]:
    """The contrast blocks of each cluster, as a run with ``--contrast CONTRAST`` builds them."""
    from synalign.contrast import confusable_labels, contrast_examples
    from synalign.embeddings import Embedder

    emb = Embedder().encode([r["text"] for r in few])
    labels = [str(r["label"]) for r in few]
    neighbours = confusable_labels(emb, labels, seed=seed)
    row = {r["text"]: i for i, r in enumerate(few)}
    return [[(other, [few[i]["text"] for i in rows]) for other, rows in
             contrast_examples(emb, labels, [row[t] for t in demos], neighbours[label], CONTRAST)]
            for label, demos in clusters]


def _clusters(condition: str, few: list[dict], n_clusters: int, seed: int) -> list[tuple[str, list[str]]]:
    """(label, demonstration texts) per cluster, ``n_clusters`` per label."""
    labels = sorted({str(r["label"]) for r in few})
    if condition == "zerogen":
        return [(label, []) for label in labels for _ in range(n_clusters)]
    if condition == "random":
        rng = np.random.default_rng(seed + 7)
        out = []
        for label in labels:
            texts = [r["text"] for r in few if str(r["label"]) == label]
            out += [(label, [texts[i] for i in rng.choice(len(texts), min(8, len(texts)), replace=False)])
                    for _ in range(n_clusters)]
        return out
    from synalign.embeddings import Embedder
    from synalign.explorer import explore

    emb = Embedder().encode([r["text"] for r in few])
    ids = [f"r{i}" for i in range(len(few))]
    by_id = dict(zip(ids, few, strict=True))
    result = explore(emb, ids, [str(r["label"]) for r in few], clusters_per_label=n_clusters, cluster_size=8,
                     device="cpu")
    return [(c.label, [by_id[i]["text"] for i in c.example_ids]) for c in result.clusters]


def _generate(task: str, condition: str, few: list[dict], per_label: int, per_cluster: int, seed: int,
              path: Path) -> None:
    from synalign.agents import build_backend
    from synalign.agents.completion import ContinuationAdapter
    from synalign.agents.generator import SampleGenerator
    from synalign.backends import GenerationRequest, SummaryRequest
    from synalign.config import RunConfig
    from synalign.fileio import atomic_write_text
    from synalign.prompts import load_spec

    clusters = _clusters(condition, few, -(-per_label // per_cluster), seed)
    contrast = _contrast(few, clusters, seed) if condition.endswith("+contrast") else [[] for _ in clusters]
    partial = path.with_suffix(".partial")
    done = [json.loads(line) for line in partial.read_text().splitlines()] if partial.is_file() else []
    finished = {row["cluster"] for row in done}
    labels = sorted({str(r["label"]) for r in few})
    reference = {label: [r["text"] for r in few if str(r["label"]) == label] for label in labels}
    run_dir = Path(tempfile.mkdtemp(prefix="synalign-ablation-"))
    backend = build_backend(RunConfig(data=run_dir, out=run_dir, llm="local", llm_cache=True), run_dir,
                            reference=reference)
    spec = load_spec("generate_samples")
    if not condition.startswith("gp+attributes"):
        spec = spec.model_copy(update={"completion": spec.completion.model_copy(update={"header": ""})})
    backend.generator.module = SampleGenerator(spec)
    backend.generator.adapter = ContinuationAdapter(spec, item=ITEM[task])
    try:
        for index, (label, demos) in enumerate(clusters):
            if index in finished:
                continue
            attributes = backend.summarizer.summarize(
                [SummaryRequest(task="t", label=label, demonstrations=demos or reference[label][:8])])[0]
            request = GenerationRequest(task="t", label=label, attributes=attributes, demonstrations=demos,
                                        n=per_cluster, seed=seed * 10_000 + index, contrast=contrast[index])
            gen = backend.generator.generate([request])[0]
            rows = [{"text": t, "label": label, "cluster": index, "demonstrations": demos} for t in gen.texts]
            with open(partial, "a", encoding="utf-8") as handle:
                handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
                handle.flush()
                os.fsync(handle.fileno())
            done += rows
            print(f"{task} seed {seed} {condition}: cluster {index + 1}/{len(clusters)}, {len(done)} texts",
                  file=sys.stderr, flush=True)
    finally:
        backend.close()
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done))
    partial.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    from synalign.evals.fidelity import read_jsonl

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--k", type=int, default=32, help="real few-shot examples per class")
    parser.add_argument("--per-label", type=int, default=150, help="texts generated per label and condition")
    parser.add_argument("--per-cluster", type=int, default=8)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    from synalign.fileio import atomic_write_text

    for task in args.tasks.split(","):
        train = read_jsonl(args.data / task / "train.jsonl")
        for seed in (int(s) for s in args.seeds.split(",")):
            few = _few_shot(train, args.k, seed)
            folder = args.out / task
            folder.mkdir(parents=True, exist_ok=True)
            few_path = folder / f"seed{seed}-fewshot.jsonl"
            if not few_path.is_file():
                atomic_write_text(few_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in few))
            for condition in args.conditions.split(","):
                path = folder / f"seed{seed}-{condition}.jsonl"
                if not path.is_file():
                    _generate(task, condition, few, args.per_label, args.per_cluster, seed, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
