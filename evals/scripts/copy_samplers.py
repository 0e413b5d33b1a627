"""Do llama.cpp's own samplers cut copies of the demonstrations at the source? (issue "Data that helps", item 5)

The continuation prompt shows eight real texts of a label; Gemma 3 270M often writes one of them again, and the
generator drops it (``copy_of_demonstration``) and asks again: a wasted call. llama.cpp's DRY sampler ("don't
repeat yourself", p-e-w 2024, llama.cpp PR #9702) penalises a token that would extend a sequence already in the
context, by ``multiplier · base^(match length − allowed length)``; with ``dry_penalty_last_n`` = the slot's
context (this server refuses -1) the whole prompt counts, so a demonstration's n-grams are penalised. The
classic repetition penalty (``repeat_penalty`` over ``repeat_last_n`` tokens; Keskar et al. 2019, CTRL) is the
blunter alternative.

Per task (seed 0 few-shot set, the GP clusters of ``evals/results/ablation/<task>/seed0-gp+attributes.jsonl``,
no header line) and sampler setting, each cluster's prompt gets ``--per-cluster`` seeded completions. Each
completion is sorted as the generator would sort it (:func:`synalign.dedup.filter_texts`: kept, copy of a
demonstration, duplicate, near-duplicate, empty; a line cut at ``max_tokens`` is truncated). Rows go to
``evals/results/samplers/<task>.jsonl`` and a rerun skips what is on disk; ``--table`` prints LM calls per kept
text, the copy share, label fidelity of the kept texts (a classifier fitted on the full real train split) and
distinct-2.

    python evals/scripts/copy_samplers.py --tasks sst2,agnews,amazon_fdu13 [--per-cluster 8 --clusters 4]
    python evals/scripts/copy_samplers.py --tasks sst2,agnews,amazon_fdu13 --table
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from _bench import REPO

POOLS = REPO / "evals" / "results" / "ablation"
OUT = REPO / "evals" / "results" / "samplers"
ITEM = {"sst2": "Movie review", "agnews": "News article", "amazon_fdu13": "Product review"}
SETTINGS: dict[str, dict[str, Any]] = {
    "none": {},
    "dry": {"dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2, "dry_penalty_last_n": 8192},
    "dry-strong": {"dry_multiplier": 2.0, "dry_base": 1.75, "dry_allowed_length": 2, "dry_penalty_last_n": 8192},
    "repeat": {"repeat_penalty": 1.1, "repeat_last_n": 8192},
}


def _read(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _clusters(task: str, per_label: int) -> list[tuple[str, list[str]]]:
    """The first ``per_label`` GP clusters of each label of the seed-0 pool: (label, demonstrations)."""
    seen: dict[int, tuple[str, list[str]]] = {}
    for row in _read(POOLS / task / "seed0-gp+attributes.jsonl"):
        seen.setdefault(int(row["cluster"]), (str(row["label"]), list(row["demonstrations"])))
    out: list[tuple[str, list[str]]] = []
    counts: dict[str, int] = {}
    for _, (label, demos) in sorted(seen.items()):
        if counts.get(label, 0) < per_label:
            counts[label] = counts.get(label, 0) + 1
            out.append((label, demos))
    return out


def generate(tasks: list[str], settings: list[str], per_cluster: int, clusters: int) -> None:
    """Append one row per completion to ``OUT/<task>.jsonl`` (resumable by (setting, cluster, seed))."""
    import openai

    from synalign.agents.completion import render_continuation
    from synalign.agents.llamacpp import LocalServer, resolve_model
    from synalign.agents.local import CONTEXT_PER_SLOT, ensure_server_binary
    from synalign.dedup import filter_texts
    from synalign.prompts import load_spec

    template = load_spec("generate_samples").completion
    assert template is not None
    server = LocalServer.start(resolve_model(None), binary=ensure_server_binary(),
                               threads=int(os.environ.get("SYNALIGN_LOCAL_THREADS", "1")), ctx_size=CONTEXT_PER_SLOT)
    client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=2, timeout=300)
    try:
        for task in tasks:
            OUT.mkdir(parents=True, exist_ok=True)
            path = OUT / f"{task}.jsonl"
            done = {(r["setting"], r["cluster"], r["seed"]) for r in _read(path)} if path.is_file() else set()
            tmpl = template.model_copy(update={"header": "", "item": ITEM[task]})
            for index, (label, demos) in enumerate(_clusters(task, clusters)):
                prompt = render_continuation(tmpl, label=label, demonstrations=demos)
                budget = max(48, min(256, 3 * max(len(d.split()) for d in demos)))
                rows = []
                for name in settings:
                    kept: list[str] = []
                    for seed in range(per_cluster):
                        if (name, index, seed) in done:
                            continue
                        reply = client.completions.create(
                            model="local", prompt=prompt, max_tokens=budget, temperature=0.8, stop=["\n"],
                            seed=1_000 * index + seed, extra_body={**SETTINGS[name], "cache_prompt": True})
                        choice = reply.choices[0]
                        text = (choice.text or "").split("\n", 1)[0].strip()
                        if choice.finish_reason == "length":
                            outcome = "truncated"
                        else:
                            texts, dropped = filter_texts([text], demos, existing=tuple(kept), limit=1)
                            outcome = "kept" if texts else next(iter(dropped), "empty")
                            kept += texts
                        rows.append({"setting": name, "cluster": index, "seed": seed, "label": label, "text": text,
                                     "outcome": outcome})
                with open(path, "a", encoding="utf-8") as handle:
                    handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
                print(f"{task}: cluster {index + 1}, {len(rows)} completions", file=sys.stderr, flush=True)
    finally:
        server.stop()


def table(tasks: list[str], data: Path) -> None:
    """Per task and setting: completions, LM calls per kept text, outcome shares, fidelity, distinct-2."""
    from synalign.evals.fidelity import LabelOracle, distinct_n

    print("| task | sampler | completions | calls per kept | copy of a demo | duplicate | empty/truncated "
          "| fidelity of kept | distinct-2 of kept |")
    print("|---|---|---|---|---|---|---|---|---|")
    for task in tasks:
        rows = _read(OUT / f"{task}.jsonl")
        oracle = LabelOracle(_read(data / task / "train.jsonl"))
        for name in SETTINGS:
            mine = [r for r in rows if r["setting"] == name]
            if not mine:
                continue
            kept = [r for r in mine if r["outcome"] == "kept"]
            share = {o: sum(r["outcome"] in o for r in mine) / len(mine) for o in
                     (("copy_of_demonstration",), ("duplicate", "near_duplicate"), ("empty", "truncated"))}
            fid = oracle.fidelity([r["text"] for r in kept], [r["label"] for r in kept])
            shares = " | ".join(f"{v:.1%}" for v in share.values())
            print(f"| {task} | {name} | {len(mine)} | {len(mine) / max(1, len(kept)):.2f} | {shares} "
                  f"| {fid:.3f} | {distinct_n([r['text'] for r in kept]):.3f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--per-cluster", type=int, default=8, help="completions per cluster and setting")
    parser.add_argument("--clusters", type=int, default=4, help="clusters per label")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args(argv)
    tasks = args.tasks.split(",")
    if args.table:
        table(tasks, args.data)
    else:
        generate(tasks, args.settings.split(","), args.per_cluster, args.clusters)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
