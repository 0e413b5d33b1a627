"""Sections of the HTML run report (:mod:`synalign.artifacts.report`): the verdict, the per-label tables, the
calibrated discriminator, held-out utility, what generated the data, and samples. Each returns an HTML fragment.

Nothing here re-derives what a run recorded: the verdict reads ``summary.json``'s ``verdict``
(:mod:`synalign.verdict`), ``metrics.json`` rows and ``summary.json``; utility reads the rows' ``utility`` dumps
(:class:`synalign.utility.UtilityEstimate`);
per-label MMD² is :func:`synalign.divergence.mmd2_fixed_set` with the run's bandwidth; the discriminator is
:func:`synalign.compare.discriminator_auc`, the figure ``synalign compare`` prints.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from synalign.artifacts.summary import RunSummary, as_summary
from synalign.divergence import FLOOR_DRAWS
from synalign.records import SyntheticExample
from synalign.verdict import Verdict

__all__ = [
    "LABEL_COLUMNS",
    "TEXT_COLUMNS",
    "UTILITY_LABEL_COLUMNS",
    "UTILITY_ROUND_COLUMNS",
    "fidelity",
    "kv_table",
    "label_rows",
    "maker_section",
    "samples_section",
    "scroll",
    "table",
    "target_flag",
    "utility_label_rows",
    "utility_round_rows",
    "verdict",
    "with_spread",
]

LABEL_COLUMNS = ("label", "real", "generated", "accepted", "share not accepted", "MMD² accepted", "same-size floor",
                 "× floor", "discriminator AUC")
"""Columns of the per-label divergence table (rows of :func:`label_rows`)."""
TEXT_COLUMNS = ("label", "words real", "words accepted", "terms real", "terms synthetic")
"""Columns of the per-label text table (rows of :func:`label_rows`)."""
SAME_SIZE_FLOOR = "same-size noise floor (random real subset as large as the accepted set)"
REAL_FLOOR = "real-vs-real noise floor (two halves)"
_STOPS = {
    "target": "the target was reached",
    "max_rounds": "the round budget (--rounds) was spent",
    "max_samples": "the sample budget (--max-samples) was spent",
    "single_pass": "the given pool was aligned once (synalign align generates nothing)",
    "utility_plateau": "the held-out gain stopped improving for --patience rounds",
}
_LEVELS = ("green", "amber", "red")
UTILITY_LABEL_COLUMNS = ("label", "held-out n", "Δ log-likelihood (nats)", "Δ accuracy (points)")
"""Columns of the per-label held-out utility table (rows of :func:`utility_label_rows`)."""
UTILITY_ROUND_COLUMNS = ("round", "held-out n", "Δ log-likelihood (nats)", "its 95 % CI", "Δ accuracy (points)",
                         "its 95 % CI (points)", "Δ macro-F1 (points)", "vs random: Δ log-likelihood",
                         "vs random: Δ accuracy",
                         "near-copies accepted", "held-out MMD² / floor", "discriminator AUC (real vs real)")
"""Columns of the per-round held-out utility table (rows of :func:`utility_round_rows`)."""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return html.escape("" if value is None else str(value))


def with_spread(value: Any, std: Any) -> str:
    """``"3.07e-03 ± 1.4e-04"``: a noise floor with its spread over the random real subsets behind it (``value``
    alone when the spread is unknown)."""
    if not isinstance(std, (int, float)) or math.isnan(float(std)):
        return _fmt(value)
    return f"{_fmt(value)} ± {float(std):.1e}"


def ratio_with_spread(value: float, floor: float, std: Any, spec: str = ".2f") -> str:
    """``value / floor`` with the floor's spread carried over (``"1.32 ± 0.06"``; ``"–"`` without a floor)."""
    if not (floor == floor and floor > 0):
        return "–"
    ratio = value / floor
    if not isinstance(std, (int, float)) or math.isnan(float(std)):
        return format(ratio, spec)
    return f"{ratio:{spec}} ± {ratio * float(std) / floor:{spec}}"


def scroll(fragment: str) -> str:
    """Wrap ``fragment`` (a table) in a box that scrolls sideways instead of widening the page."""
    return f'<div class="scroll">{fragment}</div>'


