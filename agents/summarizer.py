"""Attribute summariser: a LangChain chat model with structured output (SynAlign stage 2, "latent attribute
reasoning"; Ren et al., WWW 2025, §3.2).

For each demonstration cluster the agent fills the ``summarize_attributes`` prompt spec (task, label,
numbered demonstrations) and asks the chat model for a reply that validates against the spec's output
schema (a pydantic model with every field required). A reply that does not parse, misses fields or was
truncated is retried by :class:`~synalign.agents.runner.LLMRunner`; after the last attempt the request fails
with :class:`~synalign.agents.errors.LLMError`, never silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from synalign.agents.errors import MalformedReply
from synalign.agents.runner import CallResult, LLMRunner
from synalign.agents.specs import output_model, render_inputs, to_chat_prompt
from synalign.backends import SummaryRequest
from synalign.prompts import PromptSpec, load_spec
from synalign.records import AttributeSummary

__all__ = ["LLMSummarizer", "chat_model_identity"]

_REQUIRED = ("style", "tone", "topic", "length", "perspective")


def chat_model_identity(model: Any) -> dict[str, Any]:
    """The parts of a LangChain chat model that change its replies (class, model name, sampling
    settings, base URL) for the cache key; never credentials."""
    out: dict[str, Any] = {"class": type(model).__name__}
    for attr in ("model_name", "model", "temperature", "max_tokens", "top_p", "seed", "openai_api_base", "base_url"):
        value = getattr(model, attr, None)
        if isinstance(value, (str, int, float, bool)) and value is not None:
            out[attr] = value
    return out


def _message_dicts(messages: list[Any]) -> list[dict[str, str]]:
    return [{"role": getattr(m, "type", "user"), "content": str(getattr(m, "content", m))} for m in messages]


class LLMSummarizer:
    """:class:`~synalign.backends.Summarizer` on any LangChain chat model that supports
    ``with_structured_output``.

    Args:
        chat_model: e.g. ``ChatOpenAI(...)`` (its own retries should be off: ``max_retries=0``).
        runner: the shared call runner (cache, retries, concurrency, trace).
        spec: the prompt spec (default ``summarize_attributes``); its outputs must include style, tone,
            topic, length and perspective; other outputs are kept under ``other`` as ``"name: value"``.
        method: LangChain structured-output method (``json_schema``, ``function_calling``, ``json_mode``).

    Raises:
        InputError: a spec without the required output fields.
    """

    name = "llm-summarizer"

    def __init__(
        self,
        chat_model: Any,
        runner: LLMRunner,
        *,
        spec: PromptSpec | None = None,
        method: str = "json_schema",
    ) -> None:
        from synalign.errors import InputError

        self.spec = spec or load_spec("summarize_attributes")
        missing = [f for f in _REQUIRED if f not in self.spec.output_names()]
        if missing:
            raise InputError(f"prompt spec {self.spec.name!r} lacks summary output field(s): {', '.join(missing)}")
        self.chat_model = chat_model
        self.runner = runner
        self.method = method
        self.schema = output_model(self.spec)
        self.prompt = to_chat_prompt(self.spec)
        try:
            self.structured = chat_model.with_structured_output(self.schema, method=method, include_raw=True)
        except (TypeError, ValueError, NotImplementedError):  # a chat model without that method: its default
            self.structured = chat_model.with_structured_output(self.schema, include_raw=True)
        self.calls = 0

    def summarize(
        self, requests: list[SummaryRequest], *, on_done: Callable[[int, AttributeSummary], None] | None = None
    ) -> list[AttributeSummary]:
        """One :class:`AttributeSummary` per request, in order (requests run concurrently); ``on_done(i,
        summary)`` as each request finishes (progress).

        Raises:
            LLMError: a request failed after all retries.
        """
        return self.runner.map(self._one, requests, on_done=on_done)

    def _one(self, index: int, request: SummaryRequest) -> AttributeSummary:
        values = render_inputs(
            self.spec, {"task": request.task, "label": request.label, "demonstrations": request.demonstrations}
        )
        messages = self.prompt.format_messages(**values)
        prompt = _message_dicts(messages)
        payload = {
            "node": "summarize",
            "model": chat_model_identity(self.chat_model),
            "method": self.method,
            "schema": self.schema.model_json_schema(),
            "messages": prompt,
        }

        def call() -> CallResult:
            out = self.structured.invoke(messages)
            raw = out.get("raw")
            if out.get("parsing_error") is not None:
                raise MalformedReply(f"reply does not match the schema: {out['parsing_error']}")
            metadata = getattr(raw, "response_metadata", {}) or {}
            if metadata.get("finish_reason") == "length":
                raise MalformedReply("reply truncated at max_tokens (finish_reason=length)", kind="truncated")
            parsed = out.get("parsed")
            if parsed is None:
                raise MalformedReply("reply carries no structured output")
            value = parsed.model_dump() if hasattr(parsed, "model_dump") else dict(parsed)
            usage = getattr(raw, "usage_metadata", None) or {}
            return CallResult(
                value=value,
                text=json.dumps(value, ensure_ascii=False),
                tokens_in=int(usage.get("input_tokens") or 0),
                tokens_out=int(usage.get("output_tokens") or 0),
            )

        self.calls += 1
        result = self.runner.call(
            node="summarize", round=request.round, index=index, payload=payload, prompt=prompt, fn=call
        )
        return self._to_summary(result.value)

    def _to_summary(self, value: dict[str, Any]) -> AttributeSummary:
        known = set(AttributeSummary.model_fields)
        data = {k: v for k, v in value.items() if k in known}
        other = list(data.get("other") or [])
        other += [
            f"{k}: {v if not isinstance(v, list) else '; '.join(map(str, v))}"
            for k, v in value.items()
            if k not in known
        ]
        data["other"] = other
        return AttributeSummary.model_validate(data)
