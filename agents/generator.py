"""Generator: a DSPy module that writes ``n`` new label-conditioned texts per call (SynAlign stage 2,
attribute-conditioned generation; Ren et al., WWW 2025, §3.2).

:class:`SampleGenerator` is a ``dspy.Module`` around ``dspy.Predict`` of the ``generate_samples`` spec
(task, label, attributes, demonstrations, n → ``texts: list[str]``), then
:func:`~synalign.dedup.filter_texts`; DSPy optimisers tune its instructions and few-shot demos (``synalign
optimize``). :class:`DSPyGenerator` runs
the *same* ``forward`` as the loop's :class:`~synalign.backends.Generator`: each LM call of ``forward`` goes
through the shared :class:`~synalign.agents.runner.LLMRunner` (cache, retries, adaptive concurrency, trace);
when filtering leaves fewer than ``n`` texts it calls ``forward`` again for the missing ones (``max_topups``
times, each with a new seed, the texts kept so far as ``existing``).

:func:`~synalign.dedup.filter_texts` (pure, in the core) drops, and counts by reason: ``empty`` texts, exact
``duplicate`` s (after normalising case and whitespace), ``near_duplicate`` s of an earlier kept text and
``copy_of_demonstration`` s (exact or near copies of a demonstration), and ``surplus`` texts beyond ``n``.
"Near" means a ``difflib.SequenceMatcher`` ratio ≥ 0.9 on the normalised strings (Ratcliff–Obershelp
similarity, 2·matches / total length; 0.9 ≈ one changed word in a 10-word sentence).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import dspy

from synalign.agents.errors import MalformedReply
from synalign.agents.runner import CallResult, LLMRunner
from synalign.agents.specs import to_signature
from synalign.backends import Generation, GenerationRequest
from synalign.dedup import NEAR_DUPLICATE_RATIO, candidate_texts, filter_texts
from synalign.prompts import PromptSpec, load_spec

__all__ = ["filter_texts", "SampleGenerator", "DSPyGenerator", "LMCall", "lm_identity"]

LMCall = Callable[[Any, dict[str, Any], int | None], list[str] | None]
"""How :meth:`SampleGenerator.forward` makes its one LM call, when not by calling its predictor directly:
``lm_call(predictor, inputs, seed)`` returns the candidate texts, or None for a reply cut at ``max_tokens``
that is dropped (counted as ``truncated``). :class:`DSPyGenerator` passes one that runs the predictor through
the run's cache, retries and trace."""

class _DropHandledTruncationWarning(logging.Filter):
    """DSPy warns on every reply cut at ``max_tokens``; the generator handles those (retried for chat models,
    dropped and counted as ``truncated`` for completion models), so the warning is noise in a run's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "LM response was truncated" not in record.getMessage()


logging.getLogger("dspy.clients.lm").addFilter(_DropHandledTruncationWarning())

class SampleGenerator(dspy.Module):
    """DSPy module: ``dspy.Predict`` of the ``generate_samples`` spec, then
    :func:`~synalign.dedup.filter_texts`.

    ``forward(task, label, attributes, demonstrations, n, seed=None)`` returns
    ``dspy.Prediction(texts=[...], dropped={reason: count})`` with at most ``n`` texts. ``synalign optimize``
    tunes it and ``synalign run`` executes it (through :class:`DSPyGenerator`).

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
        *,
        existing: Sequence[str] = (),
        lm_call: LMCall | None = None,
        contrast: Sequence[tuple[str, Sequence[str]]] = (),
    ) -> dspy.Prediction:
        """Ask the predictor for ``n`` texts, then keep at most ``n`` usable ones (:func:`filter_texts`).

        Args:
            task, label, attributes, demonstrations, n: the signature's inputs.
            seed: sampling seed of the LM call (None: the LM's default).
            existing: texts kept earlier for the same request (a top-up); a candidate repeating one is
                dropped.
            lm_call: how to make the LM call (see :data:`LMCall`); None calls the predictor in the current
                DSPy context (as DSPy optimisers do).
            contrast: ``(label, texts)`` of confusable other labels (:mod:`synalign.contrast`), shown after the
                predictor's own few-shot demos as incomplete DSPy demos (``label`` and ``texts`` only): a
                continuation prompt renders each as lines of its label, a chat prompt as an example.

        Returns:
            ``dspy.Prediction(texts=[...], dropped={reason: count})``.
        """
        inputs = {
            "task": task,
            "label": label,
            "attributes": attributes,
            "demonstrations": list(demonstrations),
            "n": n,
        }
        if contrast:
            inputs["demos"] = [*self.generate.demos,
                               *(dspy.Example(label=lab, texts=list(texts)) for lab, texts in contrast)]
        if lm_call is None:
            kwargs: dict[str, Any] = {"config": {"seed": seed}} if seed is not None else {}
            candidates: list[Any] | None = candidate_texts(self.generate(**inputs, **kwargs).texts)
        else:
            candidates = lm_call(self.generate, inputs, seed)
        if candidates is None:
            return dspy.Prediction(texts=[], dropped={"truncated": 1})
        texts, dropped = filter_texts(
            candidates, demonstrations, existing=existing, limit=n, threshold=self.threshold
        )
        return dspy.Prediction(texts=texts, dropped=dict(dropped))


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
    """:class:`~synalign.backends.Generator` running :class:`SampleGenerator` on a ``dspy.LM``: each call is
    the module's ``forward`` (the program ``synalign optimize`` tunes), its LM call made through the runner.

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
            prediction = self.module(
                task=request.task, label=request.label, attributes=attributes,
                demonstrations=list(request.demonstrations), n=need, seed=seed, existing=tuple(kept),
                lm_call=partial(self._call, index, request, topup), contrast=request.contrast,
            )
            kept.extend(prediction.texts)
            dropped.update(prediction.dropped)
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
        self,
        index: int,
        request: GenerationRequest,
        topup: int,
        predict: Any,
        inputs: dict[str, Any],
        seed: int | None,
    ) -> list[str] | None:
        """:data:`LMCall` of :meth:`SampleGenerator.forward` in a run: ``predict`` on ``inputs`` through the
        runner (cache, retries, trace); the texts, or None for a completion cut at ``max_tokens`` (chat:
        retried). ``inputs["demos"]``, when there, replaces the predictor's demos (contrast blocks)."""
        inputs = dict(inputs)
        demos = inputs.pop("demos", predict.demos)
        messages = self.adapter.format(predict.signature, demos, inputs)
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
                prediction = predict(**inputs, demos=demos, config={"seed": seed, **budget})
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
