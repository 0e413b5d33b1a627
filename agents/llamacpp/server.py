"""``llama-server`` as a child process that never outlives its run.

:class:`LocalServer` starts the server on 127.0.0.1 with a free port, in its own process group, waits until
``/health`` answers 200 (model loaded), reads ``total_slots`` and ``n_ctx`` from ``/props`` and stops the whole
group on :meth:`LocalServer.stop` (SIGTERM, then SIGKILL). Three guards keep it from being orphaned:

1. the run calls :meth:`stop` in a ``finally`` (normal end, error, Ctrl-C);
2. on Linux the child gets ``PR_SET_PDEATHSIG = SIGKILL``: the kernel kills it when its parent dies, even
   by SIGKILL;
3. a pid file per server in ``<tools_dir>/servers/``; every start first kills servers whose owner process is
   gone (the case of 2 not applying, e.g. another OS).

Defaults follow measurements on 2 CPU cores (issue "real LM in the loop"): one thread and one slot beat two
of each under load, so ``threads=1, slots=1``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synalign.agents.llamacpp.build import find_binary, tools_dir
from synalign.errors import SynalignError

__all__ = ["LocalServer", "ServerError", "server_slots", "reap_orphans"]


class ServerError(SynalignError):
    """The local server could not be started (the message names its log file)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _servers_dir() -> Path:
    path = tools_dir() / "servers"
    path.mkdir(parents=True, exist_ok=True)
    return path


def reap_orphans() -> int:
    """Kill servers started by a process that no longer exists; returns how many were killed."""
    killed = 0
    for pid_file in _servers_dir().glob("*.json"):
        try:
            info = json.loads(pid_file.read_text(encoding="utf-8"))
            pid, owner = int(info["pid"]), int(info["owner_pid"])
        except (OSError, ValueError, KeyError):
            pid_file.unlink(missing_ok=True)
            continue
        if _pid_alive(owner):
            continue
        if _pid_alive(pid) and "llama-server" in _cmdline(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            killed += 1
        pid_file.unlink(missing_ok=True)
    return killed


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "llama-server"  # no /proc (not Linux): trust the pid file


_NO_REPLY = -1  # _get_json's status when the request timed out (connect or read)


def _get_json(url: str, timeout: float) -> tuple[int, Any]:
    """``(HTTP status, JSON body or None)``; status 0 when no HTTP answer came (refused, bad URL, bad JSON),
    :data:`_NO_REPLY` when the connect or the reply timed out."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except TimeoutError:
        return _NO_REPLY, None
    except urllib.error.URLError as exc:
        return (_NO_REPLY if isinstance(exc.reason, TimeoutError) else 0), None
    except (OSError, ValueError):
        return 0, None


def server_slots(base_url: str, timeout: float = 2.0) -> int | None:
    """``total_slots`` of a llama.cpp server at ``base_url`` (``http://HOST:PORT[/v1]``) from its ``/props``,
    or None when the endpoint is not a llama.cpp server (any other answer, or no server listening).

    Raises:
        TimeoutError: no connection or no answer within ``timeout`` seconds (a host that drops packets, or
            a socket that accepts and never answers): no request of a run would get an answer either.
    """
    root = base_url.rstrip("/").removesuffix("/v1")
    status, props = _get_json(root + "/props", timeout=timeout)
    if status == _NO_REPLY:
        raise TimeoutError(f"no answer from {root} within {timeout:g} s")
    if status != 200 or not isinstance(props, dict):
        return None
    slots = props.get("total_slots")
    return int(slots) if isinstance(slots, int) and slots > 0 else None


@dataclass
class LocalServer:
    """A running ``llama-server``.

    Attributes:
        base_url: OpenAI-compatible base URL, ``http://127.0.0.1:PORT/v1``.
        model_path: the GGUF being served.
        total_slots: parallel request slots (``/props``); clients send at most this many requests at once.
        n_ctx: context size in tokens per slot.
        threads: CPU threads of generation.
        log_path: the server's own log.
        startup_s: seconds from start to a healthy server.
    """

    process: subprocess.Popen[bytes]
    base_url: str
    model_path: Path
    total_slots: int
    n_ctx: int
    threads: int
    log_path: Path
    startup_s: float
    props: dict[str, Any] = field(default_factory=dict)
    _pid_file: Path | None = None

    @classmethod
    def start(
        cls,
        model: Path,
        *,
        binary: Path | None = None,
        threads: int = 1,
        slots: int = 1,
        ctx_size: int = 2048,
        startup_timeout: float = 120.0,
        log_path: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> LocalServer:
        """Start ``llama-server -m model`` and wait until it serves.

        Args:
            model: GGUF file.
            binary: the server binary (default: the cached build, see
                :func:`synalign.agents.llamacpp.build.find_binary`).
            threads: generation threads (``-t``); 1 measured fastest on a loaded 2-core machine.
            slots: parallel slots (``-np``); the context is split between them.
            ctx_size: total context in tokens (``-c``).
            startup_timeout: seconds to wait for ``/health`` = 200.
            log_path: server log file (default: a file in the tools directory's ``servers/``).
            extra_args: more ``llama-server`` arguments.

        Raises:
            ServerError: no binary (with the command that builds it), the server exited or did not become
                healthy in time (the message quotes its log's last line).
        """
        binary = binary or find_binary()
        if binary is None:
            raise ServerError(
                "llama-server is not built yet; run: synalign local-lm build (about 6 min on 2 cores, once)"
            )
        reap_orphans()
        servers = _servers_dir()
        log_path = log_path or servers / f"server-{os.getpid()}-{int(time.time())}.log"
        last_error = ""
        for _ in range(3):  # a port taken between probe and bind: try another
            port = _free_port()
            cmd = [
                str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
                "-t", str(threads), "-tb", str(threads), "-np", str(slots), "-c", str(ctx_size),
                "--no-webui", "--no-warmup", "--metrics", *extra_args,
            ]
            started = time.monotonic()
            with open(log_path, "ab") as log_file:
                process = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - setsid + PDEATHSIG, no Python code
                )
            pid_file = servers / f"{process.pid}.json"
            pid_file.write_text(
                json.dumps({"pid": process.pid, "owner_pid": os.getpid(), "port": port}), encoding="utf-8"
            )
            root = f"http://127.0.0.1:{port}"
            while time.monotonic() - started < startup_timeout:
                if process.poll() is not None:
                    break
                status, _ = _get_json(root + "/health", timeout=2.0)
                if status == 200:
                    _, props = _get_json(root + "/props", timeout=5.0)
                    props = props or {}
                    settings = props.get("default_generation_settings") or {}
                    return cls(
                        process=process, base_url=root + "/v1", model_path=Path(model),
                        total_slots=int(props.get("total_slots") or slots),
                        n_ctx=int(settings.get("n_ctx") or ctx_size // max(slots, 1)), threads=threads,
                        log_path=log_path, startup_s=time.monotonic() - started, props=props, _pid_file=pid_file,
                    )
                time.sleep(0.1)
            _stop_process(process)
            pid_file.unlink(missing_ok=True)
            tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["(empty log)"]
            last_error = tail[0][:300]
            if "bind" not in last_error.lower() and "address" not in last_error.lower():
                break
        raise ServerError(f"llama-server did not start ({last_error}); log: {log_path}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL after ``timeout`` s); idempotent."""
        _stop_process(self.process, timeout)
        if self._pid_file is not None:
            self._pid_file.unlink(missing_ok=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
