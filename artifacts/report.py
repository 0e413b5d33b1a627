"""HTML run report: a verdict (should you train on this? fidelity, novelty and held-out utility), per-label
real-vs-synthetic figures, a calibrated discriminator, what made the data, divergence and held-out utility per
round and a 2-D projection of real vs synthetic embeddings (sections: :mod:`synalign.artifacts.report_sections`).

Self-contained: plots are PNGs (matplotlib, Agg backend) embedded as base64, so the file can be mailed or
opened from any directory.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synalign.artifacts.report_sections import (
    LABEL_COLUMNS,
    REAL_FLOOR,
    SAME_SIZE_FLOOR,
    TEXT_COLUMNS,
    UTILITY_LABEL_COLUMNS,
    UTILITY_ROUND_COLUMNS,
    fidelity,
    kv_table,
    label_rows,
    maker_section,
    samples_section,
    table,
    target_flag,
    utility_label_rows,
    utility_round_rows,
    verdict,
    with_spread,
)
from synalign.artifacts.summary import RunSummary, as_summary
from synalign.divergence import FLOOR_DRAWS
from synalign.records import SyntheticExample

__all__ = ["write_report"]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _divergence_plot(metrics: list[dict[str, Any]], target_spec: str) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.6, 3.6))
    rounds = [m["round"] for m in metrics]
    ax.plot(rounds, [m["mmd2_accepted"] for m in metrics], "o-", label="accepted set → real")
    ax.plot(rounds, [m["mmd2_pool"] for m in metrics], "s--", label="whole pool → real", alpha=0.7)
    if metrics and "mmd2_accepted_heldout" in metrics[0]:
        ax.plot(rounds, [m["mmd2_accepted_heldout"] for m in metrics], "^:", label="accepted → held-out real test")
    if metrics:
        floor = np.array([m["noise_floor_same_size"] for m in metrics], dtype=float)
        std = np.array([m.get("noise_floor_same_size_std") or 0.0 for m in metrics], dtype=float)
        ax.plot(rounds, floor, color="grey", lw=1, marker=".", label=SAME_SIZE_FLOOR.replace(" (", "\n("))
        ax.fill_between(rounds, floor - std, floor + std, color="grey", alpha=0.15, lw=0)
        ax.plot(rounds, [m["target_mmd2"] for m in metrics], color="green", lw=1, ls="--",
                label=f"target (--target {target_spec})")
    ax.set_xlabel("round")
    ax.set_ylabel("MMD² to the real set")
    ax.set_xticks(rounds)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    ax.grid(alpha=0.3)
    out = _png(fig)
    plt.close(fig)
    return out


def _utility_plot(metrics: list[dict[str, Any]]) -> str | None:
    """Per round, the held-out Δ vs real only of the log-likelihood of the true label (nats) and of accuracy
    (points), each with its 95 % bootstrap interval as error bars; None when no round measured utility."""
    rows = [m for m in metrics if m.get("utility")]
    if not rows:
        return None
    import matplotlib.pyplot as plt

    rounds = [m["round"] for m in rows]
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.2))
    panels = [
        (axes[0], "delta_log_likelihood", 1.0, "Δ log-likelihood (nats / example)", "tab:blue"),
        (axes[1], "delta_accuracy", 100.0, "Δ accuracy (points)", "tab:orange"),
    ]
    for ax, key, scale, ylabel, color in panels:
        mean = np.array([m["utility"][key]["mean"] for m in rows], dtype=float) * scale
        low = np.array([m["utility"][key]["low"] for m in rows], dtype=float) * scale
        high = np.array([m["utility"][key]["high"] for m in rows], dtype=float) * scale
        yerr = np.vstack([np.clip(mean - low, 0, None), np.clip(high - mean, 0, None)])
        ax.errorbar(rounds, mean, yerr=yerr, fmt="o-", color=color, capsize=4, label="with accepted − real only")
        ax.axhline(0.0, color="grey", lw=1, ls="--")
        ax.set_xlabel("round")
        ax.set_ylabel(ylabel)
        ax.set_xticks(rounds)
        ax.grid(alpha=0.3)
    axes[0].set_title("log-likelihood of the true label, 95 % CI", fontsize=9)
    axes[1].set_title("accuracy, 95 % CI", fontsize=9)
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def _utility_section(metrics: list[dict[str, Any]], summary: RunSummary) -> str:
    """The held-out utility per round (plot and table); empty for a run without a validation slice."""
    plot = _utility_plot(metrics)
    if plot is None:
        return ""
    validation = summary.validation
    where = ""
    if validation is not None and validation.source and validation.source != "none":
        where = f" ({html.escape(str(validation.source))}, {validation.size} examples)"
    return f"""<h2>Held-out utility per round</h2>
