"""Shared helpers of the scripts in ``evals/scripts/``: markdown tables, peak memory, data loading, workers.

The scripts are not part of the wheel. They run as ``python evals/scripts/bench_X.py`` from a checkout with
``synalign`` installed (``pip install -e .``), import only its public names, and find this module because
Python puts a script's own folder first on ``sys.path``. They fall back to the bundled demo data when the
shared data directory (``../shared/data`` from the repository root) is absent.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "REPO",
    "markdown",
    "peak_rss_mb",
    "demo_dir",
    "shared_data",
    "shown",
    "machine_note",
    "jittered",
    "built_revision",
    "run_worker",
    "main_or_worker",
]

REPO = Path(__file__).resolve().parents[2]
#: First argument of a script run as a worker (:func:`run_worker`, :func:`main_or_worker`).
WORKER_FLAG = "--worker"


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """:func:`synalign.evals.tables.markdown`, imported on use: a worker (:func:`run_worker`) may import an
    earlier revision's ``synalign`` that has no such module."""
    from synalign.evals.tables import markdown as table

    return table(headers, rows)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (``ru_maxrss``, Linux kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def demo_dir() -> Path:
    """The bundled SST-2 demo dataset (800 train / 872 test real rows)."""
    return REPO / "synalign" / "data" / "sst2-demo"


def shared_data(arg: str | None) -> Path | None:
    """The shared data directory given (or ``../shared/data`` from the repo root), or None if absent."""
    path = Path(arg) if arg else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


def sst2_embeddings(shared: str | None, n: int, cache_dir: str | None) -> tuple[np.ndarray, str]:
    """MiniLM embeddings ``(n, 384)`` float32 of the first ``n`` SST-2 train sentences of the shared data (the
    bundled demo's, with a note, when the shared data is absent), and the source path as shown."""
    from synalign.datafiles import load_examples
    from synalign.embeddings import Embedder

    data = shared_data(shared)
    src = (data / "sst2" / "train.jsonl") if data and (data / "sst2" / "train.jsonl").exists() else None
    if src is None:
        src = demo_dir() / "train.jsonl"
        print(f"note: shared data not found; using the bundled demo ({shown(src)})")
    texts = [r.text for r in load_examples(src)][:n]
    x = Embedder(cache_dir=cache_dir, device="cpu").encode(texts, show_progress=False)
    return np.ascontiguousarray(x, dtype=np.float32), shown(src)


def shown(path: Path) -> str:
    """``path`` relative to the repository root, as printed in tables (no machine-specific prefixes)."""
    return os.path.relpath(path, REPO)


def machine_note() -> str:
    """One line: CPU count, torch threads, Python version."""
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        threads = -1
    return (
        f"machine: {os.cpu_count()} CPUs visible, torch threads {threads}, load average "
        f"{os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}"
    )


def jittered(x: np.ndarray, n: int, seed: int, scale: float = 0.02) -> np.ndarray:
    """n unit-norm rows: the rows of ``x`` in a random (seeded) order, then rows of ``x`` drawn with
    replacement + N(0, scale²) noise, renormalised. Every prefix of the first len(x) rows is a uniform sample."""
    rng = np.random.default_rng(seed)
    x = x[rng.permutation(len(x))]
    if n <= len(x):
        return x[:n].astype(np.float32)
    extra = x[rng.integers(0, len(x), n - len(x))] + rng.normal(0, scale, (n - len(x), x.shape[1]))
    out = np.concatenate([x, extra]).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def built_revision(rev: str, work: Path) -> Path:
    """A directory importable as ``synalign`` at revision ``rev`` (a non-editable build of ``git archive`` into
    ``work/rev-SHA``, reused when present): put it first on ``PYTHONPATH`` of a subprocess to run that revision
    with the installed libraries."""
    sha = subprocess.run(["git", "rev-parse", rev], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()
    target = work / f"rev-{sha[:10]}"
    if (target / "synalign").is_dir():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "src.tar"
        subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), sha], cwd=REPO, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(Path(tmp) / "src", filter="data")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(Path(tmp) / "src")], check=True)
    return target


def run_worker(module: str, args: Sequence[str], work: Path, path_first: Path | None) -> dict[str, Any]:
    """Run ``_worker(out, result_file, *args)`` of ``evals/scripts/<module>.py`` in a fresh Python (all arguments
    strings; ``python SCRIPT --worker ...``, see :func:`main_or_worker`) and return the JSON it wrote to
    ``result_file``; ``out`` is a fresh run directory. ``path_first``: a :func:`built_revision` put first on
    ``PYTHONPATH``, so the worker imports that revision's ``synalign``."""
    script = Path(__file__).resolve().parent / f"{module}.py"
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        result_file = Path(tmp) / "result.json"
        env = dict(os.environ)
        if path_first is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(path_first), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        command = [sys.executable, str(script), WORKER_FLAG, str(Path(tmp) / "run"), str(result_file), *args]
        subprocess.run(command, env=env, check=True, cwd=tmp)
        return json.loads(result_file.read_text())


def main_or_worker(main: Callable[[], Any], worker: Callable[..., None]) -> None:
    """The ``__main__`` block of a script with a worker: ``SCRIPT --worker ARGS...`` runs ``worker(*ARGS)`` (for
    :func:`run_worker`), anything else exits with ``main()``'s return value."""
    if sys.argv[1:2] == [WORKER_FLAG]:
        worker(*sys.argv[2:])
        return
    raise SystemExit(main())
