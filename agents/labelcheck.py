"""The LM's own label check on a llama.cpp endpoint (:mod:`synalign.lmcheck` holds the method and the margin).

:class:`InContextLabelChecker` classifies each generated text with the model that wrote it: one fixed few-shot
prefix of real examples (``Text: x`` then ``Label: NAME``, the labels interleaved), then ``Text: <generated>``
and ``Label:``; a one-token ``/v1/completions`` request with ``logprobs`` returns the next-token
log-probabilities, from which each label's first-token score and the margin of the intended label follow. The
prefix is the same for every text, so llama.cpp's prompt cache (``cache_prompt``) evaluates it once and each text
costs its own tokens only: 0.25–0.6 s per text for Gemma 3 270M on 2 loaded cores (``evals/RESULTS.md`` §16).

It needs what llama.cpp's server offers: ``POST /tokenize`` (the first token of each label name) and, on
``/v1/completions``, ``logprobs: N`` answered as ``choices[0].logprobs.content[0].top_logprobs`` with token ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from synalign.errors import InputError, SynalignError
from synalign.lmcheck import label_margins, token_groups

__all__ = ["InContextLabelChecker", "PREFIX_TOKENS", "TOP_LOGPROBS"]

TOP_LOGPROBS = 50
"""Next-token candidates read per text. A label whose first token is not among them gets the smallest returned
log-probability, an upper bound on its own."""

PREFIX_TOKENS = 1400
"""Most tokens the few-shot prefix may take: the local server's context is 2,048 tokens per slot, and a clipped
text (:data:`_TEXT_WORDS`) with its ``Label:`` line needs the rest."""

_TEXT_WORDS = 60
"""Words of a text (demonstration or scored text) kept in the prompt."""

_MAX_PER_LABEL = 4
"""Demonstrations per label at most (the pilot's 4 on 2- and 4-label tasks); more labels get fewer, down to 1,
and shorter clips, until the prefix fits :data:`PREFIX_TOKENS`."""


def _clip(text: str, words: int) -> str:
    return " ".join(str(text).split()[:words])


class InContextLabelChecker:
    """The LM's own label check against an OpenAI-compatible llama.cpp server (module docstring).

    Args:
        base_url: ``http://HOST:PORT/v1`` of the llama.cpp server (the one that generates).
        model: model name sent with each request.
        reference: real texts per label value (the run's real training examples; never the validation slice).
        label_names: label value → the name the prompts use (default: the value).
        api_key: bearer key for servers that need one.
        timeout: seconds per HTTP request.
        prefix_tokens: token budget of the few-shot prefix (:data:`PREFIX_TOKENS`).

    Raises:
        InputError: fewer than two labels, a label without real texts, an endpoint without ``/tokenize`` or
            token-id ``logprobs`` (not a llama.cpp server), or labels too many to fit the prefix budget.
    """

    name = "lm-in-context"

    def __init__(
        self,
        base_url: str,
        model: str,
        reference: Mapping[str, Sequence[str]],
        *,
        label_names: Mapping[str, str] | None = None,
        api_key: str = "EMPTY",
        timeout: float = 120.0,
        prefix_tokens: int = PREFIX_TOKENS,
    ) -> None:
        import httpx

        labels = sorted(reference)
        if len(labels) < 2 or any(not reference[label] for label in labels):
            raise InputError("`label_check` needs real examples of at least two labels")
        self.base_url = base_url.rstrip("/")
        self.root = self.base_url.removesuffix("/v1")
        self.model = model
        self.labels = labels
        self.names = {label: (label_names or {}).get(label, label) for label in labels}
        self.calls = 0
        self.seconds = 0.0
        self._http = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {api_key}"})
        self.first_tokens = {label: self._tokenize(" " + self.names[label])[0] for label in labels}
        self.groups = token_groups(self.first_tokens)
        self.tokens = list(self.groups)
        self.prefix, self.per_label = self._fit_prefix(reference, prefix_tokens)
        # A fresh llama-server's first evaluations came out slightly different from every later one (0.1 nats
        # on a margin); one throwaway scoring makes the first text of a run score as it would at any other time.
        self.margins([self.prefix.split("\n", 1)[0].removeprefix("Text: ")], [labels[0]])
        self.calls, self.seconds = 0, 0.0

    # -- the prompt ----------------------------------------------------------------------------------------

    def _tokenize(self, content: str) -> list[int]:
        reply = self._post(self.root + "/tokenize", {"content": content})
        tokens = reply.get("tokens") if isinstance(reply, dict) else None
        if not tokens:
            raise InputError(f"`label_check` lm needs a llama.cpp server; {self.root}/tokenize gave no tokens")
        return [int(t["id"] if isinstance(t, dict) else t) for t in tokens]

    def _render(self, reference: Mapping[str, Sequence[str]], per_label: int, words: int) -> str:
        lines = [f"Text: {_clip(reference[label][j], words)}\nLabel: {self.names[label]}\n"
                 for j in range(per_label) for label in self.labels if j < len(reference[label])]
        return "\n".join(lines) + "\n"

    def _fit_prefix(self, reference: Mapping[str, Sequence[str]], budget: int) -> tuple[str, int]:
        """The largest prefix within ``budget`` tokens: up to :data:`_MAX_PER_LABEL` examples per label
        (fewer with more labels) of up to :data:`_TEXT_WORDS` words, shrunk until it fits."""
        per_label = max(1, min(_MAX_PER_LABEL, 26 // len(self.labels)))
        words = _TEXT_WORDS
        while True:
            prefix = self._render(reference, per_label, words)
            if len(self._tokenize(prefix)) <= budget:
                return prefix, per_label
            if words > 12:
                words = max(12, int(words * 0.75))
            elif per_label > 1:
                per_label, words = per_label - 1, _TEXT_WORDS
            elif words > 4:
                words -= 4
            else:
                raise InputError(
                    f"`label_check`: {len(self.labels)} labels do not fit a {budget}-token classification prompt; "
                    "turn the check off (`label_check` off)"
                )

    # -- scoring ---------------------------------------------------------------------------------------------

    def _post(self, url: str, body: dict[str, Any]) -> Any:
        import httpx

        last: Exception | None = None
        for attempt in range(3):
            try:
                reply = self._http.post(url, json=body)
                if reply.status_code == 404:
                    raise InputError(f"`label_check` lm needs a llama.cpp server; {url} answered 404")
                reply.raise_for_status()
                return reply.json()
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                last = exc
                time.sleep(0.5 * (attempt + 1))
        raise SynalignError(f"label check: {url} failed 3 times ({last})")

    def _hold_prefix(self) -> None:
        """Leave exactly the few-shot prefix in the server's slot, so that every text is scored from the same
        cache state, whatever was scored before it.

        llama.cpp reuses the longest cached common prefix of a prompt, and a token evaluated in another batch
        gets slightly other logits (quantised dot products): scored after different predecessors, the same
        text's margin moved by up to 0.15 nats. Re-sending the prefix re-evaluates only its last token (a
        batch of one), over the rest of the prefix as it was first evaluated (from position 0, in the server's
        fixed batches), so a text's margin no longer depends on its neighbours and a resumed run re-scores to
        the same values. :meth:`margins` sends it twice before its first text (the first may have to evaluate
        the whole prefix) and once before each other; one one-token request per text."""
        self._post(self.base_url + "/completions", {
            "model": self.model, "prompt": self.prefix, "max_tokens": 1, "temperature": 0, "cache_prompt": True,
        })

    def _token_logprobs(self, text: str) -> np.ndarray:
        """(t,) log-probabilities of the label first tokens (:attr:`tokens`) after ``text``'s prompt."""
        reply = self._post(self.base_url + "/completions", {
            "model": self.model, "prompt": f"{self.prefix}Text: {_clip(text, _TEXT_WORDS)}\nLabel:",
            "max_tokens": 1, "temperature": 0, "logprobs": TOP_LOGPROBS, "cache_prompt": True,
        })
        self.calls += 1
        try:
            top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            by_id = {int(t["id"]): float(t["logprob"]) for t in top}
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise InputError(
                f"`label_check` lm needs token-id logprobs from a llama.cpp server; {self.base_url}/completions "
                f"answered without them ({type(exc).__name__})"
            ) from exc
        floor = min(by_id.values())
        return np.asarray([by_id.get(t, floor) for t in self.tokens], dtype=np.float64)

    def margins(
        self, texts: list[str], labels: list[str], on_done: Callable[[int, int], None] | None = None
    ) -> list[float]:
        """Margins in nats (:func:`synalign.lmcheck.label_margins`) of ``texts`` for their intended ``labels``
        (label values), one request per text; ``on_done(done, total)`` after each.

        Raises:
            InputError: a label the checker was not built with; the endpoint's answers lack logprobs.
            SynalignError: a request failed three times.
        """
        if len(texts) != len(labels):
            raise InputError(f"label check: {len(texts)} texts but {len(labels)} labels")
        unknown = sorted(set(labels) - set(self.labels))
        if unknown:
            raise InputError(f"label check: unknown label(s) {', '.join(map(repr, unknown))}")
        rows = []
        started = time.perf_counter()
        if texts:
            self._hold_prefix()  # whatever the slot held: the prefix, its last token evaluated as below
        for i, text in enumerate(texts):
            self._hold_prefix()
            rows.append(self._token_logprobs(text))
            self.seconds += time.perf_counter() - started
            started = time.perf_counter()
            if on_done is not None:
                on_done(i + 1, len(texts))
        lp = np.vstack(rows) if rows else np.zeros((0, len(self.tokens)))
        return label_margins(lp, self.tokens, self.first_tokens, labels).tolist()

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()
