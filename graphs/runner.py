"""Run the SynAlign graph end to end: validate input, prepare the run directory, stream, write outputs.

Layout of a run directory::

    config.json          resolved RunConfig (read back by --resume)
    checkpoints.sqlite   LangGraph SQLite checkpointer (one thread, "synalign") and SQLite store (the samples of
                         each round and the latest alignment; the state refers to them)
    synthetic.jsonl      accepted synthetic samples (also synthetic.parquet)
    pool.parquet         every generated sample with its KMM weight, accepted flag and sample_weight
    attributes.jsonl     attribute summaries per demonstration cluster
    metrics.json         one row per round (MMD², Sinkhorn divergence, noise floor, counts)
    summary.json         stop reason, totals, backend (says when the offline backend wrote the data), usage
                         (summed over every process of the run, from usage.json)
    report.html          plots: divergence per round, 2-D projection of real vs synthetic

Every output file is written to a temporary file and renamed, so none is ever half-written; ``summary.json``
is written last, so its presence marks a finished run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np

from synalign.artifacts.rundir import CONFIG_FILE, RunDir, RunDirLock, prepare_run_dir, remove_run_files
from synalign.artifacts.summary import CostRecord, RunSummary, ValidationRecord
from synalign.artifacts.usage import record_usage, total_usage
from synalign.backends import Backend
from synalign.config import RunConfig
from synalign.embeddings import Embedder, encode_with_progress
from synalign.errors import InputError
from synalign.fileio import DiskFullError, disk_full_error
from synalign.graphs.checkpoint import (
    CHECKPOINT_FILE,
    alignments_prunable,
    corrupt_checkpoint_error,
    open_checkpoints,
    open_store,
    read_state,
    record_run_config,
    verify_checkpoints,
)
from synalign.graphs.context import SynAlignContext
from synalign.graphs.graph import build_graph
from synalign.graphs.samplestore import MissingItemError, load_pool, namespace_for
from synalign.graphs.state import SynAlignState
from synalign.offline import OFFLINE_RUN_NOTE
from synalign.records import RealExample, SyntheticExample
from synalign.verdict import judge_round

if TYPE_CHECKING:  # pragma: no cover
    from langchain_core.runnables import RunnableConfig

__all__ = [
    "run", "make_context", "write_outputs", "prepare_run_dir", "RunResult", "DiskFullError", "THREAD_ID", "CONFIG_FILE"
]

_log = logging.getLogger("synalign.graphs")

THREAD_ID = "synalign"

EventHandler = Callable[[dict[str, Any]], None]


@dataclass
class RunResult:
    """What a run produced.

    Attributes:
        run_dir: the output directory.
        accepted: the accepted synthetic samples (weights set, ``accepted=True``).
        pool: every generated sample.
        metrics: per-round metrics (see ``metrics.json``).
        summary: the content of ``summary.json`` (:class:`~synalign.artifacts.summary.RunSummary`; item access by
            key still reads it as the dict it was).
        outputs: name → path of each written file.
    """

    run_dir: Path
    accepted: list[SyntheticExample]
    pool: list[SyntheticExample]
    metrics: list[dict[str, Any]]
    summary: RunSummary
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def stop_reason(self) -> str:
        return str(self.summary.stop_reason)


def make_context(
    config: RunConfig,
    *,
    backend: Backend | None = None,
    embedder: Embedder | None = None,
    on_event: EventHandler | None = None,
    real_sets: RealSets | None = None,
) -> SynAlignContext:
    """Load and validate the data, embed the real set (cached) and build the backend.

    ``real_sets``: the real examples to use (``synalign align`` picks its own,
    :func:`synalign.graphs.align_pool.align_pool`); default: :func:`read_real_sets` of ``config``.

    Raises:
        InputError: bad data (see :mod:`synalign.datafiles`) or an unknown embedding model (an unknown
            selection strategy is refused when ``config`` is built).
    """
    if backend is None and config.llm.kind != "eda":
        from synalign.agents.backend import require_llm_extra

        require_llm_extra(f"`llm` {config.llm}")  # a missing extra → InputError before any work
    if config.ray is not None:
        from synalign.scaleout.embed import require_ray

        require_ray("`ray`")  # likewise for the ray extra
    real, heldout, validation, validation_source, label_names = real_sets or read_real_sets(config)
    if config.ray is not None:  # embedding, the KMM screen and generation on the cluster (synalign.scaleout.cluster)
        from synalign.scaleout.cluster import connect, ray_embedder

        connect(config.ray)
        embedder = embedder or ray_embedder(config)
    embedder = embedder or Embedder(
        config.embedding_model, cache_dir=config.cache_dir, device=config.device, max_seq_length=config.max_seq_length
    )
    embedder.check()
    emit = on_event or (lambda event: None)
    total = len(real) + len(heldout) + len(validation)
    emit({"node": "embed", "round": 0, "done": 0, "total": total})
    vectors = encode_with_progress(  # one call: one progress bar, per batch, over the three sets
        embedder, [r.text for r in (*real, *heldout, *validation)],
        lambda done, _: emit({"node": "embed", "round": 0, "done": done, "total": total}) if done < total else None,
    )
    real_emb, heldout_all, validation_all = np.split(vectors, [len(real), len(real) + len(heldout)])
    heldout_emb = heldout_all if heldout else None
    validation_emb = validation_all if validation else None
    emit({"node": "embed", "round": 0, "done": total, "total": total})
    labels = sorted({r.label for r in real})
    if backend is None and config.ray is not None:
        from synalign.scaleout.cluster import ray_generation_backend

        backend = ray_generation_backend(config)  # None: nothing to fan out, built as locally below
    if backend is None:
        from synalign.agents import build_backend

        reference = {label: [r.text for r in real if r.label == label] for label in labels}
        backend = build_backend(config, run_dir=config.out, reference=reference, label_names=label_names)
    if config.label_check == "lm" and backend.label_checker is None:
        backend.close()
        raise InputError(f"`label_check` lm: the {backend.name} backend has no LM label check (it needs a llama.cpp "
                         "endpoint, one backend, not `ray` generation)")
    return SynAlignContext(
        config=config,
        real=real,
        real_embeddings=real_emb,
        embedder=embedder,
        backend=backend,
        task=config.task_description([label_names.get(label, label) for label in labels]),
        run_dir=config.out,
        heldout=heldout,
        heldout_embeddings=heldout_emb,
        validation=validation,
        validation_embeddings=validation_emb,
        validation_source=validation_source,
        label_names=label_names,
    )


class RealSets(NamedTuple):
    """The real examples of a run's context: the matched set, the test split's sample (reported only), the
    validation slice and where it came from, and the label names the prompts use."""

    real: list[RealExample]
    heldout: list[RealExample]
    validation: list[RealExample]
    validation_source: str
    label_names: dict[str, str]


def read_real_sets(config: RunConfig) -> RealSets:
    """A run's real examples from ``config.data``: its validation slice (:mod:`synalign.holdout`), a stratified
    ``config.max_real`` of the rest (at least a cluster per label) and of the test split.

    Raises:
        InputError: bad data (see :mod:`synalign.datafiles`).
    """
    from synalign.datafiles import load_dataset, validate_for_run
    from synalign.holdout import split_validation
    from synalign.labeltypes import label_names_for_run
    from synalign.sampling import stratified_sample

    dataset = load_dataset(config.data, text_field=config.text_field, label_field=config.label_field)
    label_names = label_names_for_run(dataset, config.label_names)
    for note in validate_for_run(dataset, cluster_size=config.cluster_size):
        _log.warning("note: %s", note)  # a few-shot label: its clusters shrink to its size
    fit, validation, validation_source = split_validation(
        dataset.train, dataset.validation, fraction=config.holdout, seed=config.seed
    )
    real = stratified_sample(fit, config.max_real, seed=config.seed, min_per_label=config.cluster_size)
    heldout = stratified_sample(dataset.test, config.max_real, seed=config.seed) if dataset.test else []
    return RealSets(real, heldout, validation, validation_source, label_names)


def _write_outputs(
    ctx: SynAlignContext,
    state: dict[str, Any],
    wall: float,
    *,
    store: Any,
    prefix: tuple[str, ...],
    extra: dict[str, Any] | None = None,
) -> RunResult:
    """Write a finished run's outputs from its final state and the store it refers to (``synalign align``
    writes its own through this too).

    ``store``/``prefix``: the LangGraph store and the thread's namespace prefix holding the samples and the
    alignment (:mod:`synalign.graphs.samplestore`). ``extra`` sets the align-only fields of ``summary.json``
    (:class:`~synalign.artifacts.summary.RunSummary`);
    ``attributes.jsonl`` is written only when the state has ``summaries``; a backend's ``info["note"]``
    replaces the default note (terms of an LLM, the EDA note).

    Raises:
        MissingItemError: the store lacks an item the state refers to.
    """
    from synalign.artifacts.datacard import write_datacard
    from synalign.artifacts.report import write_report
    from synalign.fileio import atomic_write_text, write_examples

    out = ctx.require_run_dir()
    run_dir = RunDir(out)
    samples, weights, mask = load_pool(store, prefix, state)
    pool = [
        SyntheticExample(**s, kmm_weight=float(w), accepted=bool(keep))
        for s, w, keep in zip(samples, weights, mask, strict=True)
    ]
    accepted = [s for s in pool if s.accepted]
    metrics = state.get("metrics", [])
    outputs = {path.name: path for path in (
        run_dir.synthetic_jsonl, run_dir.synthetic_parquet, run_dir.pool_file, run_dir.attributes_file,
        run_dir.metrics_file, run_dir.summary_file, run_dir.report_file, run_dir.card_file,
    )}
    write_examples(accepted, run_dir.synthetic_jsonl)
    write_examples(accepted, run_dir.synthetic_parquet)
    write_examples(pool, run_dir.pool_file)
    if "summaries" in state:
        atomic_write_text(
            run_dir.attributes_file,
            "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in state.get("summaries", [])),
        )
    else:
        del outputs[run_dir.attributes_file.name]
    atomic_write_text(run_dir.metrics_file, json.dumps(metrics, indent=2) + "\n")
    backend = ctx.backend
    usage, processes = total_usage(out)
    verdict, novelty = judge_round(
        metrics[-1] if metrics else {}, near_copies_allowed=ctx.config.allow_near_copies,
        no_slice_reason=_no_slice_reason(ctx),
    )
    summary = RunSummary(
        stop_reason=state.get("stop_reason"),
        rounds=state.get("round", 0),
        generated=len(pool),
        accepted=len(accepted),
        labels={label: sum(1 for s in accepted if s.label == label) for label in ctx.labels},
        generated_per_label={label: sum(1 for s in pool if s.label == label) for label in ctx.labels},
        real_examples=len(ctx.real),
        label_names=ctx.label_names or None,
        bandwidth=state.get("bandwidth"),
        noise_floor=state.get("noise_floor"),
        noise_floor_std=state.get("noise_floor_std"),
        target=str(ctx.config.target),
        target_mmd2=metrics[-1]["target_mmd2"] if metrics else None,
        noise_floor_same_size=metrics[-1]["noise_floor_same_size"] if metrics else None,
        final_mmd2=metrics[-1]["mmd2_accepted"] if metrics else None,
        selection=str(ctx.config.selection),
        backend={
            "name": backend.name,
            "is_llm": backend.is_llm,
            **backend.info,
            "note": backend.info.get("note") or (backend.info.get("terms") if backend.is_llm else OFFLINE_RUN_NOTE),
        },
        usage=usage,
        usage_processes=processes,
        dropped=state.get("dropped", {}),
        embedding_model=ctx.embedder.model_id,
        embedding_max_seq_length=getattr(ctx.embedder, "truncation", None),
        wall_seconds=round(wall, 2),
        cost=CostRecord.of(len(pool), len(accepted), usage, wall) if backend.is_llm else None,
        accept_fraction=ctx.config.accept_share,
        verdict=verdict,
        utility=metrics[-1].get("utility") if metrics else None,
        fidelity=metrics[-1].get("fidelity") if metrics else None,
        novelty=novelty,
        validation=ValidationRecord(
            source=ctx.validation_source,
            size=len(ctx.validation),
            per_label={label: sum(1 for r in ctx.validation if r.label == label) for label in ctx.labels},
            ids=[r.id for r in ctx.validation],
        ),
        **(extra or {}),
    )
    syn_emb = ctx.embedder.encode([s.text for s in pool]) if pool else np.zeros((0, ctx.real_embeddings.shape[1]))
    write_report(
        run_dir.report_file,
        metrics=metrics,
        summary=summary,
        real_embeddings=ctx.real_embeddings,
        real_labels=[r.label for r in ctx.real],
        synthetic_embeddings=syn_emb,
        synthetic=pool,
        attributes=state.get("summaries", []),
        real_texts=[r.text for r in ctx.real],
        seed=ctx.config.seed,
    )
    write_datacard(run_dir.card_file, config=ctx.config, real=ctx.real, summary=summary, metrics=metrics)
    run_dir.write_summary(summary)  # last: its presence marks a run whose outputs are complete
    for path in (run_dir.usage_file, run_dir.trace_file):  # written along the way: every process's usage, LLM calls
        if path.is_file():
            outputs[path.name] = path
    return RunResult(run_dir=out, accepted=accepted, pool=pool, metrics=metrics, summary=summary, outputs=outputs)


write_outputs = _write_outputs


def _no_slice_reason(ctx: SynAlignContext) -> str:
    """Why a run has no utility measurement, in the user's terms."""
    if ctx.config.holdout == 0:
        return "the run held nothing out (--holdout 0)"
    return "no label had enough real examples to spare a validation slice (each keeps 3)"


