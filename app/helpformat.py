"""``--help`` of every command: full option names at 80 columns and one way of showing defaults.

Typer's rich help puts an on/off switch's ``--no-NAME`` in a column of its own; at 80 columns that column
squeezes the option names until they are cut (``--samples-per-clust…``). Here that column is left out: a
switch's help text names ``--no-NAME`` where it matters (:func:`synalign.app.options.field_help`: "turn off
with --no-NAME"). Defaults read ``(default: X)`` everywhere: as ``synalign run`` writes them into its help
texts and as typer appends them for the other commands.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from typer.core import TyperCommand

__all__ = ["HelpCommand"]

DEFAULT_STYLE = "(default: {})"
"""How every ``--help`` shows a default (round brackets: rich would read ``[X]`` as markup)."""


@contextlib.contextmanager
def _help_style(params: list[Any]) -> Iterator[None]:
    """No ``--no-NAME`` column, and typer's defaults as ``(default: X)``, for one help text."""
    from typer import rich_utils  # imported here: only a help text needs it

    saved = [(param, param.secondary_opts) for param in params]
    style = (rich_utils.DEFAULT_STRING, rich_utils.STYLE_OPTION_DEFAULT)
    for param, _ in saved:
        param.secondary_opts = []
    rich_utils.DEFAULT_STRING, rich_utils.STYLE_OPTION_DEFAULT = DEFAULT_STYLE, rich_utils.STYLE_OPTION_HELP
    try:
        yield
    finally:
        rich_utils.DEFAULT_STRING, rich_utils.STYLE_OPTION_DEFAULT = style
        for param, secondary in saved:
            param.secondary_opts = secondary


class HelpCommand(TyperCommand):
    """A typer command whose ``--help`` keeps full option names at 80 columns and shows defaults one way."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The command's help text (see the module docstring)."""
        with _help_style(self.params):
            super().format_help(ctx, formatter)
