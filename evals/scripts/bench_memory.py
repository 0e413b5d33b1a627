"""Peak resident memory of a whole ``synalign run`` at 2, 6 and 77 labels, this tree beside an earlier revision.

Each (labels, revision) pair is one EDA run (``--llm eda``, no language model) of ``--rounds`` rounds with k = 16
real examples per label (``--max-real 16 × labels``; the default 25 % validation slice is carved from them) and the
target set to 0, so every round runs. Each run is a fresh Python process (:func:`_bench.run_worker`); the
earlier revision is built from ``git archive REV`` and put first on ``sys.path``, so both use the same installed
libraries (the worker prints which ``synalign`` it imported). The figure is ``ru_maxrss`` of that process (peak
RSS, MiB), and the RSS at the end of each node (the largest over rounds) shows where it grows.

Embedding cache: by default every run gets an empty cache of its own (``--cache cold``: the real and generated
texts are all encoded, as on a first run); ``--cache warm`` shares one cache under ``--work``, filled by one
unmeasured run per dataset first, so the figures leave the encoder's batches out.

Data (built once into ``--work`` from ``../shared/data``): real Amazon reviews of ``amazon_fdu13``, 16 per label,
with the label made finer: ``CATEGORY_B`` where B = sha256(text) mod 6 (a stable hash bucket). The labels are
taken in the order (bucket, category): 2 labels = two categories of bucket 0, 6 = six categories of bucket 0,
77 = all 13 categories of buckets 0-4 and 12 of bucket 5. (There is no 77-label set in the shared data; the hash
buckets make the finer labels hard to tell apart, which only lowers what the label filter keeps.)

Results are appended to ``--work``/results.jsonl and reused (delete a row to rerun it).

    python evals/scripts/bench_memory.py                              # 2, 6, 77 labels; this tree vs d7681ee
    python evals/scripts/bench_memory.py --labels 6,77 --baseline-rev '' --cache warm
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from _bench import REPO, built_revision, machine_note, main_or_worker, markdown, run_worker

NODES = ("prepare", "explore", "summarize", "generate", "align", "finish")
PER_LABEL = 16
_BUCKETS = 6


# ----------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------


def _bucket(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % _BUCKETS


def _dataset(labels: int, data: Path, work: Path) -> Path:
    """The data directory (``train.jsonl``, 16 rows per label) for ``labels`` classes, built once."""
    path = work / f"labels{labels}" / "train.jsonl"
    if path.is_file():
        return path.parent
    rows = [json.loads(line)
            for line in (data / "amazon_fdu13" / "train.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    categories = sorted({r["label"] for r in rows})
    order = [(b, c) for b in range(_BUCKETS) for c in categories]
    if not 2 <= labels <= len(order):
        raise SystemExit(f"bench_memory: between 2 and {len(order)} labels, got {labels}")
    out = []
    for b, c in order[:labels]:
        chosen = [r for r in rows if r["label"] == c and _bucket(r["text"]) == b][:PER_LABEL]
        out += [{"text": r["text"], "label": f"{c}_{b}"} for r in chosen]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    tmp.replace(path)
    return path.parent


# ----------------------------------------------------------------------------------------------------
# one measured run (the worker; a fresh process importing whichever synalign is first on sys.path)
# ----------------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")  # pragma: no cover - not Linux


def _worker(out_dir: str, result_file: str, data_dir: str, rounds_arg: str, labels_arg: str, cache_dir: str) -> None:
    """One run of ``data_dir`` into ``out_dir`` (:func:`_bench.run_worker`); writes its figures to
    ``result_file``."""
    import synalign
    from synalign.config import RunConfig
    from synalign.graphs import run

    node_rss: dict[str, float] = {}

    def on_event(event: dict) -> None:
        node = str(event.get("node"))
        node_rss[node] = max(node_rss.get(node, 0.0), _rss_mb())

    config = RunConfig(data=Path(data_dir), out=Path(out_dir), llm="eda", max_rounds=int(rounds_arg), target="0",
                       max_real=PER_LABEL * int(labels_arg), cache_dir=Path(cache_dir), seed=0)
    result = run(config, on_event=on_event)
    Path(result_file).write_text(json.dumps({
        "synalign": str(Path(synalign.__file__).resolve().parent),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "end_mb": _rss_mb(),
        "node_rss_mb": node_rss,
        "generated": result.summary.generated,
        "accepted": len(result.accepted),
    }))


# ----------------------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------------------


def _measure(key: dict, results: Path, data: Path, rounds: int, labels: int, cache: Path, work: Path,
             path_first: Path | None) -> dict:
    """The row of ``key`` from ``results``, else one run (appended)."""
    if results.is_file():
        for line in results.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row["key"] == key:
                return row
    row = {
        "key": key, **run_worker("bench_memory", [str(data), str(rounds), str(labels), str(cache)], work, path_first)
    }
    with results.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default="2,6,77")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-rev", default="d7681ee", help="earlier revision beside this tree ('' = none)")
    parser.add_argument("--cache", choices=("cold", "warm"), default="cold")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "synalign-bench-memory")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.data / "amazon_fdu13").is_dir():
        raise SystemExit(f"bench_memory: no amazon_fdu13 under {args.data}")
    revisions: list[tuple[str, str, Path | None]] = []
    if args.baseline_rev:
        sha = subprocess.run(["git", "rev-parse", "--short", args.baseline_rev], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.strip()
        revisions.append((f"{sha}", sha, built_revision(sha, args.work)))
    tree = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.strip()
    revisions.append((f"this tree ({tree}{'+' if dirty else ''})", f"tree-{tree}{'-dirty' if dirty else ''}", None))
    results = args.work / "results.jsonl"
    print(machine_note())
    rows = []
    for labels in (int(v) for v in args.labels.split(",")):
        data = _dataset(labels, args.data, args.work)
        warm_cache = args.work / "cache-warm"
        if args.cache == "warm" and not (args.work / f"warm-{labels}-{args.rounds}.done").is_file():
            print(f"{labels} labels: filling the embedding cache ...", file=sys.stderr, flush=True)
            run_worker("bench_memory", [str(data), str(args.rounds), str(labels), str(warm_cache)], args.work, None)
            (args.work / f"warm-{labels}-{args.rounds}.done").touch()
        for name, rev, path_first in revisions:
            key = {"labels": labels, "rounds": args.rounds, "rev": rev, "cache": args.cache}
            print(f"{labels} labels, {name} ...", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(dir=args.work) as cold:
                r = _measure(key, results, data, args.rounds, labels, warm_cache if args.cache == "warm" else
                             Path(cold), args.work, path_first)
            print(f"  ran synalign from {r['synalign']}", file=sys.stderr, flush=True)
            node = r["node_rss_mb"]
            rows.append([labels, name, r["generated"], r["accepted"], round(r["peak_mb"]), round(r["end_mb"]),
                         *(round(node[n]) if n in node else "-" for n in ("embed", *NODES[1:5]))])
    print(markdown(["labels", "revision", "generated", "accepted", "peak RSS MiB", "RSS at end MiB",
                    *(f"RSS {n} MiB" for n in ("embed", *NODES[1:5]))], rows))


if __name__ == "__main__":
    main_or_worker(main, _worker)
