"""Shared fixtures: a per-session embedding cache, the bundled real SST-2 sample and small slices of it."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import synalign.agents  # noqa: F401  (sets LITELLM_LOCAL_MODEL_COST_MAP: some tests import DSPy directly)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The default backend is the embedded local LM; tests that do not name one run the fast EDA backend, and the
# local-LM tests say --llm local. Subprocesses of the tests inherit this.
os.environ["SYNALIGN_LLM"] = "eda"

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "synalign" / "data" / "sst2-demo"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the whole session, never the user's."""
    path = tmp_path_factory.mktemp("embedding-cache")
    os.environ["SYNALIGN_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """The bundled real SST-2 sample (800 train / 872 test)."""
    return DEMO


@pytest.fixture(scope="session")
def demo_rows() -> list[dict[str, str]]:
    """Rows of the bundled real SST-2 train sample."""
    with open(DEMO / "train.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory, demo_rows: list[dict[str, str]]) -> Path:
    """A 120-row real slice (60 per label) as a single JSONL file, for fast end-to-end runs."""
    rows = (
        [r for r in demo_rows if r["label"] == "negative"][:60]
        + [r for r in demo_rows if r["label"] == "positive"][:60]
    )
    path = tmp_path_factory.mktemp("small") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def black_hole() -> Iterator[int]:
    """Port of a TCP server that accepts connections and never answers (a firewall that swallows requests)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
