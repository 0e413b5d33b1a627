"""synalign.app: the top floor — the ``synalign`` command line (typer) over the core, agents, graphs and evals.

Nothing imports this package except the console script and ``python -m synalign.app``; it may import every
floor below it (core ← agents ← graphs ← evals ← app, enforced by the import contract in ``pyproject.toml``).
"""
