"""How much of the accepted set to keep, chosen on the held-out validation slice (issue 20, item 3).

The selection fills each label's quota (``accept_fraction``); whether that many synthetic texts help is only
known on real examples nothing was fitted on. With ``keep`` = ``heldout`` the run compares three candidates on
its validation slice (:mod:`synalign.holdout`), each scored by the downstream classifier of
:mod:`synalign.utility` (logistic regression on the embeddings, fitted on the real training examples + the
candidate) as the mean log-likelihood of the true label:

- ``all``: the accepted set (the default: what the run keeps without this switch);
- ``half``: each label's better half of it, ranked by ``rank`` (the LM's own label-check margin when the run
  has one, else the real-set classifier's confidence in the intended label, 1 − p_other of
  :mod:`synalign.consistency`);
- ``none``: no synthetic text (real only).

A candidate replaces ``all`` only if it beats it by more than its 95 % interval (paired, stratified bootstrap
over the slice, as :func:`synalign.utility.paired_interval`) **and** by at least
:data:`synalign.verdict.MIN_LOG_LIKELIHOOD_EFFECT`; among several, the larger gain wins. Few candidates and a
margin that must clear its own interval guard against fitting a small slice (the choice is made on the same
slice the verdict then reads, so the verdict's interval of a changed set is optimistic; the report says which
candidate was kept and why). Keeping none is an allowed answer: the data measurably hurt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from synalign.errors import InputError
from synalign.utility import Interval, paired_interval, score_classifier

__all__ = ["CANDIDATES", "KeepCandidate", "KeepChoice", "choose_keep"]

Candidate = Literal["all", "half", "none"]
CANDIDATES: tuple[Candidate, ...] = ("all", "half", "none")


class KeepCandidate(BaseModel):
    """One candidate: its size and its held-out log-likelihood gain over ``all`` (nats per example, paired)."""

    model_config = ConfigDict(frozen=True)

    size: int
    log_likelihood: float
    vs_all: Interval | None = None


class KeepChoice(BaseModel):
    """The chosen candidate (``chosen``), the candidates' scores and one plain ``reason``."""

    model_config = ConfigDict(frozen=True)

    chosen: Candidate
    reason: str
    candidates: dict[str, KeepCandidate]


def _better_half(labels: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Positions of each label's ⌈n/2⌉ largest ``rank`` values (NaN last; ties in order), sorted."""
    keep: list[int] = []
    key = np.where(np.isnan(rank), -np.inf, rank)
    for label in dict.fromkeys(labels.tolist()):
        rows = np.flatnonzero(labels == label)
        order = rows[np.argsort(-key[rows], kind="stable")]
        keep.extend(order[: (len(rows) + 1) // 2].tolist())
    return np.sort(np.asarray(keep, dtype=np.int64))


def choose_keep(
    real: np.ndarray,
    real_labels: Sequence[str],
    accepted: np.ndarray,
    accepted_labels: Sequence[str],
    rank: np.ndarray,
    validation: np.ndarray,
    validation_labels: Sequence[str],
    *,
    min_effect: float,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[KeepChoice, np.ndarray]:
    """Choose how much of the accepted set to keep (module docstring).

    Args:
        real: (n, d) real training embeddings (never the slice); real_labels: n labels.
        accepted: (m, d) the accepted synthetic embeddings; accepted_labels: m labels.
        rank: (m,) larger = more trusted to carry its label (NaN: least).
        validation: (v, d) the validation slice; validation_labels: v labels.
        min_effect: smallest log-likelihood gain over ``all`` (nats per example) that may change the choice.
        n_boot: bootstrap resamples; seed: seeds them.

    Returns:
        (the :class:`KeepChoice`, the (k,) sorted positions in ``accepted`` to keep).

    Raises:
        InputError: an empty slice or mismatched lengths.
    """
    y_acc = np.asarray([str(v) for v in accepted_labels], dtype=object)
    rank = np.asarray(rank, dtype=np.float64)
    if len(y_acc) != len(accepted) or rank.shape != (len(y_acc),):
        raise InputError("keep choice: accepted embeddings, labels and rank differ in length")
    if len(validation) == 0:
        raise InputError("keep choice: the validation slice is empty")
    x_real, y_real = np.asarray(real, np.float64), [str(v) for v in real_labels]
    picks: dict[str, np.ndarray] = {
        "all": np.arange(len(y_acc), dtype=np.int64),
        "half": _better_half(y_acc, rank),
        "none": np.zeros(0, dtype=np.int64),
    }
    scores: dict[str, np.ndarray] = {}
    for name, idx in picks.items():
        x = np.vstack([x_real, np.asarray(accepted, np.float64)[idx]]) if len(idx) else x_real
        scores[name], _ = score_classifier(x, [*y_real, *y_acc[idx].tolist()], validation, validation_labels)
    candidates = {
        name: KeepCandidate(
            size=len(idx), log_likelihood=float(scores[name].mean()),
            vs_all=None if name == "all" else paired_interval(
                scores[name], scores["all"], validation_labels, n_boot=n_boot, seed=seed),
        )
        for name, idx in picks.items()
    }
    winners: list[Candidate] = [name for name in ("half", "none")
               if (d := candidates[name].vs_all) is not None and d.low > 0 and d.mean >= min_effect
               and candidates[name].size < len(y_acc)]
    if not winners:
        reason = ("the whole accepted set: neither half of it nor none beat it on the held-out slice by more "
                  "than the 95 % interval")
        return KeepChoice(chosen="all", reason=reason, candidates=candidates), picks["all"]
    best = max(winners, key=lambda name: candidates[name].vs_all.mean)  # type: ignore[union-attr]
    d = candidates[best].vs_all
    assert d is not None
    what = "each label's better half of the accepted set" if best == "half" else "no synthetic text"
    reason = (f"{what}: on the held-out slice it beat the whole accepted set by {d.mean:+.3f} nats/example of "
              f"log-likelihood (95 % CI {d.low:+.3f} to {d.high:+.3f})")
    return KeepChoice(chosen=best, reason=reason, candidates=candidates), picks[best]
