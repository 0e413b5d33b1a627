"""Nodes of the SynAlign loop: thin calls into the core (``synalign.*``) and the backend.

Each node is a deterministic function of (state, context): randomness is derived from ``config.seed``, the
round and the cluster index, so a node re-run after an interruption writes exactly what it would have
written the first time. Nodes report progress through LangGraph's custom stream
(``{"node", "round", "done", "total"}`` events) which the CLI turns into a progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np
from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from synalign._threads import single_thread
from synalign.backends import GenerationRequest, SummaryRequest
from synalign.graphs.context import SynAlignContext
from synalign.graphs.quality import choose_kept, contrast_blocks, held_out, label_check, near_copies
from synalign.graphs.samplestore import (
    get_alignment,
    get_samples,
    put_alignment,
    put_samples,
    require_store,
    thread_namespace,
)
from synalign.graphs.state import (
    ClusterRecord,
    RoundMetrics,
    Route,
    SampleRecord,
    StopReason,
    SummaryRecord,
    SynAlignState,
)
from synalign.records import AttributeSummary, SyntheticExample

__all__ = ["prepare", "explore", "summarize", "generate", "align", "route", "finish"]


def _emit(node: str, round_: int, **payload: Any) -> None:
    try:
        writer = get_stream_writer()
    except RuntimeError:  # called outside a graph run (e.g. unit tests of a node)
        return
    writer({"node": node, "round": round_, **payload})


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def _sample_embeddings(
    ctx: SynAlignContext, samples: list[SampleRecord], on_progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """(len(samples), d) float32 embeddings, encoding only samples this process has not embedded yet
    (``on_progress(done, new)`` per encoded batch)."""
    from synalign.embeddings import encode_with_progress

    known = ctx.sample_vectors
    new = [s for s in samples if s["id"] not in known]
    if new:
        known.update(
            zip([s["id"] for s in new], encode_with_progress(ctx.embedder, [s["text"] for s in new], on_progress))
        )
    if not samples:
        return np.zeros((0, ctx.real_embeddings.shape[1]), dtype=np.float32)
    return np.stack([known[s["id"]] for s in samples])


def _context(runtime: Runtime[SynAlignContext]) -> SynAlignContext:
    """The node's :class:`SynAlignContext`.

    Raises:
        InputError: the graph was invoked without one (one line naming what to pass).
    """
    ctx = runtime.context
    if not isinstance(ctx, SynAlignContext):
        from synalign.errors import InputError

        given = "no context" if ctx is None else f"a context of type {type(ctx).__name__}"
        raise InputError(
            f"the SynAlign graph got {given}: pass context=make_context(RunConfig(data=...)) "
            "(synalign.graphs.make_context), or use synalign.graphs.studio.graph, whose context is a plain "
            "dict of run options"
        )
    return ctx


def prepare(state: SynAlignState, runtime: Runtime[SynAlignContext]) -> dict[str, Any]:
    """Fix the MMD bandwidth (median heuristic on the real set) and the real-vs-real noise floor.

    The noise floor is :func:`~synalign.divergence.mmd2_fixed_set` between two random halves of the real set
    (mean and std over :data:`~synalign.divergence.FLOOR_DRAWS` splits). Runs once per run; on resume the checkpoint
    already holds these values.
    """
    from synalign.divergence import fixed_set_noise_floor, median_bandwidth

    ctx = _context(runtime)
    if "bandwidth" in state:
        return {}
    x = ctx.real_embeddings
    bandwidth = median_bandwidth(x, seed=ctx.config.seed)
    floor, floor_std = fixed_set_noise_floor(x, len(x) // 2, bandwidth, seed=ctx.config.seed, device=ctx.device)
    return {
        "round": 0,
        "bandwidth": float(bandwidth),
        "noise_floor": float(floor),
        "noise_floor_std": float(floor_std),
        "picked": {},
        "alignment": None,
        "dropped": {},
        "stop_reason": None,
    }


def explore(state: SynAlignState, runtime: Runtime[SynAlignContext]) -> dict[str, Any]:
    """Stage 1: pick demonstration clusters with the GP explorer (max posterior variance, per label).

    From round 2 on (``witness_guided``) the posterior variance is weighted by the positive part of the MMD
    witness function (mean kernel to real minus mean kernel to the accepted synthetic set), aiming the
    explorer at real regions the accepted data still under-covers.
    """
    from synalign.divergence import mmd_witness
    from synalign.explorer import explore as gp_explore

    ctx = _context(runtime)
    cfg = ctx.config
    round_ = state.get("round", 0) + 1
    _emit("explore", round_, done=0, total=1)
    priority = None
    alignment = state.get("alignment")
    if cfg.witness_guided and alignment and alignment["accepted"]:
        store, prefix = require_store(runtime), thread_namespace(runtime)
        samples = get_samples(store, prefix, state.get("sample_batches", []), cache=_context(runtime).sample_batches)
        _, mask = get_alignment(store, prefix, alignment, len(samples))
        acc = [s for s, keep in zip(samples, mask, strict=True) if keep]
        witness = mmd_witness(
            ctx.real_embeddings, ctx.real_embeddings, _sample_embeddings(ctx, acc), state["bandwidth"],
            device=ctx.device,
        )
        positive = np.clip(witness, 0.0, None)
        priority = positive + 1e-3 * (positive.max() if positive.max() > 0 else 1.0)
    result = gp_explore(
        ctx.real_embeddings,
        [r.id for r in ctx.real],
        [r.label for r in ctx.real],
        clusters_per_label=cfg.clusters_per_label,
        cluster_size=cfg.cluster_size,
        picked=state.get("picked", {}),
        length_scale=cfg.length_scale,
        priority=priority,
        device=ctx.device,
    )
    clusters = [cast(ClusterRecord, {**c.model_dump(), "round": round_}) for c in result.clusters]
    _emit("explore", round_, done=1, total=1)
    return {"round": round_, "picked": result.picked, "clusters": clusters}


def _current(items: list[Any], round_: int) -> list[Any]:
    """The records of ``round_`` (clusters, summaries or samples), in order."""
    return [c for c in items if c["round"] == round_]


def summarize(state: SynAlignState, runtime: Runtime[SynAlignContext]) -> dict[str, Any]:
    """Stage 2a: summarise each demonstration cluster's latent attributes (one backend batch)."""
    ctx = _context(runtime)
    round_ = state["round"]
    by_id = {r.id: r for r in ctx.real}
    clusters = _current(state.get("clusters", []), round_)
    _emit("summarize", round_, done=0, total=len(clusters))
    requests = [
        SummaryRequest(
            task=ctx.task,
            label=ctx.label_name(c["label"]),
            demonstrations=[by_id[i].text for i in c["example_ids"]],
            round=round_,
        )
        for c in clusters
    ]
    summaries = _map_with_progress(ctx, ctx.backend.summarizer.summarize, requests, "summarize", round_)
    out: list[SummaryRecord] = [
        {"round": round_, "cluster": k, "label": c["label"], "pick_id": c["pick_id"], **s.model_dump()}
        for k, (c, s) in enumerate(zip(clusters, summaries, strict=True))
    ]
    _emit("summarize", round_, done=len(clusters), total=len(clusters), **_llm_usage(ctx))
    return {"summaries": out}


