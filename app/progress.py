"""Progress of ``synalign run`` on stderr: rich bars on a terminal, one plain line per finished step otherwise.

On a terminal: one bar for embedding the real set (per encoder batch), one bar per round (its four steps) and,
under it, a bar for the step in progress in that step's own units: clusters for ``generate`` (with the texts,
LLM calls and tokens so far, and an ETA), embedding batches then the selection and the held-out check for
``align``. "waiting N s" appears only when a step has gone without news for much longer than its own pace so
far. Elsewhere (a log file, CI): one line per finished step, never wrapped.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import typer

__all__ = ["RoundProgress", "step_line"]

_QUIET_S = 10.0
"""A step is never called slow before this many seconds without news."""
_FIRST_UNIT_S = 30.0
"""Expected seconds for a step's first unit (a cluster, a batch), before it has a pace of its own."""
_SLOW_FACTOR = 3.0
"""A step is slow once it has gone this many times its own seconds per unit without news."""


def slow_wait(task: Any) -> float | None:
    """Seconds a progress task has gone without news when that is slower than expected, else None.

    Expected: ``_SLOW_FACTOR`` times the task's own seconds per unit so far (at least ``_QUIET_S``), or
    ``_FIRST_UNIT_S`` before its first unit is done."""
    since = task.fields.get("since")
    if since is None or task.finished:
        return None
    waited = task.get_time() - since
    started = task.start_time
    pace = (since - started) / task.completed if task.completed and started is not None else None  # s per unit
    expected = max(_QUIET_S, _SLOW_FACTOR * pace) if pace is not None else _FIRST_UNIT_S
    return waited if waited >= expected else None


def _wait_column() -> Any:
    """A progress column that says how long a step has waited, when that is longer than expected (a slow LLM)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class _WaitColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            waited = slow_wait(task)
            return Text(f"waiting {waited:.0f} s" if waited is not None else "", style="yellow")

    return _WaitColumn()


def _eta_column() -> Any:
    """Time remaining, shown for step bars only (a round's four steps take very different times)."""
    from rich.progress import ProgressColumn, TimeRemainingColumn
    from rich.text import Text

    remaining = TimeRemainingColumn()

    class _EtaColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            if not task.fields.get("eta") or task.finished or not task.completed:
                return Text("")
            return remaining.render(task)

    return _EtaColumn()


def _count(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def _usage(event: dict[str, Any]) -> str:
    """``48 texts, 12 calls, 3.4k tokens`` of a ``generate`` event ('' for other events)."""
    parts = [f"{_count(int(event['texts']))} texts"] if "texts" in event else []
    if "calls" in event:
        parts.append(f"{_count(int(event['calls']))} LLM calls")
    if "tokens" in event:
        parts.append(f"{_count(int(event['tokens']))} tokens")
    return ", ".join(parts)


def step_line(event: dict[str, Any], max_rounds: int) -> str:
    """The plain line of a finished step, e.g. ``round 1/2: generate done, 64 texts`` or ``round 1/2: align
    done, MMD²=1.20e-03, held-out ΔLL=+0.012``."""
    details = [_usage(event)] if _usage(event) else []
    if "mmd2" in event:
        details.append(f"MMD²={event['mmd2']:.2e}")
    if event.get("gain") is not None:
        details.append(f"held-out ΔLL={event['gain']:+.3f}")
    return f"round {event.get('round', 0)}/{max_rounds}: {event.get('node')} done" + "".join(f", {d}" for d in details)


class RoundProgress:
    """Rich progress of a run, fed the run's progress events (``on_event``).

    When stderr is not a terminal (a log file, CI) there is no bar: one plain line per finished step instead.
    """

    _STEPS = {"explore": 1, "summarize": 2, "generate": 3, "label_check": 3, "align": 4}

    def __init__(self, max_rounds: int, console: Any = None) -> None:
        """``console``: where the bars go (default: a rich ``Console`` on stderr)."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.max_rounds = max_rounds
        console = console or Console(stderr=True)
        self.plain = not console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), _eta_column(), _wait_column(), console=console, transient=False, disable=self.plain,
        )
        self.rounds: dict[int, Any] = {}
        self.steps: dict[int, tuple[Any, str]] = {}  # round -> (its step bar, the step it shows)
        self.embedding: Any = None

    def __enter__(self) -> RoundProgress:
        self.progress.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)

    def _line(self, text: str) -> None:
        typer.echo(text, err=True)

    def __call__(self, event: dict[str, Any]) -> None:
        """Show one progress event (``{"node", "round", "done", "total", ...}``)."""
        node = str(event.get("node"))
        if node == "run":  # the run's round budget (an --extend run raises it)
            self.max_rounds = int(event.get("max_rounds", self.max_rounds))
            for round_, task in self.rounds.items():
                self.progress.update(task, description=f"round {round_}/{self.max_rounds}")
            return
        finished = event.get("done") == event.get("total")
        now = self.progress.get_time()
        if node == "embed":
            if self.embedding is None:
                self.embedding = self.progress.add_task(
                    "embedding real set", total=event["total"], info="texts", since=now, eta=True
                )
            self.progress.update(self.embedding, completed=event["done"], since=now)
            if self.plain and finished:
                self._line(f"embedding real set: {event['done']} texts")
            return
        round_ = int(event.get("round", 0))
        step = self._STEPS.get(node, 0)
        if round_ not in self.rounds:
            self.rounds[round_] = self.progress.add_task(f"round {round_}/{self.max_rounds}", total=4, info="")
            self.steps[round_] = (self.progress.add_task(f"  {node}", total=1, info="", since=now, eta=True), node)
        detail = _usage(event) or str(event.get("phase", ""))
        self.progress.update(self.rounds[round_], completed=step if finished else step - 1, info=node)
        self._step(round_, node, event, detail, now)
        if self.plain and finished:
            self._line(step_line(event, self.max_rounds))

    def _step(self, round_: int, node: str, event: dict[str, Any], detail: str, now: float) -> None:
        """The bar of the step in progress: reset when a new step starts, hidden when the round's last ends."""
        task, shown = self.steps[round_]
        total = float(event.get("total") or 1)
        if shown != node:
            self.progress.reset(task, total=total, description=f"  {node}", info="", since=now, eta=True, visible=True)
            self.steps[round_] = (task, node)
        self.progress.update(task, total=total, completed=float(event.get("done", 0)), info=detail, since=now)
        if node == "align" and event.get("done") == event.get("total"):
            self.progress.update(task, visible=False)
