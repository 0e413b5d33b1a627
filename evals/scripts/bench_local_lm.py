"""Benchmark: the loop's generation with the embedded local LM vs llama.cpp's own ``llama-bench``.

One ``synalign run --llm local`` on the bundled SST-2 demo (default 1 round; LLM cache off), on the same
model and thread count as ``llama-bench -t 1``, reports side by side:

- decode tokens/s inside the loop (the server's ``/metrics``: tokens predicted / seconds predicting) vs
  ``llama-bench``'s text-generation figure (``tg``) — target ≥ 80 %;
- end-to-end generated tokens/s of the generate node (its wall time, prompt processing and HTTP included);
- the share of wall time spent outside LM calls, of the generate node and of the whole run — target ≤ 5 %
  for the generate node (the whole run also embeds, aligns and writes the report);
- the prefix cache at work: prompt tokens the server evaluated vs prompt tokens sent.

    python evals/scripts/bench_local_lm.py [--rounds 1] [--samples-per-cluster 16]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _bench import demo_dir, machine_note, markdown


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    out = {}
    for line in text.splitlines():
        match = re.match(r"^llamacpp:(\w+)\s+([0-9.eE+-]+)$", line)
        if match:
            out[match[1]] = float(match[2])
    return out


def _llama_bench(model: Path, threads: int) -> dict[str, float]:
    from synalign.agents.llamacpp import find_binary

    binary = find_binary("llama-bench")
    if binary is None:
        raise SystemExit("llama-bench is not built: synalign local-lm build --force")
    cmd = [str(binary), "-m", str(model), "-t", str(threads), "-p", "128", "-n", "32", "-r", "3", "-o", "json"]
    rows = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    out = {}
    for row in rows:
        key = "pp" if row.get("n_prompt") else "tg"
        out[key] = float(row["avg_ts"])
    return out


def main(argv: list[str] | None = None) -> int:
    from synalign.agents import build_backend
    from synalign.config import RunConfig
    from synalign.graphs import run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--samples-per-cluster", type=int, default=16)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        config = RunConfig(data=demo_dir(), out=out, llm="local", max_rounds=args.rounds, llm_cache=False,
                           samples_per_cluster=args.samples_per_cluster, target="0")
        from synalign.evals.fidelity import read_jsonl

        train = read_jsonl(demo_dir() / "train.jsonl")
        reference = {label: [r["text"] for r in train if r["label"] == label] for label in {r["label"] for r in train}}
        (Path(tmp) / "trace").mkdir()
        backend = build_backend(config, Path(tmp) / "trace", reference=reference)
        server_url = backend.info["server"]["url"]
        scraped: dict[str, float] = {}
        close = backend.close

        def scrape_then_close() -> None:
            scraped.update(_metrics(server_url))
            close()

        backend.close = scrape_then_close
        marks: dict[str, float] = {}

        def on_event(event: dict[str, Any]) -> None:
            if event.get("node") == "generate" and event.get("done") in (0, event.get("total")):
                key = "start" if event.get("done") == 0 else "end"  # (per-cluster events in between)
                marks.setdefault(f"{key}{event['round']}", time.perf_counter())

        started = time.perf_counter()
        result = run(config, backend=backend, on_event=on_event)
        wall = time.perf_counter() - started
        trace = [json.loads(line) for line in (Path(tmp) / "trace" / "llm_trace.jsonl").read_text().splitlines()]
    gen_wall = sum(marks[f"end{r}"] - marks[f"start{r}"] for r in range(1, args.rounds + 1) if f"end{r}" in marks)
    calls = [r for r in trace if r.get("status") in ("ok", "error")]
    in_calls = sum(r.get("latency_s") or 0.0 for r in calls)
    tokens_out = sum(r.get("tokens_out") or 0 for r in calls)
    tokens_in = sum(r.get("tokens_in") or 0 for r in calls)
    decode_ts = scraped["tokens_predicted_total"] / scraped["tokens_predicted_seconds_total"]
    backend = result.summary.backend or {}
    threads = backend["server"]["threads"]
    bench = _llama_bench(Path(backend["gguf"]), threads)
    bench_other = _llama_bench(Path(backend["gguf"]), 2 if threads == 1 else 1)
    rows = [
        ["decode tokens/s (loop, server /metrics)", round(decode_ts, 1)],
        ["decode tokens/s (llama-bench tg32, same model and threads)", round(bench["tg"], 1)],
        ["loop decode / llama-bench", f"{decode_ts / bench['tg']:.0%} (target >= 80%)"],
        ["prompt tokens/s (llama-bench pp128)", round(bench["pp"], 1)],
        [f"llama-bench with {2 if threads == 1 else 1} thread(s) instead: tg32 / pp128",
         f"{bench_other['tg']:.1f} / {bench_other['pp']:.1f}"],
        ["generate node: generated tokens/s end to end", round(tokens_out / gen_wall, 1)],
        ["generate node: share of wall time outside LM calls", f"{1 - in_calls / gen_wall:.1%} (target <= 5%)"],
        ["whole run: share of wall time outside LM calls", f"{1 - in_calls / wall:.1%}"],
        ["prompt tokens sent / evaluated by the server (prefix cache)",
         f"{tokens_in} / {int(scraped.get('prompt_tokens_total', 0))}"],
        ["LM calls, texts generated, run wall (s)", f"{len(calls)}, {result.summary.generated}, {wall:.0f}"],
    ]
    print(f"# bench_local_lm: {backend['model']}, {args.rounds} round(s) on the SST-2 demo; "
          f"{machine_note()}")
    print(markdown(["measure", "value"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