def generate(state: SynAlignState, runtime: Runtime[SynAlignContext]) -> dict[str, Any]:
    """Stage 2b: generate ``samples_per_cluster`` new texts per cluster, conditioned on its attributes.

    Respects ``max_samples``: a round that would pass the budget asks for fewer texts (:func:`_cluster_sizes`:
    the rest of the budget split across the labels in proportion to their share of the round, then across each
    label's clusters), so the pool never exceeds the budget and every label gets its share of it. With
    ``overgenerate`` F each cluster is asked for ⌈F · samples_per_cluster⌉ texts (the align node then accepts
    ``accept_fraction / F`` of each label's pool).
    """
    ctx = _context(runtime)
    cfg = ctx.config
    round_ = state["round"]
    by_id = {r.id: r for r in ctx.real}
    clusters = _current(state.get("clusters", []), round_)
    summary_of = {s["cluster"]: s for s in _current(state.get("summaries", []), round_)}
    already = sum(b["count"] for b in state.get("sample_batches", []))
    budget = None if cfg.max_samples is None else max(cfg.max_samples - already, 0)
    _emit("generate", round_, done=0, total=len(clusters))
    fields = set(AttributeSummary.model_fields)
    per_cluster = int(np.ceil(cfg.samples_per_cluster * cfg.overgenerate - 1e-9))  # --overgenerate F: F × as many
    sizes = _cluster_sizes([c["label"] for c in clusters], per_cluster, budget)
    asked = [k for k, size in enumerate(sizes) if size > 0]
    contrast = contrast_blocks(ctx, [(list(clusters[k]["example_ids"]), clusters[k]["label"]) for k in asked])
    requests = [
        GenerationRequest(
            task=ctx.task,
            label=ctx.label_name(clusters[k]["label"]),  # the prompt's label; the samples keep the value
            attributes=AttributeSummary(**{f: v for f, v in summary_of[k].items() if f in fields}),
            demonstrations=[by_id[i].text for i in clusters[k]["example_ids"]],
            n=sizes[k],
            seed=_seed(cfg.seed, round_, k),
            round=round_,
            contrast=blocks,
        )
        for k, blocks in zip(asked, contrast, strict=True)
    ]
    generations = _map_with_progress(ctx, ctx.backend.generator.generate, requests, "generate", round_)
    samples: list[SampleRecord] = []
    dropped: dict[str, int] = {}
    for k, gen in zip(asked, generations, strict=True):
        cluster = clusters[k]
        for key, value in gen.dropped.items():
            dropped[key] = dropped.get(key, 0) + value
        for j, text in enumerate(gen.texts):
            samples.append(cast(
                SampleRecord,
                SyntheticExample(
                    id=f"syn-r{round_:02d}-c{k:03d}-{j:03d}",
                    text=text,
                    label=cluster["label"],
                    round=round_,
                    backend=ctx.backend.name,
                    demonstration_ids=list(cluster["example_ids"]),
                ).model_dump(exclude={"kmm_weight", "accepted", "sample_weight"}),
            ))
    if budget is not None and len(samples) > budget:
        dropped["over_budget"] = dropped.get("over_budget", 0) + len(samples) - budget
        samples = samples[:budget]
    _emit("generate", round_, done=len(clusters), total=len(clusters), texts=len(samples), **_llm_usage(ctx))
    if ctx.label_check_on:
        label_check(ctx, samples, round_, _emit)
    batch = put_samples(require_store(runtime), thread_namespace(runtime), round_, samples)  # before the state
    ctx.sample_batches[batch["key"]] = samples  # align reads it from here, not back from the store
    return {"sample_batches": [batch], "dropped": dropped}


