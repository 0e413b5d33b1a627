"""Per-node time of a whole ``synalign run`` at 2, 6 and 77 labels, this tree vs an earlier revision, side by side.

Each (labels, revision) pair is one EDA run (``--llm eda``, default options otherwise: 2 clusters × 16 samples
per label and round, ``--selection filter``, ``--max-real 2000``) of ``--rounds`` rounds with the target set to 0,
so every round runs. It runs in a fresh subprocess; the earlier revision is built from ``git archive REV`` into a
throw-away directory and put first on ``sys.path``, so both use the same installed libraries. Embedding time is
measured separately (the embedder's ``encode`` is timed) and subtracted, because whichever run goes first fills
the embedding cache: the "align" column is the align step's own work (KMM weights, the label filter and its
cross-validation, the selection, the round's divergences). The rows also compare the two runs' selections: the
filter's τ per round and the Jaccard overlap of the final accepted sets.

Data (written once to ``--work``, from ``../shared/data`` when present, else skipped):

- 2 labels: SST-2 train (movie reviews);
- 6 labels: the first 6 labels of ``amazon_fdu13`` (product reviews, ~110 words), 400 rows each;
- 77 labels: Banking77-shaped, 2,600 AG News descriptions (short texts, like Banking77's queries) relabelled
  into 77 classes by k-means (seed 0) on their MiniLM embeddings, so the labels are learnable.

    python evals/scripts/bench_run.py                                  # 2,6,77 labels, 4 rounds, vs 60e278b
    python evals/scripts/bench_run.py --labels 6 --rounds 2 --before 60e278b,f31f6c9
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _bench import REPO, built_revision, machine_note, main_or_worker, markdown, run_worker

NODES = ("prepare", "explore", "summarize", "generate", "align", "finish")


# ----------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _dataset(labels: int, data: Path, work: Path) -> Path:
    """The train file for ``labels`` classes (built once)."""
    path = work / f"labels{labels}.jsonl"
    if path.is_file():
        return path
    if labels == 2:
        return _write_jsonl(path, _read(data / "sst2" / "train.jsonl"))
    if labels == 6:
        rows = _read(data / "amazon_fdu13" / "train.jsonl")
        keep = sorted({r["label"] for r in rows})[:6]
        out = [r for lab in keep for r in [r for r in rows if r["label"] == lab][:400]]
        return _write_jsonl(path, out)
    if labels == 77:
        import numpy as np
        from sklearn.cluster import KMeans

        from synalign.embeddings import Embedder

        rows = _read(data / "agnews" / "train.jsonl")[:2600]
        emb = Embedder().encode([r["text"] for r in rows])
        cluster = KMeans(n_clusters=77, n_init=4, random_state=0).fit_predict(np.asarray(emb, np.float64))
        return _write_jsonl(path, [{"text": r["text"], "label": f"intent_{c:02d}"} for r, c in zip(rows, cluster)])
    raise SystemExit(f"bench_run: no dataset recipe for {labels} labels (have 2, 6, 77)")


# ----------------------------------------------------------------------------------------------------
# one timed run (the worker; runs in a subprocess against whichever synalign is first on sys.path)
# ----------------------------------------------------------------------------------------------------


def _worker(out_dir: str, result_file: str, data_path: str, rounds_arg: str) -> None:
    """One timed run of ``data_path`` into ``out_dir`` (:func:`_bench.run_worker`); writes its figures to
    ``result_file``."""
    out, data, rounds = Path(out_dir), Path(data_path), int(rounds_arg)
    import synalign
    from synalign.config import RunConfig
    from synalign.embeddings import Embedder
    from synalign.graphs import run

    marks: list[tuple[float, str, int]] = []
    embed_seconds: dict[str, float] = {}
    current = {"node": "prepare"}
    embedder = Embedder()
    encode = embedder.encode

    def timed_encode(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return encode(*args, **kwargs)
        finally:
            embed_seconds[current["node"]] = embed_seconds.get(current["node"], 0.0) + time.perf_counter() - t0

    embedder.encode = timed_encode  # type: ignore[method-assign]

    def on_event(event: dict) -> None:
        current["node"] = str(event.get("node"))
        marks.append((time.perf_counter(), current["node"], int(event.get("round", 0))))

    config = RunConfig(data=data, out=out, llm="eda", max_rounds=rounds, target="0")
    started = time.perf_counter()
    result = run(config, embedder=embedder, on_event=on_event)
    wall = time.perf_counter() - started
    # Nodes run one after another: a node's time runs from the previous node's last event to its own last one.
    node_seconds: dict[str, float] = {}
    previous = started
    for i, (t, node, _round) in enumerate(marks):
        last = i + 1 == len(marks) or (marks[i + 1][1], marks[i + 1][2]) != (node, _round)
        if last:
            node_seconds[node] = node_seconds.get(node, 0.0) + t - previous
            previous = t
    metrics = json.loads((out / "metrics.json").read_text())
    rounds_ = metrics["rounds"] if isinstance(metrics, dict) else metrics
    accepted = sorted(json.loads(line)["id"] for line in (out / "synthetic.jsonl").read_text().splitlines())
    Path(result_file).write_text(json.dumps({
        "synalign": str(Path(synalign.__file__).resolve().parent),
        "wall": wall,
        "node_seconds": node_seconds,
        "embed_seconds": embed_seconds,
        "align_seconds": [m.get("align_seconds") for m in rounds_],
        "tau": [m.get("filter_threshold") for m in rounds_],
        "mmd2_accepted": [m.get("mmd2_accepted") for m in rounds_],
        "generated": result.summary.generated,
        "accepted": accepted,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default="2,6,77")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--before", default="60e278b", help="earlier revision(s), comma-separated ('' = none)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "synalign-bench-run")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.data.is_dir():
        raise SystemExit(f"bench_run: no shared data at {args.data}")
    befores = {rev: built_revision(rev, args.work) for rev in args.before.split(",") if rev}
    print(machine_note())
    rows = []
    for labels in (int(v) for v in args.labels.split(",")):
        data = _dataset(labels, args.data, args.work)
        runs = {}
        for name, path_first in [*((f"before ({rev})", path) for rev, path in befores.items()), ("after", None)]:
            print(f"{labels} labels, {name} ...", file=sys.stderr, flush=True)
            runs[name] = r = run_worker("bench_run", [str(data), str(args.rounds)], args.work, path_first)
            print(f"  ran synalign from {r['synalign']}", file=sys.stderr, flush=True)
            own = {n: r["node_seconds"].get(n, 0.0) - r["embed_seconds"].get(n, 0.0) for n in NODES}
            rows.append([labels, name, r["generated"], *(round(own[n], 1) for n in NODES),
                         round(sum(r["embed_seconds"].values()), 1), round(r["wall"], 1),
                         " ".join("-" if t is None else f"{t:g}" for t in r["tau"])])
        after = runs["after"]
        for name, r in runs.items():
            if name == "after":
                continue
            a, b = set(r["accepted"]), set(after["accepted"])
            x, y = (v["node_seconds"]["align"] - v["embed_seconds"].get("align", 0.0) for v in (r, after))
            rows.append([labels, f"after vs {name.removeprefix('before ')}", "", "", "", "", "", f"{x / y:.1f}x",
                         "", "", "", f"Jaccard {len(a & b) / max(1, len(a | b)):.3f}"])
    print(markdown(["labels", "revision", "samples", *(f"{n} s" for n in NODES), "embedding s", "wall s",
                    "filter τ per round"], rows))


if __name__ == "__main__":
    main_or_worker(main, _worker)
