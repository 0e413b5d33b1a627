"""Typed state of the SynAlign loop, checkpointed after every node.

Append-only channels (``samples``, ``clusters``, ``summaries``, ``metrics``) use the ``operator.add``
reducer, so a node returns only what it adds; a node re-run after a crash adds exactly what it would have
added the first time (every node is a deterministic function of state + seed), so a resumed run neither loses
nor duplicates samples. Records are stored as plain dicts (``model_dump()`` of the core records, typed here
as ``TypedDict`` records) to keep checkpoints portable: the checkpoint never holds a pickled class.
"""

from __future__ import annotations

import operator
from typing import Annotated, Literal, TypedDict

from typing_extensions import NotRequired

__all__ = [
    "ClusterRecord", "RoundMetrics", "Route", "SampleRecord", "StopReason", "SummaryRecord", "SynAlignState",
    "merge_counts",
]

StopReason = Literal["target", "max_rounds", "max_samples"]
"""Why the loop stopped: MMD² ≤ target, or a budget (rounds, samples) spent."""

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
    """A :class:`~synalign.records.SyntheticExample` dump without ``weight`` / ``accepted``: those belong to
    the latest alignment (``SynAlignState.weights`` by sample id, ``SynAlignState.accepted``)."""

    id: str
    text: str
    label: str
    round: int
    backend: str
    demonstration_ids: list[str]


class RoundMetrics(TypedDict):
    """One row of ``metrics.json``: the accepted set after round ``round``, every MMD² with the run's
    fixed bandwidth (MMD² units; see :func:`synalign.graphs.nodes.align` for each quantity)."""

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
        samples: every generated sample.
        weights: kernel-mean-matching weight by sample id (latest alignment; within a label they sum to 1).
        accepted: ids of the accepted synthetic samples (latest alignment).
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
    samples: Annotated[list[SampleRecord], operator.add]
    weights: dict[str, float]
    accepted: list[str]
    metrics: Annotated[list[RoundMetrics], operator.add]
    dropped: Annotated[dict[str, int], merge_counts]
    stop_reason: StopReason | None