def _llm_usage(ctx: SynAlignContext) -> dict[str, int]:
    """LLM calls and tokens (in + out) of this process so far, for progress events; ``{}`` without an LLM."""
    if not ctx.backend.is_llm:
        return {}
    usage = ctx.backend.usage()
    return {
        "calls": int(usage.get("llm_calls", 0)), "tokens": int(usage.get("tokens_in", 0) + usage.get("tokens_out", 0))
    }


def _map_with_progress(ctx: SynAlignContext, method: Callable[..., list[Any]], requests: list[Any], node: str,
                       round_: int) -> list[Any]:
    """``method(requests)`` (a summariser's or a generator's batch call) with a ``node`` progress event per
    finished request (texts so far for a generation; LLM calls and tokens so far) when ``method`` takes an
    ``on_done`` callback; the caller reports the last one."""
    import inspect

    if "on_done" not in inspect.signature(method).parameters:
        return method(requests)
    counts = {"done": 0, "texts": 0}

    def on_done(index: int, result: Any) -> None:
        counts["done"] += 1
        texts = getattr(result, "texts", None)
        counts["texts"] += len(texts or [])
        if counts["done"] < len(requests):
            extra = {"texts": counts["texts"]} if texts is not None else {}
            _emit(node, round_, done=counts["done"], total=len(requests), **extra, **_llm_usage(ctx))

    return method(requests, on_done=on_done)


