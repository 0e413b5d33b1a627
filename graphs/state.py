"""Typed state of the SynAlign loop, checkpointed after every node.

Append-only channels (``sample_batches``, ``clusters``, ``summaries``, ``metrics``) use the ``operator.add``
reducer, so a node returns only what it adds; a node re-run after a crash adds exactly what it would have
added the first time (every node is a deterministic function of state + seed), so a resumed run neither loses
nor duplicates samples. Records are stored as plain dicts (``model_dump()`` of the core records, typed here
as ``TypedDict`` records) to keep checkpoints portable: the checkpoint never holds a pickled class.

The samples themselves and the latest weights are not in the state: they live in the run's LangGraph store
(:mod:`synalign.graphs.samplestore`), one item per round, and the state holds a :class:`SampleBatch` per round
and one :class:`AlignmentRef`, so a checkpoint stays a few kilobytes however large the pool grows.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, TypedDict

from typing_extensions import NotRequired

__all__ = [
    "AlignmentRef", "ClusterRecord", "RoundMetrics", "Route", "SampleBatch", "SampleRecord", "StopReason",
    "SummaryRecord", "SynAlignState", "merge_counts",
]

StopReason = Literal["target", "utility_plateau", "max_rounds", "max_samples"]
"""Why the loop stopped: MMD² ≤ target, no held-out gain for ``patience`` rounds, or a budget (rounds,
samples) spent."""

Route = Literal["explore", "finish"]
"""Where :func:`synalign.graphs.nodes.route` sends the loop after ``align``."""


class ClusterRecord(TypedDict):
    """A :class:`~synalign.records.DemonstrationCluster` dump plus the round that picked it."""

    label: str
    pick_id: str
    posterior_std: float
    example_ids: list[str]
    round: int


class SummaryRecord(TypedDict):
    """An :class:`~synalign.records.AttributeSummary` dump (its fields are spread in) plus which cluster of
    which round it describes: ``(round, cluster)`` is the join key, ``cluster`` the index among that round's
    clusters."""

    round: int
    cluster: int
    label: str
    pick_id: str


class SampleRecord(TypedDict):
    """A :class:`~synalign.records.SyntheticExample` dump without ``kmm_weight`` / ``accepted``: those belong to
    the latest alignment (``SynAlignState.weights`` by sample id, ``SynAlignState.accepted``)."""

    id: str
    text: str
    label: str
    round: int
    backend: str
    demonstration_ids: list[str]
    label_margin: NotRequired[float]


class SampleBatch(TypedDict):
    """Reference to one round's new samples in the store: the round, the item's key and how many samples it
    holds (:func:`synalign.graphs.samplestore.put_samples`)."""

    round: int
    key: str
    count: int


class AlignmentRef(TypedDict):
    """Reference to the latest alignment in the store: its round and key, the pool size it weights, how many it
    accepted, and the key of the alignment it replaced (:func:`synalign.graphs.samplestore.put_alignment`)."""

    round: int
    key: str
    count: int
    accepted: int
    previous: str | None


class RoundMetrics(TypedDict):
    """One row of ``metrics.json``: the accepted set after round ``round``, every MMD² with the run's
    fixed bandwidth (MMD² units; see :func:`synalign.graphs.nodes.align` for each quantity).

    ``near_copies`` / ``near_copies_accepted``: near-copies of real texts in the pool / the accepted set
    (:mod:`synalign.novelty`); ``utility``: the held-out :class:`synalign.utility.UtilityEstimate` dump and
    ``fidelity``: the :class:`synalign.verdict.Fidelity` dump on the validation slice (absent without one);
    with ``label_check`` lm, ``lm_agrees_accepted`` / ``lm_agrees_pool``: the share of the accepted set / the pool
    whose LM label-check margin is > 0 (:mod:`synalign.lmcheck`), and ``label_check_calls`` /
    ``label_check_seconds``: this process's scoring requests and their time so far; with ``keep`` heldout,
    ``keep_choice``: the :class:`synalign.keepchoice.KeepChoice` dump (the accepted set is what it kept)."""

    round: int
    generated: int
    generated_this_round: int
    accepted: int
    mmd2_accepted: float
    noise_floor_same_size: float
    noise_floor_same_size_std: float
    target_mmd2: float
    mmd2_accepted_u: float | None
    mmd2_pool: float
    sinkhorn_accepted: float
    noise_floor: float
    filtered: int
    filter_threshold: float | None
    mmd2_accepted_heldout: NotRequired[float]
    near_copies: NotRequired[int]
    near_copies_accepted: NotRequired[int]
    utility: NotRequired[dict[str, Any]]
    fidelity: NotRequired[dict[str, Any]]
    lm_agrees_accepted: NotRequired[float]
    lm_agrees_pool: NotRequired[float]
    label_check_calls: NotRequired[int]
    label_check_seconds: NotRequired[float]
    keep_choice: NotRequired[dict[str, Any]]
    align_seconds: float
    stop: StopReason | None


def merge_counts(left: dict[str, int] | None, right: dict[str, int] | None) -> dict[str, int]:
    """Reducer: add counters key by key."""
    out = dict(left or {})
    for key, value in (right or {}).items():
        out[key] = out.get(key, 0) + value
    return out


class SynAlignState(TypedDict, total=False):
    """State of one run.

    Attributes:
        round: current round (1-based; 0 before the first exploration).
        bandwidth: RBF bandwidth σ of every MMD² in the run (median heuristic on the real set), embedding units.
        noise_floor, noise_floor_std: MMD² between two random halves of the real set (mean, std over 5
            splits; :func:`synalign.divergence.fixed_set_noise_floor` at m = n/2).
        picked: explorer picks so far, per label (real example ids).
        clusters: every demonstration cluster used.
        summaries: attribute summaries, one per cluster, joined on ``(round, cluster)``.
        sample_batches: one reference per round to that round's new samples in the store; the pool is their
            concatenation, in order (:func:`synalign.graphs.samplestore.get_samples`).
        alignment: reference to the latest alignment in the store: the pool's kernel-mean-matching weights
            (within a label they sum to 1) and its accepted mask (None before the first ``align``).
        metrics: one row per round; its ``stop`` says whether (and why) the loop ends after that round.
        dropped: generator drop counts by reason.
        stop_reason: the last round's ``stop`` once ``finish`` has run.
    """

    round: int
    bandwidth: float
    noise_floor: float
    noise_floor_std: float
    picked: dict[str, list[str]]
    clusters: Annotated[list[ClusterRecord], operator.add]
    summaries: Annotated[list[SummaryRecord], operator.add]
    sample_batches: Annotated[list[SampleBatch], operator.add]
    alignment: AlignmentRef | None
    metrics: Annotated[list[RoundMetrics], operator.add]
    dropped: Annotated[dict[str, int], merge_counts]
    stop_reason: StopReason | None
