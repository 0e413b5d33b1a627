"""Benchmark 4: LLM-call throughput versus concurrency against a local OpenAI-compatible server.

The project's LLM backend (``synalign.agents.backend.build_backend`` with ``--llm openai:test-model
--base-url …``: LangChain ``ChatOpenAI`` summariser and DSPy generator behind one ``LLMRunner`` with its
adaptive concurrency limit, retries and tracing; response cache off) sends a batch of requests to
``synalign.agents.testing.OpenAITestServer``, whose every reply is delayed by a fixed latency L
(``FaultPlan(rate=1, kinds=("slow",), slow_s=L)``: a normal, well-formed reply after L seconds). The ideal
throughput is concurrency ÷ L requests/s; the target is ≥ 80 % of it.

    python evals/scripts/bench_llm.py [--quick] [--latency 0.5] [--concurrency 1,2,4,8,16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _bench import demo_dir, machine_note, markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LLM throughput benchmark")
    parser.add_argument("--quick", action="store_true", help="concurrency 1,4; latency 0.2 s")
    parser.add_argument("--latency", type=float, default=0.5, help="server latency per request, seconds")
    parser.add_argument("--concurrency", default="1,2,4,8,16")
    parser.add_argument("--rounds", type=int, default=8, help="requests per concurrency slot")
    args = parser.parse_args(argv)
    if args.quick:
        args.latency, args.concurrency, args.rounds = 0.2, "1,4", 2
    try:
        from synalign.agents.testing import FaultPlan, OpenAITestServer
    except ImportError as exc:
        print(f"skipped: the local OpenAI-compatible test server is not available ({exc})")
        return 0
    try:
        from synalign.agents.backend import build_backend
    except ImportError as exc:
        print(f"skipped: the LLM backend (synalign.agents) is not importable ({exc}); run `pip install -e .`")
        return 0

    from synalign.backends import GenerationRequest, SummaryRequest
    from synalign.config import RunConfig
    from synalign.records import AttributeSummary

    os.environ.setdefault("SYNALIGN_BENCH_KEY", "sk-local-test")
    demos = [
        "a gorgeous , witty , seductive movie .",
        "the acting is amazing and the story is moving .",
        "one of the best films of the year .",
        "a warm , funny and engaging film .",
    ]
    attrs = AttributeSummary(
        style="short review sentences",
        tone="positive",
        topic="movies",
        length="6-12 words",
        perspective="critic",
    )
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = []
    print(
        "note: warm-up request per path and level is not timed; calls include the generator's top-up requests"
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        OpenAITestServer(
            faults=FaultPlan(rate=1.0, kinds=("slow",), slow_s=args.latency), junk=False
        ) as server,
    ):
        for c in levels:
            n = c * args.rounds
            config = RunConfig(
                data=demo_dir(),
                out=Path(tmp) / f"run{c}",
                llm="openai:test-model",
                base_url=server.url,
                api_key_env="SYNALIGN_BENCH_KEY",
                max_concurrency=c,
                llm_cache=False,
                cache_dir=Path(tmp) / "cache",
            )
            backend = build_backend(config, Path(tmp) / f"run{c}")
            for path, call in (
                (
                    "summariser (LangChain)",
                    lambda i, backend=backend, n=n: backend.summarizer.summarize(
                        [SummaryRequest(task="sentiment", label="positive", demonstrations=demos, round=i)]
                        * (n if i else 1)
                    ),
                ),
                (
                    "generator (DSPy)",
                    lambda i, backend=backend, n=n: backend.generator.generate(
                        [
                            GenerationRequest(
                                task="sentiment",
                                label="positive",
                                attributes=attrs,
                                demonstrations=demos,
                                n=4,
                                seed=s,
                                round=i,
                            )
                            for s in range(n if i else 1)
                        ]
                    ),
                ),
            ):
                call(0)  # warm-up: client construction, DSPy adapter, connection pool (not timed)
                before = server.completions()
                t = time.perf_counter()
                call(c)
                wall = time.perf_counter() - t
                calls = server.completions() - before
                thr = calls / wall
                ideal = c / args.latency
                rows.append(
                    (
                        path,
                        c,
                        calls,
                        f"{wall:.2f}",
                        f"{thr:.2f}",
                        f"{ideal:.2f}",
                        f"{100 * thr / ideal:.0f}%",
                        "yes" if thr >= 0.8 * ideal else "no",
                    )
                )
                print(
                    f"{path} c={c}: {calls} calls in {wall:.2f} s = {thr:.2f}/s (ideal {ideal:.2f}/s)",
                    flush=True,
                )
    print()
    print(machine_note())
    print(
        f"server latency {args.latency} s per request (fixed), {args.rounds} requests per concurrency slot, "
        "response cache off\n"
    )
    print(
        markdown(
            ["path", "concurrency", "calls", "wall s", "calls/s", "ideal c/L", "efficiency", "≥ 80%"], rows
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