def run(
    config: RunConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    backend: Backend | None = None,
    embedder: Embedder | None = None,
    on_event: EventHandler | None = None,
    extend: int = 0,
) -> RunResult:
    """Run (or resume) the SynAlign loop and write its outputs to ``config.out``.

    Args:
        config: the run configuration. With ``resume=True`` pass the config saved in the run directory
            (:meth:`RunDir(out).read_config() <synalign.artifacts.rundir.RunDir.read_config>`); the CLI does this.
        resume: continue the checkpointed run in ``config.out`` from its last completed node.
        overwrite: replace an existing run directory.
        backend: a ready :class:`~synalign.backends.Backend` (e.g. built from a LangChain chat model and a
            ``dspy.LM``); default: :func:`synalign.agents.build_backend` from ``config`` (offline when
            ``config.llm.kind`` is ``"eda"``).
        embedder: a ready :class:`~synalign.embeddings.Embedder`; default from ``config``.
        on_event: called with each progress event (``{"node", "round", "done", "total", ...}``; first
            ``{"node": "run", "round": rounds done, "max_rounds": ...}`` once the checkpoint is read).
        extend: continue the finished run in ``config.out`` (``resume`` implied; pass its saved config) for up to
            this many more rounds on the same thread: nothing is regenerated, the loop goes on from its final
            state and ``config.json`` records the raised round budget. The other stops (target, ``max_samples``,
            ``patience``) still apply.

    Returns:
        :class:`RunResult`.

    Raises:
        InputError: bad input or run directory (nothing is written in that case).
        DiskFullError: no space left while writing a checkpoint or an output (no output is half-written;
            the run resumes once there is space).
    """
    out = _out(config)
    try:
        return _run(config, resume=resume or extend > 0, overwrite=overwrite, backend=backend, embedder=embedder,
                    on_event=on_event, extend=extend)
    except (OSError, sqlite3.OperationalError) as exc:
        full = disk_full_error(exc, out / CHECKPOINT_FILE)  # SQLite names no file: the run's checkpoint
        if full is None:
            raise
        raise full from None


