"""Checkpoint growth per round at 10k and 100k samples: this tree (samples in the run's LangGraph store, the state
holding references) vs an earlier revision (the whole pool in the state), side by side.

Each (pool size, revision) pair is one EDA run on the bundled SST-2 demo (``--selection random`` so the align
step stays cheap, 2 labels, ``--rounds`` rounds, the target 0 so every round runs) in a fresh subprocess; the
earlier revision is built from ``git archive REV`` and put first on ``sys.path``. Both use the run's default
saver (the latest 2 checkpoints kept). The embedder is a stand-in (hashed word n-grams, 384-d, unit norm), the
same in both runs: checkpoint bytes do not depend on the embedding, and MiniLM would spend most of the bench
embedding 100k texts. After each round's ``align`` the worker records:

- ``file bytes``: ``checkpoints.sqlite`` + its write-ahead log (during a run most bytes sit in the WAL);
- ``growth / new sample``: that size's increase over the round, per sample the round added;
- ``stored``: bytes of the data the saver and the store hold (checkpoint blobs, pending writes, store values),
  without SQLite's free pages and WAL, and its increase per new sample;
- ``written``: bytes the process passed to ``write()`` during the round (``/proc/self/io`` ``wchar``: the
  checkpoints and store items SQLite wrote, the real cost of checkpointing);
- ``checkpoint``: the size of the newest checkpoint row (the state the saver serialises after every node).

"end of run" is the file a user keeps (the WAL folded in when the run closes it).

    python evals/scripts/bench_checkpoint.py                           # 10k and 100k samples, 4 rounds, vs 8123aaf
    python evals/scripts/bench_checkpoint.py --samples 10000 --rounds 3 --before ''
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from _bench import built_revision, machine_note, main_or_worker, markdown, run_worker

_LABELS = 2
_CLUSTERS = {10_000: 10, 100_000: 20}  # clusters per label and round (8 demonstrations each; 400 real per label)


def _written() -> int:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def _file_bytes(out: Path) -> int:
    files = [out / "checkpoints.sqlite", out / "checkpoints.sqlite-wal"]
    return sum(f.stat().st_size for f in files if f.exists())


def _stored_bytes(out: Path) -> int:
    """Bytes of the data the saver and the store hold (their blobs and values), without SQLite's free pages."""
    total = 0
    with sqlite3.connect(out / "checkpoints.sqlite", timeout=30) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, columns in (("checkpoints", "checkpoint, metadata"), ("writes", "value"), ("store", "value")):
            if table in tables:
                expr = " + ".join(f"coalesce(length({c}), 0)" for c in columns.split(", "))
                total += int(conn.execute(f"SELECT coalesce(sum({expr}), 0) FROM {table}").fetchone()[0])
    return total


def _newest_checkpoint(out: Path) -> int:
    with sqlite3.connect(out / "checkpoints.sqlite", timeout=30) as conn:
        row = conn.execute("SELECT length(checkpoint) FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1").fetchone()
    return int(row[0]) if row else 0


