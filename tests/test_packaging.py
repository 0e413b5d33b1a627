"""Packaging: one top-level import name, the folder mapping of DESIGN.md §2, data files inside the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _clean_source(tmp_path: Path) -> Path:
    """A copy of the checkout's tracked and not-ignored files (as ``scripts/lint.sh`` installs), so that a stale
    ``build/`` folder cannot put files into the wheel that the tree no longer has; the checkout itself outside git."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        return ROOT
    src = tmp_path / "src"
    for name in filter(None, os.fsdecode(listed.stdout).split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    return src


def test_wheel_holds_only_the_synalign_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
         str(_clean_source(tmp_path))],
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
    # the benchmark and study scripts (evals/scripts/) are not shipped
    scripts = {path.name for path in (ROOT / "evals" / "scripts").glob("*.py")}
    shipped = {n.rsplit("/", 1)[-1] for n in names if n.startswith("synalign/evals/")}
    assert {"_bench.py", "bench_run.py", "trust_study.py"} <= scripts and not shipped & scripts, shipped & scripts
    assert not [n for n in names if n.startswith("synalign/evals/") and (n.rsplit("/", 1)[-1].startswith("bench_")
                                                                         or "/scripts/" in n)]


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


def _public_names(module: str) -> set[str] | None:
    """``__all__`` of ``module`` read from its source (None when it has none), without importing the module."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, module
    for node in ast.parse(Path(spec.origin).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return None


def test_evals_scripts_are_unpackaged_and_use_only_public_names() -> None:
    """The benchmark and study scripts live in evals/scripts/ (no __init__.py: not a package), nothing under evals/
    edits sys.path, and the scripts import only public names of the installed synalign (in the module's
    ``__all__``)."""
    import ast

    folder = ROOT / "evals" / "scripts"
    assert not (folder / "__init__.py").exists()
    assert [str(p.relative_to(ROOT)) for p in sorted((ROOT / "evals").rglob("*.py"))
            if "sys.path.insert" in p.read_text(encoding="utf-8")] == []
    private = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("synalign", "evals"):
                public = _public_names(node.module)
                private += [f"{path.name}: {node.module}.{alias.name}" for alias in node.names
                            if alias.name.startswith("_") or (public is not None and alias.name not in public)]
    assert private == []


def test_litellm_cost_map_is_local_without_the_variable_set() -> None:
    """LITELLM_LOCAL_MODEL_COST_MAP is set in one place (synalign.agents), which the modules above it that use
    DSPy import first: with the variable unset, importing them and then LiteLLM reads the bundled cost map and
    opens no connection."""
    pytest.importorskip("litellm")
    code = (
        "import os, socket, sys\n"
        "tried = []\n"
        "def _blocked(*args, **kwargs):\n"
        "    tried.append(args)\n"
        "    raise OSError('network blocked in this test')\n"
        "socket.socket.connect = socket.create_connection = socket.getaddrinfo = _blocked\n"
        "import synalign.evals.optimize, synalign.app.cli\n"
        "print('VAR=' + str(os.environ.get('LITELLM_LOCAL_MODEL_COST_MAP')))\n"
        "import litellm\n"
        "print('COSTS=' + str(len(litellm.model_cost)), 'TRIED=' + str(len(tried)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.split()
    assert "VAR=True" in lines and "TRIED=0" in lines, out.stdout + out.stderr[-2000:]
    assert int(next(x for x in lines if x.startswith("COSTS="))[6:]) > 100