def _out(config: RunConfig) -> Path:
    """``config.out``, the run directory a run needs.

    Raises:
        InputError: ``config.out`` is None.
    """
    if config.out is None:
        raise InputError("RunConfig.out is required to run: the run directory the outputs and checkpoints go to")
    return config.out


def _run(
    config: RunConfig,
    *,
    resume: bool,
    overwrite: bool,
    backend: Backend | None,
    embedder: Embedder | None,
    on_event: EventHandler | None,
    extend: int = 0,
) -> RunResult:
    started = time.perf_counter()
    out = _out(config)
    prepare_run_dir(out, resume=resume, overwrite=overwrite)  # cheap checks first: nothing created on error
    with RunDirLock(out):  # one process per run directory, taken before any work
        prepare_run_dir(out, resume=resume, overwrite=overwrite)  # again: another run may have just finished
        if resume:
            verify_checkpoints(out, _thread(config), config)  # a corrupt or foreign checkpoint fails before any work
        if extend:
            config = _extended_config(config, extend)
        ctx = make_context(config, backend=backend, embedder=embedder, on_event=on_event)
        try:
            if overwrite and not resume:
                remove_run_files(out)
            if not resume or extend:
                RunDir(out).write_config(config)
            conn, saver = open_checkpoints(out, resume=resume)
        except BaseException:
            ctx.backend.close()
            raise
        with contextlib.closing(conn):
            try:
                record_run_config(conn, config, replace=not resume or bool(extend))  # what the checkpoint is of
                store_conn, store = open_store(out)
            except BaseException:
                ctx.backend.close()
                raise
            with contextlib.closing(store_conn):
                ctx.prune_alignments = alignments_prunable(saver.keep)
                try:
                    final = _stream(config, ctx, saver, store, resume=resume, on_event=on_event, extend=extend > 0)
                finally:
                    ctx.backend.close()  # stops a local model server, whatever happened (the report needs no LLM)
                    with contextlib.suppress(OSError):  # e.g. a full disk: never hide the error that stopped the run
                        record_usage(out, ctx.backend.usage())  # summary.json sums every process's usage
                try:
                    return _write_outputs(
                        ctx, final, time.perf_counter() - started, store=store, prefix=namespace_for(THREAD_ID)
                    )
                except MissingItemError as exc:
                    raise corrupt_checkpoint_error(out / CHECKPOINT_FILE, str(exc), out) from None