def _cluster_sizes(labels: list[str], per_cluster: int, budget: int | None) -> list[int]:
    """Texts to ask of each cluster (given by its label, in order): ``per_cluster`` each, or, when the round
    would pass ``budget``, the budget apportioned to the labels by their clusters' share of the round, then
    within a label to its clusters in order (:func:`synalign.sampling.apportion`); some clusters get 0."""
    from synalign.sampling import apportion

    if budget is None or budget >= per_cluster * len(labels):
        return [per_cluster] * len(labels)
    members: dict[str, list[int]] = {}
    for k, label in enumerate(labels):
        members.setdefault(label, []).append(k)
    sizes = [0] * len(labels)
    for label, seats in apportion({lab: per_cluster * len(ks) for lab, ks in members.items()}, budget).items():
        ks = members[label]
        for k, size in apportion({k: per_cluster for k in ks}, seats).items():
            sizes[k] = size
    return sizes


def align(state: SynAlignState, runtime: Runtime[SynAlignContext]) -> dict[str, Any]:
    """Stage 3: kernel-mean-matching weights per label, the selection strategy's accepted set, divergences.

    Metrics of the round (all with the run's fixed bandwidth):

    - ``mmd2_accepted``: :func:`~synalign.divergence.mmd2_fixed_set` of the accepted set to the real set —
      the distance between the training distribution the accepted set defines and the real one. This is
      what the target is checked against.
    - ``noise_floor_same_size``: the same quantity for a random real subset of the accepted set's size; a
      relative target (``"1.5x"``) is a multiple of it.
    - ``mmd2_accepted_u``: the unbiased U-statistic (Gretton et al. 2012, eq. 3), which treats the accepted
      set as an i.i.d. sample; diversity-seeking selection biases it low, so it is reported, not used.
    - ``mmd2_pool``: fixed-set MMD² of the whole pool; ``mmd2_accepted_heldout``: of the accepted set to
      the held-out real test split (reported only); ``sinkhorn_accepted``: Sinkhorn divergence (POT).
    - ``near_copies`` / ``near_copies_accepted``: pool texts that are near-copies of a real text
      (:mod:`synalign.novelty`); unless ``allow_near_copies``, they are never accepted (``eligible`` of
      :func:`synalign.alignment.align`).
    - ``utility`` / ``fidelity``: on the validation slice, the held-out utility of the accepted set
      (:func:`synalign.utility.estimate_utility`) and its fidelity (:func:`synalign.compare.heldout_fidelity`);
      absent when the run has no slice. ``stop`` may be ``utility_plateau`` (``patience``).
    """
    # progress in three steps: embedding the new texts (per batch), the selection, the held-out check
    _emit("align", state["round"], done=0, total=_ALIGN_STEPS, phase="embedding new texts")
    store, prefix = require_store(runtime), thread_namespace(runtime)
    samples = get_samples(store, prefix, state.get("sample_batches", []), cache=_context(runtime).sample_batches)
    emb = _sample_embeddings(_context(runtime), samples, lambda done, n: _emit(  # on the encoder's usual threads
        "align", state["round"], done=done / max(n, 1), total=_ALIGN_STEPS, phase=f"embedding {done}/{n} new texts"
    ))
    _emit("align", state["round"], done=1, total=_ALIGN_STEPS, phase="selection")
    weights, accepted, metrics = _align(state, runtime, samples, emb)
    ref = put_alignment(
        store, prefix, state["round"], weights, accepted, previous=state.get("alignment"),
        prune=_context(runtime).prune_alignments,
    )
    gain = metrics["utility"]["delta_log_likelihood"]["mean"] if metrics.get("utility") else None
    _emit("align", state["round"], done=_ALIGN_STEPS, total=_ALIGN_STEPS, mmd2=metrics["mmd2_accepted"],
          target=metrics["target_mmd2"], gain=gain)
    return {"alignment": ref, "metrics": [metrics]}


