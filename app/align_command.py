"""``synalign align``: weight and select an existing synthetic pool against real data, without generating.

Options that ``synalign run`` also has take their help (and so their documented defaults) from
:class:`~synalign.config.RunConfig` (:func:`synalign.app.options.field_help`) and are validated by it. Bad
input is one ``synalign: error: ...`` line and exit 2, with nothing written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from synalign.app.commands import fail
from synalign.app.options import field_help
from synalign.config import RunConfig, config_error
from synalign.errors import InputError, SynalignError

__all__ = ["align"]


def align(
    real: Path = typer.Option(
        ..., "--real", help="Real data: JSONL/CSV/Parquet file or a directory with train/test (and validation/dev) "
        "splits; a validation/dev split is the validation slice."
    ),
    pool: Path = typer.Option(
        ..., "--pool", help="Synthetic pool generated elsewhere: JSONL/CSV/Parquet file (or a directory with train.*)."
    ),
    out: Path = typer.Option(..., "--out", help="Output directory (created; must not exist unless --overwrite)."),
    selection: Optional[str] = typer.Option(None, "--selection", help=field_help("selection"), show_default=False),
    accept_fraction: Optional[float] = typer.Option(
        None, "--accept-fraction", help=field_help("accept_fraction"), show_default=False
    ),
    target: Optional[str] = typer.Option(None, "--target", help=field_help("target"), show_default=False),
    text_field: Optional[str] = typer.Option(None, "--text-field", help=field_help("text_field"), show_default=False),
    label_field: Optional[str] = typer.Option(None, "--label-field", help=field_help("label_field"), show_default=False),
    max_real: Optional[int] = typer.Option(None, "--max-real", help=field_help("max_real"), show_default=False),
    embedding_model: Optional[str] = typer.Option(
        None, "--embedding-model", help=field_help("embedding_model"), show_default=False
    ),
    heldout: Optional[Path] = typer.Option(
        None, "--heldout", help="Held-out real examples (JSONL/CSV/Parquet, same fields), never aligned against: the "
        "validation slice that measures utility and fidelity when --real has no validation/dev split (without "
        "either, --holdout of the real train split is carved out).", show_default=False,
    ),
    holdout: Optional[float] = typer.Option(None, "--holdout", help=field_help("holdout"), show_default=False),
    allow_near_copies: bool = typer.Option(
        False, "--allow-near-copies", help=RunConfig.model_fields["allow_near_copies"].description
    ),
    seed: Optional[int] = typer.Option(None, "--seed", help=field_help("seed"), show_default=False),
    device: Optional[str] = typer.Option(None, "--device", help=field_help("device"), show_default=False),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=field_help("cache_dir"), show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs of an earlier align or run in --out."),
) -> None:
    """Weight and select an existing synthetic pool (made by any tool) against real data, without generating:
    writes synthetic.jsonl (accepted), pool.parquet, metrics.json, summary.json and report.html, and judges the
    accepted set on held-out real examples (utility, novelty, fidelity: the verdict)."""
    from pydantic import ValidationError

    options = {
        "selection": selection, "accept_fraction": accept_fraction, "target": target, "text_field": text_field,
        "label_field": label_field, "max_real": max_real, "embedding_model": embedding_model, "seed": seed,
        "device": device, "cache_dir": cache_dir, "holdout": holdout, "allow_near_copies": allow_near_copies or None,
    }
    given: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    try:
        config = RunConfig(data=real, out=out, llm="eda", **given)
    except ValidationError as exc:
        fail(config_error(exc))
    from synalign.graphs.align_pool import align_pool

    try:
        result = align_pool(config, pool, heldout_path=heldout, overwrite=overwrite)
    except InputError as exc:
        fail(str(exc))
    except SynalignError as exc:
        fail(str(exc), code=1)
    s = result.summary
    per_label = ", ".join(f"{label} {n}/{s['generated_per_label'].get(label, 0)}" for label, n in s["labels"].items())
    reached = "reached" if s["stop_reason"] == "target" else "missed"
    typer.echo(
        f"aligned {s['generated']} pool samples: {s['accepted']} accepted ({per_label}); MMD² {s['final_mmd2']:.3e}, "
        f"target {s['target_mmd2']:.3e} {reached} (a random real subset of that size scores "
        f"{s['noise_floor_same_size']:.3e})"
    )
    typer.echo(f"outputs in {result.run_dir}:")
    for name, path in result.outputs.items():
        typer.echo(f"  {name:<18} {path}")
    verdict = s["verdict"]
    typer.echo(f"verdict {verdict['level'].upper()}: {verdict['headline']}")
    for line in verdict["evidence"]:
        typer.echo(f"  {line}")