def _thread(config: RunConfig) -> RunnableConfig:
    return {"configurable": {"thread_id": THREAD_ID}, "recursion_limit": 10 + 6 * config.max_rounds}


def _extended_config(config: RunConfig, extend: int) -> RunConfig:
    """``config`` with its round budget raised to the finished run's rounds + ``extend``.

    Raises:
        InputError: the run has not finished, or it has spent its ``max_samples`` budget.
    """
    out = _out(config)
    conn, saver = open_checkpoints(out, resume=True)
    store_conn, store = open_store(out)
    try:
        graph = build_graph().compile(checkpointer=saver, store=store)
        values = read_state(graph, _thread(config), out / CHECKPOINT_FILE, out).values
    finally:
        store_conn.close()
        conn.close()
    if not values.get("stop_reason"):
        raise InputError(
            f"`extend` continues a finished run; the run in {out} has not finished (finish it with `resume`)"
        )
    generated = sum(int(b["count"]) for b in values.get("sample_batches", []))
    if config.max_samples is not None and generated >= config.max_samples:
        raise InputError(
            f"`extend`: the run in {out} has spent its `max_samples` budget ({generated} texts generated, "
            f"`max_samples` {config.max_samples}); start a new run to generate more"
        )
    return config.model_copy(update={"max_rounds": int(values.get("round", 0)) + extend})


