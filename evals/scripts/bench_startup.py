"""Benchmark 5: start-up time of the CLI (lazy imports). Target: ``synalign --help`` under 1 s.

Runs each command ``--repeats`` times in fresh processes and reports the median and minimum wall time,
plus which heavy modules ``import synalign.app.cli`` pulls in (none of torch, sentence_transformers, sklearn,
langgraph, dspy, litellm should be imported by it).

    python evals/scripts/bench_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _bench import REPO, machine_note, markdown

HEAVY = (
    "torch",
    "sentence_transformers",
    "sklearn",
    "langgraph",
    "dspy",
    "litellm",
    "transformers",
    "gpytorch",
    "ot",
)


def _time(cmd: list[str], repeats: int, env: dict[str, str]) -> tuple[float, float, int]:
    times = []
    code = 0
    for _ in range(repeats):
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True)
        times.append(time.perf_counter() - t)
        code = proc.returncode
    return statistics.median(times), min(times), code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CLI start-up benchmark")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    commands: list[tuple[str, list[str]]] = [
        ("python -c pass (interpreter floor)", [sys.executable, "-c", "pass"]),
        ("python -c 'import synalign'", [sys.executable, "-c", "import synalign"]),
        ("python -m synalign.app --help", [sys.executable, "-m", "synalign.app", "--help"]),
    ]
    exe = shutil.which("synalign") or (
        str(Path(sys.executable).parent / "synalign")
        if (Path(sys.executable).parent / "synalign").exists()
        else None
    )
    if exe:
        commands.append(("synalign --help", [exe, "--help"]))
    rows = []
    for name, cmd in commands:
        med, best, code = _time(cmd, repeats, env)
        rows.append((name, f"{med:.3f}", f"{best:.3f}", code, "yes" if med < 1.0 else "no"))
    probe = (
        "import sys, json; import synalign.app.cli; "
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    heavy = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True
        ).stdout
        or "[]"
    )
    print(machine_note())
    print(f"repeats: {repeats} fresh processes each\n")
    print(markdown(["command", "median s", "min s", "exit code", "< 1 s"], rows))
    print(f"\nheavy modules imported by `import synalign.app.cli`: {', '.join(heavy) if heavy else 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
