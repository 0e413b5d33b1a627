"""Backend usage summed over every process of a run (a resumed run has several).

Each process appends its backend's counters to ``OUT/usage.json`` when it stops (finished, failed or
interrupted; a ``SIGKILL``-ed process cannot, so its calls are missing from the total). ``summary.json``
reports the sum: numbers add up, nested counters add up key by key, ``cache_hit_rate`` is recomputed from
the summed hits and misses, and anything else (names, the concurrency limits) is the latest process's.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from synalign.artifacts.rundir import USAGE_FILE

__all__ = ["USAGE_FILE", "record_usage", "total_usage"]


def _read(out: Path) -> list[dict[str, Any]]:
    try:
        entries = json.loads((out / USAGE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return (
        [e for e in entries if isinstance(e, dict) and isinstance(e.get("usage"), dict)]
        if isinstance(entries, list)
        else []
    )


def record_usage(out: Path, usage: dict[str, Any]) -> None:
    """Append this process's ``usage`` to ``out/usage.json`` (atomically; nothing when ``out`` is gone)."""
    from synalign.fileio import atomic_write_text

    if not out.is_dir():
        return
    entries = _read(out) + [{"pid": os.getpid(), "ended": round(time.time(), 3), "usage": usage}]
    atomic_write_text(out / USAGE_FILE, json.dumps(entries, indent=1, ensure_ascii=False, default=str) + "\n")


def total_usage(out: Path) -> tuple[dict[str, Any], int]:
    """The usage of every recorded process of the run in ``out``, summed
    (:func:`synalign.agents.usage.merge_usage`), and how many processes that is."""
    from synalign.agents.usage import merge_usage

    entries = _read(out)
    return merge_usage([entry["usage"] for entry in entries]), len(entries)
