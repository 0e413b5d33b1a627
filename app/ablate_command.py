"""``synalign ablate``: re-run the study tables of ``evals/RESULTS.md`` from the committed pools (issue 10).

* ``--table ablation``: the generation ablation (:mod:`synalign.evals.ablation_eval`): per task, the pools that
  ``evals/scripts/ablation_generate.py`` wrote with the embedded Gemma 3 270M (zerogen / random
  demonstrations / GP demonstrations / GP + attributes), each selected five ways plus IMP-Loss weighting,
  scored downstream.
* ``--table baselines``: DSIR and IMP-Loss against random, the filter and herding on the shared LM pools under
  ``synalign eval``'s protocol (:mod:`synalign.evals.baselines_eval`; resumable per seed).

Both read only committed or bundled files and the real data; with a warm embedding cache a task takes minutes.
"""

from __future__ import annotations

from pathlib import Path

import typer

from synalign.app.commands import fail

__all__ = ["ablate"]


def ablate(
    table: str = typer.Option("ablation", "--table", help="ablation (the generation ablation) or baselines "
                              "(DSIR / IMP-Loss on the shared LM pools)."),
    tasks: str = typer.Option("sst2,agnews", "--tasks", help="Tasks, comma-separated."),
    data: Path = typer.Option(Path("../shared/data"), "--data", help="Real data: one folder per task."),
    results: Path = typer.Option(Path("evals/results"), "--results", help="Results folder of a checkout "
                                 "(pools in ablation/<task>/, baseline seeds in baselines/<task>/)."),
    seeds: str = typer.Option("0-9", "--seeds", help="Seeds of the baselines table ('0-9', '0,3,5')."),
    finetune: str = typer.Option("", "--finetune", help="Ablation only: also fine-tune MiniLM for these "
                                 "selections, e.g. 'random,filter' (slow)."),
) -> None:
    """Re-run the generation-ablation or baselines table of evals/RESULTS.md from committed pools."""
    if table not in ("ablation", "baselines"):
        fail(f"--table must be ablation or baselines, got {table!r}")
    if not data.is_dir():
        fail(f"--data {data}: no such directory (the real data, one folder per task)")
    if table == "ablation":
        from synalign.evals.ablation_eval import main

        code = main(["--tasks", tasks, "--data", str(data), "--out", str(results / "ablation"), "--finetune", finetune])
    else:
        from synalign.evals.baselines_eval import main

        code = main(["--tasks", tasks, "--data", str(data), "--out", str(results / "baselines"), "--seeds", seeds])
    raise typer.Exit(code)
