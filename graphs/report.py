"""HTML run report: divergence per round and a 2-D projection of real vs synthetic embeddings.

Self-contained: plots are PNGs (matplotlib, Agg backend) embedded as base64, so the file can be mailed or
opened from any directory.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synalign.records import SyntheticExample

__all__ = ["write_report"]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _divergence_plot(metrics: list[dict[str, Any]]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    rounds = [m["round"] for m in metrics]
    ax.plot(rounds, [m["mmd2_accepted"] for m in metrics], "o-", label="accepted set → real")
    ax.plot(rounds, [m["mmd2_pool"] for m in metrics], "s--", label="whole pool → real", alpha=0.7)
    if metrics and "mmd2_accepted_heldout" in metrics[0]:
        ax.plot(rounds, [m["mmd2_accepted_heldout"] for m in metrics], "^:", label="accepted → held-out real test")
    if metrics:
        ax.plot(rounds, [m["noise_floor_same_size"] for m in metrics], color="grey", lw=1,
                label="noise floor (random real subset, same size)")
        ax.plot(rounds, [m["target_mmd2"] for m in metrics], color="green", lw=1, ls="--", label="target")
    ax.set_xlabel("round")
    ax.set_ylabel("MMD² to the real set")
    ax.set_xticks(rounds)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    out = _png(fig)
    plt.close(fig)
    return out


def _projection_plot(
    real: np.ndarray, real_labels: Sequence[str], syn: np.ndarray, synthetic: Sequence[SyntheticExample]
) -> str:
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    fig, ax = plt.subplots(figsize=(6.4, 5.0))
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
                ax.scatter(*s2[lab & acc].T, s=22, marker="x", color=colors(k % 10), label=f"accepted · {label}")
                ax.scatter(*s2[lab & ~acc].T, s=14, marker=".", color=colors(k % 10), alpha=0.35)
        ax.set_xlabel("PC 1 (fitted on real)")
        ax.set_ylabel("PC 2")
        ax.legend(fontsize=7, markerscale=1.2)
    out = _png(fig)
    plt.close(fig)
    return out


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(
    path: Path,
    *,
    metrics: list[dict[str, Any]],
    summary: dict[str, Any],
    real_embeddings: np.ndarray,
    real_labels: Sequence[str],
    synthetic_embeddings: np.ndarray,
    synthetic: Sequence[SyntheticExample],
    attributes: Sequence[dict[str, Any]] = (),
    examples_per_label: int = 5,
) -> Path:
    """Write the HTML report atomically.

    Args:
        path: destination ``.html``.
        metrics: per-round metrics (``metrics.json`` rows).
        summary: run summary (``summary.json``).
        real_embeddings: (n, d) real embeddings; real_labels: n labels.
        synthetic_embeddings: (m, d) embeddings aligned with ``synthetic``.
        synthetic: the pool (accepted flags set).
        attributes: attribute summaries (``attributes.jsonl`` rows).
        examples_per_label: accepted texts shown per label.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    from synalign.fileio import atomic_write_text

    backend = summary.get("backend", {})
    banner = ""
    if backend.get("note"):
        banner = f'<p class="note">Synthetic data {html.escape(str(backend.get("note")))}.</p>'
    usage = summary.get("usage", {})
    maker = [{
        "backend": backend.get("name"), "kind": backend.get("kind"), "model": backend.get("model"),
        "GGUF sha256": (backend.get("gguf_sha256") or "")[:16] or None, "prompts": backend.get("prompt_style"),
        "summariser": backend.get("summarizer"), "LM calls": usage.get("llm_calls"),
        "tokens in / out": f"{usage.get('tokens_in', 0)} / {usage.get('tokens_out', 0)}",
    }]
    per_label = [{"label": label, "generated": n, "accepted": summary.get("labels", {}).get(label, 0)}
                 for label, n in sorted((summary.get("generated_per_label") or {}).items())]
    cols = [
        "round", "generated", "accepted", "mmd2_accepted", "noise_floor_same_size", "target_mmd2", "mmd2_pool",
        "mmd2_accepted_heldout", "mmd2_accepted_u", "sinkhorn_accepted",
    ]
    cols = [c for c in cols if any(c in m for m in metrics)]
    samples_html = []
    for label in sorted({s.label for s in synthetic}):
        shown = sorted((s for s in synthetic if s.accepted and s.label == label), key=lambda s: -s.weight)
        items = "".join(f"<li>{html.escape(s.text)} <small>(w={s.weight:.3g})</small></li>" for s in shown[:examples_per_label])
        samples_html.append(f"<h3>{html.escape(label)}</h3><ul>{items}</ul>")
    attr_rows = [
        {"round": a.get("round"), "label": a.get("label"), "tone": a.get("tone"), "topic": a.get("topic"),
         "length": a.get("length"), "style": a.get("style")}
        for a in attributes
    ]
    keys = ["stop_reason", "rounds", "generated", "accepted", "final_mmd2", "noise_floor", "target", "selection",
            "embedding_model", "wall_seconds"]
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>synalign run report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
th{{background:#f3f3f3}}.note{{background:#fff4d6;padding:.6em;border-left:4px solid #e0a800}}
img{{max-width:100%}}</style></head><body>
<h1>synalign run report</h1>
{banner}
{_table([{k: summary.get(k) for k in keys}], keys)}
<h2>What generated the data</h2>
{_table(maker, list(maker[0]))}
{_table(per_label, ["label", "generated", "accepted"]) if per_label else ""}
<h2>Divergence per round</h2>
<p>MMD² (RBF kernel, bandwidth σ = {summary.get("bandwidth", float("nan")):.3g}) between the distribution the synthetic
set defines and the real data (unbiased in the real sample). The same-size noise floor is what a random subset of the real
set, as large as the accepted set, scores; the run's real-vs-real noise floor (two random halves) is
{summary.get("noise_floor", float("nan")):.3g}.</p>
<img alt="MMD² per round" src="data:image/png;base64,{_divergence_plot(metrics)}">
{_table(metrics, cols)}
<h2>Real vs synthetic (PCA of embeddings)</h2>
<img alt="2-D projection" src="data:image/png;base64,{_projection_plot(real_embeddings, real_labels, synthetic_embeddings, synthetic)}">
<h2>Highest-weight accepted samples</h2>
{"".join(samples_html)}
<h2>Attribute summaries</h2>
{_table(attr_rows, ["round", "label", "tone", "topic", "length", "style"])}
</body></html>
"""
    atomic_write_text(path, page)
    return path