def _worker(out_dir: str, result_file: str, samples_arg: str, rounds_arg: str) -> None:
    """One run of ``samples_arg`` samples in ``rounds_arg`` rounds into ``out_dir``
    (:func:`_bench.run_worker`); writes its rows to ``result_file``."""
    out, samples, rounds = Path(out_dir), int(samples_arg), int(rounds_arg)
    import numpy as np
    from sklearn.feature_extraction.text import HashingVectorizer

    import synalign
    from synalign.config import RunConfig
    from synalign.embeddings import Embedder
    from synalign.graphs import run

    class _HashedEmbedder(Embedder):
        """Hashed word 1–2-grams, 384-d, unit norm: the stand-in embedder (checkpoint bytes ignore embeddings)."""

        _vectorizer = HashingVectorizer(n_features=384, ngram_range=(1, 2), norm="l2", alternate_sign=True)
        truncation = None  # no tokenizer

        def check(self) -> None:
            return None

        def encode(self, texts, *, show_progress: bool = False) -> np.ndarray:  # type: ignore[override]
            x = self._vectorizer.transform(list(texts)).toarray().astype(np.float32)
            x[np.linalg.norm(x, axis=1) == 0, 0] = 1.0
            return x / np.linalg.norm(x, axis=1, keepdims=True)

    clusters = _CLUSTERS.get(samples, max(1, samples // 1000))
    per_cluster = samples // (rounds * _LABELS * clusters)
    config = RunConfig(
        data=Path(synalign.__file__).resolve().parent / "data" / "sst2-demo", out=out, llm="eda",
        selection="random", max_rounds=rounds, target="0", clusters_per_label=clusters, cluster_size=8,
        samples_per_cluster=per_cluster,
    )
    rows: list[dict] = []
    mark = {"bytes": 0, "written": _written(), "t": time.perf_counter()}

    def on_event(event: dict) -> None:
        node = event.get("node")
        if node == "explore" and event.get("done") == 0:
            if rows and not rows[-1]["checkpoint"]:  # the checkpoint after align(r) exists once explore(r+1) starts
                rows[-1]["checkpoint"] = _newest_checkpoint(out)
            mark.update(bytes=_file_bytes(out), written=_written(), t=time.perf_counter())
        if node == "align" and event.get("done") == event.get("total"):
            rows.append({"round": event["round"], "bytes": _file_bytes(out), "before": mark["bytes"],
                         "stored": _stored_bytes(out), "written": _written() - mark["written"], "checkpoint": 0,
                         "seconds": time.perf_counter() - mark["t"]})

    result = run(config, embedder=_HashedEmbedder("hashed-ngrams-384", cache_dir=False), on_event=on_event)
    if rows and not rows[-1]["checkpoint"]:
        rows[-1]["checkpoint"] = _newest_checkpoint(out)
    generated = [m["generated"] for m in result.metrics]
    Path(result_file).write_text(json.dumps({
        "synalign": str(Path(synalign.__file__).resolve().parent),
        "rows": rows, "generated": generated, "end": _file_bytes(out),
        "accepted": sorted(s.id for s in result.accepted),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default="10000,100000", help="pool sizes (samples over all rounds)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--before", default="8123aaf", help="an earlier revision ('' = none)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "synalign-bench-checkpoint")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    revisions: list[tuple[str, Path | None]] = [("after", None)]
    if args.before:
        revisions.insert(0, (f"before ({args.before})", built_revision(args.before, args.work)))
    print(machine_note())
    table, summary = [], []
    for samples in (int(v) for v in args.samples.split(",")):
        runs = {}
        for name, path_first in revisions:
            print(f"{samples:,} samples, {name} ...", file=sys.stderr, flush=True)
            runs[name] = r = run_worker("bench_checkpoint", [str(samples), str(args.rounds)], args.work, path_first)
            print(f"  ran synalign from {r['synalign']}", file=sys.stderr, flush=True)
            previous, stored = 0, 0
            for row, pool in zip(r["rows"], r["generated"], strict=True):
                new = max(pool - previous, 1)
                table.append([f"{samples:,}", name, row["round"], f"{pool:,}", f"{row['bytes']:,}",
                              f"{(row['bytes'] - row['before']) / new:,.0f}", f"{row['stored']:,}",
                              f"{(row['stored'] - stored) / new:,.0f}", f"{row['written']:,}",
                              f"{row['written'] / new:,.0f}", f"{row['checkpoint']:,}"])
                previous, stored = pool, row["stored"]
            table.append([f"{samples:,}", name, "end of run", f"{r['generated'][-1]:,}", f"{r['end']:,}", "", "", "",
                          "", "", ""])
        if len(runs) == 2:
            before, after = runs.values()
            same = before["accepted"] == after["accepted"]
            written = [sum(x["written"] for x in v["rows"]) for v in (before, after)]
            summary.append([f"{samples:,}", f"{before['end'] / after['end']:.1f}x", f"{written[0] / written[1]:.1f}x",
                            f"{before['rows'][-1]['checkpoint'] / after['rows'][-1]['checkpoint']:.0f}x",
                            "yes" if same else "NO"])
    print(markdown(["samples", "revision", "round", "pool", "file bytes", "growth / new sample", "stored",
                    "stored / new sample", "written", "written / new sample", "checkpoint"], table))
    if summary:
        print()
        print(markdown(["samples", "end-of-run file (before / after)", "bytes written", "last checkpoint",
                        "same accepted set"], summary))


if __name__ == "__main__":
    main_or_worker(main, _worker)
