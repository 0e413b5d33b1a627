"""A local OpenAI-compatible chat-completions server with scripted replies and injectable faults.

It exists so that the real clients (langchain-openai's ``ChatOpenAI`` and DSPy's ``dspy.LM``) are exercised
over real HTTP in tests, with no network and no model. Standard library only (``http.server`` in a thread).

This module is the HTTP side. Replies are deterministic functions of the request body
(:func:`~synalign.agents.testing.replies.scripted_reply`); ``n`` (several choices), ``usage``
(whitespace-token counts) and ``stream: true`` (server-sent events) are supported. Faults
(:class:`~synalign.agents.testing.faults.FaultPlan`) are drawn per request from a seeded RNG, or scripted in
order:

========================  =================================================================================
``rate_limit``            HTTP 429 with ``Retry-After`` (integer seconds) and an OpenAI error body
``server_error``          HTTP 500 with an OpenAI error body
``connection_reset``      the TCP connection is reset (RST) after the request was read
``slow``                  the reply is delayed ``slow_s`` seconds (beyond the client timeout)
``malformed_json``        HTTP 200, ``application/json``, body cut mid-object
``missing_fields``        HTTP 200, valid JSON without ``choices``
``schema_violation``      HTTP 200, a well-formed completion whose content lacks required output fields
``truncated``             HTTP 200, content cut in half, ``finish_reason: "length"``
========================  =================================================================================

Run ``python -m synalign.agents.testing.openai_server --port 0`` to serve on a free port; it prints its base
URL (``http://127.0.0.1:PORT/v1``) on the first line of stdout.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from synalign.agents.testing.faults import FAULT_KINDS, FaultPlan
from synalign.agents.testing.replies import scripted_reply

__all__ = ["OpenAITestServer", "main"]


class OpenAITestServer:
    """An OpenAI-compatible ``/v1/chat/completions`` server in a background thread.

    Use as a context manager (``with OpenAITestServer() as server: server.url``) or call :meth:`start` and
    :meth:`stop`. ``requests`` logs every request (path, model, n, fault, status; never headers); ``stats``
    counts requests by outcome.

    Args:
        host, port: where to listen (``port=0`` picks a free port).
        faults: the fault plan; None = no faults.
        api_key: when set, requests without ``Authorization: Bearer <api_key>`` get HTTP 401.
        junk: when True, a list reply of 4 or more texts carries one empty string and one verbatim copy of
            a demonstration in place of two new texts (exercises the generator's filters).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        faults: FaultPlan | None = None,
        api_key: str | None = None,
        junk: bool = True,
    ) -> None:
        self.faults = faults or FaultPlan()
        self.api_key = api_key
        self.junk = junk
        self.requests: list[dict[str, Any]] = []
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self._script = list(self.faults.script)
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL for OpenAI clients, e.g. ``http://127.0.0.1:8123/v1``."""
        host, port = cast("tuple[str, int]", self._httpd.server_address[:2])  # an AF_INET (host, port) pair
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAITestServer:
        """Start serving in a daemon thread; returns self."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def completions(self) -> int:
        """Number of chat-completion requests received so far (faulty ones included)."""
        with self._lock:
            return sum(1 for r in self.requests if r["path"].endswith("/chat/completions"))

    def _draw_fault(self) -> str:
        with self._lock:
            if self._script:
                return self._script.pop(0)
            if self.faults.rate > 0 and self._rng.random() < self.faults.rate:
                return self._rng.choice(list(self.faults.kinds))
            return "ok"

    def _log(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)
            self.stats[entry["outcome"]] += 1


# ----------------------------------------------------------------------------------------------------------
# HTTP handling


def _make_handler(server: OpenAITestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        owner = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: OpenAITestServer

    def setup(self) -> None:
        super().setup()
        # replies are written as headers + body; without NODELAY, Nagle + delayed ACK add ~40 ms per call
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path.rstrip("/").endswith("/models"):
            self.owner._log({"path": self.path, "outcome": "ok", "status": 200})
            self._send_json(200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]})
        else:
            self._send_json(404, _error("not found", "invalid_request_error"))

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        entry: dict[str, Any] = {"path": self.path}
        if self.owner.api_key is not None:
            if self.headers.get("Authorization", "") != f"Bearer {self.owner.api_key}":
                entry.update(outcome="unauthorized", status=401)
                self.owner._log(entry)
                self._send_json(401, _error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
                return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            entry.update(outcome="not_found", status=404)
            self.owner._log(entry)
            self._send_json(404, _error(f"unknown path {self.path}", "invalid_request_error"))
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            entry.update(outcome="bad_request", status=400)
            self.owner._log(entry)
            self._send_json(400, _error("request body is not JSON", "invalid_request_error"))
            return
        fault = self.owner._draw_fault()
        entry.update(model=body.get("model"), n=body.get("n", 1), stream=bool(body.get("stream")), fault=fault)
        plan = self.owner.faults
        if fault == "rate_limit":
            entry.update(outcome="rate_limit", status=429)
            self.owner._log(entry)
            self._send_json(
                429,
                _error("Rate limit reached for test-model. Please try again later.", "requests", "rate_limit_exceeded"),
                {"Retry-After": str(plan.retry_after)},
            )
            return
        if fault == "server_error":
            entry.update(outcome="server_error", status=500)
            self.owner._log(entry)
            self._send_json(500, _error("The server had an error while processing your request.", "server_error"))
            return
        if fault == "connection_reset":
            entry.update(outcome="connection_reset", status=None)
            self.owner._log(entry)
            self._reset()
            return
        if fault == "malformed_json":
            entry.update(outcome="malformed_json", status=200)
            self.owner._log(entry)
            self._send_json(
                200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess'
            )
            return
        if fault == "missing_fields":
            entry.update(outcome="missing_fields", status=200)
            self.owner._log(entry)
            self._send_json(200, {"id": "chatcmpl-missing", "object": "chat.completion", "model": body.get("model")})
            return
        if fault == "slow":
            time.sleep(plan.slow_s)
        entry.update(outcome=fault, status=200)
        self.owner._log(entry)
        reply = scripted_reply(body, fault=fault, junk=self.owner.junk)
        if body.get("stream"):
            self._stream(reply, body)
        else:
            self._send_json(200, reply)

    def _reset(self) -> None:
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def _stream(self, reply: dict[str, Any], body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        base = {
            "id": reply["id"], "object": "chat.completion.chunk", "created": reply["created"], "model": reply["model"]
        }
        try:
            for choice in reply["choices"]:
                message = choice["message"]
                words = re.split(r"(\s+)", message.get("content") or "")
                for start in range(0, len(words), 8):
                    delta: dict[str, Any] = {"content": "".join(words[start : start + 8])}
                    if start == 0:
                        delta["role"] = "assistant"
                    chunk = {**base, "choices": [{"index": choice["index"], "delta": delta, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                if message.get("tool_calls"):
                    calls = [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]
                    chunk = {
                        **base,
                        "choices": [{"index": choice["index"], "delta": {"tool_calls": calls}, "finish_reason": None}],
                    }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                end = {
                    **base,
                    "choices": [{"index": choice["index"], "delta": {}, "finish_reason": choice["finish_reason"]}],
                }
                self.wfile.write(f"data: {json.dumps(end)}\n\n".encode())
            if (body.get("stream_options") or {}).get("include_usage"):
                self.wfile.write(f"data: {json.dumps({**base, 'choices': [], 'usage': reply['usage']})}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except OSError:
            pass


def _error(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


# ----------------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> None:
    """``python -m synalign.agents.testing.openai_server [--port 0] [--fault-rate 0.2] ...``: serve until Ctrl-C or
    SIGTERM, then print the request counts by outcome as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help="comma-separated fault kinds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retry-after", type=int, default=1)
    parser.add_argument("--slow-s", type=float, default=3.0)
    parser.add_argument("--api-key-env", default=None, help="require the key held in this environment variable")
    parser.add_argument("--no-junk", action="store_true")
    args = parser.parse_args(argv)
    import os

    plan = FaultPlan(
        rate=args.fault_rate,
        kinds=tuple(k for k in args.faults.split(",") if k),
        seed=args.seed,
        retry_after=args.retry_after,
        slow_s=args.slow_s,
    )
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    server = OpenAITestServer(args.host, args.port, faults=plan, api_key=api_key, junk=not args.no_junk)
    print(server.url, flush=True)
    import signal

    def _stop(*_: object) -> None:  # SIGTERM: finish cleanly and print the request counts
        threading.Thread(target=server._httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    try:
        server._httpd.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()
        print(json.dumps(dict(server.stats)), flush=True)


if __name__ == "__main__":
    main()
