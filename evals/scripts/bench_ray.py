"""Benchmark: the Ray scale-out paths against the local ones, same inputs, on a local cluster (issue 13).

* embeddings: ``Embedder.encode`` (torch on 2 threads, the default here, and on 1) vs
  :func:`synalign.scaleout.embed.embed_texts` with 1 and 2 actors (1 CPU, 1 torch thread each) on
  ``ray.init(num_cpus=2)``; end-to-end time (Ray's includes starting the actors and loading the encoder in each,
  measured alone on 64 texts as "startup"), max |Δ| of the vectors and the MMD² to the real SST-2 test set;
* alignment: ``kmm_weights(features="nystrom")`` on the local embeddings vs
  :func:`synalign.scaleout.align.ray_kmm_weights` (the screen on 1 and 2 shard actors) on the Ray-embedded pool;
* generation: the local generator on one endpoint vs :class:`synalign.scaleout.generation.RayGenerator` on 1
  and 2 endpoints, each a scripted OpenAI-compatible server that answers after ``--latency`` seconds (an LLM
  server's time per call), ``max_concurrency`` 4 per endpoint.

Ray is not expected to be faster on 2 cores; the point is the same results and the overhead measured.

    python evals/scripts/bench_ray.py [--n 3000] [--requests 32] [--latency 0.25] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from _bench import demo_dir, machine_note, markdown, shared_data, shown

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _texts(n: int) -> tuple[list[str], str]:
    data = shared_data(None)
    path = data / "sst2" / "train.jsonl" if data is not None else demo_dir() / "train.jsonl"
    with open(path, encoding="utf-8") as handle:
        texts = list(dict.fromkeys(json.loads(line)["text"] for line in handle))
    return texts[:n], shown(path)


def _embeddings(texts: list[str], real: list[str]) -> tuple[list[tuple], dict]:
    import numpy as np
    import torch

    from synalign.divergence import median_bandwidth, mmd2_unbiased
    from synalign.embeddings import Embedder
    from synalign.scaleout.embed import embed_texts

    embedder = Embedder(cache_dir=False, device="cpu")
    embedder.encode(texts[:64])  # load and warm the encoder: the local rows time encoding only
    runs: list[tuple[str, float, np.ndarray, float | None]] = []  # name, seconds, vectors, startup seconds
    for threads in (2, 1):
        torch.set_num_threads(threads)
        start = time.perf_counter()
        out = embedder.encode(texts)
        runs.append((f"local Embedder.encode, {threads} torch thread(s)", time.perf_counter() - start, out, None))
    torch.set_num_threads(2)
    real_emb = embedder.encode(real)
    for actors in (1, 2):
        start = time.perf_counter()
        embed_texts(texts[:64], actors=actors)
        startup = time.perf_counter() - start
        start = time.perf_counter()
        out = embed_texts(texts, actors=actors)
        runs.append((f"Ray embed_texts, {actors} actor(s)", time.perf_counter() - start, out, startup))
    _, ref_time, ref, _ = runs[0]
    bw = median_bandwidth(real_emb, ref)
    ref_mmd = mmd2_unbiased(ref, real_emb, bw, device="cpu")
    rows = []
    for name, seconds, vectors, startup in runs:
        mmd = mmd2_unbiased(vectors, real_emb, bw, device="cpu")
        rows.append((
            name, seconds, len(texts) / seconds, seconds / ref_time, f"{float(np.abs(vectors - ref).max()):.2g}",
            f"{abs(mmd - ref_mmd):.2g}", f"{startup:.1f}" if startup is not None else "–",
        ))
    return rows, {"real": real_emb, "ref": ref, "ray": runs[-1][2], "bw": bw}


def _alignment(texts: list[str], emb: dict) -> list[tuple]:
    import numpy as np
    import pyarrow as pa
    import ray.data

    from synalign.divergence import mmd2_weighted
    from synalign.kmm import kmm_weights
    from synalign.scaleout.align import ray_kmm_weights

    real, bw = emb["real"], emb["bw"]
    start = time.perf_counter()
    local = kmm_weights(emb["ref"], real, bandwidth=bw, features="nystrom", device="cpu")
    local_s = time.perf_counter() - start
    f_local = mmd2_weighted(emb["ref"], real, local, bw, device="cpu")
    rows = [("local kmm_weights(features='nystrom')", local_s, 1.0, "–", "–", f"{f_local:.5g}", "–")]
    ray_emb = emb["ray"]
    step = -(-len(texts) // 8)
    pool = ray.data.from_arrow([
        pa.table({"id": np.arange(i, i + len(part)), "embedding": pa.array(list(part), type=pa.list_(pa.float32()))})
        for i, part in ((i, ray_emb[i : i + step]) for i in range(0, len(texts), step))
    ]).materialize()  # a list column, as a pool read back from Parquet or JSON might hold
    for shards in (1, 2):
        start = time.perf_counter()
        _, got = ray_kmm_weights(pool, real, bandwidth=bw, shards=shards, device="cpu")
        seconds = time.perf_counter() - start
        f_ray = mmd2_weighted(ray_emb, real, got, bw, device="cpu")
        same = "yes" if np.array_equal(got > 0, local > 0) else f"no ({int(((got > 0) != (local > 0)).sum())} rows)"
        rows.append((
            f"Ray ray_kmm_weights, {shards} shard(s)", seconds, seconds / local_s,
            f"{float(np.abs(got - local).max()):.2g}", same, f"{f_ray:.5g}", f"{abs(f_ray - f_local):.2g}",
        ))
    return rows


def _generation(n_requests: int, latency: float, tmp: Path) -> list[tuple]:
    from synalign.agents.backend import build_llm_backend
    from synalign.agents.testing import FaultPlan, OpenAITestServer
    from synalign.backends import GenerationRequest, SummaryRequest
    from synalign.config import RunConfig
    from synalign.scaleout.generation import RayGenerator
    from synalign.statsummary import StatisticalSummarizer

    with open(demo_dir() / "train.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    summarizer = StatisticalSummarizer()
    requests = []
    for i in range(n_requests):
        label = ("negative", "positive")[i % 2]
        demos = [r["text"] for r in rows if r["label"] == label][4 * i : 4 * i + 4]
        (attributes,) = summarizer.summarize([SummaryRequest(task="t", label=label, demonstrations=demos)])
        requests.append(GenerationRequest(task="Sentiment of movie reviews.", label=label, attributes=attributes,
                                          demonstrations=demos, n=5, seed=i, round=1))
    plan = FaultPlan(rate=1.0, kinds=("slow",), slow_s=latency)  # every reply after `latency` s, none failing
    out = []
    with OpenAITestServer(faults=plan) as first, OpenAITestServer(faults=plan) as second:
        config = RunConfig(data=tmp / "train.jsonl", out=tmp / "run", llm="openai:test-model", base_url=first.url,
                           llm_cache=False, max_concurrency=4)
        start = time.perf_counter()
        expected = build_llm_backend(config, tmp / "local").generator.generate(requests)
        local_s = time.perf_counter() - start
        calls = first.completions()
        out.append(("local DSPyGenerator, 1 endpoint", "–", local_s, calls, calls / local_s, 1.0, "–"))
        for urls in ([first.url], [first.url, second.url]):
            start = time.perf_counter()
            generator = RayGenerator(config, urls, tmp / f"ray{len(urls)}")
            ready = time.perf_counter() - start
            start = time.perf_counter()
            got = generator.generate(requests)
            seconds = time.perf_counter() - start
            calls = generator.usage()["llm_calls"]
            generator.close()
            out.append((f"RayGenerator, {len(urls)} endpoint(s)", f"{ready:.1f}", seconds, calls, calls / seconds,
                        seconds / local_s, "yes" if got == expected else "NO"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ray scale-out benchmark")
    parser.add_argument("--n", type=int, default=3000, help="pool texts (SST-2 train; > 2,048 for the screen)")
    parser.add_argument("--requests", type=int, default=32, help="generation requests (5 texts each)")
    parser.add_argument("--latency", type=float, default=0.25, help="seconds the scripted server takes per call")
    parser.add_argument("--quick", action="store_true", help="600 texts, 8 requests")
    args = parser.parse_args(argv)
    n, n_requests = (600, 8) if args.quick else (args.n, args.requests)

    import ray
    import ray.data

    texts, source = _texts(n)
    with open(demo_dir() / "test.jsonl", encoding="utf-8") as handle:
        real = [json.loads(line)["text"] for line in handle]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        embed_rows, emb = _embeddings(texts, real)
        align_rows = _alignment(texts, emb)
        with tempfile.TemporaryDirectory() as tmp:
            gen_rows = _generation(n_requests, args.latency, Path(tmp))
    finally:
        ray.shutdown()
    print(machine_note())
    print(f"Ray {ray.__version__}, ray.init(num_cpus=2); pool: {len(texts)} texts of {source}; real: "
          f"{len(real)} texts of {shown(demo_dir() / 'test.jsonl')}; MiniLM (384-d), CPU\n")
    print("Embeddings (Δ and MMD² against the local 2-thread run; Ray times include actor startup):\n")
    print(markdown(["path", "seconds", "texts/s", "time ÷ local", "max abs Δ", "abs ΔMMD²", "startup s"], embed_rows))
    print(f"\nAlignment: {len(texts)} pool rows vs {len(real)} real, Nyström r = 1,024, working set 2,048, "
          "Frank–Wolfe (weights against the local path; weighted MMD² by the exact kernel):\n")
    print(markdown(["path", "seconds", "time ÷ local", "max abs Δw", "same support", "weighted MMD²", "abs Δ"],
                   align_rows))
    print(f"\nGeneration: {n_requests} requests × 5 texts, scripted server answering in {args.latency} s, "
          "max_concurrency 4 per endpoint, no response cache:\n")
    print(markdown(["path", "actor startup s", "generate s", "calls", "calls/s", "time ÷ local", "same texts"],
                   gen_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
