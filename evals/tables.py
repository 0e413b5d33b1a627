"""Markdown tables of the study modules (:mod:`~synalign.evals.ablation_eval`,
:mod:`~synalign.evals.baselines_eval`) and of the benchmark scripts in ``evals/scripts/`` (not shipped)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["markdown"]


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; floats are printed with 4 significant digits."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out)
