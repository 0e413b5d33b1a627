"""Benchmark 3: the project's embedding path versus raw sentence-transformers ``encode``.

Same texts, same model object (the bundled all-MiniLM-L6-v2), same batch size (64), CPU, measured side by
side in one process with the order rotated each repeat; the reported time is the median of the repeats.

* raw: ``SentenceTransformer.encode(texts, batch_size=64, normalize_embeddings=True)``
* project, no cache: ``Embedder(cache_dir=False).encode(texts)`` (hashing, dedup, float32 copy)
* project, cold cache: ``Embedder(cache_dir=tmp).encode(texts)`` on an empty cache (encode + SQLite write)
* project, warm cache: the same call again (every text a cache hit: hash + SQLite lookup, no model call)

Targets: overhead of the project path ≤ 10 %; cache-hit path ≥ 50× faster than encoding.

    python evals/scripts/bench_embeddings.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _bench import demo_dir, machine_note, markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="embedding path benchmark")
    parser.add_argument("--quick", action="store_true", help="256 texts, 2 repeats")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=None, help="number of texts (default: all 1,672 demo texts)")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from synalign.datafiles import load_examples
    from synalign.embeddings import Embedder

    torch.set_num_threads(2)
    texts = [r.text for r in load_examples(demo_dir() / "train.jsonl")]
    texts += [r.text for r in load_examples(demo_dir() / "test.jsonl", split="test")]
    texts = list(dict.fromkeys(texts))
    n = 256 if args.quick else (args.n or len(texts))
    texts = texts[:n]
    repeats = 2 if args.quick else args.repeats
    model = Embedder(cache_dir=False, device="cpu").model  # the very object Embedder encodes with
    model.encode(texts[:64], batch_size=64)  # warm-up (first-call allocations)

    def raw() -> np.ndarray:
        return model.encode(
            texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    def project_nocache() -> np.ndarray:
        return Embedder(cache_dir=False, device="cpu").encode(texts)

    times: dict[str, list[float]] = {"raw": [], "nocache": [], "cold": [], "warm": []}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            cache = Path(tmp) / f"cache{r}"

            def cold(cache: Path = cache) -> np.ndarray:
                return Embedder(cache_dir=cache, device="cpu").encode(texts)

            def warm(cache: Path = cache) -> np.ndarray:
                e = Embedder(cache_dir=cache, device="cpu")
                out = e.encode(texts)
                assert e.stats["encoded"] == 0
                e.close()
                return out

            order = [("raw", raw), ("nocache", project_nocache), ("cold", cold)]
            order = order[r % 3 :] + order[: r % 3]
            for name, fn in order + [("warm", warm)]:
                t = time.perf_counter()
                results[name] = fn()
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    same = all(np.allclose(results["raw"], results[k], atol=1e-5) for k in ("nocache", "cold", "warm"))
    rows = [
        ("raw sentence-transformers encode", med["raw"], len(texts) / med["raw"], 1.0, ""),
        (
            "project Embedder, no cache",
            med["nocache"],
            len(texts) / med["nocache"],
            med["nocache"] / med["raw"],
            f"{100 * (med['nocache'] / med['raw'] - 1):+.1f}% overhead",
        ),
        (
            "project Embedder, cold cache (encode + write)",
            med["cold"],
            len(texts) / med["cold"],
            med["cold"] / med["raw"],
            f"{100 * (med['cold'] / med['raw'] - 1):+.1f}% overhead",
        ),
        (
            "project Embedder, warm cache (all hits)",
            med["warm"],
            len(texts) / med["warm"],
            med["warm"] / med["raw"],
            f"{med['raw'] / med['warm']:.0f}x faster than encoding",
        ),
    ]
    print(machine_note())
    print(
        f"{len(texts)} texts (bundled SST-2 demo), batch 64, CPU, median of {repeats} repeats; "
        f"outputs identical to raw: {same}\n"
    )
    print(markdown(["path", "seconds", "texts/s", "time ÷ raw", "note"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
