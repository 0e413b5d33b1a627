"""Generator: a DSPy module that writes ``n`` new label-conditioned texts per call (SynAlign stage 2,
attribute-conditioned generation; Ren et al., WWW 2025, §3.2).

:class:`SampleGenerator` is a ``dspy.Module`` around ``dspy.Predict`` of the ``generate_samples`` spec
(task, label, attributes, demonstrations, n → ``texts: list[str]``); DSPy optimisers tune its instructions
and few-shot demos (``synalign optimize``). :class:`DSPyGenerator` runs it as the loop's
:class:`~synalign.backends.Generator`: through the shared :class:`~synalign.agents.llm.LLMRunner`
(cache, retries, adaptive concurrency, trace), then :func:`filter_texts`; when filtering leaves fewer than
``n`` texts it asks again for the missing ones (``max_topups`` times, each with a new seed).

:func:`filter_texts` drops, and counts by reason: ``empty`` texts, exact ``duplicate`` s (after
normalising case and whitespace), ``near_duplicate`` s of an earlier kept text and
``copy_of_demonstration`` s (exact or near copies of a demonstration), and ``surplus`` texts beyond ``n``.
"Near" means a ``difflib.SequenceMatcher`` ratio ≥ 0.9 on the normalised strings (Ratcliff–Obershelp
similarity, 2·matches / total length; 0.9 ≈ one changed word in a 10-word sentence).
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from synalign.agents.errors import MalformedReply  # noqa: E402
from synalign.agents.runner import CallResult, LLMRunner  # noqa: E402
from synalign.agents.specs import to_signature  # noqa: E402
from synalign.backends import Generation, GenerationRequest  # noqa: E402
from synalign.dedup import NEAR_DUPLICATE_RATIO, SeenTexts  # noqa: E402
from synalign.prompts import PromptSpec, load_spec  # noqa: E402

__all__ = ["filter_texts", "SampleGenerator", "DSPyGenerator", "lm_identity"]

class _DropHandledTruncationWarning(logging.Filter):
    """DSPy warns on every reply cut at ``max_tokens``; the generator handles those (retried for chat models,
    dropped and counted as ``truncated`` for completion models), so the warning is noise in a run's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "LM response was truncated" not in record.getMessage()


logging.getLogger("dspy.clients.lm").addFilter(_DropHandledTruncationWarning())

_LIST_MARK = re.compile(r"^\s*(?:\d{1,3}[.):]|[-*•])\s+")