def _stream(
    config: RunConfig, ctx: SynAlignContext, saver: Any, store: Any, *, resume: bool, on_event: EventHandler | None,
    extend: bool = False,
) -> dict[str, Any]:
    """Run the graph to its end from the last checkpoint; returns the final state values. ``extend``: the
    run has finished; a new run on its thread goes on from its final state."""
    out = _out(config)
    graph = build_graph().compile(checkpointer=saver, store=store)
    thread = _thread(config)
    snapshot = read_state(graph, thread, out / CHECKPOINT_FILE, out)
    if on_event is not None:
        on_event({"node": "run", "round": snapshot.values.get("round", 0), "max_rounds": config.max_rounds})
    # Finished means "finish recorded a stop reason", never "nothing is pending": a process interrupted right
    # after a node saved its writes (but before the step's checkpoint) has an empty live `next`.
    if resume and snapshot.values.get("stop_reason") and not extend:
        return snapshot.values  # already finished: just (re)write the outputs
    # A saved checkpoint: continue from it (its completed tasks' pending writes are applied first).
    stream_input: SynAlignState | None = None if resume and snapshot.metadata is not None else {}
    if extend:  # as a new run on a finished LangGraph thread (Studio does this): prepare keeps the state's values
        stream_input = {"stop_reason": None}  # not finished any more, should this run be interrupted
    try:
        for mode, payload in graph.stream(
            stream_input, thread, context=ctx, stream_mode=["custom", "updates"], durability="sync"
        ):
            if mode == "custom" and on_event is not None:
                on_event(cast(dict[str, Any], payload))  # what the nodes write (nodes._emit)
    except MissingItemError as exc:  # the store lost an item the checkpoint refers to
        raise corrupt_checkpoint_error(out / CHECKPOINT_FILE, str(exc), out) from None
    final = read_state(graph, thread, out / CHECKPOINT_FILE, out).values
    if not final.get("stop_reason"):
        raise corrupt_checkpoint_error(out / CHECKPOINT_FILE, "the loop ended without a stop reason", out)
    return final
