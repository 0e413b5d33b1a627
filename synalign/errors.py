"""Exceptions shared by every synalign layer.

The CLI turns :class:`InputError` into one line on stderr and exit code 2; anything else is a bug.

Settings in messages: below the CLI (the core, ``agents``, ``artifacts``, ``scaleout``, ``graphs``, ``evals``) a
message names a setting by its Python name in backticks, never by a command-line flag: a
:class:`~synalign.config.RunConfig` field (``"raise `max_real`"``, ``"`llm` eda is not a language model"``) or
a keyword parameter of the function that raises (``"pass `overwrite` to replace it"``). A Python caller reads
the names it passed; the CLI's one error printer (:func:`synalign.app.options.cli_message`) replaces each by its
flag (``--max-real``; ``max_rounds`` → ``--rounds``), so only ``synalign.app`` knows the flags.
"""

from __future__ import annotations

__all__ = ["SynalignError", "InputError", "first_validation_error", "invalid_field_message"]


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
    read_errors = getattr(exc, "errors", None)
    errors = read_errors() if callable(read_errors) else []
    if not errors:
        return "", " ".join(str(exc).split()), 0
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    message = " ".join(str(first.get("msg", "")).removeprefix("Value error, ").split())
    return where, message, len(errors) - 1


def invalid_field_message(exc: Exception) -> str:
    """One line for a pydantic ``ValidationError`` of a settings model: ``invalid option `max_rounds`: ...``
    (the field in backticks, see the module docstring), or the message alone for a check across fields, which
    names them itself."""
    where, message, _ = first_validation_error(exc)
    return f"invalid option `{where.split('.')[0]}`: {message}" if where else message