_ALIGN_STEPS = 3
"""Progress units of ``align``: embedding the new texts, the selection, the held-out check."""


@single_thread  # small per-label problems: spinning BLAS/OpenMP workers cost 5-38x with a busy core (_threads)
def _align(
    state: SynAlignState, runtime: Runtime[SynAlignContext], samples: list[SampleRecord], emb: np.ndarray
) -> tuple[np.ndarray, np.ndarray, RoundMetrics]:
    """:func:`align` after the embedding: ``emb`` (len(samples), d) holds ``samples`` (the pool) in order.
    Returns the (N,) weights, the (N,) bool accepted mask and the round's metrics."""
    from synalign.alignment import align as kmm_align
    from synalign.divergence import fixed_set_noise_floor, mmd2_fixed_set, mmd2_unbiased, sinkhorn_divergence

    ctx = _context(runtime)
    cfg = ctx.config
    round_ = state["round"]
    started = time.perf_counter()  # align_seconds: the step itself, after the new samples are embedded
    bandwidth = state["bandwidth"]
    real = ctx.real_embeddings
    novelty = near_copies(ctx, samples, emb)
    eligible = None if cfg.allow_near_copies else ~novelty.mask
    seed = _seed(cfg.seed, round_, 7919)
    margins = (np.asarray([s.get("label_margin", np.nan) for s in samples], dtype=np.float64)
               if ctx.label_check_on else None)  # the LM's own label check orders each label's pick
    weights = None  # solved per label inside kmm_align, unless the KMM screen runs on Ray (--ray)
    if cfg.ray is not None:
        from synalign.scaleout.cluster import screen_weights

        weights = screen_weights(emb, [s["label"] for s in samples], real, [r.label for r in ctx.real],
                                 bandwidth=bandwidth, eligible=eligible, seed=seed, device=ctx.device)
    result = kmm_align(
        emb,
        [s["label"] for s in samples],
        real,
        [r.label for r in ctx.real],
        bandwidth=bandwidth,
        strategy=cfg.selection,
        accept_fraction=cfg.accept_share,
        seed=seed,
        cv_seed=_seed(cfg.seed, 7919),  # the same folds every round: their real-set classifiers are fitted once
        cv_warm_start=True,
        device=ctx.device,
        compute_mmd=False,
        eligible=eligible,
        weights=weights,
        priority=margins,
    )
    mask = np.asarray(result.accepted, dtype=bool)
    keep_choice = choose_kept(ctx, samples, emb, mask, margins, _seed(cfg.seed, round_, 15485863))
    if keep_choice is not None:
        mask = keep_choice[1]
    acc = emb[mask]
    nan = float("nan")  # nothing accepted (e.g. every text a near-copy): no divergence to measure
    floor, floor_std = (
        fixed_set_noise_floor(real, len(acc), bandwidth, seed=cfg.seed, device=ctx.device)  # = synalign compare's
        if len(acc) else (nan, nan)
    )
    metrics = cast(RoundMetrics, {  # align_seconds and stop come last, once the round is measured
        "round": round_,
        "generated": len(samples),
        "generated_this_round": len(_current(samples, round_)),
        "accepted": int(mask.sum()),
        "mmd2_accepted": float(mmd2_fixed_set(acc, real, bandwidth, device=ctx.device)) if len(acc) else nan,
        "noise_floor_same_size": floor,
        "noise_floor_same_size_std": floor_std,
        "target_mmd2": float(cfg.target.resolve(floor)),
        "mmd2_accepted_u": float(mmd2_unbiased(acc, real, bandwidth, device=ctx.device)) if len(acc) > 1 else None,
        "mmd2_pool": float(mmd2_fixed_set(emb, real, bandwidth, device=ctx.device)),
        "sinkhorn_accepted": float(sinkhorn_divergence(acc, real, seed=cfg.seed)) if len(acc) else nan,
        "noise_floor": state["noise_floor"],
        "filtered": result.filtered,
        "filter_threshold": result.filter_threshold,
    })
    if ctx.heldout_embeddings is not None and len(ctx.heldout_embeddings) > 1 and len(acc):
        metrics["mmd2_accepted_heldout"] = float(
            mmd2_fixed_set(acc, ctx.heldout_embeddings, bandwidth, device=ctx.device)
        )
    metrics["near_copies"] = int(novelty.mask.sum())
    metrics["near_copies_accepted"] = int((novelty.mask & mask).sum())
    if keep_choice is not None:
        metrics["keep_choice"] = keep_choice[0].model_dump()
    if margins is not None:
        checker = ctx.backend.label_checker
        metrics["lm_agrees_accepted"] = float(np.mean(margins[mask] > 0)) if mask.any() else nan
        metrics["lm_agrees_pool"] = float(np.mean(margins > 0)) if len(margins) else nan
        metrics["label_check_calls"] = int(getattr(checker, "calls", 0))
        metrics["label_check_seconds"] = round(float(getattr(checker, "seconds", 0.0)), 3)
    if ctx.validation_embeddings is not None and len(ctx.validation):
        _emit("align", round_, done=2, total=_ALIGN_STEPS, phase="held-out check")
    metrics.update(held_out(ctx, samples, emb, mask, bandwidth, _seed(cfg.seed, round_, 104729)))
    metrics["align_seconds"] = round(time.perf_counter() - started, 3)
    metrics["stop"] = _stop_reason(metrics, state.get("metrics", []), round_, len(samples), cfg)
    return np.asarray(result.weights, dtype=np.float64), mask, metrics


