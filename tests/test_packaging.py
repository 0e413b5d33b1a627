"""Packaging: one top-level import name, the folder mapping of DESIGN.md §2, data files inside the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_only_the_synalign_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("synalign-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"synalign", wheel.name.split("-py")[0] + ".dist-info"}
    for expected in (
        "synalign/agents/__init__.py", "synalign/graphs/graph.py", "synalign/evals/__init__.py",
        "synalign/prompts/generate_samples.yaml", "synalign/prompts/summarize_attributes.yaml",
        "synalign/data/sst2-demo/train.jsonl", "synalign/data/sst2-demo/SOURCE.md",
    ):
        assert expected in names, expected


def test_subpackages_import_from_their_folders_and_prompts_are_package_data() -> None:
    from importlib.resources import files

    import synalign.agents
    import synalign.evals
    import synalign.graphs
    import synalign.prompts

    assert Path(synalign.agents.__file__).parent.name == "agents"
    assert Path(synalign.graphs.__file__).parent.name == "graphs"
    assert files("synalign.prompts").joinpath("generate_samples.yaml").is_file()


def test_core_imports_no_llm_framework_and_help_is_lazy() -> None:
    heavy = "('langgraph', 'dspy', 'langchain_core', 'litellm', 'torch', 'sentence_transformers')"
    code = (
        "import sys, synalign, synalign.datafiles, synalign.sampling, synalign.fileio, synalign.embeddings, "
        "synalign.explorer, synalign.divergence, synalign.alignment, synalign.offline\n"
        "from synalign.app.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('LOADED=' + ','.join(m for m in {heavy} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert "Usage: synalign" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "LOADED="
