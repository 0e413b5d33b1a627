"""``synalign export``: a run directory as a Hugging Face dataset, to a local folder or to the Hub.

Bad input (not a finished run directory, an existing target, ``datasets`` not installed, no token) is one
``synalign: error: ...`` line and exit 2; a failed upload is one line and exit 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synalign.app.commands import fail
from synalign.errors import InputError, SynalignError

__all__ = ["export"]


def export(
    run_dir: Path = typer.Argument(..., help="A finished synalign run directory."),
    to_dir: Optional[Path] = typer.Option(
        None, "--to-dir", help="Write a folder that datasets.load_dataset(DIR) reads (Parquet + dataset card)."
    ),
    to_hub: Optional[str] = typer.Option(
        None, "--to-hub", help="Upload to this Hugging Face Hub dataset repository, 'user/name' (token: $HF_TOKEN)."
    ),
    private: bool = typer.Option(False, "--private", help="With --to-hub: create the repository private."),
    columns: str = typer.Option(
        "minimal", "--columns",
        help="minimal (text + label, named and typed as in your data) or all (provenance too: id, round, weight, "
        "backend, demonstration_ids).",
    ),
) -> None:
    """Export a run as a Hugging Face dataset with its card: train = accepted samples, config 'pool' = all."""
    if (to_dir is None) == (to_hub is None):
        fail("export needs exactly one of --to-dir DIR or --to-hub REPO")
    if private and to_hub is None:
        fail("--private applies to --to-hub only")
    if columns not in ("minimal", "all"):
        fail(f"--columns must be minimal or all, got {columns!r}")
    from synalign.artifacts.export import export_to_dir, export_to_hub

    try:
        if to_dir is not None:
            result = export_to_dir(run_dir, to_dir, columns=columns)  # type: ignore[arg-type]
        else:
            assert to_hub is not None
            result = export_to_hub(run_dir, to_hub, private=private, columns=columns)  # type: ignore[arg-type]
    except InputError as exc:
        fail(str(exc))
    except SynalignError as exc:
        fail(str(exc), code=1)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    rows = ", ".join(f"{name} {count}" for name, count in result.rows.items())
    cols = ", ".join(f"{name} ({dtype})" for name, dtype in result.columns.items())
    typer.echo(f"exported {run_dir} to {result.target}: rows {rows}; columns {cols}")
    for name in result.files:
        typer.echo(f"  {name}")
