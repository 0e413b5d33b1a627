"""Progress of ``synalign run`` on stderr: rich bars on a terminal, one plain line per finished step otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

import typer

__all__ = ["RoundProgress"]


def _wait_column() -> Any:
    """A progress column that shows how long the current step has gone without news (a slow LLM)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class _WaitColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            since = task.fields.get("since")
            waited = 0.0 if since is None or task.finished else time.monotonic() - since
            return Text(f"waiting {waited:.0f} s" if waited >= 5 else "", style="yellow")

    return _WaitColumn()


class RoundProgress:
    """Rich progress: one bar for embedding the real set, then one bar per round (4 node steps each).

    When stderr is not a terminal (a log file, CI) there is no bar: one plain line per finished step instead.
    """

    _STEPS = {"explore": 1, "summarize": 2, "generate": 3, "align": 4}

    def __init__(self, max_rounds: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.max_rounds = max_rounds
        self.plain = not sys.stderr.isatty()
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
            _wait_column(), transient=False, disable=self.plain,
        )
        self.tasks: dict[int, Any] = {}

    def __enter__(self) -> RoundProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def _line(self, text: str) -> None:
        typer.echo(text, err=True)

    def __call__(self, event: dict[str, Any]) -> None:
        node, round_ = event.get("node"), int(event.get("round", 0))
        finished = event.get("done") == event.get("total")
        if node == "embed":
            if 0 not in self.tasks:
                self.tasks[0] = self.progress.add_task("embedding real set", total=event["total"], info="")
            self.progress.update(self.tasks[0], completed=event["done"], since=time.monotonic())
            if self.plain and finished:
                self._line(f"embedding real set: {event['done']} texts")
            return
        if round_ not in self.tasks:
            self.tasks[round_] = self.progress.add_task(f"round {round_}/{self.max_rounds}", total=4, info="")
        task = self.tasks[round_]
        step = self._STEPS.get(str(node), 0)
        gain = f" held-out ΔLL={event['gain']:+.3f}" if event.get("gain") is not None else ""
        info = f"{node}" + (f" MMD²={event['mmd2']:.2e}" if "mmd2" in event else "") + gain
        self.progress.update(task, completed=step if finished else step - 1, info=info, since=time.monotonic())
        if self.plain and finished:
            mmd2 = f", MMD²={event['mmd2']:.2e}" if "mmd2" in event else ""
            self._line(f"round {round_}/{self.max_rounds}: {node} done{mmd2}{gain.replace(' held', ', held')}")


