"""LLM call traces: one JSON object per line in ``RUN_DIR/llm_trace.jsonl``, secrets redacted.

Every attempt at an LLM call (and every response-cache hit) appends one record::

    {"ts": "...", "node": "summarize"|"generate", "round": 1, "request": 0, "attempt": 1,
     "status": "ok"|"error"|"cache_hit", "error_kind": null, "error": null, "model": "openai:gpt-4o-mini",
     "latency_s": 0.42, "tokens_in": 312, "tokens_out": 95, "cost_usd": 0.0001, "cache_key": "3f2a...",
     "prompt": [{"role": "system", "content": "..."}, ...], "response": "..."}

Only request bodies are traced, never headers. Every line passes through :class:`Redactor` before it is
written: the API key's value, ``Authorization``/``Bearer`` tokens and ``sk-...`` key shapes are replaced by
``[REDACTED]``. :func:`format_trace` renders a trace for ``synalign trace RUN_DIR``.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from synalign.errors import InputError

__all__ = ["TRACE_FILE", "REDACTED", "Redactor", "TraceWriter", "read_trace", "format_trace"]

TRACE_FILE = "llm_trace.jsonl"
REDACTED = "[REDACTED]"

_PATTERNS = (
    re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=\-]{4,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{12,}"),
    re.compile(
        r"(?i)((?:authorization|api[_-]?key|x-api-key)[\"']?\s*[:=]\s*[\"']?)(?!Bearer\b|\[REDACTED\])([^\s\"',}\]]{4,})"
    ),
)


class Redactor:
    """Replaces secrets in text: the given secret values (and their JSON-escaped forms) and common
    credential shapes (``Bearer ...``, ``sk-...``, ``api_key=...``, ``Authorization: ...``).

    Args:
        secrets: exact values to remove, e.g. the API key read from the environment; values shorter
            than 4 characters are ignored (they would redact ordinary text).
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        values: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= 4:
                values.add(secret)
                values.add(json.dumps(secret)[1:-1])
        self._secrets = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = _PATTERNS[0].sub(f"Bearer {REDACTED}", text)
        text = _PATTERNS[1].sub(REDACTED, text)
        return _PATTERNS[2].sub(lambda m: m.group(1) + REDACTED, text)


class TraceWriter:
    """Appends redacted JSON records to ``path`` (thread-safe; one ``write`` + flush per record)."""

    def __init__(self, path: Path | str, redactor: Redactor) -> None:
        self.path = Path(path)
        self.redactor = redactor
        self._lock = threading.Lock()
        self.records = 0

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (``ts`` is added); non-JSON values are stringified."""
        record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **record}
        line = self.redactor(json.dumps(record, ensure_ascii=False, default=str))
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
            self.records += 1


def read_trace(run_dir: Path | str) -> list[dict[str, Any]]:
    """Records of ``RUN_DIR/llm_trace.jsonl`` (or of the given ``.jsonl`` file), in order.

    Raises:
        InputError: no trace file there, a compressed or non-UTF-8 file, or a line that is not JSON (``file:line``).
    """
    path = Path(run_dir)
    if path.is_dir():
        path = path / TRACE_FILE
    if not path.is_file():
        raise InputError(f"{path}: no LLM trace (runs with the offline backend make no LLM calls)")
    from synalign.filecheck import check_not_compressed

    check_not_compressed(path)
    records = []
    number = 0
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{number}: malformed trace record ({exc.msg})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}:{number + 1}: not UTF-8 text (is it an LLM trace?)") from None
    return records


def _clip(text: str, limit: int | None) -> str:
    text = text.rstrip()
    if limit is None or len(text) <= limit:
        return text
    return text[:limit].rstrip() + f" … [{len(text) - limit} more chars]"


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines()) if text else prefix + "(empty)"


def format_trace(
    run_dir: Path | str,
    *,
    node: str | None = None,
    round: int | None = None,  # noqa: A002 - the loop's term
    errors_only: bool = False,
    full: bool = False,
    limit: int | None = None,
    width: int = 600,
) -> str:
    """A readable rendering of a run's LLM trace: a summary line, then one block per record with its
    node, round, attempt, status, latency, tokens, prompt and response (each message clipped to
    ``width`` characters unless ``full``).

    Args:
        node, round: keep only records of that node / round.
        errors_only: keep only failed attempts.
        limit: show at most this many records (the summary still counts all).

    Raises:
        InputError: see :func:`read_trace`; a ``round`` no record has.
    """
    records = read_trace(run_dir)
    rounds = sorted({r["round"] for r in records if isinstance(r.get("round"), int)})
    if round is not None and round not in rounds:
        held = f"rounds {', '.join(map(str, rounds))}" if rounds else "no rounds"
        raise InputError(f"`round` {round}: the trace holds {held}")
    status = Counter(r.get("status") for r in records)
    kinds = Counter(r.get("error_kind") for r in records if r.get("status") == "error")
    tokens_in = sum(r.get("tokens_in") or 0 for r in records if r.get("status") == "ok")
    tokens_out = sum(r.get("tokens_out") or 0 for r in records if r.get("status") == "ok")
    calls = status["ok"] + status["error"]
    lines = [
        f"{len(records)} trace records: {calls} LLM calls ({status['ok']} ok, {status['error']} failed), "
        f"{status['cache_hit']} cache hits; tokens in/out {tokens_in}/{tokens_out}",
    ]
    if kinds:
        lines.append("failures: " + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items(), key=lambda kv: str(kv[0]))))
    shown = [
        r
        for r in records
        if (node is None or r.get("node") == node)
        and (round is None or r.get("round") == round)
        and (not errors_only or r.get("status") == "error")
    ]
    if limit is not None:
        shown = shown[:limit]
    clip = None if full else width
    for r in shown:
        tokens = f"{r.get('tokens_in') or 0}→{r.get('tokens_out') or 0} tok" if r.get("status") == "ok" else ""
        cost = f" ${r['cost_usd']:.6f}" if r.get("cost_usd") else ""
        latency = f"{r['latency_s']:.2f}s" if isinstance(r.get("latency_s"), (int, float)) else ""
        head = (
            f"[{r.get('ts', '')}] round {r.get('round')} {r.get('node')} #{r.get('request')} "
            f"attempt {r.get('attempt')} {str(r.get('status', '')).upper()} {latency} {tokens}{cost} "
            f"{r.get('model', '')}"
        )
        lines.extend(["", " ".join(head.split())])
        if r.get("status") == "error":
            lines.append(f"  error ({r.get('error_kind')}): {_clip(str(r.get('error')), clip)}")
        for message in r.get("prompt") or []:
            lines.append(f"  {message.get('role', '?')}:")
            lines.append(_indent(_clip(str(message.get("content", "")), clip)))
        if r.get("status") != "error":
            response = r.get("response")
            text = response if isinstance(response, str) else json.dumps(response, ensure_ascii=False, indent=2)
            lines.append("  response:")
            lines.append(_indent(_clip(text or "", clip)))
    return "\n".join(lines)
