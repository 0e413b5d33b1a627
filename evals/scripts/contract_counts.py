"""Issue 19's before/after figures for the run contract (prints a table; run from the repository root).

- parses per run: calls of the functions that parse ``--llm`` (``parse_llm``, which ``LLMSpec`` calls when a
  ``RunConfig`` is built, and ``RunConfig.backend_kind``) and the selection name (``parse_strategy``, which
  ``StrategySpec`` calls, ``get_strategy``, ``check_strategy``) during one 2-round run on the bundled demo, after
  its ``RunConfig`` is built (counted with a profiler hook, so calls through any import name count);
- ``"config.json"`` literals in code outside the run-directory module;
- places that decide "is this a run directory" (reads of ``config.json``/``summary.json`` existence);
- reads of ``summary.json`` content by key outside the module that writes it;
- lines per floor (the folders mapped to ``synalign.*``).

Usage: ``python evals/scripts/contract_counts.py``
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parents[2]
FLOORS = ["synalign", "prompts", "agents", "artifacts", "scaleout", "graphs", "evals", "app"]
LLM_PARSERS = {"parse_llm", "backend_kind"}
SELECTION_PARSERS = {"parse_strategy", "get_strategy", "check_strategy"}


def _code_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.split() if line.split("/")[0] in FLOORS]


def _count_parses(llm: str) -> Counter[str]:
    from synalign import RunConfig
    from synalign.agents.testing import OpenAITestServer
    from synalign.graphs import run

    counts: Counter[str] = Counter()
    here = str(ROOT)

    def hook(frame, event, arg):  # noqa: ANN001
        if event == "call":
            code = frame.f_code
            if code.co_filename.startswith(here):
                if code.co_name in LLM_PARSERS:
                    counts["--llm"] += 1
                elif code.co_name in SELECTION_PARSERS:
                    counts["selection"] += 1

    with tempfile.TemporaryDirectory() as tmp, OpenAITestServer() as server:
        extra = {"base_url": server.url, "api_key_env": "SYNALIGN_COUNTS_KEY"} if llm != "eda" else {}
        os.environ["SYNALIGN_COUNTS_KEY"] = "test"
        config = RunConfig(data=ROOT / "synalign/data/sst2-demo", out=Path(tmp) / "run", llm=llm, max_rounds=2,
                           max_real=200, samples_per_cluster=4, cache_dir=Path(tmp) / "cache", **extra)
        sys.setprofile(hook)
        threading.setprofile(hook)
        try:
            run(config)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
    return counts


def main() -> None:
    files = _code_files()
    texts = {path: path.read_text(encoding="utf-8") for path in files}
    rundir = {p for p in files if p.name == "rundir.py"}
    literal = sum(len(re.findall(r'(?<![`\w])"config\.json"', t)) for p, t in texts.items() if p not in rundir)
    is_run = sum(len(re.findall(r'"(?:config|summary)\.json"\)?\s*\)?\.(?:is_file|exists)\(\)', t))
                 for p, t in texts.items() if p not in rundir)
    summary_reads = sum(len(re.findall(r'\bsummary(?:\.get\(|\[)"', t)) for t in texts.values())
    lines = Counter()
    for path, text in texts.items():
        parts = path.relative_to(ROOT).parts
        lines["evals/scripts (unshipped)" if parts[:2] == ("evals", "scripts") else parts[0]] += text.count("\n")
    print("| figure | count |\n|---|---|")
    for llm in ("eda", "openai:scripted"):
        parses = _count_parses(llm)
        print(f"| parses of --llm in one 2-round --llm {llm} run | {parses['--llm']} |")
        print(f"| parses of the selection name in one 2-round --llm {llm} run | {parses['selection']} |")
    print(f"| \"config.json\" literals outside rundir | {literal} |")
    print(f"| existence checks deciding 'is a run' outside rundir | {is_run} |")
    print(f"| summary reads by key (summary[\"…\"] / summary.get(\"…\")) | {summary_reads} |")
    for floor in (*FLOORS, "evals/scripts (unshipped)"):
        if lines[floor]:
            print(f"| lines in {floor}/ | {lines[floor]} |")


if __name__ == "__main__":
    main()
