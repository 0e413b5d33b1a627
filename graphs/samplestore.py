"""The run's samples and alignments in a LangGraph store; the state holds references to them.

LangGraph's SQLite saver writes every channel's whole value into each checkpoint, one after every node, so a
state that held the pool (``samples``) and the latest alignment (``weights``, ``accepted``) rewrote them five
times a round: checkpoint bytes grew with the pool, not with what a round adds
(``evals/scripts/bench_checkpoint.py``, RESULTS §8). Here each round's new samples are one item of a LangGraph
:class:`~langgraph.store.base.BaseStore` (the run's ``runtime.store``: the run directory's SQLite store, or
the LangGraph server's store in Studio) and the state keeps only a :class:`SampleBatch` per round and one
:class:`AlignmentRef`, a few hundred bytes:

- namespace ``("synalign", THREAD, "samples")``, key ``r0003-<digest>``: ``{"round": 3, "samples": [...]}``,
  the round's :class:`~synalign.graphs.state.SampleRecord` dicts in pool order (append-only);
- namespace ``("synalign", THREAD, "alignment")``, key ``r0003-<digest>``: the latest kernel-mean-matching
  weights of the whole pool (float64, base64) and its accepted mask (bits, base64), in pool order.

Keys carry a digest of their content, so a node re-run after a crash writes the same item again (idempotent)
and a forked thread that generated other texts never overwrites the items its parent's checkpoints refer to;
every read checks the item against that digest, so an edited text or weight is never taken into the pool.
An alignment is replaced every round; when pruning (the CLI run, whose saver keeps the latest two checkpoints)
the one before the previous is deleted as the new one lands, so the store grows with the new
samples only. Every read checks the item against its reference: a missing, shorter, edited or undecodable
item is :class:`MissingItemError`, never a silently smaller or altered pool.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import numpy as np
from langgraph.config import get_config
from langgraph.store.base import BaseStore, GetOp

from synalign.errors import SynalignError
from synalign.graphs.state import AlignmentRef, SampleBatch, SampleRecord

__all__ = [
    "MissingItemError", "get_alignment", "get_samples", "load_pool", "namespace_for", "put_alignment",
    "put_samples", "require_store", "thread_namespace", "thread_of",
]

_ROOT = "synalign"
_DEFAULT_THREAD = "default"


class MissingItemError(SynalignError):
    """A reference in the state names a store item that is gone or does not match it (lost, truncated or
    edited store): the run cannot continue safely from this checkpoint."""


def thread_of(runtime: Any) -> str | None:
    """The LangGraph thread id of the node's run (``runtime.execution_info``, else the runnable config), or
    None outside a run (a node called directly)."""
    info = getattr(runtime, "execution_info", None)
    if info is not None and getattr(info, "thread_id", None):
        return str(info.thread_id)
    try:
        thread = get_config().get("configurable", {}).get("thread_id")
    except RuntimeError:  # outside a runnable context
        return None
    return None if thread is None else str(thread)


def namespace_for(thread_id: str | None) -> tuple[str, str]:
    """``("synalign", THREAD)``: the prefix of a thread's items (``"default"`` for None)."""
    return (_ROOT, thread_id or _DEFAULT_THREAD)


def thread_namespace(runtime: Any) -> tuple[str, str]:
    """The prefix of the items of the node's thread (:func:`namespace_for` of :func:`thread_of`)."""
    return namespace_for(thread_of(runtime))


def require_store(runtime: Any) -> BaseStore:
    """The run's ``runtime.store``.

    Raises:
        SynalignError: the graph was compiled without a store (the samples live there, not in the state).
    """
    store = getattr(runtime, "store", None)
    if store is None:
        raise SynalignError(
            "the SynAlign graph keeps its samples in a LangGraph store: compile it with one, e.g. "
            "build_graph().compile(checkpointer=..., store=InMemoryStore()) (langgraph.store.memory)"
        )
    return store


def _key(round_: int, value: dict[str, Any]) -> str:
    """An item's key: its round and a digest of its value (what every read checks the value against). An
    alignment's value is ASCII, so ``ensure_ascii`` changes none of its keys written before."""
    payload = json.dumps(value, sort_keys=True, ensure_ascii=False).encode()
    return f"r{round_:04d}-{hashlib.sha256(payload).hexdigest()[:16]}"


def _read(what: str, read: Any) -> Any:
    """``read()`` (a store lookup); a value the store cannot decode (invalid JSON) is :class:`MissingItemError`."""
    try:
        return read()
    except ValueError as exc:  # json / orjson decode errors
        raise MissingItemError(f"{what} cannot be read from the store ({type(exc).__name__})") from None


def put_samples(store: BaseStore, prefix: tuple[str, ...], round_: int, samples: list[SampleRecord]) -> SampleBatch:
    """Store one round's new samples (one item); returns the reference the state keeps."""
    value = {"round": round_, "samples": samples}
    key = _key(round_, value)
    store.put((*prefix, "samples"), key, value, index=False)
    return SampleBatch(round=round_, key=key, count=len(samples))


