"""GP explorer (SynAlign stage 1, Ren et al., WWW 2025, §3.1 "exploration-aware sampling").

Per label (or over all rows), :func:`synalign.greedy_variance.greedy_variance_picks` picks the real
examples with the largest GP posterior variance given the ones already used, continuing from earlier
rounds. Each pick becomes a :class:`~synalign.records.DemonstrationCluster`: the pick plus its nearest
neighbours of the same label, which the attribute summariser reads (stage 2).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from synalign.errors import InputError
from synalign.greedy_variance import DegenerateKernelError, PickResult, greedy_variance_picks
from synalign.records import DemonstrationCluster

__all__ = ["ExploreResult", "explore"]

logger = logging.getLogger("synalign.explorer")


@dataclass(frozen=True)
class ExploreResult:
    """Result of :func:`explore`.

    Attributes:
        clusters: demonstration clusters; per label: labels in order of first appearance, then picks in
            pick order; over all rows: in pick order.
        picked: ids picked so far per label (earlier rounds first, then this round's picks), every label.
        picks: :class:`PickResult` per label (row indices within that label's rows), or under ``"*"``
            when exploring over all rows (row indices into ``embeddings``).
    """

    clusters: list[DemonstrationCluster]
    picked: dict[str, list[str]]
    picks: dict[str, PickResult] = field(default_factory=dict)


def explore(
    embeddings: np.ndarray,
    ids: Sequence[str],
    labels: Sequence[str],
    *,
    clusters_per_label: int,
    cluster_size: int,
    picked: dict[str, list[str]] | None = None,
    length_scale: float | None = None,
    priority: np.ndarray | None = None,
    per_label: bool = True,
    device: str = "auto",
) -> ExploreResult:
    """Build demonstration clusters with the GP explorer (SynAlign stage 1).

    By default (``per_label=True``, as the reference code does) the explorer runs
    :func:`greedy_variance_picks` on each label's rows alone (labels in order of first appearance),
    continuing from the ids already picked in earlier rounds. With ``per_label=False`` one GP runs over
    all rows and makes ``clusters_per_label × number of labels`` picks in total, wherever the posterior
    variance is largest. Each new pick becomes a cluster: the pick followed by its ``cluster_size − 1``
    nearest neighbours (Euclidean distance, equivalently cosine for unit-norm rows) among the rows of
    the pick's label, nearest first. A label with fewer than ``cluster_size`` examples (a few-shot label)
    gets clusters of all its examples.

    Args:
        embeddings: (N, d) float array of L2-normalised embeddings of the real examples.
        ids: N unique example ids.
        labels: N labels.
        clusters_per_label: new picks (clusters) per label; fewer when fewer unpicked rows remain.
        cluster_size: examples per cluster, pick included (at most the label's size).
        picked: ids picked in earlier rounds, per label (not modified).
        length_scale: RBF length-scale; ``None`` = median heuristic of each label's rows (of all rows
            when ``per_label`` is false).
        priority: optional (N,) non-negative weights (see :func:`greedy_variance_picks`).
        per_label: one GP per label (default) or one over all rows.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns:
        :class:`ExploreResult` with the clusters and the updated picked ids.

    Raises:
        InputError: mismatched lengths, duplicate ids, unknown picked ids, bad counts.
        DegenerateKernelError: see :func:`greedy_variance_picks` (message names the label).
    """
    import torch

    from synalign._torch import as_matrix, resolve_device

    x = as_matrix(embeddings, "embeddings")
    n = x.shape[0]
    ids = [str(i) for i in ids]
    labels = [str(lab) for lab in labels]
    if len(ids) != n or len(labels) != n:
        raise InputError(f"embeddings has {n} rows but got {len(ids)} ids and {len(labels)} labels")
    row_of = {i: r for r, i in enumerate(ids)}
    if len(row_of) != n:
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise InputError(f"example ids must be unique; {dup!r} repeats")
    if clusters_per_label < 1 or cluster_size < 1:
        raise InputError(
            f"clusters_per_label and cluster_size must be >= 1, got {clusters_per_label} and {cluster_size}"
        )
    if priority is not None:
        priority = np.asarray(priority, dtype=np.float32).reshape(-1)
        if priority.shape[0] != n:
            raise InputError(f"priority must have one value per row ({n}), got {priority.shape[0]}")
    label_arr = np.asarray(labels, dtype=object)
    order = list(dict.fromkeys(labels))
    rows_of_label = {label: np.flatnonzero(label_arr == label) for label in order}
    prior = {k: [str(i) for i in v] for k, v in (picked or {}).items()}
    unknown = sorted(set(prior) - set(order))
    if unknown:
        raise InputError(f"picked ids given for labels not in the data: {unknown}")
    for label, before in prior.items():
        missing = [i for i in before if i not in row_of or labels[row_of[i]] != label]
        if missing:
            raise InputError(
                f"picked ids for label {label!r} not found among that label's examples: {missing[:5]}"
            )

    dev = resolve_device(device)
    out_picked: dict[str, list[str]] = {label: list(prior.get(label, [])) for label in order}
    details: dict[str, PickResult] = {}
    new_picks: list[tuple[int, float]] = []  # (row, posterior std)
    if per_label:
        groups = [(label, rows_of_label[label], clusters_per_label) for label in order]
    else:
        groups = [("*", np.arange(n), clusters_per_label * len(order))]
    for group, rows, m in groups:
        local = {ids[r]: j for j, r in enumerate(rows)}
        before = [i for label in ([group] if per_label else order) for i in prior.get(label, [])]
        try:
            res = greedy_variance_picks(
                x[rows],
                m,
                length_scale=length_scale,
                picked=[local[i] for i in before],
                priority=None if priority is None else priority[rows],
                device=str(dev),
            )
        except DegenerateKernelError as err:
            where = f"label {group!r}" if per_label else "all labels"
            raise DegenerateKernelError(f"{where}: {err}") from None
        details[group] = res
        if len(res.indices) < m:
            logger.warning(
                "%s: only %d unpicked examples left, %d clusters instead of %d",
                f"label {group!r}" if per_label else "all labels",
                len(res.indices),
                len(res.indices),
                m,
            )
        new_picks += [(int(rows[j]), std) for j, std in zip(res.indices, res.posterior_std, strict=True)]

    clusters: list[DemonstrationCluster] = []
    with torch.no_grad():
        for r, std in new_picks:
            label = labels[r]
            out_picked[label].append(ids[r])
            same = rows_of_label[label]
            diff = torch.as_tensor(x[same]).to(dev) - torch.as_tensor(x[r]).to(dev)
            d2 = (diff * diff).sum(dim=1).cpu().numpy()
            d2[same == r] = -1.0  # the pick always comes first
            nearest = same[np.argsort(d2, kind="stable")[:cluster_size]]
            clusters.append(
                DemonstrationCluster(
                    label=label,
                    pick_id=ids[r],
                    posterior_std=float(std),
                    example_ids=[ids[j] for j in nearest],
                )
            )
    return ExploreResult(clusters=clusters, picked=out_picked, picks=details)
