"""Typed state of the SynAlign loop, checkpointed after every node.

Append-only channels (``samples``, ``clusters``, ``summaries``, ``metrics``) use the ``operator.add``
reducer, so a node returns only what it adds; a node re-run after a crash adds exactly what it would have
added the first time (every node is a deterministic function of state + seed), so a resumed run neither loses
nor duplicates samples. Records are stored as plain dicts (``model_dump()``) to keep checkpoints portable.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

__all__ = ["SynAlignState", "merge_counts"]


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
        clusters: every demonstration cluster used (``DemonstrationCluster`` dumps plus ``round``).
        summaries: attribute summaries, aligned with ``clusters``.
        samples: every generated sample (``SyntheticExample`` dumps without weight/accepted).
        weights: kernel-mean-matching weight of each sample, aligned with ``samples`` (latest alignment).
        accepted: ids of the accepted synthetic samples (latest alignment).
        metrics: one dict per round (divergences, counts, timings).
        dropped: generator drop counts by reason.
        stop_reason: ``"target"``, ``"max_rounds"`` or ``"max_samples"`` once the loop ends.
    """

    round: int
    bandwidth: float
    noise_floor: float
    noise_floor_std: float
    picked: dict[str, list[str]]
    clusters: Annotated[list[dict[str, Any]], operator.add]
    summaries: Annotated[list[dict[str, Any]], operator.add]
    samples: Annotated[list[dict[str, Any]], operator.add]
    weights: list[float]
    accepted: list[str]
    metrics: Annotated[list[dict[str, Any]], operator.add]
    dropped: Annotated[dict[str, int], merge_counts]
    stop_reason: str | None