<p class="small">Does adding the accepted set help? One classifier (logistic regression on the embeddings) fitted
on the real examples alone and on real + accepted, both scored on the validation slice{where}: real examples
that were never a demonstration nor fitted on (<code>synalign.utility</code>). Δ = with − without: the mean
log-likelihood of the true label (nats per example) and accuracy (points), with 95 % intervals from a stratified
bootstrap over the slice. Above the dashed line at 0 the data helps; an interval that crosses it is no
measurable effect.</p>
<img alt="held-out utility per round" src="data:image/png;base64,{plot}">
{table(utility_round_rows(metrics), UTILITY_ROUND_COLUMNS)}"""


def _projection_plot(
    real: np.ndarray, real_labels: Sequence[str], syn: np.ndarray, synthetic: Sequence[SyntheticExample]
) -> str:
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    fig, ax = plt.subplots(figsize=(8.6, 5.0))
    if len(real) >= 2:
        pca = PCA(n_components=2, random_state=0).fit(real)
        r2 = pca.transform(real)
        labels = sorted(set(real_labels))
        colors = plt.get_cmap("tab10")
        for k, label in enumerate(labels):
            idx = [i for i, lab in enumerate(real_labels) if lab == label]
            ax.scatter(r2[idx, 0], r2[idx, 1], s=8, alpha=0.25, color=colors(k % 10), label=f"real · {label}")
        if len(syn):
            s2 = pca.transform(syn)
            acc = np.array([s.accepted for s in synthetic], dtype=bool)
            for k, label in enumerate(labels):
                lab = np.array([s.label == label for s in synthetic], dtype=bool)
                yes, no = s2[lab & acc], s2[lab & ~acc]
                ax.scatter(yes[:, 0], yes[:, 1], s=22, marker="x", color=colors(k % 10), label=f"accepted · {label}")
                ax.scatter(no[:, 0], no[:, 1], s=14, marker=".", color=colors(k % 10), alpha=0.35,
                           label=f"not accepted · {label}")
        ax.set_xlabel("PC 1 (fitted on real)")
        ax.set_ylabel("PC 2")
        ax.legend(fontsize=7, markerscale=1.2, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    out = _png(fig)
    plt.close(fig)
    return out


_CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;line-height:1.4}
.scroll{overflow-x:auto;max-width:100%;margin:.5em 0}
table{border-collapse:collapse;font-size:13px}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f3f3f3}th.t,td.t{text-align:left;min-width:8em;max-width:40em;overflow-wrap:anywhere}
table.kv th{text-align:left}.note{background:#fff4d6;padding:.6em;border-left:4px solid #e0a800}
.verdict{padding:.4em 1em;border-left:6px solid;margin:1em 0}.verdict.hit{background:#e8f6ec;border-color:#2e9d4f}
.verdict.miss{background:#fdecea;border-color:#c9362b}.small{font-size:13px;color:#444}
.verdict.green{background:#e8f6ec;border-color:#2e9d4f}.verdict.amber{background:#fff4d6;border-color:#e0a800}
.verdict.red{background:#fdecea;border-color:#c9362b}.verdict .level{font-weight:bold;padding:0 .4em;color:#fff}
.verdict.green .level{background:#2e9d4f}.verdict.amber .level{background:#b8860b}\
.verdict.red .level{background:#c9362b}
img{max-width:100%;height:auto}code{background:#f3f3f3;padding:0 .2em}"""


