"""Stratified random subsets of labelled examples: keep every label's share, and a minimum per label."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from synalign.errors import InputError
from synalign.records import RealExample

__all__ = ["stratified_sample"]


def stratified_sample(
    examples: Sequence[RealExample], n: int, seed: int, *, min_per_label: int = 0
) -> list[RealExample]:
    """A size-``n`` random subset that keeps every label's proportion.

    Per-label quotas follow the largest-remainder (Hamilton) method: label ``l`` with ``c_l`` of ``N``
    examples gets ``floor(n·c_l/N)`` plus one more for the labels with the largest remainders (ties broken
    by label name). Then every label is raised to at least ``min(min_per_label, c_l)``, the seats taken one
    at a time from the label with the most above its own minimum (ties by label name), so rare labels are
    not dropped. Within a label the members are a uniform random draw
    (``numpy.random.default_rng(seed)``, labels visited in sorted order), so the result is deterministic for
    a given seed. The result keeps the input order. With ``min_per_label=0`` a label whose quota rounds to 0
    is absent.

    Args:
        examples: the population (any labelled records with ``.label``).
        n: sample size; ``n >= len(examples)`` returns all examples (a new list).
        seed: random seed.
        min_per_label: least number of examples kept per label (all of a label that has fewer).

    Raises:
        ValueError: ``n < 0`` or ``min_per_label < 0``.
        InputError: the per-label minimums alone exceed ``n``.
    """
    if n < 0 or min_per_label < 0:
        raise ValueError(f"sample size and min_per_label must be >= 0, got {n} and {min_per_label}")
    total = len(examples)
    if n >= total:
        return list(examples)
    groups: dict[str, list[int]] = defaultdict(list)
    for index, example in enumerate(examples):
        groups[example.label].append(index)
    labels = sorted(groups)
    exact = {label: n * len(groups[label]) / total for label in labels}
    quota = {label: int(exact[label]) for label in labels}
    leftover = n - sum(quota.values())
    by_remainder = sorted(labels, key=lambda label: (-(exact[label] - quota[label]), label))
    for label in by_remainder[:leftover]:
        quota[label] += 1
    floor = {label: min(min_per_label, len(groups[label])) for label in labels}
    if sum(floor.values()) > n:
        raise InputError(
            f"a sample of {n} cannot hold {min_per_label} examples of each of {len(labels)} labels "
            f"(needs {sum(floor.values())}); raise --max-real"
        )
    for label in labels:
        while quota[label] < floor[label]:
            donor = min(labels, key=lambda other: (-(quota[other] - floor[other]), other))
            quota[donor] -= 1
            quota[label] += 1
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in labels:
        members = groups[label]
        picks = rng.permutation(len(members))[: quota[label]]
        chosen.extend(members[i] for i in picks)
    return [examples[i] for i in sorted(chosen)]