def _stop_reason(
    metrics: RoundMetrics, history: list[RoundMetrics], round_: int, generated: int, cfg: Any
) -> StopReason | None:
    """Whether the loop ends after this round, and why:

    - ``"target"``: MMD² ≤ target, unless more than :data:`synalign.verdict.MAX_NEAR_COPY_SHARE` of the accepted
      set are near-copies of real texts (a set of copies meets any MMD² target and adds nothing);
    - ``"utility_plateau"``: with ``cfg.patience`` = N, the held-out log-likelihood gain vs real only has not
      improved on its best for N rounds;
    - ``"max_rounds"`` / ``"max_samples"``: a spent budget.
    """
    from synalign.verdict import MAX_NEAR_COPY_SHARE

    share = metrics.get("near_copies_accepted", 0) / max(metrics["accepted"], 1)
    if metrics["mmd2_accepted"] <= metrics["target_mmd2"] and share <= MAX_NEAR_COPY_SHARE:
        return "target"
    gains = [float(m["utility"]["delta_log_likelihood"]["mean"]) for m in [*history, metrics] if m.get("utility")]
    if cfg.patience and gains and len(gains) - 1 - int(np.argmax(gains)) >= cfg.patience:
        return "utility_plateau"
    if round_ >= cfg.max_rounds:
        return "max_rounds"
    if cfg.max_samples is not None and generated >= cfg.max_samples:
        return "max_samples"
    return None


def route(state: SynAlignState) -> Route:
    """After ``align``: ``"finish"`` when the round's metrics say the loop stops, else ``"explore"``."""
    return "finish" if state["metrics"][-1]["stop"] else "explore"


def finish(state: SynAlignState, runtime: Runtime[SynAlignContext]) -> dict[str, Any]:
    """Record why the loop stopped: the last round's ``stop``, decided once in :func:`align` (``runtime`` is
    unused; every node takes ``(state, runtime)``)."""
    return {"stop_reason": state["metrics"][-1]["stop"]}