def write_report(
    path: Path,
    *,
    metrics: list[dict[str, Any]],
    summary: RunSummary | Mapping[str, Any],
    real_embeddings: np.ndarray,
    real_labels: Sequence[str],
    synthetic_embeddings: np.ndarray,
    synthetic: Sequence[SyntheticExample],
    attributes: Sequence[dict[str, Any]] = (),
    examples_per_label: int = 5,
    real_texts: Sequence[str] = (),
    seed: int = 0,
) -> Path:
    """Write the HTML report atomically.

    The page opens with a verdict: with the summary's ``verdict`` (:mod:`synalign.verdict`), should you train on
    this (green / amber / red, the headline, the evidence on utility, novelty and fidelity, what to try next)
    with the MMD² divergence target as a secondary line; for runs from before it, the target reached or
    missed, by how much, in which round, and what to try next. Then per label: counts, fixed-set MMD² against
    the same-size noise floor, discriminator AUC, length and distinctive terms of real vs accepted texts, and
    the held-out utility per label; a real-calibrated discriminator AUC; what generated the data and what it
    cost; divergence per round; held-out utility per round (when the run had a validation slice); a 2-D
    projection; accepted and not accepted samples.

    Args:
        path: destination ``.html``.
        metrics: per-round metrics (``metrics.json`` rows).
        summary: run summary (``summary.json``; its content is validated as a :class:`RunSummary`).
        real_embeddings: (n, d) real embeddings; real_labels: n labels.
        synthetic_embeddings: (m, d) embeddings aligned with ``synthetic``.
        synthetic: the pool (accepted flags set).
        attributes: attribute summaries (``attributes.jsonl`` rows).
        examples_per_label: accepted (and as many not accepted) texts shown per label.
        real_texts: n texts aligned with ``real_embeddings`` (lengths and distinctive terms; omitted when empty).
        seed: seed of the discriminators' folds and subsets.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    from synalign.fileio import atomic_write_text

    summary = as_summary(summary)
    backend = summary.backend or {}
    banner = ""
    if backend.get("note"):
        banner = f'<p class="note">Synthetic data {html.escape(str(backend.get("note")))}.</p>'
    acc = np.array([s.accepted for s in synthetic], dtype=bool)
    accepted_emb = synthetic_embeddings[acc] if len(synthetic) else synthetic_embeddings
    labels = label_rows(
        real_embeddings=real_embeddings, real_labels=real_labels, real_texts=real_texts,
        synthetic_embeddings=synthetic_embeddings, synthetic=synthetic, bandwidth=summary.bandwidth, seed=seed,
    )
    auc = fidelity(real_embeddings, accepted_emb, synthetic_embeddings, seed=seed)
    last = metrics[-1] if metrics else {}
    headline = [
        ("MMD² accepted set → real (fixed-set estimator)", summary.final_mmd2),
        ("target MMD²", summary.target_mmd2),
        (f"{SAME_SIZE_FLOOR}, mean ± std over {FLOOR_DRAWS} subsets",
         with_spread(summary.noise_floor_same_size, last.get("noise_floor_same_size_std"))),
        (REAL_FLOOR, with_spread(summary.noise_floor, summary.noise_floor_std)),
        ("discriminator AUC, real vs accepted (0.5 = indistinguishable)", auc[0]["discriminator AUC"]),
        ("discriminator AUC, real vs real (the calibration)", auc[2]["discriminator AUC"]),
        ("label filter rejected (last round)", last.get("filtered")),
        ("stop reason", summary.stop_reason), ("rounds", summary.rounds),
        ("generated / accepted", f"{summary.generated} / {summary.accepted}"),
        ("selection", summary.selection), ("accept fraction", summary.accept_fraction),
        ("wall seconds", summary.wall_seconds),
    ]
    headline += _judged_rows(summary)
    cols = [
        "round", "generated", "accepted", "mmd2_accepted", "noise_floor_same_size", "target_mmd2", "mmd2_pool",
        "mmd2_accepted_heldout", "mmd2_accepted_u", "sinkhorn_accepted", "filtered",
    ]
    cols = [c for c in cols if any(c in m for m in metrics)]
    attr_rows = [
        {"round": a.get("round"), "label": a.get("label"), "tone": a.get("tone"), "topic": a.get("topic"),
         "length": a.get("length"), "style": a.get("style")}
        for a in attributes
    ]
    attr_html = (
        "<h2>Attribute summaries</h2>"
        + table(attr_rows, ["round", "label", "tone", "topic", "length", "style"],
                left=["tone", "topic", "length", "style"])
        if attr_rows
        else ""
    )
    bw = summary.bandwidth
    bw_text = f"{bw:.3g}" if isinstance(bw, (int, float)) else "?"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>synalign run report</title><style>{_CSS}</style></head><body>
<h1>synalign run report</h1>
{banner}
{verdict(metrics, summary)}
{kv_table(headline)}
<h2>Per label</h2>
<p class="small">Real vs accepted synthetic, per label. MMD² is the fixed-set estimator
(<code>synalign.divergence.mmd2_fixed_set</code>, RBF σ = {bw_text}, the run's bandwidth) of the label's accepted
set to the label's real examples; "same-size floor" is what a random real subset of that size scores against the
rest of that label's real examples; "discriminator AUC" tells the label's accepted set from its real examples (see
below). "share not accepted" = (generated − accepted) / generated. Below: mean length in words and distinctive
terms, the words most over-represented on one side (log ratio of smoothed word frequencies, stop words
removed).</p>
<div id="per-label">{table(labels, LABEL_COLUMNS, left=["label"])}
{table(labels, TEXT_COLUMNS, left=["label", "terms real", "terms synthetic"])}</div>
{_utility_labels(last)}
<h2>Fidelity: a discriminator calibrated on real data</h2>
<p class="small">Cross-validated ROC AUC of a logistic regression telling the two sets apart on their embeddings
(<code>synalign.compare.discriminator_auc</code>, balanced by subsampling). 0.5 means indistinguishable, 1 separable;
two random halves of the real set show what indistinguishable looks like here. Unlike MMD² it is bounded and needs
no bandwidth.</p>
{table(auc, ["sets", "rows per side", "discriminator AUC"], left=["sets"])}
<h2>What generated the data</h2>
{maker_section(summary)}
<h2>Divergence per round</h2>
<p class="small">MMD² (RBF kernel, bandwidth σ = {bw_text}) between the distribution the synthetic set defines and
the real data. The grey line is the {SAME_SIZE_FLOOR} (band: ± one std over {FLOOR_DRAWS} draws); a relative
<code>--target</code> is a multiple of it. The {REAL_FLOOR} is {_fmt_float(summary.noise_floor)}, shown in
the table above, not plotted.</p>
<img alt="MMD² per round" src="data:image/png;base64,{_divergence_plot(metrics, target_flag(summary.target))}">
{table(metrics, cols)}
{_utility_section(metrics, summary)}
<h2>Real vs synthetic (PCA of embeddings)</h2>
<img alt="2-D projection" src="data:image/png;base64,\
{_projection_plot(real_embeddings, real_labels, synthetic_embeddings, synthetic)}">
<h2>Samples per label</h2>
{samples_section(synthetic, metrics, examples_per_label)}
{attr_html}
</body></html>
"""
    atomic_write_text(path, page)
    return path


