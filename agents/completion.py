"""Base (completion) models in DSPy: a continuation-line adapter and a ``/v1/completions`` engine.

A base model such as Gemma 3 270M does not follow instructions: chat prompts make it drift into free text,
repeat itself or emit template tokens, and DSPy's ``[[ ## field ## ]]`` chat format does not parse. What it
does well is continue a document. So for completion models the generator's Signature is rendered as few-shot
*continuation lines* (the spec's :class:`~synalign.prompts.CompletionTemplate`)::

    Movie review (negative): <demonstration 1>
    ...
    Movie review (negative):

and the reply up to the newline is one new text. DSPy stays in the loop: :class:`ContinuationAdapter` is a
``dspy.Adapter`` (``format`` / ``parse``), so DSPy optimisers still choose demonstrations (a few-shot demo of
the program becomes more lines), and :class:`CompletionEngine` is a DSPy engine
(``complete(Request) -> Response``) that sends the prompt verbatim to an OpenAI-compatible
``/v1/completions`` endpoint (llama.cpp, vLLM, ...) — DSPy's own text mode appends "BEGIN RESPONSE:".
Few-shot continuation for data generation follows Schick & Schütze (2021, "Generating Datasets with
Pretrained Language Models") and Ye et al. (2022, ZeroGen).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dspy

from synalign.prompts import CompletionTemplate, PromptSpec

__all__ = ["ContinuationAdapter", "CompletionEngine", "render_continuation"]


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def render_continuation(
    template: CompletionTemplate,
    *,
    label: str,
    demonstrations: Sequence[str],
    header_values: dict[str, Any] | None = None,
    demo_blocks: Sequence[tuple[str, Sequence[str]]] = (),
) -> str:
    """The continuation prompt: header, one line per demonstration, then the open line.

    Args:
        template: the spec's completion template.
        label: label of the open line.
        demonstrations: real texts of that label (one line each, whitespace collapsed).
        header_values: values for the header's ``{field}`` placeholders; an empty header line is left out.
        demo_blocks: extra ``(label, texts)`` blocks first (DSPy few-shot demos), each a group of lines.

    Returns:
        The prompt, ending with ``"{item} ({label}):"`` (no trailing space: the model writes it).
    """
    def line(lab: str, text: str) -> str:
        return template.line.format(item=template.item, label=lab, text=_one_line(text))

    parts: list[str] = []
    header = template.header.format(**(header_values or {})).strip() if template.header else ""
    if header:
        parts.append(header)
    for block_label, texts in demo_blocks:
        parts.extend(line(block_label, t) for t in texts)
    parts.extend(line(label, d) for d in demonstrations)
    parts.append(line(label, "").rstrip())
    return "\n".join(parts)


class ContinuationAdapter(dspy.Adapter):
    """DSPy adapter that renders a Signature as few-shot continuation lines (see the module docstring).

    ``format`` returns one user message holding the raw prompt (:func:`render_continuation`); ``parse`` reads
    the completion as one text for the template's output field (``{"texts": [text]}``, or ``[]`` when the
    model wrote nothing usable). Every call carries the template's stop sequences.

    Args:
        spec: a prompt spec with a ``completion`` template and the inputs ``label`` and ``demonstrations``.
        item: what one example is called in the lines (``"Movie review"``); None = the template's ``item``.
            On Gemma 3 270M a task noun gave higher label fidelity than the generic ``"Text"``
            (``evals/scripts/local_lm_prompts.py``, RESULTS.md).

    Raises:
        ValueError: the spec has no completion template.
    """

    def __init__(self, spec: PromptSpec, *, item: str | None = None) -> None:
        super().__init__()
        if spec.completion is None:
            raise ValueError(f"prompt spec {spec.name!r} has no completion template")
        self.spec = spec
        self.template = spec.completion if not item else spec.completion.model_copy(update={"item": item})

    def __call__(
        self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: list[Any], inputs: dict[str, Any]
    ) -> Any:
        lm_kwargs = {**lm_kwargs, "stop": list(self.template.stop)}
        return super().__call__(lm, lm_kwargs, signature, demos, inputs)

    def _call_postprocess(self, processed_signature: Any, original_signature: Any, outputs: list[Any], lm: Any,
                          lm_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        # An empty continuation is a usable answer ("no text"), not a parse error to retry with the same seed.
        return [self.parse(original_signature, (o.get("text") if isinstance(o, dict) else o) or "") for o in outputs]

    def format(self, signature: Any, demos: list[Any], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        blocks: list[tuple[str, list[str]]] = []
        for demo in demos or []:
            texts = demo.get("texts") if hasattr(demo, "get") else None
            if texts:
                blocks.append((str(demo.get("label", inputs.get("label"))), [str(t) for t in texts]))
        prompt = render_continuation(
            self.template,
            label=str(inputs["label"]),
            demonstrations=[str(d) for d in inputs.get("demonstrations") or []],
            header_values={k: v for k, v in inputs.items() if isinstance(v, (str, int, float))},
            demo_blocks=blocks,
        )
        return [{"role": "user", "content": prompt}]

    def parse(self, signature: Any, completion: str) -> dict[str, Any]:
        text = completion.split("\n", 1)[0].strip()
        return {self.template.output: [text] if text else []}


def _finish_reason(reason: str | None) -> str:
    return {"stop": "stop", "length": "length", None: "stop"}.get(reason, "stop")


class CompletionEngine:
    """DSPy engine for an OpenAI-compatible ``/v1/completions`` endpoint: the prompt is sent as is.

    Pass it as ``dspy.LM("openai/MODEL", engine=CompletionEngine(...))``. Sampling settings (temperature,
    max tokens, stop, seed) come from the DSPy request.

    With ``reproducible`` (on for ``--llm local``'s embedded server; off by default, because it costs an extra
    request per cluster that a remote endpoint would bill), a seeded request gets the same completion whatever
    the server ran before, so that a resumed run writes what an uninterrupted one would have. llama.cpp's prompt
    cache alone breaks that: a prompt the slot already holds has only its last token re-evaluated, in a batch of
    one, and those logits differ in the last bits from a cold server's, which evaluates the whole prompt in one batch
    (llama.cpp's server README: ``cache_prompt`` "can cause nondeterministic results"); sampling then picks
    other tokens. So every completion is computed from the same cache state: when the prompt is not the one
    this engine sent last, it is first evaluated from scratch (a one-token request with ``cache_prompt:
    false``), and the request proper always reuses it (``cache_prompt: true``). That costs one extra prompt
    pass per cluster: 1.0–1.2× the generation time of plain prompt caching on Gemma 3 270M (2 busy CPU cores,
    4 clusters × 8 texts, ~250-token prompts), where ``cache_prompt: false`` on every call cost 1.7–2.7×.
    Batching with other requests changes the logits too, so this holds with one server slot (``--llm local``'s
    default, ``SYNALIGN_LOCAL_SLOTS``).

    Args:
        base_url: ``http://HOST:PORT/v1``.
        model: model name sent to the server.
        api_key: key for servers that need one (``"EMPTY"`` otherwise).
        timeout: seconds per HTTP request.
        reproducible: the protocol above; False = plain ``cache_prompt: true`` (one prompt pass fewer per
            cluster, completions that depend on what the server ran before).
        sampler: extra sampling fields sent with every completion (llama.cpp names, e.g. the DRY sampler's
            ``{"dry_multiplier": 0.8, "dry_penalty_last_n": 8192}``; this llama.cpp refuses -1 there); empty = the
            server's defaults.

    Raises (from :meth:`complete`): the ``openai`` client's errors (``APIConnectionError``,
    ``APITimeoutError``, ``APIStatusError``), which :func:`synalign.agents.errors.classify_error` classifies.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "EMPTY",
        timeout: float = 120.0,
        reproducible: bool = False,
        sampler: Mapping[str, Any] | None = None,
    ) -> None:
        import openai

        self.model = model
        self.base_url = base_url
        self.reproducible = reproducible
        self.sampler = dict(sampler or {})
        self._held: str | None = None  # the prompt of this engine's last completed request (what the slot holds)
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout)

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        prompt = "".join(m.text or "" for m in request.messages)
        config = request.config
        kwargs: dict[str, Any] = {"model": self.model, "prompt": prompt}
        if config.max_tokens is not None:
            kwargs["max_tokens"] = config.max_tokens
        if config.temperature is not None:
            kwargs["temperature"] = config.temperature
        if config.stop:
            kwargs["stop"] = list(config.stop)
        seed = getattr(config, "seed", None)
        if seed is not None:
            kwargs["seed"] = seed
        if self.reproducible and self._held != prompt:
            self._held = None
            self.client.completions.create(
                model=self.model, prompt=prompt, max_tokens=1, temperature=0.0, extra_body={"cache_prompt": False}
            )
        try:
            reply = self.client.completions.create(**kwargs, extra_body={**self.sampler, "cache_prompt": True})
        except BaseException:
            self._held = None  # a cut request leaves the slot in an unknown state
            raise
        self._held = prompt
        choice = reply.choices[0]
        usage = reply.usage
        return Response(
            id=reply.id,
            model=reply.model or self.model,
            message=Message.assistant([TextPart(choice.text or "")]),
            finish_reason=_finish_reason(choice.finish_reason),
            usage=Usage(
                input_tokens=getattr(usage, "prompt_tokens", None),
                output_tokens=getattr(usage, "completion_tokens", None),
            ),
        )

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        self.client.close()
