"""Per-label selection functions: which k of one label's synthetic rows to accept.

The one job of this module is the selection rules themselves, each a pure function of one label's synthetic
rows (m, d), that label's real rows (n, d) and its kernel-mean-matching weights (m,) (:mod:`synalign.kmm`):
``random`` (uniform), ``top_weight`` (largest KMM weight), ``proportional`` (sampled ∝ weight; Efraimidis &
Spirakis 2006) and ``herding`` (kernel herding; Chen, Welling & Smola 2010). Names, the registry and the
``filter+NAME`` combinator are :mod:`synalign.selection`'s.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from synalign.errors import InputError

__all__ = [
    "SelectionStrategy",
    "select_herding",
    "select_proportional",
    "select_random",
    "select_top_weight",
    "top_k",
]


class SelectionStrategy(Protocol):
    """Pick ``k`` distinct synthetic rows of one label to accept.

    Called as ``strategy(synthetic (m,d), real (n,d), weights (m,), k, *, bandwidth, rng, device)`` and
    returns an int array of ``k`` distinct indices in [0, m). ``weights`` are the KMM weights (simplex);
    ``bandwidth`` the RBF σ; ``rng`` a seeded ``numpy.random.Generator``; ``device`` "auto"|"cpu"|"cuda"
    (strategies that do not use torch may ignore it: accept ``**_``).
    """

    def __call__(
        self,
        synthetic: np.ndarray,
        real: np.ndarray,
        weights: np.ndarray,
        k: int,
        *,
        bandwidth: float,
        rng: np.random.Generator,
        device: str = "auto",
    ) -> np.ndarray: ...


def _check_k(m: int, k: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 0 or k > m:
        raise InputError(f"cannot select {k!r} of {m} synthetic samples")


def top_k(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the k largest of (m,) ``scores``, ties broken at random (one ``rng.permutation(m)``).

    Raises:
        InputError: k outside [0, m].
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    _check_k(len(s), k)
    perm = rng.permutation(len(s))
    return perm[np.argsort(-s[perm], kind="stable")[:k]].astype(np.int64)


def select_random(
    synthetic: np.ndarray,
    real: np.ndarray,
    weights: np.ndarray,
    k: int,
    *,
    rng: np.random.Generator,
    **_: object,
) -> np.ndarray:
    """``"random"``: k rows uniformly without replacement (the baseline every strategy must beat).

    Args: as :class:`SelectionStrategy` (only ``len(synthetic)``, ``k`` and ``rng`` are used).
    Returns: (k,) sorted int64 indices. Raises: InputError: k outside [0, m].
    """
    m = len(synthetic)
    _check_k(m, k)
    return np.sort(rng.choice(m, size=k, replace=False)).astype(np.int64)


def select_top_weight(
    synthetic: np.ndarray,
    real: np.ndarray,
    weights: np.ndarray,
    k: int,
    *,
    rng: np.random.Generator,
    **_: object,
) -> np.ndarray:
    """``"top_weight"``: the k rows with the largest KMM weight (ties, e.g. Frank–Wolfe zeros, at random).

    Args: as :class:`SelectionStrategy` (``weights`` (m,) and ``rng`` are used).
    Returns: (k,) int64 indices, largest weight first. Raises: InputError: k outside [0, m].
    """
    _check_k(len(synthetic), k)
    return top_k(weights, k, rng)


def select_proportional(
    synthetic: np.ndarray,
    real: np.ndarray,
    weights: np.ndarray,
    k: int,
    *,
    rng: np.random.Generator,
    **_: object,
) -> np.ndarray:
    """``"proportional"``: k rows sampled without replacement with probability ∝ KMM weight.

    Weighted reservoir sampling (Efraimidis & Spirakis 2006): keys u^(1/w_i), u ~ U(0,1), take the k largest;
    O(m log m). Zero-weight rows come last, in random order, if k exceeds the non-zero count.

    Args: as :class:`SelectionStrategy` (``weights`` (m,) and ``rng`` are used).
    Returns: (k,) int64 indices. Raises: InputError: k outside [0, m].
    """
    m = len(synthetic)
    _check_k(m, k)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    u = rng.random(m)
    with np.errstate(divide="ignore"):
        keys = np.where(w > 0, np.log(u) / np.where(w > 0, w, 1.0), -np.inf)
    tie = rng.random(m)
    order = np.lexsort((tie, -keys))
    return order[:k].astype(np.int64)


def select_herding(
    synthetic: np.ndarray,
    real: np.ndarray,
    weights: np.ndarray | None,
    k: int,
    *,
    bandwidth: float,
    device: str = "auto",
    block_size: int = 4096,
    **_: object,
) -> np.ndarray:
    """``"herding"``: kernel herding of the real set's mean embedding (Chen, Welling & Smola 2010).

    Greedy MMD minimisation of the selected set's mean embedding to the real mean embedding: at step t
    (t rows selected in S) pick, among unselected rows,

        argmax_i  mean_j k(s_i, r_j) − 1/(t+1) Σ_{u∈S} k(s_i, s_u).

    Weights and rng are not used. Cost O(m·n·d) for the real mean embedding (tiles) plus one kernel column per
    pick, O(m·k·d); memory O(m); the m×m matrix is never formed.

    Args: synthetic (m, d), real (n, d), k, bandwidth (RBF σ, Euclidean units), device; block_size: tile rows.
    Returns: (k,) int64 indices in pick order. Raises: InputError: bad arrays or k outside [0, m].
    """
    import torch

    from synalign._torch import RBFRows, as_matrix, kernel_matvec, resolve_device, sequential_loop, to_tensor

    s = as_matrix(synthetic, "synthetic")
    r = as_matrix(real, "real")
    m, n = s.shape[0], r.shape[0]
    _check_k(m, k)
    dev = resolve_device(device)
    with torch.no_grad():
        st, rt = to_tensor(s, dev), to_tensor(r, dev)
        uniform = torch.full((n,), 1.0 / n, dtype=torch.float64, device=dev)
        target = kernel_matvec(st, rt, uniform, [float(bandwidth)], max(1, int(block_size)))
        rows = RBFRows(st, float(bandwidth))
        acc = torch.zeros(m, dtype=torch.float64, device=dev)
        chosen = torch.zeros(m, dtype=torch.bool, device=dev)
        picks: list[int] = []
        with sequential_loop(dev):
            for t in range(k):
                score = (target - acc / (t + 1)).masked_fill_(chosen, -float("inf"))
                i = int(torch.argmax(score))
                picks.append(i)
                chosen[i] = True
                acc += rows.row(i).double()
    return np.asarray(picks, dtype=np.int64)
