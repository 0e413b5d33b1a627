"""Exceptions shared by every synalign layer.

The CLI turns :class:`InputError` into one line on stderr and exit code 2; anything else is a bug.
"""

from __future__ import annotations

__all__ = ["SynalignError", "InputError"]


class SynalignError(Exception):
    """Base class of every error synalign raises on purpose."""


class InputError(SynalignError):
    """Bad user input (file, field, option, model name).

    The message is one line that names the problem and, where it applies, the file and line number,
    e.g. ``"data/train.jsonl:17: malformed JSON (Expecting ',' delimiter)"``.
    """
