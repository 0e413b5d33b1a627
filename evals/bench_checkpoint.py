"""Checkpoint growth: bytes of ``checkpoints.sqlite`` (+ its WAL) after each round and after the run, with every
checkpoint kept (LangGraph's SQLite saver as it is) vs the run's pruning saver (the latest 2 kept).

The same EDA run on the bundled SST-2 demo twice in one process (``--selection random`` so the align step stays
cheap): once with :data:`synalign.graphs.checkpoint.KEEP_CHECKPOINTS` = None, once with the default. The saver
writes a checkpoint after every node; during a run most bytes sit in the write-ahead log, folded into the file
when the run closes it, so the "end of run" row is the file a user keeps.

    python evals/bench_checkpoint.py                       # 5 rounds × 2,000 samples = 10k samples
    python evals/bench_checkpoint.py --rounds 3 --per-round 400
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import synalign
from synalign.config import RunConfig

DEMO = Path(synalign.__file__).resolve().parent / "data" / "sst2-demo"


def _bytes(out: Path) -> int:
    files = [out / "checkpoints.sqlite", out / "checkpoints.sqlite-wal"]
    return sum(f.stat().st_size for f in files if f.exists())


def _sizes(out: Path, rounds: int, per_round: int, keep: int | None) -> tuple[int, list[tuple[str, int]]]:
    """(samples generated, [(after round / "end of run", bytes)])."""
    import synalign.graphs.checkpoint as checkpoint
    from synalign.graphs import run

    default, checkpoint.KEEP_CHECKPOINTS = checkpoint.KEEP_CHECKPOINTS, keep
    clusters = 10
    config = RunConfig(
        data=DEMO, out=out, llm="eda", selection="random", max_rounds=rounds, target="0",
        clusters_per_label=clusters, cluster_size=8, samples_per_cluster=per_round // (2 * clusters),
    )
    rows: list[tuple[str, int]] = []

    def on_event(event: dict) -> None:
        if event.get("node") == "align" and event.get("done") == event.get("total"):
            rows.append((str(event["round"]), _bytes(out)))

    try:
        result = run(config, on_event=on_event)
    finally:
        checkpoint.KEEP_CHECKPOINTS = default
    rows.append(("end of run", _bytes(out)))
    return int(result.summary["generated"]), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=2000, help="samples generated per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated, every = _sizes(Path(tmp) / "every", args.rounds, args.per_round, None)
        _, pruned = _sizes(Path(tmp) / "pruned", args.rounds, args.per_round, 2)
    print(f"checkpoint bytes ({args.per_round} EDA samples requested per round, SST-2 demo; {generated:,} generated)\n")
    print("| after round | every checkpoint kept | B/sample | latest 2 kept | B/sample | ratio |")
    print("|---|---|---|---|---|---|")
    for (name, a), (_, b) in zip(every, pruned, strict=True):
        n = generated if name == "end of run" else min(generated, int(name) * args.per_round)
        print(f"| {name} | {a:,} | {a / n:,.0f} | {b:,} | {b / n:,.0f} | {a / b:.1f}x |")


if __name__ == "__main__":
    main()
