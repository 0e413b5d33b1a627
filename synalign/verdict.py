"""The verdict: should I train on this data? Fidelity, novelty and utility, judged together.

Levels (:func:`judge`):

- **green** — the data measurably helps and is not mostly near-copies: the 95 % interval of the held-out
  log-likelihood Δ vs real only is above 0 and the Δ is at least :data:`MIN_LOG_LIKELIHOOD_EFFECT`, accuracy
  is not measurably worse (its interval is not below 0), and at most :data:`MAX_NEAR_COPY_SHARE` of the
  accepted set are near-copies of real texts;
- **red** — it measurably hurts: the accuracy Δ interval is below 0, or the log-likelihood Δ interval is below
  0 and the Δ at most −:data:`MIN_LOG_LIKELIHOOD_EFFECT`;
- **amber** — anything else: no gain is measurable, the set is mostly near-copies, or there is no validation
  slice to measure on.

Utility decides the level (held-out, leak-free: :mod:`synalign.utility`); novelty can only lower it; fidelity
(held-out MMD² against its same-size floor, and the real-vs-synthetic discriminator AUC next to real-vs-real)
is reported beside it, because closeness to the real distribution did not track downstream gains (MMD² to the
real examples was met by EDA's near-copies that added nothing; SynQuE, DESIGN §3.7: Spearman 0.38–0.68).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from synalign.utility import UtilityEstimate

__all__ = ["MAX_NEAR_COPY_SHARE", "MIN_LOG_LIKELIHOOD_EFFECT", "Fidelity", "Novelty", "Verdict", "judge", "judge_round"]

MIN_LOG_LIKELIHOOD_EFFECT = 0.02
"""Smallest held-out log-likelihood Δ (nats per example) the verdict calls a gain or a harm. The bootstrap
interval covers which examples are in the slice, not the classifier's fit, so a handful of accepted texts can
move the Δ by a statistically clear but useless amount; and on the shared tasks, test-split log-likelihood
gains of 0.025-0.030 nats (EDA's near-copies) came with accuracy losses of 0.7-0.9 points, while pools that
raised accuracy by 2-7 points gained 0.07-0.10 nats (``evals/RESULTS.md`` §14; the value was set after that
table, from its EDA rows: 3 accepted texts gave a "significant" −0.015 and 24 texts +0.016, neither confirmed
by the test split's accuracy)."""

SMALL_SLICE_PER_LABEL = 20
"""Held-out examples per label below which an amber verdict says the slice is too small to call a gain."""

MAX_NEAR_COPY_SHARE = 0.5
"""Largest share of near-copies of real texts an accepted set may hold and still be green (or stop on the
MMD² target)."""

Level = Literal["green", "amber", "red"]


class Fidelity(BaseModel):
    """Closeness to the held-out real slice: fixed-set MMD² (MMD² units) next to what a real subset of the
    same size scores, and the cross-validated discriminator AUC next to real-vs-real (≈ 0.5)."""

    model_config = ConfigDict(frozen=True)

    mmd2: float | None = None
    mmd2_floor: float | None = None
    discriminator_auc: float | None = None
    discriminator_auc_floor: float | None = None


class Novelty(BaseModel):
    """Near-copies of real texts among the accepted set and the pool (:mod:`synalign.novelty`)."""

    model_config = ConfigDict(frozen=True)

    accepted_share: float
    pool_share: float
    excluded: int
    ratio_threshold: float
    cosine_threshold: float


class Verdict(BaseModel):
    """What to do with the accepted set: ``level``, one plain ``headline``, the evidence and what to try."""

    model_config = ConfigDict(frozen=True)

    level: Level
    headline: str
    evidence: list[str]
    advice: list[str]

    def line(self) -> str:
        """One line for a terminal: ``GREEN: headline``."""
        return f"{self.level.upper()}: {self.headline}"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _ci_pts(lo: float, hi: float) -> str:
    return f"95 % CI {100 * lo:+.1f} to {100 * hi:+.1f}"


def judge(
    utility: UtilityEstimate | None,
    novelty: Novelty,
    fidelity: Fidelity,
    *,
    accepted: int,
    no_slice_reason: str = "the run has no validation slice",
    keep: Mapping[str, Any] | None = None,
) -> Verdict:
    """The verdict on an accepted set (see the module docstring for the rules).

    Args:
        utility: the held-out utility of the accepted set, or None when it could not be measured.
        novelty: near-copy shares; fidelity: held-out MMD² and discriminator AUC with their floors.
        accepted: size of the accepted set (for the wording).
        no_slice_reason: why ``utility`` is None, for the headline.
        keep: the run's held-out choice of how much to keep (a :class:`synalign.keepchoice.KeepChoice` dump),
            when it made one: ``none`` makes the verdict red with what the whole set did; the others add a line.
    """
    evidence: list[str] = []
    advice: list[str] = []
    if keep:
        evidence.append(f"kept on the held-out slice: {keep['reason']} (chosen on the slice the utility below is "
                        "measured on, so its interval is optimistic)")
    if keep and keep.get("chosen") == "none":
        whole = keep["candidates"]["all"]["size"]
        headline = (f"adding the {whole} accepted texts made the held-out predictions worse, so the run kept none of "
                    "them: train on the real examples alone")
        advice += [
            "generate differently: another --llm backend, the LM's own label check (--label-check lm), more "
            "demonstrations (--cluster-size), a task noun (--item-name)",
            "or keep the whole accepted set anyway (--keep all) and test it on your own split",
        ]
        return Verdict(level="red", headline=headline, evidence=evidence, advice=advice)
    near = novelty.accepted_share > MAX_NEAR_COPY_SHARE
    evidence.append(
        f"novelty: {novelty.accepted_share:.0%} of the accepted texts are near-copies of real texts (character "
        f"similarity ≥ {novelty.ratio_threshold:.2f} or embedding cosine ≥ {novelty.cosine_threshold:.2f}); "
        f"{novelty.excluded} near-copies were kept out of the accepted set"
    )
    if fidelity.mmd2 is not None and fidelity.mmd2_floor:
        evidence.append(
            f"fidelity: MMD² to the held-out real slice {fidelity.mmd2:.3g}, "
            f"{fidelity.mmd2 / fidelity.mmd2_floor:.2f}× "
            f"what a real subset of that size scores ({fidelity.mmd2_floor:.3g})"
        )
    if fidelity.discriminator_auc is not None:
        floor = fidelity.discriminator_auc_floor
        evidence.append(
            f"fidelity: a classifier tells accepted from held-out real texts with AUC {fidelity.discriminator_auc:.2f}"
            + (f" (real vs real: {floor:.2f})" if floor is not None else "")
        )
    if accepted == 0:
        headline = "no synthetic text was accepted: there is nothing to train on"
        advice.append("every generated text was filtered out; near-copies of real texts are never accepted "
                      "(--allow-near-copies keeps them): generate with another --llm backend or more rounds")
        return Verdict(level="amber", headline=headline, evidence=evidence, advice=advice)
    if utility is None:
        headline = f"utility not measured: {no_slice_reason}; the data's effect on a model is unknown"
        advice.append("hold out real examples to measure it: --holdout 0.25 (or a validation/dev split in --data)")
        return Verdict(level="amber", headline=headline, evidence=evidence, advice=advice)

    ll, acc = utility.delta_log_likelihood, utility.delta_accuracy
    n_val = utility.n_validation
    evidence.insert(0, (
        f"utility on {n_val} held-out real examples: log-likelihood of the true label {ll.mean:+.3f} nats/example "
        f"(95 % CI {ll.low:+.3f} to {ll.high:+.3f}), accuracy {_pts(acc.mean)} points ({_ci_pts(acc.low, acc.high)}), "
        f"macro-F1 {_pts(utility.delta_macro_f1.mean)} points, vs real only"
    ))
    if utility.vs_random_accuracy is not None and utility.vs_random_log_likelihood is not None:
        evidence.insert(1, (
            "vs a random subset of the pool of the same size: log-likelihood "
            f"{utility.vs_random_log_likelihood.mean:+.3f} "
            f"nats, accuracy {_pts(utility.vs_random_accuracy.mean)} points"
        ))
    if not utility.accuracy_measurable:
        evidence.append(
            f"±{100 * acc.half_width:.0f} points: too few held-out examples ({n_val}) to measure accuracy; "
            "the log-likelihood decides"
        )
    hurts_acc = acc.below_zero()
    hurts_ll = ll.below_zero() and ll.mean <= -MIN_LOG_LIKELIHOOD_EFFECT
    helps_ll = ll.above_zero() and ll.mean >= MIN_LOG_LIKELIHOOD_EFFECT
    if hurts_acc or hurts_ll:
        if hurts_acc:
            what = f"lowered held-out accuracy by {100 * -acc.mean:.1f} points ({_ci_pts(acc.low, acc.high)})"
        else:
            what = (f"lowered the held-out log-likelihood of the true label by {-ll.mean:.3f} nats/example "
                    f"(95 % CI {ll.low:+.3f} to {ll.high:+.3f})")
        headline = f"adding these {accepted} texts {what}: don't train on them as they are"
        advice += [
            "keep fewer: a lower --accept-fraction, or the label filter (--selection filter)",
            "generate differently: another --llm backend, more demonstrations (--cluster-size), a task noun "
            "(--item-name)",
        ]
        return Verdict(level="red", headline=headline, evidence=evidence, advice=advice)
    if helps_ll and not near:
        acc_text = (f", accuracy {_pts(acc.mean)} points ({_ci_pts(acc.low, acc.high)})"
                    if utility.accuracy_measurable else "")
        headline = (f"adding these {accepted} texts raised the held-out log-likelihood of the true label by "
                    f"{ll.mean:.3f} nats/example (95 % CI {ll.low:+.3f} to {ll.high:+.3f}){acc_text}: they help")
        advice.append("train on real + accepted; check once more on your own test split before shipping")
        return Verdict(level="green", headline=headline, evidence=evidence, advice=advice)
    if near and helps_ll:
        headline = (f"{novelty.accepted_share:.0%} of these {accepted} texts are near-copies of real texts: "
                    "the held-out gain may come from repeating real data, not from new examples")
        advice.append("turn off --allow-near-copies, or use an LLM backend instead of EDA")
    else:
        headline = (f"no gain measurable from these {accepted} texts on {n_val} held-out real examples "
                    f"(log-likelihood {ll.mean:+.3f} nats, 95 % CI {ll.low:+.3f} to {ll.high:+.3f})")
        smallest = min((lab.n for lab in utility.per_label.values()), default=0)
        if smallest < SMALL_SLICE_PER_LABEL:
            evidence.append(
                f"the slice holds {smallest} example(s) of its smallest label: on the shared tasks "
                f"(evals/RESULTS.md §14) 8 per label called almost nothing, while 50 per label called gains and "
                f"losses of 1.5-7 accuracy points correctly"
            )
        advice += ["more held-out data narrows the interval: a validation/dev split in --data (e.g. 50 per label), "
                   "or a larger --holdout",
                   "more or different data: more --rounds, another --llm backend"]
    return Verdict(level="amber", headline=headline, evidence=evidence, advice=advice)


def judge_round(
    row: Mapping[str, Any], *, near_copies_allowed: bool, no_slice_reason: str = "the run has no validation slice"
) -> tuple[Verdict, Novelty]:
    """The verdict on one ``metrics.json`` row (a run's last round, or ``synalign align``'s only one).

    Args:
        row: the row: ``accepted``, ``generated``, ``near_copies``, ``near_copies_accepted``, and ``utility`` /
            ``fidelity`` dumps when the run had a validation slice.
        near_copies_allowed: whether near-copies could be accepted (else every one in the pool was excluded).
        no_slice_reason: the headline's reason when the row has no ``utility``.
    """
    from synalign.novelty import NEAR_COPY_COSINE, NEAR_COPY_RATIO

    accepted, generated = int(row.get("accepted", 0)), int(row.get("generated", 0))
    near, near_acc = int(row.get("near_copies", 0)), int(row.get("near_copies_accepted", 0))
    novelty = Novelty(
        accepted_share=near_acc / accepted if accepted else 0.0,
        pool_share=near / generated if generated else 0.0,
        excluded=0 if near_copies_allowed else near,
        ratio_threshold=NEAR_COPY_RATIO,
        cosine_threshold=NEAR_COPY_COSINE,
    )
    utility = UtilityEstimate.model_validate(row["utility"]) if row.get("utility") else None
    fidelity = Fidelity.model_validate(row.get("fidelity") or {})
    verdict = judge(utility, novelty, fidelity, accepted=accepted, no_slice_reason=no_slice_reason,
                    keep=row.get("keep_choice"))
    return verdict, novelty