def _judged_rows(summary: RunSummary) -> list[tuple[str, Any]]:
    """Rows of the headline table from the verdict's records, for summaries that have them (none for runs from
    before the verdict existed)."""
    rows: list[tuple[str, Any]] = []
    if summary.verdict is not None:
        rows.append(("verdict", summary.verdict.level.upper()))
    validation = summary.validation
    if validation is not None and validation.source:
        rows.append(("validation slice (never a demonstration, never fitted on)",
                     f"{validation.source}, {validation.size} examples" if validation.source != "none" else "none"))
    novelty = summary.novelty
    if novelty is not None:
        rows.append(("near-copies of real texts: accepted set / pool",
                     f"{novelty.accepted_share:.0%} / {novelty.pool_share:.0%} ({novelty.excluded} kept out)"))
    return rows


def _utility_labels(last: dict[str, Any]) -> str:
    """The last round's held-out utility per label; empty without one."""
    rows = utility_label_rows(last.get("utility"))
    if not rows:
        return ""
    return f"""<h3>Held-out utility per label (round {last.get("round")})</h3>
<p class="small">On the validation slice's examples of each label: Δ (real + accepted − real only) of the mean
log-likelihood of the true label, in nats per example, and of accuracy, in points. Point estimates; a label's few
held-out examples make them noisy (the run's 95 % intervals are in the utility table below).</p>
{table(rows, UTILITY_LABEL_COLUMNS, left=["label"])}"""


def _fmt_float(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else "not recorded"