def get_samples(
    store: BaseStore,
    prefix: tuple[str, ...],
    batches: list[SampleBatch],
    *,
    cache: dict[str, list[SampleRecord]] | None = None,
) -> list[SampleRecord]:
    """Every sample the references name, in pool order (one store round trip for the batches not in ``cache``).

    ``cache``: batches already read in this process, by key (a key names its content, so a cached batch is
    never stale); the batches read here are added to it.

    Raises:
        MissingItemError: an item is gone, holds another number of samples than its reference says, does not
            match the digest in its key (edited), or cannot be decoded.
    """
    known = cache if cache is not None else {}
    missing = [b for b in batches if b["key"] not in known]
    ops = [GetOp((*prefix, "samples"), b["key"]) for b in missing]
    items = _read("the samples of a round", lambda: store.batch(ops)) if missing else []
    for batch, item in zip(missing, items, strict=True):
        value = item.value if item is not None and isinstance(item.value, dict) else {}
        samples = value.get("samples")
        where = f"the samples of round {batch['round']} ({batch['key']})"
        if not isinstance(samples, list) or len(samples) != batch["count"]:
            found = "missing" if not isinstance(samples, list) else f"{len(samples)} samples"
            raise MissingItemError(
                f"{where} are not in the store as the checkpoint says ({batch['count']} samples; found {found})"
            )
        if _key(batch["round"], value) != batch["key"]:
            raise MissingItemError(f"{where} were changed in the store since they were written (checksum mismatch)")
        known[batch["key"]] = samples
    return [s for b in batches for s in known[b["key"]]]


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(array.tobytes()).decode("ascii")


def put_alignment(
    store: BaseStore,
    prefix: tuple[str, ...],
    round_: int,
    weights: np.ndarray,
    accepted: np.ndarray,
    *,
    previous: AlignmentRef | None,
    prune: bool = True,
) -> AlignmentRef:
    """Store the round's alignment of the whole pool and, with ``prune``, delete the one before ``previous``.

    Args:
        weights: (N,) importance weights in pool order (stored as float64).
        accepted: (N,) bool accepted mask in pool order.
        previous: the state's current reference (the alignment this one replaces), None in round 1.
        prune: delete the alignment ``previous`` replaced. Safe when no kept checkpoint is older than the
            previous round's ``align`` (the CLI run's saver keeps the latest 2 checkpoints); False keeps every
            alignment (a server that keeps every checkpoint, for time travel).
    """
    w = np.ascontiguousarray(weights, dtype="<f8")
    mask = np.asarray(accepted, dtype=bool)
    value = {"round": round_, "count": len(w), "weights_f64": _b64(w), "accepted_bits": _b64(np.packbits(mask))}
    key = _key(round_, value)
    ns = (*prefix, "alignment")
    store.put(ns, key, value, index=False)
    if prune and previous is not None and previous["previous"] not in (None, key):
        store.delete(ns, str(previous["previous"]))
    return AlignmentRef(
        round=round_, key=key, count=len(w), accepted=int(mask.sum()),
        previous=None if previous is None else previous["key"],
    )


def get_alignment(
    store: BaseStore, prefix: tuple[str, ...], ref: AlignmentRef | None, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(weights, accepted)`` of the referenced alignment: (N,) float64 and (N,) bool in pool order, padded
    with 0 / False for the ``count - N`` samples generated since (zeros when ``ref`` is None).

    Raises:
        MissingItemError: the item is gone, weights another number of samples than its reference says, does not
            match the digest in its key (edited), or cannot be decoded.
    """
    weights, accepted = np.zeros(count), np.zeros(count, dtype=bool)
    if ref is None:
        return weights, accepted
    where = f"the alignment of round {ref['round']} ({ref['key']})"
    item = _read(where, lambda: store.get((*prefix, "alignment"), ref["key"]))
    value = item.value if item is not None and isinstance(item.value, dict) else None
    n = value.get("count") if value is not None else None
    if value is None or n != ref["count"] or n > count:
        found = "missing" if value is None else f"{n} samples"
        raise MissingItemError(
            f"{where} is not in the store as the checkpoint says ({ref['count']} samples; found {found})"
        )
    if _key(ref["round"], value) != ref["key"]:
        raise MissingItemError(f"{where} was changed in the store since it was written (checksum mismatch)")
    try:
        w = np.frombuffer(base64.b64decode(value["weights_f64"], validate=True), dtype="<f8")
        bits = np.unpackbits(np.frombuffer(base64.b64decode(value["accepted_bits"], validate=True), dtype=np.uint8))
        if len(w) != n or len(bits) < n:
            raise ValueError(f"{len(w)} weights and {len(bits)} accepted flags for {n} samples")
    except (KeyError, TypeError, ValueError) as exc:  # binascii.Error is a ValueError
        raise MissingItemError(f"{where} cannot be decoded ({' '.join(str(exc).split())})") from None
    weights[:n], accepted[:n] = w, bits[:n]
    return weights, accepted


def load_pool(
    store: BaseStore, prefix: tuple[str, ...], state: dict[str, Any]
) -> tuple[list[SampleRecord], np.ndarray, np.ndarray]:
    """The pool a state refers to: ``(samples, weights, accepted)``, the (N,) weights and bool mask of the
    latest alignment in pool order (0 / False for samples generated after it).

    Raises:
        MissingItemError: see :func:`get_samples`, :func:`get_alignment`.
    """
    samples = get_samples(store, prefix, state.get("sample_batches", []))
    weights, accepted = get_alignment(store, prefix, state.get("alignment"), len(samples))
    return samples, weights, accepted