def _clean(text: Any) -> str:
    text = " ".join(str(text).split())
    text = _LIST_MARK.sub("", text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def filter_texts(
    candidates: Iterable[Any],
    demonstrations: Sequence[str],
    *,
    existing: Sequence[str] = (),
    limit: int | None = None,
    threshold: float = NEAR_DUPLICATE_RATIO,
) -> tuple[list[str], Counter[str]]:
    """Keep the usable candidates, in order.

    Candidates are cleaned first (whitespace collapsed, a leading list marker such as ``"3. "`` or ``"- "``
    and enclosing quotes removed). Then each is dropped as ``empty``, ``copy_of_demonstration``,
    ``duplicate`` (of an ``existing`` or earlier kept text), ``near_duplicate`` (ratio ≥ ``threshold``) or
    ``surplus`` (beyond ``limit`` kept texts).

    Returns:
        (kept texts, Counter of dropped candidates by reason).
    """
    kept: list[str] = []
    dropped: Counter[str] = Counter()
    seen = SeenTexts(demonstrations, existing, threshold=threshold)
    for candidate in candidates:
        text = _clean(candidate) if candidate is not None else ""
        reason = seen.reason(text)
        if reason is None and limit is not None and len(kept) >= limit:
            reason = "surplus"
        if reason is None:
            kept.append(text)
            seen.add(text)
        else:
            dropped[reason] += 1
    return kept, dropped


class SampleGenerator(dspy.Module):
    """DSPy module: ``dspy.Predict`` of the ``generate_samples`` spec, then :func:`filter_texts`.

    ``forward(task, label, attributes, demonstrations, n, seed=None)`` returns
    ``dspy.Prediction(texts=[...], dropped={reason: count})`` with at most ``n`` texts.

    Args:
        spec: the prompt spec (default ``generate_samples``); it must have inputs task, label,
            attributes, demonstrations, n and a ``list[str]`` output ``texts``.

    Raises:
        InputError: a spec without those fields.
    """

    def __init__(self, spec: PromptSpec | None = None, *, threshold: float = NEAR_DUPLICATE_RATIO) -> None:
        from synalign.errors import InputError

        super().__init__()
        spec = spec or load_spec("generate_samples")
        need = {"task", "label", "attributes", "demonstrations", "n"}
        if not need <= set(spec.input_names()) or "texts" not in spec.output_names():
            raise InputError(
                f"prompt spec {spec.name!r} must have inputs {sorted(need)} and a list[str] output 'texts'"
            )
        self.spec = spec
        self.threshold = threshold
        self.generate = dspy.Predict(to_signature(spec))

    def forward(
        self,
        task: str,
        label: str,
        attributes: str,
        demonstrations: list[str],
        n: int,
        seed: int | None = None,
    ) -> dspy.Prediction:
        kwargs: dict[str, Any] = {"config": {"seed": seed}} if seed is not None else {}
        prediction = self.generate(
            task=task, label=label, attributes=attributes, demonstrations=list(demonstrations), n=n, **kwargs
        )
        texts, dropped = filter_texts(_as_list(prediction.texts), demonstrations, limit=n, threshold=self.threshold)
        return dspy.Prediction(texts=texts, dropped=dict(dropped))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [line for line in value.splitlines() if line.strip()]
    return list(value)


def lm_identity(lm: Any) -> dict[str, Any]:
    """The parts of a ``dspy.LM`` that change its replies (class, model, base URL, sampling kwargs), for
    the cache key; ``api_*`` credentials are left out except the base URL."""
    kwargs = getattr(lm, "kwargs", {}) or {}
    out: dict[str, Any] = {
        "class": type(lm).__name__,
        "model": getattr(lm, "model", None),
        "model_type": getattr(lm, "model_type", None),
        "base_url": kwargs.get("api_base") or kwargs.get("base_url"),
    }
    out["kwargs"] = {
        k: v
        for k, v in sorted(kwargs.items())
        if not k.startswith("api_") and k not in ("base_url", "timeout", "max_retries", "num_retries")
        and isinstance(v, (str, int, float, bool, type(None)))
    }
    return out


def _finish_reason(response: Any) -> str | None:
    reason = getattr(response, "finish_reason", None)
    if reason is None:
        choices = getattr(response, "choices", None) or []
        if choices:
            reason = getattr(choices[0], "finish_reason", None)
    return reason if isinstance(reason, str) else None


class DSPyGenerator:
    """:class:`~synalign.backends.Generator` running :class:`SampleGenerator` on a ``dspy.LM``.

    Args:
        lm: any ``dspy.LM`` / ``dspy.BaseLM`` (disable its own cache and retries: ``cache=False``,
            ``num_retries=0``).
        runner: the shared call runner.
        module: the generator module (default ``SampleGenerator()``; load optimised state into it first).
        adapter: DSPy adapter (default ``ChatAdapter`` without its silent JSON fallback call, so every
            call is counted and retried by the runner). A
            :class:`~synalign.agents.completion.ContinuationAdapter` switches to base-model (completion)
            prompting: one text per call (the reply up to the newline), ``n`` calls per request that share
            the cluster's prompt (the server's prefix cache reuses it), up to ``n + max(n, max_topups)``
            calls when filtering drops texts; a line cut at ``max_tokens`` is dropped as ``truncated``.
        max_topups: extra calls per request when filtering leaves fewer than ``n`` texts.
        identity: extra fields of the cache key (e.g. the GGUF's sha256 for a local model).
    """

    name = "dspy-generator"

    def __init__(
        self,
        lm: Any,
        runner: LLMRunner,
        *,
        module: SampleGenerator | None = None,
        adapter: Any = None,
        max_topups: int = 3,
        identity: dict[str, Any] | None = None,
    ) -> None:
        from synalign.agents.completion import ContinuationAdapter

        self.lm = lm
        self.runner = runner
        self.module = module or SampleGenerator()
        self.adapter = adapter or dspy.ChatAdapter(use_json_adapter_fallback=False)
        self.max_topups = max_topups
        self.identity = dict(identity or {})
        self.completion = isinstance(self.adapter, ContinuationAdapter)

    @property
    def prompt_style(self) -> str:
        """``"completion"`` (continuation lines, base models) or ``"chat"``."""
        return "completion" if self.completion else "chat"

    def generate(
        self, requests: list[GenerationRequest], *, on_done: Callable[[int, Generation], None] | None = None
    ) -> list[Generation]:
        """One :class:`Generation` per request, in order (requests run concurrently); ``on_done(i,
        generation)`` as each request finishes (progress).

        Raises:
            LLMError: a call failed after all retries.
        """
        return self.runner.map(self._one, requests, on_done=on_done)

    def _one(self, index: int, request: GenerationRequest) -> Generation:
        kept: list[str] = []
        dropped: Counter[str] = Counter()
        attributes = request.attributes.header_line() if self.completion else request.attributes.render()
        calls = request.n + max(request.n, self.max_topups) if self.completion else self.max_topups + 1
        for topup in range(calls):
            need = request.n - len(kept)
            if need <= 0:
                break
            seed = request.seed if topup == 0 else request.seed * 1_000 + topup
            texts = self._call(index, request, attributes, need, seed, topup)
            if texts is None:
                dropped["truncated"] += 1
                continue
            new, lost = filter_texts(
                texts, request.demonstrations, existing=kept, limit=need, threshold=self.module.threshold
            )
            kept.extend(new)
            dropped.update(lost)
        shortfall = request.n - len(kept)
        if shortfall > 0:
            self.runner.usage.add("generate", shortfall=shortfall)
        self.runner.usage.add_dropped(dropped)
        return Generation(texts=kept, dropped=dict(sorted(dropped.items())))

    def _completion_budget(self, request: GenerationRequest) -> int:
        """Tokens for one continuation: 3 × the longest demonstration's words (≈ 2 × its tokens), at least 48,
        at most the LM's ``max_tokens``; a longer line is dropped as ``truncated``."""
        cap = int((getattr(self.lm, "kwargs", {}) or {}).get("max_tokens") or 256)
        longest = max((len(d.split()) for d in request.demonstrations), default=16)
        return max(min(48, cap), min(cap, 3 * longest))

    def _call(
        self, index: int, request: GenerationRequest, attributes: str, n: int, seed: int, topup: int
    ) -> list[str] | None:
        """The texts of one call, or None for a completion cut at ``max_tokens`` (chat: retried instead)."""
        predict = self.module.generate
        inputs = {
            "task": request.task,
            "label": request.label,
            "attributes": attributes,
            "demonstrations": list(request.demonstrations),
            "n": n,
        }
        messages = self.adapter.format(predict.signature, predict.demos, inputs)
        payload = {
            "node": "generate",
            "lm": {**lm_identity(self.lm), **self.identity},
            "adapter": type(self.adapter).__name__,
            "prompt_style": self.prompt_style,
            "seed": seed,
            "messages": messages,
        }

        budget = {"max_tokens": self._completion_budget(request)} if self.completion else {}
        if budget:
            payload["max_tokens"] = budget["max_tokens"]

        def call() -> CallResult:
            lm = self.lm.copy() if hasattr(self.lm, "copy") else self.lm
            with dspy.context(lm=lm, adapter=self.adapter):
                prediction = predict(**inputs, config={"seed": seed, **budget})
            entry = lm.history[-1] if getattr(lm, "history", None) else {}
            truncated = _finish_reason(entry.get("response")) == "length"
            if truncated and not self.completion:
                raise MalformedReply("reply truncated at max_tokens (finish_reason=length)", kind="truncated")
            texts = [] if truncated else prediction.texts
            if not isinstance(texts, list):
                raise MalformedReply(f"'texts' is not a list but {type(texts).__name__}")
            usage = entry.get("usage") or {}
            outputs = entry.get("outputs") or []
            raw = outputs[0] if outputs else ""
            return CallResult(
                value={"texts": [str(t) for t in texts], **({"truncated": True} if truncated else {})},
                text=raw if isinstance(raw, str) else str(raw),
                tokens_in=int(usage.get("prompt_tokens") or 0),
                tokens_out=int(usage.get("completion_tokens") or 0),
            )

        result = self.runner.call(
            node="generate",
            round=request.round,
            index=index,
            payload=payload,
            prompt=messages,
            fn=call,
            extra={"topup": topup, "prompt_style": self.prompt_style},
        )
        if result.value.get("truncated"):
            return None
        return list(result.value["texts"])
