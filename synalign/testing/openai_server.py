"""A local OpenAI-compatible chat-completions server with scripted replies and injectable faults.

It exists so that the real clients (langchain-openai's ``ChatOpenAI`` and DSPy's ``dspy.LM``) are exercised
over real HTTP in tests, with no network and no model. Standard library only (``http.server`` in a thread).

Replies are deterministic functions of the request body (a seeded RNG keyed by the body), and realistic for
the request shapes synalign's clients send:

- ``response_format: {"type": "json_schema"}`` or ``tools`` (LangChain structured output): a JSON object
  that fills the schema; an attribute summary computed from the numbered demonstrations in the prompt;
- DSPy ``ChatAdapter`` prompts (``[[ ## field ## ]]`` sections): every output field of the signature, with
  ``list[str]`` fields holding ``n`` new texts that recombine the demonstrations' words (so they keep the
  demonstrations' label and vocabulary); DSPy ``JSONAdapter`` prompts get the same fields as a JSON object;
- anything else: a short deterministic echo.

``n`` (several choices), ``usage`` (whitespace-token counts) and ``stream: true`` (server-sent events) are
supported. Faults (:class:`FaultPlan`) are drawn per request from a seeded RNG, or scripted in order:

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

Run ``python -m synalign.testing.openai_server --port 0`` to serve on a free port; it prints its base URL
(``http://127.0.0.1:PORT/v1``) on the first line of stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FAULT_KINDS", "FaultPlan", "OpenAITestServer", "main"]

FAULT_KINDS: tuple[str, ...] = (
    "rate_limit",
    "server_error",
    "connection_reset",
    "slow",
    "malformed_json",
    "missing_fields",
    "schema_violation",
    "truncated",
)

_SECTION_RE = re.compile(r"\[\[ ## (\w+) ## \]\]")
_OUTPUT_FIELD_RE = re.compile(r"^\s*\d+\.\s+`(\w+)`\s+\(([^)]*)\)", re.MULTILINE)
_NUMBERED_RE = re.compile(r"^\s*(\d+)[.)]\s+(.+?)\s*$", re.MULTILINE)
_LABEL_RE = re.compile(r"^\s*label\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_STOP = frozenset(
    "a an the and or but of to in on at for with is are was were be been it its it's this that these those as "
    "by from 's 't n't , . ! ? ; : - -- ' \" ( ) i you he she we they his her their our my your not no so too "
    "very just than then there here who what which when all any some more most much can could would should "
    "does do did has have had will about into out up down over only also even".split()
)


@dataclass
class FaultPlan:
    """Which faults the server injects.

    Attributes:
        rate: probability in [0, 1] that a request (after the script is used up) gets a fault.
        kinds: the faults drawn from, uniformly (subset of :data:`FAULT_KINDS`).
        script: faults (or ``"ok"``) served to the first requests, in order, before ``rate`` applies.
        seed: seed of the fault RNG (the draw sequence is deterministic; which request gets which draw
            depends on arrival order under concurrency).
        retry_after: ``Retry-After`` header value in whole seconds for ``rate_limit``.
        slow_s: delay in seconds for ``slow`` (make it longer than the client timeout).
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    script: list[str] = field(default_factory=list)
    seed: int = 0
    retry_after: int = 1
    slow_s: float = 3.0

    def __post_init__(self) -> None:
        unknown = [k for k in (*self.kinds, *self.script) if k not in FAULT_KINDS and k != "ok"]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be in [0, 1], got {self.rate}")


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
        host, port = self._httpd.server_address[:2]
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

    def set_faults(self, faults: FaultPlan) -> None:
        """Replace the fault plan (and restart its RNG and script)."""
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)
            self._script = list(faults.script)

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
            self._send_json(200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess')
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
        reply = _reply(body, fault=fault, junk=self.owner.junk)
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
        base = {"id": reply["id"], "object": "chat.completion.chunk", "created": reply["created"], "model": reply["model"]}
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
                    chunk = {**base, "choices": [{"index": choice["index"], "delta": {"tool_calls": calls}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                end = {**base, "choices": [{"index": choice["index"], "delta": {}, "finish_reason": choice["finish_reason"]}]}
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
# Scripted replies


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _reply(body: dict[str, Any], *, fault: str, junk: bool) -> dict[str, Any]:
    """A chat.completion object for ``body``; deterministic in the body."""
    messages = body.get("messages") or []
    texts = [_content_text(m.get("content")) for m in messages]
    system = "\n".join(t for m, t in zip(messages, texts) if m.get("role") in ("system", "developer"))
    user = next((t for m, t in zip(reversed(messages), reversed(texts)) if m.get("role") == "user"), "")
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    n = int(body.get("n") or 1)
    choices = []
    completion_tokens = 0
    for index in range(n):
        rng = random.Random(int.from_bytes(digest[:8], "big") + index)
        message = _message(body, system, user, rng, fault=fault, junk=junk)
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        if fault == "truncated":
            content = message.get("content") or ""
            message["content"] = content[: max(1, len(content) // 2)]
            for call in message.get("tool_calls") or []:
                args = call["function"]["arguments"]
                call["function"]["arguments"] = args[: max(1, len(args) // 2)]
            finish = "length"
        out = (message.get("content") or "") + "".join(c["function"]["arguments"] for c in message.get("tool_calls") or [])
        completion_tokens += len(out.split())
        choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": finish})
    prompt_tokens = sum(len(t.split()) for t in texts)
    return {
        "id": "chatcmpl-" + digest[:12].hex(),
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": body.get("model") or "test-model",
        "system_fingerprint": "fp_synalign_test",
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _message(
    body: dict[str, Any], system: str, user: str, rng: random.Random, *, fault: str, junk: bool
) -> dict[str, Any]:
    response_format = body.get("response_format") or {}
    tools = body.get("tools") or []
    dspy_fields = _OUTPUT_FIELD_RE.findall(system[system.find("Your output fields are") :]) if "Your output fields are" in system else []
    context = _Context.from_prompt(system, user)
    if dspy_fields:
        values = {name: _field_value(name, type_, context, rng, junk=junk) for name, type_ in dspy_fields}
        if fault == "schema_violation":
            values.pop(dspy_fields[0][0], None)
        if response_format.get("type") in ("json_object", "json_schema"):
            return {"role": "assistant", "content": json.dumps(values)}
        parts = [f"[[ ## {name} ## ]]\n{_render(value)}" for name, value in values.items()]
        return {"role": "assistant", "content": "\n\n".join([*parts, "[[ ## completed ## ]]"])}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        obj = _fill_schema(schema, context, rng)
        if fault == "schema_violation":
            obj = {k: v for k, v in obj.items() if k not in list(obj)[:2]}
        return {"role": "assistant", "content": json.dumps(obj), "refusal": None}
    if tools:
        function = tools[0].get("function") or {}
        obj = _fill_schema(function.get("parameters") or {}, context, rng)
        if fault == "schema_violation":
            obj = {k: v for k, v in obj.items() if k not in list(obj)[:2]}
        call_id = "call_" + hashlib.sha256(json.dumps(obj).encode()).hexdigest()[:16]
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": function.get("name", "tool"), "arguments": json.dumps(obj)}}
            ],
        }
    if response_format.get("type") == "json_object":
        return {"role": "assistant", "content": json.dumps({"text": _new_texts(context, 1, rng, junk=False)[0]})}
    last = user.strip().splitlines()[-1] if user.strip() else ""
    return {"role": "assistant", "content": f"test reply: {last[:200]}"}


def _render(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


@dataclass
class _Context:
    """What the scripted model "understands" of a prompt: label, demonstrations and how many texts."""

    label: str
    demonstrations: list[str]
    n: int

    @classmethod
    def from_prompt(cls, system: str, user: str) -> _Context:
        sections = _sections(user)
        label = sections.get("label", "").strip()
        if not label:
            match = _LABEL_RE.search(user)
            label = match.group(1) if match else ""
        demos: list[str] = []
        raw = sections.get("demonstrations")
        if raw is not None:
            try:
                parsed = json.loads(raw)
                demos = [str(d) for d in parsed] if isinstance(parsed, list) else []
            except json.JSONDecodeError:
                demos = [m.group(2) for m in _NUMBERED_RE.finditer(raw)] or [ln.strip("- ").strip() for ln in raw.splitlines() if ln.strip()]
        if not demos:
            demos = [m.group(2) for m in _NUMBERED_RE.finditer(user)]
        match_n = re.match(r"\s*(\d+)", sections.get("n", ""))
        n = int(match_n.group(1)) if match_n else 0
        return cls(label=label.strip().strip("'\""), demonstrations=demos, n=max(n, 1))


def _sections(text: str) -> dict[str, str]:
    text = text.split("\n\nRespond with the corresponding output fields")[0]
    parts = _SECTION_RE.split(text)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def _field_value(name: str, type_: str, context: _Context, rng: random.Random, *, junk: bool) -> Any:
    type_ = type_.replace(" ", "").lower()
    if type_.startswith("list[str]") or name in ("texts", "samples"):
        return _new_texts(context, context.n, rng, junk=junk)
    if type_.startswith("int"):
        return context.n
    if type_.startswith("float"):
        return 0.5
    if type_.startswith("bool"):
        return True
    if name in ("reasoning", "rationale"):
        return f"The demonstrations share the label {context.label or 'given'}; new texts recombine their wording."
    return _attribute_values(context).get(name, f"{name} of {context.label or 'the'} demonstrations")


def _words(text: str) -> list[str]:
    return text.split()


def _content_words(texts: list[str]) -> list[str]:
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w.lower() for w in _words(text) if w.lower() not in _STOP and len(w) > 2 and w.isalpha())
    return [w for w, _ in counts.most_common()]


def _attribute_values(context: _Context) -> dict[str, Any]:
    demos = context.demonstrations or ["(no demonstrations)"]
    lengths = sorted(len(_words(d)) for d in demos)
    top = _content_words(demos)[:6] or ["film"]
    lower = sum(d == d.lower() for d in demos) / len(demos)
    label = context.label or "unlabelled"
    return {
        "style": ("lower-cased, tokenised review fragments" if lower > 0.5 else "mixed-case sentences")
        + f" ({len(demos)} demonstrations)",
        "tone": f"consistent with the label '{label}'",
        "topic": f"texts about {top[0]}",
        "subtopics": top[1:4],
        "length": f"{lengths[0]}-{lengths[-1]} words (median {lengths[len(lengths) // 2]})",
        "perspective": "third-person reviewer" if not any(" i " in f" {d.lower()} " for d in demos) else "first-person reviewer",
        "other": [f"frequent words: {', '.join(top[:5])}"],
    }


def _fill_schema(schema: dict[str, Any], context: _Context, rng: random.Random) -> dict[str, Any]:
    values = _attribute_values(context)
    out: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        if name in values:
            value = values[name]
            out[name] = value if (kind == "array") == isinstance(value, list) else (
                "; ".join(value) if isinstance(value, list) else [value]
            )
        elif kind == "array":
            out[name] = [f"{name} {i + 1}" for i in range(2)]
        elif kind == "integer":
            out[name] = rng.randint(1, 9)
        elif kind == "number":
            out[name] = round(rng.random(), 3)
        elif kind == "boolean":
            out[name] = True
        else:
            out[name] = f"{name} of the {context.label or 'given'} demonstrations"
    return out


def _jaccard(a: str, b: str) -> float:
    sa, sb = set(a.lower().split()), set(b.lower().split())
    return len(sa & sb) / max(1, len(sa | sb))


def _new_texts(context: _Context, n: int, rng: random.Random, *, junk: bool) -> list[str]:
    """``n`` texts that splice a prefix of one demonstration onto a suffix of another (same label)."""
    demos = [d for d in context.demonstrations if _words(d)] or ["a fine example", "another plain example"]
    texts: list[str] = []
    attempts = 0
    while len(texts) < n and attempts < 50 * n:
        attempts += 1
        a, b = rng.choice(demos), rng.choice(demos)
        wa, wb = _words(a), _words(b)
        cut_a = rng.randint(1, max(1, len(wa) - 1)) if len(wa) > 1 else 1
        cut_b = rng.randint(0, max(0, len(wb) - 1))
        words = wa[:cut_a] + wb[cut_b:]
        if attempts > 10 * n or rng.random() < 0.3:
            words = words + rng.choice(demos).split()[-2:]
        text = " ".join(words)
        if text in texts or any(_jaccard(text, d) >= 0.8 for d in demos):
            continue
        texts.append(text)
    while len(texts) < n:  # tiny clusters: fall back to numbered variants
        texts.append(f"{rng.choice(demos)} , take {len(texts) + 1}")
    if junk and n >= 4:
        texts[1] = ""
        texts[2] = demos[0]
    return texts


# ----------------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> None:
    """``python -m synalign.testing.openai_server [--port 0] [--fault-rate 0.2] ...``: serve until Ctrl-C or
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
