"""``synalign align``: weight and select a synthetic pool generated elsewhere, without generating anything.

The pool (any JSONL/CSV/Parquet file a user made with another tool) goes through the graph's own ``prepare``
node (median-heuristic bandwidth, real-vs-real noise floor) and ``align`` node (KMM weights per label, the
``--selection`` strategy, the round's metrics) as a one-round run, and the outputs are written by the
runner's writer: ``synthetic.jsonl`` / ``synthetic.parquet`` (accepted), ``pool.parquet`` (every sample
with its weight and accepted flag), ``metrics.json`` (one row), ``report.html`` and ``summary.json`` (last).
Every file is written atomically; bad input is refused before anything is written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from synalign.backends import Backend, GenerationRequest, SummaryRequest
from synalign.config import RunConfig
from synalign.embeddings import Embedder
from synalign.errors import InputError
from synalign.graphs.runner import RunResult

__all__ = ["ALIGN_BACKEND", "align_pool"]

ALIGN_BACKEND = "external"
"""``backend`` of every record ``synalign align`` writes: the pool came from outside synalign."""


class _NoGeneration:
    """Summariser and generator of an aligned pool: ``synalign align`` never calls them."""

    def summarize(self, requests: list[SummaryRequest]) -> list[Any]:
        raise InputError("synalign align does not summarise")

    def generate(self, requests: list[GenerationRequest]) -> list[Any]:
        raise InputError("synalign align does not generate")


def _check_out(out: Path, overwrite: bool) -> None:
    """``out`` must be new (or empty), or an earlier synalign output with ``overwrite``; and writable."""
    from synalign.graphs.rundir import LOCK_FILE, prepare_run_dir

    entries = [p for p in out.iterdir() if p.name != LOCK_FILE] if out.is_dir() else []
    if entries and not overwrite:
        raise InputError(f"output directory {out} already exists; pass --overwrite to replace it")
    if entries and not ((out / "summary.json").is_file() or (out / "config.json").is_file()):
        raise InputError(f"refusing to overwrite {out}: it is not a synalign output directory (no summary.json)")
    if not entries:
        prepare_run_dir(out, resume=False, overwrite=False)  # not a directory, not creatable, not writable


def align_pool(
    config: RunConfig,
    pool_path: Path,
    *,
    overwrite: bool = False,
    embedder: Embedder | None = None,
) -> RunResult:
    """Weight and select an existing synthetic pool against the real data in ``config.data``.

    Args:
        config: the real data and fields (``data``, ``text_field``, ``label_field``, ``max_real``), the
            alignment (``selection``, ``accept_fraction``, ``target``, ``seed``), the embedding
            (``embedding_model``, ``cache_dir``, ``device``) and ``out``; generation settings are ignored.
        pool_path: the synthetic pool: a JSONL/CSV/Parquet file, or a directory with a train split, read
            with the same fields as the real data.
        overwrite: replace the outputs of an earlier ``synalign align`` or ``synalign run`` in ``config.out``
            (only their files are deleted).
        embedder: a ready :class:`~synalign.embeddings.Embedder`; default from ``config``.

    Returns:
        :class:`~synalign.graphs.runner.RunResult` (one round; ``stop_reason`` ``"target"`` when the accepted
        set's MMD² meets the target, else ``"single_pass"``).

    Raises:
        InputError: bad real data or pool (see :mod:`synalign.datafiles`), a pool label with no real
            examples, an unknown selection strategy or embedding model, an existing or unwritable ``out``.
    """
    from langgraph.runtime import Runtime
    from langgraph.store.memory import InMemoryStore

    from synalign.datafiles import load_dataset
    from synalign.graphs.context import SynAlignContext
    from synalign.graphs.nodes import align, prepare
    from synalign.graphs.rundir import RunDirLock, remove_run_files
    from synalign.graphs.runner import write_outputs
    from synalign.graphs.samplestore import namespace_for, put_samples
    from synalign.records import SyntheticExample
    from synalign.sampling import stratified_sample
    from synalign.selection import check_strategy

    started = time.perf_counter()
    config = config.model_copy(update={"max_rounds": 1, "max_samples": None})
    check_strategy(config.selection)
    out = config.out
    _check_out(out, overwrite)
    dataset = load_dataset(config.data, text_field=config.text_field, label_field=config.label_field)
    if len(dataset.labels) < 2:
        raise InputError(f"{config.data}: only one label ({dataset.labels[0]!r}); alignment needs at least two")
    rows = load_dataset(pool_path, text_field=config.text_field, label_field=config.label_field).train
    unknown = sorted({r.label for r in rows} - set(dataset.labels))
    if unknown:
        raise InputError(f"{pool_path}: label {unknown[0]!r} does not occur in the real data {config.data}")
    real = stratified_sample(dataset.train, config.max_real, seed=config.seed)
    heldout = stratified_sample(dataset.test, config.max_real, seed=config.seed) if dataset.test else []
    embedder = embedder or Embedder(
        config.embedding_model, cache_dir=config.cache_dir, device=config.device, max_seq_length=config.max_seq_length
    )
    embedder.check()
    backend = Backend(
        name=ALIGN_BACKEND, summarizer=_NoGeneration(), generator=_NoGeneration(), is_llm=False,
        info={"kind": "external", "model": None, "source": str(pool_path),
              "note": f"was generated outside synalign ({pool_path}); synalign align only weighted and selected it"},
    )
    ctx = SynAlignContext(
        config=config, real=real, real_embeddings=embedder.encode([r.text for r in real]), embedder=embedder,
        backend=backend, task=config.task_description(sorted({r.label for r in real})), run_dir=out,
        heldout=heldout, heldout_embeddings=embedder.encode([r.text for r in heldout]) if heldout else None,
    )
    samples = [
        SyntheticExample(id=f"pool-{i:06d}", text=r.text, label=r.label, round=1, backend=ALIGN_BACKEND)
        .model_dump(exclude={"weight", "accepted"})
        for i, r in enumerate(rows)
    ]
    runtime = Runtime(context=ctx, store=InMemoryStore())  # one pass in one process: nothing to resume
    prefix = namespace_for(None)
    batch = put_samples(runtime.store, prefix, 1, samples)
    state: dict[str, Any] = {**prepare({}, runtime), "round": 1, "sample_batches": [batch]}
    state.update(align(state, runtime))  # KMM weights, selection and the round's metrics, as in a run
    stop = "target" if state["metrics"][-1]["stop"] == "target" else "single_pass"
    state["metrics"][-1]["stop"] = stop
    state["stop_reason"] = stop
    with RunDirLock(out):
        _check_out(out, overwrite)  # again: another process may have just written there
        if overwrite:
            remove_run_files(out)
        return write_outputs(
            ctx, state, time.perf_counter() - started,
            store=runtime.store, prefix=prefix,
            extra={"command": "align", "real_data": str(config.data), "pool": str(pool_path)},
        )
