"""Every shell and Python block of README.md runs verbatim, in order, from a copy of the repository root —
except the blocks marked ``<!-- readme: not run (REASON) -->`` on the line before them (an API key, a GPU
server, minutes of the local LM), and the marker must give a reason."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"(?P<marker><!-- readme: not run \((?P<reason>[^)]*)\) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```",
                    re.S)


def _blocks() -> list[tuple[int, str, str, str | None]]:
    """(line, language, body, reason it is not run or None) of every fenced block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [
        (text[: m.start("lang")].count("\n") + 1, m["lang"], m["body"], m["reason"])
        for m in _BLOCK.finditer(text)
    ]


def test_every_skipped_block_says_why() -> None:
    blocks = [b for b in _blocks() if b[1] in ("bash", "python")]
    assert len(blocks) >= 10
    for line, _, _, reason in blocks:
        assert reason is None or len(reason.split()) >= 3, f"README.md:{line}: say why the block is not run"


@pytest.mark.slow
def test_readme_blocks_run_verbatim(tmp_path: Path) -> None:
    root = tmp_path / "repo"  # a repository root of our own: runs/ and other outputs land here, not in the tree
    root.mkdir()
    for name in ("synalign", "scripts", "pyproject.toml", "README.md"):
        (root / name).symlink_to(ROOT / name)
    (root / ".venv").symlink_to(sys.prefix)  # `.venv/bin/synalign` as the README says
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("SYNALIGN_LLM", None)  # a block without --llm gets the real default backend, as a user would
    ran = 0
    for line, lang, body, reason in _blocks():
        if lang not in ("bash", "python") or reason is not None:
            continue
        command = ["bash", "-euo", "pipefail", "-c", body] if lang == "bash" else [sys.executable, "-c", body]
        proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"README.md:{line} ({lang}) failed:\n{body}\n{proc.stderr[-3000:]}"
        ran += 1
    assert ran >= 6
