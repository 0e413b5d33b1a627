"""``synalign align``: weight and select a synthetic pool generated elsewhere, without generating anything.

The pool (any JSONL/CSV/Parquet file a user made with another tool) goes through the graph's own ``prepare``
node (median-heuristic bandwidth, real-vs-real noise floor) and ``align`` node (KMM weights per label, the
``--selection`` strategy, the round's metrics) as a one-round run, and the outputs are written by the
runner's writer: ``synthetic.jsonl`` / ``synthetic.parquet`` (accepted), ``pool.parquet`` (every sample
with its weight and accepted flag), ``metrics.json`` (one row), ``report.html`` and ``summary.json`` (last).
Every file is written atomically; bad input is refused before anything is written.

Like a run, it measures the pool against a validation slice of the real data that nothing is fitted on
(:func:`validation_slice`): the ``align`` node scores the accepted set's held-out utility and fidelity on it,
keeps near-copies of real texts out of the accepted set (unless ``config.allow_near_copies``), and the writer
judges the one metrics row (``summary.json``'s ``verdict``, ``utility``, ``fidelity``, ``novelty``,
``validation``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, cast

from synalign.backends import Backend, GenerationRequest, SummaryRequest
from synalign.config import RunConfig
from synalign.datafiles import Dataset
from synalign.embeddings import Embedder
from synalign.errors import InputError
from synalign.fileio import disk_full_error
from synalign.graphs.runner import RunResult
from synalign.records import RealExample

__all__ = ["ALIGN_BACKEND", "align_pool", "validation_slice"]

_log = logging.getLogger("synalign.graphs")

ALIGN_BACKEND = "external"
"""``backend`` of every record ``synalign align`` writes: the pool came from outside synalign."""


class _NoGeneration:
    """Summariser and generator of an aligned pool: ``synalign align`` never calls them."""

    name = ALIGN_BACKEND

    def summarize(self, requests: list[SummaryRequest]) -> list[Any]:
        raise InputError("synalign align does not summarise")

    def generate(self, requests: list[GenerationRequest]) -> list[Any]:
        raise InputError("synalign align does not generate")


def _check_out(out: Path, overwrite: bool) -> None:
    """``out`` must be new (or empty), or an earlier synalign output with ``overwrite``; and writable."""
    from synalign.artifacts.rundir import RunDir, prepare_run_dir

    run_dir = RunDir(out)
    entries = run_dir.entries()
    if entries and not overwrite:
        raise InputError(f"output directory {out} already exists; pass `overwrite` to replace it")
    if entries and not (run_dir.is_finished() or run_dir.is_run()):
        raise InputError(
            f"refusing to overwrite {out}: it is not a synalign output directory (no {run_dir.summary_file.name})"
        )
    if not entries:
        prepare_run_dir(out, resume=False, overwrite=False)  # not a directory, not creatable, not writable


def validation_slice(
    config: RunConfig, dataset: Dataset, heldout_path: Path | None = None
) -> tuple[list[RealExample], list[RealExample], str]:
    """The real data ``synalign align`` may fit on, and its validation slice (:mod:`synalign.holdout`).

    The slice is, in order of preference: the ``validation`` / ``dev`` split of ``config.data``; the file
    ``heldout_path`` (ids ``"heldout-i"``; rows whose label the train split lacks are dropped); a stratified
    ``config.holdout`` of each label carved from the train split (:func:`synalign.holdout.split_validation`,
    the run's rule). A ``heldout_path`` that a validation split overrides is noted on the log.

    Args:
        config: ``holdout``, ``seed``, ``text_field``, ``label_field`` and ``data`` (for messages).
        dataset: the real :class:`~synalign.datafiles.Dataset`.
        heldout_path: a JSONL/CSV/Parquet file of held-out real examples, read with the same fields, or None.

    Returns:
        ``(fit, slice, source)`` as :func:`~synalign.holdout.split_validation`; ``source`` is
        ``"heldout file PATH"`` for ``heldout_path``.

    Raises:
        InputError: an unreadable ``heldout_path``, or one that shares no label with the real train split.
    """
    from synalign.datafiles import load_examples
    from synalign.holdout import split_validation

    given = None
    if heldout_path is not None and dataset.validation:
        _log.warning("note: --heldout %s is not used: %s has a validation split (%s), which is the validation "
                     "slice", heldout_path, config.data, dataset.validation_path)
    elif heldout_path is not None:
        given = load_examples(heldout_path, text_field=config.text_field, label_field=config.label_field,
                              split="heldout")
        if not {r.label for r in given} & set(dataset.labels):
            raise InputError(f"{heldout_path}: none of its labels occurs in the real data {config.data}")
    fit, validation, source = split_validation(
        dataset.train, dataset.validation or given, fraction=config.holdout, seed=config.seed
    )
    return fit, validation, (f"heldout file {heldout_path}" if given else source)


def align_pool(
    config: RunConfig,
    pool_path: Path,
    *,
    heldout_path: Path | None = None,
    overwrite: bool = False,
    embedder: Embedder | None = None,
) -> RunResult:
    """Weight and select an existing synthetic pool against the real data in ``config.data``.

    The real examples of the validation slice (:func:`validation_slice`) are never part of the KMM / herding
    target, the label filter's training rows, the bandwidth or the noise floor: the pool is aligned against the
    rest (a stratified ``config.max_real`` of it). Near-copies of those real texts are not accepted unless
    ``config.allow_near_copies``.

    Args:
        config: the real data and fields (``data``, ``text_field``, ``label_field``, ``max_real``), the
            validation slice (``holdout``), the alignment (``selection``, ``accept_fraction``, ``target``,
            ``allow_near_copies``, ``seed``), the embedding (``embedding_model``, ``cache_dir``, ``device``) and
            ``out``; generation settings are ignored.
        pool_path: the synthetic pool: a JSONL/CSV/Parquet file, or a directory with a train split, read
            with the same fields as the real data.
        heldout_path: held-out real examples (JSONL/CSV/Parquet, same fields): the validation slice when
            ``config.data`` has no validation split.
        overwrite: replace the outputs of an earlier ``synalign align`` or ``synalign run`` in ``config.out``
            (only their files are deleted).
        embedder: a ready :class:`~synalign.embeddings.Embedder`; default from ``config``.

    Returns:
        :class:`~synalign.graphs.runner.RunResult` (one round; ``stop_reason`` ``"target"`` when the accepted
        set's MMD² meets the target, else ``"single_pass"``).

    Raises:
        InputError: bad real data, pool or held-out file (see :mod:`synalign.datafiles`), a pool label with no
            real examples, a held-out file with no label of the real data, an unknown selection strategy or
            embedding model, an existing or unwritable ``out``.
        DiskFullError: no space left while writing the outputs (those written are removed again).
    """
    from langgraph.runtime import Runtime
    from langgraph.store.memory import InMemoryStore

    from synalign.artifacts.rundir import RunDirLock, remove_run_files
    from synalign.compare import MIN_TEXTS_TO_MEASURE
    from synalign.datafiles import load_dataset
    from synalign.graphs.nodes import align, prepare
    from synalign.graphs.runner import RealSets, make_context, write_outputs
    from synalign.graphs.samplestore import namespace_for, put_samples
    from synalign.graphs.state import SampleRecord, SynAlignState
    from synalign.records import SyntheticExample
    from synalign.sampling import stratified_sample

    started = time.perf_counter()
    config = config.model_copy(update={"max_rounds": 1, "max_samples": None})  # selection: checked when built
    out = config.out
    if out is None:
        raise InputError("RunConfig.out is required to align: the directory the outputs go to")
    _check_out(out, overwrite)
    dataset = load_dataset(config.data, text_field=config.text_field, label_field=config.label_field)
    if len(dataset.labels) < 2:
        raise InputError(f"{config.data}: only one label ({dataset.labels[0]!r}); alignment needs at least two")
    rows = load_dataset(pool_path, text_field=config.text_field, label_field=config.label_field).train
    if len(rows) < MIN_TEXTS_TO_MEASURE:
        raise InputError(f"{pool_path}: too few rows to measure ({len(rows)}); a pool needs at least "
                         f"{MIN_TEXTS_TO_MEASURE}")
    unknown = sorted({r.label for r in rows} - set(dataset.labels))
    if unknown:
        raise InputError(f"{pool_path}: label {unknown[0]!r} does not occur in the real data {config.data}")
    fit, validation, validation_source = validation_slice(config, dataset, heldout_path)
    real = stratified_sample(fit, config.max_real, seed=config.seed)
    heldout = stratified_sample(dataset.test, config.max_real, seed=config.seed) if dataset.test else []
    backend = Backend(
        name=ALIGN_BACKEND, summarizer=_NoGeneration(), generator=_NoGeneration(), is_llm=False,
        info={"kind": "external", "model": None, "source": str(pool_path),
              "note": f"was generated outside synalign ({pool_path}); synalign align only weighted and selected it"},
    )
    ctx = make_context(  # a run's context on the real sets picked above (align prompts nothing: no label names)
        config, backend=backend, embedder=embedder,
        real_sets=RealSets(real, heldout, validation, validation_source, label_names={}),
    )
    samples = [
        cast(SampleRecord, SyntheticExample(
            id=f"pool-{i:06d}", text=r.text, label=r.label, round=1, backend=ALIGN_BACKEND
        ).model_dump(exclude={"kmm_weight", "accepted", "sample_weight"}))
        for i, r in enumerate(rows)
    ]
    store = InMemoryStore()
    runtime = Runtime(context=ctx, store=store)  # one pass in one process: nothing to resume
    prefix = namespace_for(None)
    batch = put_samples(store, prefix, 1, samples)
    state: dict[str, Any] = {**prepare({}, runtime), "round": 1, "sample_batches": [batch]}
    # KMM weights, selection and the round's metrics, as in a run; `state` is a SynAlignState but for its stop
    # reason ("single_pass", set below, is align's own)
    state.update(align(cast(SynAlignState, state), runtime))
    stop = "target" if state["metrics"][-1]["stop"] == "target" else "single_pass"
    state["metrics"][-1]["stop"] = stop
    state["stop_reason"] = stop
    with RunDirLock(out):
        _check_out(out, overwrite)  # again: another process may have just written there
        if overwrite:
            remove_run_files(out)
        try:
            return write_outputs(
                ctx, state, time.perf_counter() - started,
                store=store, prefix=prefix,
                extra={"command": "align", "real_data": str(config.data), "pool": str(pool_path)},
            )
        except OSError as exc:
            full = disk_full_error(exc, out, "; nothing was written")
            if full is None:
                raise
            with contextlib.suppress(OSError):
                remove_run_files(out)  # one pass, nothing to resume: no partial set of outputs
            raise full from None
