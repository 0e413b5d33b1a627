"""Exceptions shared by every synalign layer.

The CLI turns :class:`InputError` into one line on stderr and exit code 2; anything else is a bug.
"""

from __future__ import annotations

__all__ = ["SynalignError", "InputError", "first_validation_error"]


class SynalignError(Exception):
    """Base class of every error synalign raises on purpose."""


class InputError(SynalignError):
    """Bad user input (file, field, option, model name).

    The message is one line that names the problem and, where it applies, the file and line number,
    e.g. ``"data/train.jsonl:17: malformed JSON (Expecting ',' delimiter)"``.
    """


def first_validation_error(exc: Exception) -> tuple[str, str, int]:
    """The first problem of a pydantic ``ValidationError`` as ``(where, message, more)``: the dotted location
    (``""`` for a check across fields), the message without pydantic's ``"Value error, "`` prefix, and how many
    further problems there are. The one reading of a ``ValidationError`` that every one-line error builds on."""
    errors = exc.errors() if callable(getattr(exc, "errors", None)) else []  # type: ignore[attr-defined]
    if not errors:
        return "", " ".join(str(exc).split()), 0
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    message = " ".join(str(first.get("msg", "")).removeprefix("Value error, ").split())
    return where, message, len(errors) - 1