def table(rows: list[dict[str, Any]], columns: Sequence[str], *, left: Sequence[str] = ()) -> str:
    """An HTML table of ``rows`` (dicts) with ``columns`` as header, in a scroll box; ``left`` columns are
    left-aligned text that wraps."""
    head = "".join(f'<th{" class=t" if c in left else ""}>{html.escape(c)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=t" if c in left else ""}>{_fmt(r.get(c))}</td>' for c in columns) + "</tr>"
        for r in rows
    )
    return scroll(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def kv_table(pairs: Sequence[tuple[str, Any]]) -> str:
    """A two-column (name, value) table, for a record too wide to lay out as one row."""
    body = "".join(f"<tr><th>{html.escape(k)}</th><td class=t>{_fmt(v)}</td></tr>" for k, v in pairs)
    return scroll(f'<table class="kv"><tbody>{body}</tbody></table>')


def _or_unknown(value: Any) -> str:
    """``value`` as text, ``?`` when the summary did not record it."""
    return "?" if value is None else str(value)


def _code(text: str) -> str:
    return f"<code>{html.escape(text)}</code>"


def target_flag(target: Any) -> str:
    """The ``--target`` value of a summary's ``target`` (``"1.5x noise floor"`` → ``1.5x``, ``"MMD² ≤ 0.002"``
    → ``0.002``)."""
    text = str(target or "")
    if text.endswith("x noise floor"):
        return text.removesuffix(" noise floor")
    return text.split("≤")[-1].strip()


def verdict(metrics: list[dict[str, Any]], summary: RunSummary | Mapping[str, Any]) -> str:
    """The top of the report, one box (``id="verdict"``).

    With a judged verdict in the summary (its ``verdict``, :mod:`synalign.verdict`): its level as the
    box's class (``green`` / ``amber`` / ``red``), the headline, the evidence (utility on the validation slice,
    novelty, fidelity), then the MMD² divergence target (reached or missed, noise floor) as a secondary line,
    and what to try next (the verdict's advice, then the tips toward the divergence target). Without one (a
    run from before the verdict existed): target reached or missed, by how much, in which round, and what to
    try next.
    """
    summary = as_summary(summary)
    if summary.verdict is not None and summary.verdict.level in _LEVELS:
        return _judged_box(summary.verdict, metrics, summary)
    if not metrics:
        return '<div class="verdict miss"><p><b>No round finished</b>: there is nothing to judge.</p></div>'
    lines, reached, tips = _divergence(metrics, summary)
    items = "".join(f"<li>{t}</li>" for t in tips)
    cls = "hit" if reached else "miss"
    return (
        f'<div class="verdict {cls}" id="verdict"><p>{" ".join(lines)}</p><p>What to try next:</p>'
        f"<ul>{items}</ul></div>"
    )


def _judged_box(judged: Verdict, metrics: list[dict[str, Any]], summary: RunSummary) -> str:
    level = str(judged.level)
    evidence = "".join(f"<li>{html.escape(str(e))}</li>" for e in judged.evidence)
    advice = [html.escape(str(a)) for a in judged.advice]
    parts = [
        '<p class="small">Should you train on this? Fidelity, novelty and utility, measured on real examples '
        "held out from everything (never a demonstration, never fitted on).</p>",
        f'<p><span class="level">{level.upper()}</span> <b>{html.escape(str(judged.headline))}</b></p>',
    ]
    if evidence:
        parts.append(f'<ul class="evidence">{evidence}</ul>')
    tips: list[str] = []
    if metrics:
        lines, reached, tips = _divergence(metrics, summary)
        if reached:  # the first tip says to check utility: the verdict above is that check
            tips = tips[1:]
        parts.append(f'<p class="small target"><b>Divergence target (MMD²):</b> {" ".join(lines)}</p>')
    else:
        parts.append('<p class="small target"><b>Divergence target (MMD²):</b> no round finished.</p>')
    if advice or tips:
        parts.append("<p>What to try next:</p>")
        if advice:
            parts.append("<ul>" + "".join(f"<li>{a}</li>" for a in advice) + "</ul>")
        if tips:
            parts.append('<p class="small">Toward the divergence target:</p><ul>'
                         + "".join(f"<li>{t}</li>" for t in tips) + "</ul>")
    return f'<div class="verdict {level}" id="verdict">{"".join(parts)}</div>'


def _divergence(metrics: list[dict[str, Any]], summary: RunSummary) -> tuple[list[str], bool, list[str]]:
    """The MMD² target: (sentences: reached or missed, why the loop stopped, the same-size floor), whether it
    was reached, and the tips toward it (:func:`_next_steps`)."""
    last = metrics[-1]
    final, target = float(last["mmd2_accepted"]), float(last["target_mmd2"])
    floor = float(last.get("noise_floor_same_size") or float("nan"))
    floor_std = last.get("noise_floor_same_size_std")
    reached = final <= target
    first_hit = next((m["round"] for m in metrics if m["mmd2_accepted"] <= m["target_mmd2"]), None)
    best = min(metrics, key=lambda m: m["mmd2_accepted"])
    align_only = summary.command == "align"
    spec = target_flag(summary.target)
    target_text = f"{_fmt(target)} (<code>--target {html.escape(spec)}</code>"
    target_text += (
        f": {spec[:-1]} × the {SAME_SIZE_FLOOR}, {with_spread(floor, floor_std)})" if spec.endswith("x") else ")"
    )
    ratio = f"{final / target:.2f}×" if target > 0 else "∞×"
    where = "" if align_only else f" in round {first_hit} of {len(metrics)}"
    if reached:
        head = (f"<b>Target reached</b>{where}: the accepted set's MMD² to the real data is {_fmt(final)}, "
                f"{ratio} the target {target_text}.")
    else:
        done = "after aligning the pool" if align_only else f"after {len(metrics)} round(s)"
        head = (f"<b>Target missed</b> {done}: the accepted set's MMD² to the real data is {_fmt(final)}, "
                f"{ratio} the target {target_text}.")
        if not align_only and best["round"] != last["round"]:
            head += f" The closest round was {best['round']} ({_fmt(float(best['mmd2_accepted']))})."
    stop = _STOPS.get(str(summary.stop_reason), str(summary.stop_reason))
    lines = [head, f"{'It' if align_only else 'The loop'} stopped because {stop}."]
    if floor == floor and floor > 0:
        lines.append(f"A random real subset of the same size scores {with_spread(floor, floor_std)} (mean ± std over "
                     f"{FLOOR_DRAWS} subsets): the accepted set is {ratio_with_spread(final, floor, floor_std)}× as "
                     "far from the real data as real data of its size.")
    tips = _next_steps(metrics, summary, reached=reached, align_only=align_only, floor=floor)
    return lines, reached, tips


def _next_steps(
    metrics: list[dict[str, Any]], summary: RunSummary, *, reached: bool, align_only: bool, floor: float
) -> list[str]:
    final = float(metrics[-1]["mmd2_accepted"])
    selection = str(summary.selection or "filter")
    tips = []
    if reached:
        tips.append("MMD² is a diagnostic, not the goal: check downstream accuracy on real test data with "
                    f"{_code('synalign eval')} before training on this set.")
        tips.append(f"For a closer set ask for more: a tighter {_code('--target')} (e.g. {_code('--target 1x')} "
                    "is as close as real data of the same size).")
        return tips
    if align_only:
        tips.append("A larger or more varied pool: selection can only keep what the pool contains.")
    elif summary.stop_reason == "max_samples":
        tips.append(f"A larger sample budget ({_code('--max-samples')}) or more rounds.")
    elif summary.stop_reason == "utility_plateau":
        tips.append(f"More rounds are unlikely to help the held-out gain, which stopped improving; a larger "
                    f"{_code('--patience')} lets the loop go on toward the divergence target.")
    else:
        values = [float(m["mmd2_accepted"]) for m in metrics]
        falling = len(values) >= 2 and values[-1] < 0.95 * max(values[-3:-1] or values[:1])
        more = _code(f"--rounds {len(metrics) + max(2, len(metrics) // 2)}")
        if falling:
            tips.append(f"More rounds (a new run with {more}): MMD² was still falling "
                        f"({_fmt(values[0])} → {_fmt(values[-1])}).")
        else:
            tips.append(f"More rounds ({more}) are unlikely to help on their own: MMD² did not fall over the "
                        "last rounds.")
    pool = metrics[-1].get("mmd2_pool")
    if isinstance(pool, float) and pool < final:
        tips.append(f"Keep more of the pool: the whole pool (MMD² {_fmt(pool)}) is closer to the real data than the "
                    f"accepted set; a larger {_code('--accept-fraction')} keeps more of it (now "
                    f"{_or_unknown(summary.accept_fraction)} of each label's pool is accepted).")
    other = "herding" if not selection.endswith("herding") else "filter"
    why = ("kernel herding picks the samples that match the real distribution most closely, the lowest MMD² by "
           "design, though it lost accuracy to random selection in evals/RESULTS.md" if other == "herding"
           else "the label-consistency filter + random selection, the default chosen by downstream accuracy")
    tips.append(f"Another selection strategy: {_code('--selection ' + other)} ({why}); "
                f"this run used {_code('--selection ' + selection)}.")
    if floor == floor and floor > 0:
        needed = math.ceil(final / floor * 10) / 10
        spread = ratio_with_spread(final, floor, metrics[-1].get("noise_floor_same_size_std"))
        tips.append(f"A looser target: {_code(f'--target {needed:g}x')} is what this accepted set meets "
                    f"(its MMD² is {spread}× the same-size noise floor).")
    return tips


def _distinctive(a: Counter[str], b: Counter[str], k: int) -> list[str]:
    """Words most over-represented in ``a`` relative to ``b`` (add-one smoothed log frequency ratio; a word
    must occur at least twice in ``a``)."""
    na, nb, vocab = sum(a.values()), sum(b.values()), len(set(a) | set(b)) or 1
    scored = [
        (math.log((c + 1) / (na + vocab)) - math.log((b.get(w, 0) + 1) / (nb + vocab)), w)
        for w, c in a.items() if c >= 2
    ]
    return [w for score, w in sorted(scored, key=lambda t: (-t[0], t[1]))[:k] if score > 0]


def _words(texts: Sequence[str]) -> Counter[str]:
    from synalign.wordlists import STOP_WORDS, lower_words

    return Counter(w for t in texts for w in lower_words(t) if w not in STOP_WORDS and len(w) > 1)


def _mean_words(texts: Sequence[str]) -> float:
    from synalign.wordlists import lower_words

    return float(np.mean([len(lower_words(t)) for t in texts])) if texts else float("nan")


def _safe(fn: Any, *args: Any, **kwargs: Any) -> float:
    from synalign.errors import InputError

    try:
        return float(fn(*args, **kwargs))
    except InputError:  # too few rows on a side
        return float("nan")


def label_rows(
    *,
    real_embeddings: np.ndarray,
    real_labels: Sequence[str],
    real_texts: Sequence[str],
    synthetic_embeddings: np.ndarray,
    synthetic: Sequence[SyntheticExample],
    bandwidth: float | None,
    seed: int = 0,
    terms: int = 8,
) -> list[dict[str, Any]]:
    """One row per label: counts, fixed-set MMD² of the accepted set (and its same-size floor), discriminator
    AUC, mean length in words and distinctive terms, real vs accepted."""
    from synalign.compare import discriminator_auc
    from synalign.divergence import fixed_set_noise_floor, median_bandwidth, mmd2_fixed_set

    real_lab = np.asarray(real_labels, dtype=object)
    syn_lab = np.asarray([s.label for s in synthetic], dtype=object)
    acc = np.asarray([s.accepted for s in synthetic], dtype=bool)
    if bandwidth is None and len(real_embeddings) >= 2:
        bandwidth = float(median_bandwidth(real_embeddings, seed=seed))
    rows = []
    for label in sorted(set(real_lab.tolist()) | set(syn_lab.tolist())):
        r_idx, s_mask = np.flatnonzero(real_lab == label), syn_lab == label
        xr, xa = real_embeddings[r_idx], synthetic_embeddings[s_mask & acc]
        r_texts = [real_texts[i] for i in r_idx.tolist()] if len(real_texts) == len(real_lab) else []
        a_texts = [s.text for s, keep in zip(synthetic, s_mask & acc) if keep]
        generated = int(s_mask.sum())
        mmd = _safe(mmd2_fixed_set, xa, xr, bandwidth) if len(xa) else float("nan")
        floor, floor_std = float("nan"), float("nan")
        if len(xa) and len(xr) >= 4:
            floor, floor_std = fixed_set_noise_floor(xr, len(xa), bandwidth, seed=seed)
        real_words, acc_words = _words(r_texts), _words(a_texts)
        rows.append({
            "label": label,
            "real": len(r_idx),
            "generated": generated,
            "accepted": len(xa),
            "share not accepted": (generated - len(xa)) / generated if generated else float("nan"),
            "MMD² accepted": mmd,
            "same-size floor": with_spread(floor, floor_std) if floor == floor else floor,
            "× floor": ratio_with_spread(mmd, floor, floor_std) if mmd == mmd else float("nan"),
            "discriminator AUC": _safe(discriminator_auc, xr, xa, seed=seed) if len(xa) >= 2 else float("nan"),
            "words real": _mean_words(r_texts),
            "words accepted": _mean_words(a_texts),
            "terms real": ", ".join(_distinctive(real_words, acc_words, terms)) if r_texts else "(texts not given)",
            "terms synthetic": ", ".join(_distinctive(acc_words, real_words, terms)) if r_texts else "",
        })
    return rows


def fidelity(real_embeddings: np.ndarray, accepted_embeddings: np.ndarray, pool_embeddings: np.ndarray,
             *, seed: int = 0) -> list[dict[str, Any]]:
    """Discriminator AUC (logistic regression, cross-validated; :func:`synalign.compare.discriminator_auc`):
    real vs the accepted set, real vs the whole pool, and two random halves of the real set (the calibration:
    what indistinguishable sets score, ≈ 0.5)."""
    from synalign.compare import discriminator_auc

    rng = np.random.default_rng(seed)
    half = rng.permutation(len(real_embeddings))
    mid = len(real_embeddings) // 2
    rows = [
        ("real vs accepted synthetic", real_embeddings, accepted_embeddings),
        ("real vs whole synthetic pool", real_embeddings, pool_embeddings),
        ("real vs real (two random halves): the calibration", real_embeddings[half[:mid]], real_embeddings[half[mid:]]),
    ]
    return [
        {"sets": name, "rows per side": min(len(a), len(b)),
         "discriminator AUC": _safe(discriminator_auc, a, b, seed=seed) if min(len(a), len(b)) >= 2 else float("nan")}
        for name, a, b in rows
    ]


def _signed(value: Any, spec: str, scale: float = 1.0) -> str:
    return format(scale * float(value), spec) if isinstance(value, (int, float)) else "–"


def _interval(iv: Any, spec: str, scale: float = 1.0) -> str:
    if not isinstance(iv, dict):
        return "–"
    return f"{_signed(iv.get('low'), spec, scale)} to {_signed(iv.get('high'), spec, scale)}"


def utility_label_rows(utility: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per label of the validation slice from a ``utility`` dump (a ``metrics.json`` row's, usually
    the last round's): held-out examples, and the paired Δ (with − without the accepted set) of the mean
    log-likelihood of the true label (nats) and of accuracy (points). Empty without a dump."""
    per_label = (utility or {}).get("per_label") or {}
    return [
        {"label": label, "held-out n": row.get("n"),
         "Δ log-likelihood (nats)": _signed(row.get("delta_log_likelihood"), "+.3f"),
         "Δ accuracy (points)": _signed(row.get("delta_accuracy"), "+.1f", 100.0)}
        for label, row in sorted(per_label.items())
    ]


def utility_round_rows(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per round that measured utility (``metrics.json`` rows with a ``utility`` dump): the Δ of
    log-likelihood (nats), accuracy and macro-F1 (points) vs real only with 95 % intervals, the Δ vs a random
    subset of the pool, near-copies accepted, held-out MMD² over its same-size floor and the discriminator AUC
    (real vs real in brackets). Empty for runs without a validation slice."""
    rows = []
    for m in metrics:
        u = m.get("utility")
        if not u:
            continue
        fid = m.get("fidelity") or {}
        mmd, floor = fid.get("mmd2"), fid.get("mmd2_floor")
        auc, auc_floor = fid.get("discriminator_auc"), fid.get("discriminator_auc_floor")
        rows.append({
            "round": m.get("round"),
            "held-out n": u.get("n_validation"),
            "Δ log-likelihood (nats)": _signed((u.get("delta_log_likelihood") or {}).get("mean"), "+.3f"),
            "its 95 % CI": _interval(u.get("delta_log_likelihood"), "+.3f"),
            "Δ accuracy (points)": _signed((u.get("delta_accuracy") or {}).get("mean"), "+.1f", 100.0),
            "its 95 % CI (points)": _interval(u.get("delta_accuracy"), "+.1f", 100.0),
            "Δ macro-F1 (points)": _signed((u.get("delta_macro_f1") or {}).get("mean"), "+.1f", 100.0),
            "vs random: Δ log-likelihood": _signed((u.get("vs_random_log_likelihood") or {}).get("mean"), "+.3f"),
            "vs random: Δ accuracy": _signed((u.get("vs_random_accuracy") or {}).get("mean"), "+.1f", 100.0),
            "near-copies accepted": m.get("near_copies_accepted"),
            "held-out MMD² / floor": (f"{_fmt(float(mmd))} / {_fmt(float(floor))}"
                                      if isinstance(mmd, (int, float)) and isinstance(floor, (int, float)) else "–"),
            "discriminator AUC (real vs real)": (
                f"{auc:.2f}" + (f" ({auc_floor:.2f})" if isinstance(auc_floor, (int, float)) else "")
                if isinstance(auc, (int, float)) else "–"),
        })
    return rows


def maker_section(summary: RunSummary | Mapping[str, Any]) -> str:
    """Which backend and model produced the data, and what it cost: LM calls, tokens, cost, cache hit rate."""
    summary = as_summary(summary)
    backend, usage = summary.backend or {}, summary.usage or {}
    rate = usage.get("cache_hit_rate")
    cost = usage.get("cost_usd")
    pairs = [
        ("backend", backend.get("name")), ("kind", backend.get("kind")), ("model", backend.get("model")),
        ("GGUF sha256", (backend.get("gguf_sha256") or "")[:16] or None), ("prompt style", backend.get("prompt_style")),
        ("summariser", backend.get("summarizer")), ("source", backend.get("source")),
        ("LM calls", usage.get("llm_calls", 0)),
        ("failed attempts / retries", f"{usage.get('failures', 0)} / {usage.get('retries', 0)}"),
        ("tokens in / out", f"{usage.get('tokens_in', 0)} / {usage.get('tokens_out', 0)}"),
        ("cost", "none (no language model calls)" if not usage.get("llm_calls")
         else f"${cost:.4f}" if isinstance(cost, (int, float)) else "not priced (set SYNALIGN_LLM_PRICES)"),
        ("response cache hit rate", f"{rate:.0%} ({usage.get('cache_hits', 0)} hits)" if rate is not None
         else "no cache lookups"),
        *_cost_pairs(summary, usage),
        ("embedding model", summary.embedding_model),
        ("embedding truncation (tokens)", summary.embedding_max_seq_length),
    ]
    return kv_table([(k, v) for k, v in pairs if v not in (None, "")])


def _cost_pairs(summary: RunSummary, usage: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Rows of what one accepted text cost (:class:`~synalign.artifacts.summary.CostRecord`), and the LM label
    check's requests when the run made any."""
    cost = summary.cost
    pairs: list[tuple[str, Any]] = []
    if usage.get("label_check_calls"):
        pairs.append(("LM label-check requests", f"{usage['label_check_calls']} "
                      f"({float(usage.get('label_check_seconds', 0.0)):.0f} s)"))
    if cost is None:
        return pairs
    for name, value, unit in (
        ("texts generated per accepted text", cost.generated_per_accepted, ""),
        ("LM calls per accepted text", cost.llm_calls_per_accepted, ""),
        ("label-check requests per accepted text", cost.label_check_calls_per_accepted, ""),
        ("wall time per accepted text", cost.seconds_per_accepted, " s"),
    ):
        if value is not None:
            pairs.append((name, f"{value:.2f}{unit}"))
    return pairs


def samples_section(synthetic: Sequence[SyntheticExample], metrics: list[dict[str, Any]], per_label: int) -> str:
    """Per label, the highest-weight accepted samples and the lowest-weight samples not accepted, each with its
    KMM weight and what happened to it."""
    filtered = metrics[-1].get("filtered") if metrics else None
    if filtered:
        note = (f"In the last round the label-consistency filter rejected {filtered} sample(s) (a classifier "
                "fitted on the real set assigned them to another label) and the selection strategy did not pick "
                "the others; which sample was rejected for which reason is not recorded, so each shows "
                "\"not accepted\".")
    else:
        note = ("No sample was rejected by the label filter in the last round: every sample not accepted was not "
                "selected.")
    parts = [f'<p class="small">{html.escape(note)}</p>']
    reason = "not accepted" if filtered else "not selected"
    for label in sorted({s.label for s in synthetic}):
        mine = [s for s in synthetic if s.label == label]
        kept = sorted((s for s in mine if s.accepted), key=lambda s: -s.kmm_weight)[:per_label]
        dropped = sorted((s for s in mine if not s.accepted), key=lambda s: s.kmm_weight)[:per_label]
        rows = [{"outcome": "accepted", "KMM weight": s.kmm_weight, "round": s.round, "text": s.text} for s in kept]
        rows += [{"outcome": reason, "KMM weight": s.kmm_weight, "round": s.round, "text": s.text} for s in dropped]
        parts.append(f"<h3>{html.escape(label)}</h3>"
                     + table(rows, ["outcome", "KMM weight", "round", "text"], left=["outcome", "text"]))
    return "".join(parts)
