"""Price table of LLM calls: USD per million input/output tokens by model, read from a JSON file
(``SYNALIGN_LLM_PRICES``), and the cost of one call."""

from __future__ import annotations

from pathlib import Path

from synalign.errors import InputError
from synalign.fileio import read_json

__all__ = ["PriceTable"]


class PriceTable:
    """USD per million input/output tokens by model name.

    Args:
        prices: ``{"model": {"input": usd_per_1m, "output": usd_per_1m}}``; a key may be the bare model
            name or ``openai:MODEL``.
    """

    def __init__(self, prices: dict[str, dict[str, float]] | None) -> None:
        self.prices = prices or {}

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        """Read a price table JSON file.

        Raises:
            InputError: unreadable, not JSON, or not ``{model: {input, output}}`` with numbers.
        """
        data = read_json(path, "price table")
        if not isinstance(data, dict) or not all(
            isinstance(v, dict)
            and isinstance(v.get("input"), (int, float))
            and isinstance(v.get("output"), (int, float))
            for v in data.values()
        ):
            raise InputError(f"{path}: price table must map model names to {{\"input\": USD/1M, \"output\": USD/1M}}")
        return cls({k: {"input": float(v["input"]), "output": float(v["output"])} for k, v in data.items()})

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> float | None:
        """Cost in USD of one call, or None when the model has no price."""
        entry = self.prices.get(model) or self.prices.get(model.split(":", 1)[-1])
        if entry is None:
            return None
        return (tokens_in * entry["input"] + tokens_out * entry["output"]) / 1e6
