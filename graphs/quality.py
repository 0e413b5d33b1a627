"""The quality checks of the loop's nodes: contrastive demonstrations, near-copies of real texts, the LM's own
label check, the held-out utility and the held-out choice of how much to keep (thin calls into the core:
:mod:`synalign.contrast`, :mod:`synalign.novelty`, :mod:`synalign.lmcheck`, :mod:`synalign.utility`,
:mod:`synalign.keepchoice`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import numpy as np

from synalign.graphs.context import SynAlignContext
from synalign.graphs.state import SampleRecord
from synalign.keepchoice import KeepChoice
from synalign.novelty import NearCopies

__all__ = ["HeldOut", "choose_kept", "contrast_blocks", "held_out", "label_check", "near_copies"]


def contrast_blocks(ctx: SynAlignContext, clusters: list[tuple[list[str], str]]) -> list[list[tuple[str, list[str]]]]:
    """The contrast of each cluster, given as ``(example ids, label)`` (``--contrast N``): N real texts of the
    label most confused with its label (the ones nearest its demonstrations), as ``[(label name, texts)]``;
    ``[]`` each when off or with a single label. The confusion is computed once per process and kept in
    ``ctx.neighbours``."""
    from synalign.contrast import confusable_labels, contrast_examples

    labels = [r.label for r in ctx.real]
    if ctx.config.contrast == 0 or len(set(labels)) < 2:
        return [[] for _ in clusters]
    if ctx.neighbours is None:
        ctx.neighbours = confusable_labels(ctx.real_embeddings, labels, seed=ctx.config.seed)
    row = {r.id: i for i, r in enumerate(ctx.real)}
    out = []
    for example_ids, label in clusters:
        blocks = contrast_examples(ctx.real_embeddings, labels, [row[i] for i in example_ids],
                                   ctx.neighbours.get(label, []), ctx.config.contrast)
        out.append([(ctx.label_name(other), [ctx.real[i].text for i in rows]) for other, rows in blocks])
    return out


def label_check(ctx: SynAlignContext, samples: list[SampleRecord], round_: int, emit: Callable[..., None]) -> None:
    """Write the LM's own label-check margin (:mod:`synalign.lmcheck`) into each new sample, with a
    ``label_check`` progress event per scored text (``emit(node, round, **payload)``).

    Raises:
        InputError: the backend has no label checker (``label_check`` lm on a backend without one).
    """
    from synalign.errors import InputError

    checker = ctx.backend.label_checker
    if checker is None:
        raise InputError(f"`label_check` lm: the {ctx.backend.name} backend has no LM label check")
    emit("label_check", round_, done=0, total=len(samples))
    margins = checker.margins(
        [s["text"] for s in samples], [s["label"] for s in samples],
        on_done=lambda done, total: emit("label_check", round_, done=done, total=total),  # type: ignore[call-arg]
    )
    for sample, margin in zip(samples, margins, strict=True):
        sample["label_margin"] = float(margin)


def choose_kept(
    ctx: SynAlignContext, samples: list[SampleRecord], emb: np.ndarray, mask: np.ndarray, margins: np.ndarray | None,
    seed: int,
) -> tuple[KeepChoice, np.ndarray] | None:
    """With ``keep`` heldout and a validation slice: how much of the accepted set to keep
    (:func:`synalign.keepchoice.choose_keep`; ranked by the LM margin, else by the real-set classifier's
    1 − p_other) and the (N,) mask of what is kept; None otherwise."""
    from synalign.consistency import label_consistency_scores
    from synalign.keepchoice import choose_keep
    from synalign.verdict import MIN_LOG_LIKELIHOOD_EFFECT

    val = ctx.validation_embeddings
    if ctx.config.keep != "heldout" or val is None or not len(ctx.validation) or not mask.any():
        return None
    rows = np.flatnonzero(mask)
    labels = [samples[i]["label"] for i in rows]
    real_labels = [r.label for r in ctx.real]
    rank = (margins[rows] if margins is not None
            else 1.0 - label_consistency_scores(ctx.real_embeddings, real_labels, emb[rows], labels))
    choice, kept = choose_keep(ctx.real_embeddings, real_labels, emb[rows], labels, rank, val,
                               [r.label for r in ctx.validation], min_effect=MIN_LOG_LIKELIHOOD_EFFECT, seed=seed)
    final = np.zeros_like(mask)
    final[rows[kept]] = True
    return choice, final


def near_copies(ctx: SynAlignContext, samples: list[SampleRecord], emb: np.ndarray) -> NearCopies:
    """Near-copies among the pool of any real text the run holds, its validation slice included
    (:mod:`synalign.novelty`); each sample's similarities are computed once per process (``ctx.near_copy``)."""
    from synalign.novelty import nearest_text_similarity

    new = [i for i, s in enumerate(samples) if s["id"] not in ctx.near_copy]
    if new:
        # the validation slice too: a copy of a held-out text (an external pool may hold one) would leak into
        # the utility estimate; excluding it can only make the estimate more conservative
        reference = [*ctx.real, *ctx.validation]
        vectors = ctx.real_embeddings
        if ctx.validation_embeddings is not None and len(ctx.validation):
            vectors = np.vstack([vectors, ctx.validation_embeddings])
        sim, _ = nearest_text_similarity([samples[i]["text"] for i in new], [r.text for r in reference])
        cos = (emb[new] @ vectors.T).max(axis=1)
        ctx.near_copy.update(
            (samples[i]["id"], (float(a), float(b))) for i, a, b in zip(new, sim, cos, strict=True)
        )
    pairs = np.asarray([ctx.near_copy[s["id"]] for s in samples], dtype=np.float64).reshape(-1, 2)
    return NearCopies.from_similarities(pairs[:, 0], pairs[:, 1])


class HeldOut(TypedDict, total=False):
    """The ``utility`` and ``fidelity`` of a :class:`RoundMetrics` row (absent without a validation slice)."""

    utility: dict[str, Any]
    fidelity: dict[str, Any]


def held_out(
    ctx: SynAlignContext, samples: list[SampleRecord], emb: np.ndarray, mask: np.ndarray, bandwidth: float, seed: int
) -> HeldOut:
    """The round's utility and fidelity on the validation slice (``{}`` when the run has none)."""
    from synalign.compare import heldout_fidelity
    from synalign.utility import estimate_utility

    val = ctx.validation_embeddings
    if val is None or not len(ctx.validation):
        return {}
    labels = [s["label"] for s in samples]
    acc_labels = [lab for lab, keep in zip(labels, mask, strict=True) if keep]
    utility = estimate_utility(
        ctx.real_embeddings, [r.label for r in ctx.real], emb[mask], acc_labels, val,
        [r.label for r in ctx.validation], pool=emb, pool_labels=labels, seed=seed,
    )
    fidelity = heldout_fidelity(emb[mask], val, ctx.real_embeddings, bandwidth, seed=seed, device=ctx.device)
    return {"utility": utility.model_dump(), "fidelity": fidelity.model_dump()}
