"""Stratified random subsets of labelled examples: keep every label's share, and a minimum per label; the
largest-remainder apportionment behind them (:func:`apportion`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from synalign.errors import InputError
from synalign.records import RealExample

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import SupportsRichComparison

__all__ = ["apportion", "stratified_sample"]

K = TypeVar("K", bound="SupportsRichComparison")  # keys are sorted (labels, cluster ids)


def apportion(sizes: Mapping[K, int], n: int) -> dict[K, int]:
    """Split ``n`` seats in proportion to ``sizes`` by the largest-remainder (Hamilton) method.

    Key ``k`` of ``N = sum(sizes)`` gets ``floor(n·sizes[k]/N)``, plus one more for the keys with the largest
    remainders (ties broken by key order; keys must be sortable). With ``n >= N`` every key gets its size.

    Raises:
        ValueError: ``n < 0`` or a negative size.
    """
    if n < 0 or any(size < 0 for size in sizes.values()):
        raise ValueError(f"seats and sizes must be >= 0, got {n} and {dict(sizes)}")
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    keys = sorted(sizes)
    exact = {key: n * sizes[key] / total for key in keys}
    quota = {key: int(exact[key]) for key in keys}
    leftover = n - sum(quota.values())
    for key in sorted(keys, key=lambda k: (-(exact[k] - quota[k]), k))[:leftover]:
        quota[key] += 1
    return quota


def stratified_sample(
    examples: Sequence[RealExample], n: int, seed: int, *, min_per_label: int = 0
) -> list[RealExample]:
    """A size-``n`` random subset that keeps every label's proportion.

    Per-label quotas follow the largest-remainder (Hamilton) method (:func:`apportion`): label ``l`` with ``c_l`` of
    ``N`` examples gets ``floor(n·c_l/N)`` plus one more for the labels with the largest remainders (ties broken
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
    quota = apportion({label: len(groups[label]) for label in labels}, n)
    floor = {label: min(min_per_label, len(groups[label])) for label in labels}
    if sum(floor.values()) > n:
        raise InputError(
            f"a sample of {n} cannot hold {min_per_label} examples of each of {len(labels)} labels "
            f"(needs {sum(floor.values())}); raise `max_real`"
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
