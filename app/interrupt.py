"""Ctrl-C during a run: the first stops the run at the next safe point, a second stops it at once.

LangGraph runs a node in a worker thread and, on ``KeyboardInterrupt``, waits for that node to finish and
its writes to be saved before the exception reaches the caller; with a slow LLM that can take minutes. The
first Ctrl-C therefore says so; a second one ends the process immediately (``os._exit``), which leaves the
checkpoint exactly as a ``SIGKILL`` would: SQLite keeps every committed node, and a resume re-runs the one
that was cut short.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["sigint_guard"]


@contextmanager
def sigint_guard(final_message: Callable[[], str], *, code: int = 130) -> Iterator[None]:
    """Within the block, Ctrl-C #1 raises ``KeyboardInterrupt`` (after a note on stderr); #2 exits at once.

    Args:
        final_message: called on the second Ctrl-C; its line is printed on stderr before exiting.
        code: the exit status of the second Ctrl-C.

    Outside the main thread (where no signal handler can be installed) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    count = [0]

    def handler(signum: int, frame: FrameType | None) -> None:
        count[0] += 1
        if count[0] == 1:
            sys.stderr.write("\nsynalign: interrupted: stopping after the current step (Ctrl-C again to quit now)\n")
            sys.stderr.flush()
            raise KeyboardInterrupt
        if sys.stderr.isatty():
            sys.stderr.write("\x1b[?25h")  # the progress bar hid the cursor
        sys.stderr.write(final_message() + "\n")
        sys.stderr.flush()
        os._exit(code)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
