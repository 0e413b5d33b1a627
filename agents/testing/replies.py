"""Scripted replies of the OpenAI-compatible test server: a ``chat.completion`` object that is a
deterministic function of the request body (a seeded RNG keyed by the body), realistic for the request
shapes synalign's clients send:

- ``response_format: {"type": "json_schema"}`` or ``tools`` (LangChain structured output): a JSON object
  that fills the schema; an attribute summary computed from the numbered demonstrations in the prompt;
- DSPy ``ChatAdapter`` prompts (``[[ ## field ## ]]`` sections): every output field of the signature, with
  ``list[str]`` fields holding ``n`` new texts that recombine the demonstrations' words (so they keep the
  demonstrations' label and vocabulary); DSPy ``JSONAdapter`` prompts get the same fields as a JSON object;
- anything else: a short deterministic echo.

The reply-shaping faults (``schema_violation``, ``truncated``) are applied here; the transport faults are the
server's.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = ["scripted_reply"]

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


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def scripted_reply(body: dict[str, Any], *, fault: str, junk: bool) -> dict[str, Any]:
    """A ``chat.completion`` object for the request ``body``; deterministic in the body.

    ``fault`` (``"ok"`` or a kind of :data:`~synalign.agents.testing.faults.FAULT_KINDS`) shapes the reply
    for ``schema_violation`` and ``truncated``; ``junk`` as in :class:`~synalign.agents.testing.OpenAITestServer`.
    """
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
        out = (message.get("content") or "") + "".join(
            c["function"]["arguments"] for c in message.get("tool_calls") or []
        )
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
    dspy_fields = (
        _OUTPUT_FIELD_RE.findall(system[system.find("Your output fields are") :])
        if "Your output fields are" in system
        else []
    )
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
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": function.get("name", "tool"), "arguments": json.dumps(obj)},
                }
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
                demos = [m.group(2) for m in _NUMBERED_RE.finditer(raw)] or [
                    ln.strip("- ").strip() for ln in raw.splitlines() if ln.strip()
                ]
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
        "perspective": (
            "third-person reviewer" if not any(" i " in f" {d.lower()} " for d in demos) else "first-person reviewer"
        ),
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
