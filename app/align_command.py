"""``synalign align``: weight and select an existing synthetic pool against real data, without generating.

Options that ``synalign run`` also has take their flag, help and default from :class:`~synalign.config.RunConfig`
(:func:`synalign.app.options.config_option`; None until given) and are validated by it. Bad
input is one ``synalign: error: ...`` line and exit 2, with nothing written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from synalign.app.commands import fail
from synalign.app.options import config_error, config_option
from synalign.config import RunConfig
from synalign.errors import InputError, SynalignError

__all__ = ["align"]

_CONFIG_FIELDS = ("selection", "accept_fraction", "target", "text_field", "label_field", "max_real", "embedding_model",
                  "holdout", "allow_near_copies", "seed", "device", "cache_dir")
"""The RunConfig fields ``synalign align`` takes as options (each None unless given: RunConfig has the defaults)."""


def align(
    real: Path = typer.Option(
        ..., "--real", help="Real data: JSONL/CSV/Parquet file or a directory with train/test (and validation/dev) "
        "splits; a validation/dev split is the validation slice."
    ),
    pool: Path = typer.Option(
        ..., "--pool", help="Synthetic pool generated elsewhere: JSONL/CSV/Parquet file (or a directory with train.*)."
    ),
    out: Path = typer.Option(..., "--out", help="Output directory (created; must not exist unless --overwrite)."),
    selection: Optional[str] = config_option("selection"),
    accept_fraction: Optional[float] = config_option("accept_fraction"),
    target: Optional[str] = config_option("target"),
    text_field: Optional[str] = config_option("text_field"),
    label_field: Optional[str] = config_option("label_field"),
    max_real: Optional[int] = config_option("max_real"),
    embedding_model: Optional[str] = config_option("embedding_model"),
    heldout: Optional[Path] = typer.Option(
        None, "--heldout", help="Held-out real examples (JSONL/CSV/Parquet, same fields), never aligned against: the "
        "validation slice that measures utility and fidelity when --real has no validation/dev split (without "
        "either, --holdout of the real train split is carved out).", show_default=False,
    ),
    holdout: Optional[float] = config_option("holdout"),
    allow_near_copies: Optional[bool] = config_option("allow_near_copies", with_default=False),  # a switch: on or None
    seed: Optional[int] = config_option("seed"),
    device: Optional[str] = config_option("device"),
    cache_dir: Optional[Path] = config_option("cache_dir"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace the outputs of an earlier align or run in --out."
    ),
) -> None:
    """Weight and select an existing synthetic pool (made by any tool) against real data, without generating:
    writes synthetic.jsonl (accepted), pool.parquet, metrics.json, summary.json and report.html, and judges the
    accepted set on held-out real examples (utility, novelty, fidelity: the verdict)."""
    options = dict(locals())  # the parameters, by name
    from pydantic import ValidationError

    given: dict[str, Any] = {name: options[name] for name in _CONFIG_FIELDS if options[name] is not None}
    try:
        config = RunConfig.model_validate({"data": real, "out": out, "llm": "eda", **given})  # llm: parsed
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
    generated = s.generated_per_label or {}
    per_label = ", ".join(f"{label} {n}/{generated.get(label, 0)}" for label, n in (s.labels or {}).items())
    reached = "reached" if s.stop_reason == "target" else "missed"
    typer.echo(
        f"aligned {s.generated} pool samples: {s.accepted} accepted ({per_label}); MMD² {s.final_mmd2:.3e}, "
        f"target {s.target_mmd2:.3e} {reached} (a random real subset of that size scores "
        f"{s.noise_floor_same_size:.3e})"
    )
    typer.echo(f"outputs in {result.run_dir}:")
    for name, path in result.outputs.items():
        typer.echo(f"  {name:<18} {path}")
    verdict = s.verdict
    if verdict is not None:  # align always judges its one round
        typer.echo(f"verdict {verdict.level.upper()}: {verdict.headline}")
        for line in verdict.evidence:
            typer.echo(f"  {line}")
