"""``synalign run``'s options, derived from :class:`~synalign.config.RunConfig`'s fields.

One source of names, defaults, help and validation: each field becomes ``--field-name`` (or the flag that
:data:`_FLAGS` spells), its help is the field's description plus its default, and a
boolean field is a ``--name/--no-name`` switch. Every option defaults to None ("not given"), so the command
passes on only what the user typed and pydantic fills in and validates the rest. Fields marked
``json_schema_extra["resume_safe"]`` are the ones ``--resume`` may change: they change how the run talks to
the LLM, never what it computes.

The other commands build their options the same way: :func:`config_option` for a RunConfig field (``align``,
``optimize --llm``), :func:`spec_option` for a field of a spec in :mod:`synalign.evals.specs` (``eval``,
``optimize``), so each default is stated once. This module is also the only place that knows the flags: the
lower floors name settings by field in backticks (:mod:`synalign.errors`), and :func:`cli_message` turns each
into its flag when the CLI prints an error.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic.fields import FieldInfo

from synalign.config import DEFAULT_LLM, RunConfig
from synalign.errors import invalid_field_message

__all__ = ["cli_message", "config_error", "config_option", "field_help", "given_fields", "option_flag",
           "resume_safe_fields", "run_default", "run_parameters", "spec_option", "unused_option_notes"]

_FLAGS = {"max_rounds": "--rounds", "repo_id": "--to-hub"}
"""The RunConfig fields and Python parameters whose flag is not ``--name-with-dashes`` (the one table of flag
spellings: the lower floors name settings by their Python names)."""

_FIELD_MENTION = re.compile(r"`([a-z][a-z0-9_]*)`")
"""A setting named in a message of the lower floors (the convention of :mod:`synalign.errors`)."""


def option_flag(name: str) -> str:
    """The command-line flag of setting ``name`` (a RunConfig field or a parameter named in a message):
    :data:`_FLAGS` (``max_rounds`` → ``--rounds``), else ``--name-with-dashes``."""
    return _FLAGS.get(name) or "--" + name.replace("_", "-")


def cli_message(message: str) -> str:
    """``message`` as the CLI prints it: each setting named in backticks (:mod:`synalign.errors`) replaced by
    its flag, e.g. ``"raise `max_real`"`` → ``"raise --max-real"``."""
    return _FIELD_MENTION.sub(lambda match: option_flag(match[1]), message)


def config_error(exc: Exception) -> str:
    """One line for an invalid RunConfig: ``invalid option --rounds: ...`` (the message alone for a check across
    options, which names them itself). Used by every command that builds a RunConfig from options."""
    return cli_message(invalid_field_message(exc))

_REQUIRED_UNLESS_RESUME = ("data",)
"""Required fields a ``--resume`` takes from the saved config instead."""

_GROUPS: dict[str, tuple[str, ...]] = {
    "Data": ("data", "text_field", "label_field", "label_names", "max_real", "embedding_model", "max_seq_length",
             "cache_dir", "device", "ray", "holdout"),
    "Generation": ("task", "max_rounds", "clusters_per_label", "cluster_size", "samples_per_cluster", "max_samples",
                   "overgenerate", "contrast", "witness_guided", "length_scale", "seed"),
    "Alignment": ("target", "selection", "accept_fraction", "label_check", "keep", "allow_near_copies",
                  "patience"),
    "LLM": ("llm", "item_name", "prompt_style", "base_url", "api_key_env", "temperature", "max_tokens",
            "dry_multiplier", "max_concurrency", "llm_cache", "prompts"),
    "Output": ("out",),
}
"""``synalign run --help`` sections, by RunConfig field; every field is in one."""


def _group(name: str) -> str:
    for group, names in _GROUPS.items():
        if name in names:
            return group
    raise KeyError(f"RunConfig field {name!r} has no --help section in synalign.app.options._GROUPS")


def _extra(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def resume_safe_fields() -> frozenset[str]:
    """RunConfig fields ``--resume`` applies on top of the saved config."""
    from synalign.config import resume_safe_fields as fields

    return fields()


def _option_type(annotation: Any) -> type:
    """The type typer parses for a field: Optional/Literal unwrapped (pydantic checks the values)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        (annotation,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return type(typing.get_args(annotation)[0])
    return annotation if annotation in (bool, int, float, str, Path) else str


def _default_text(name: str, field: FieldInfo) -> str:
    """`` (default: X)`` for the help text (round brackets: rich would read ``[X]`` as markup)."""
    if name in _REQUIRED_UNLESS_RESUME:
        return " (required unless --resume)"
    if name == "llm":
        return f" (default: $SYNALIGN_LLM, else {DEFAULT_LLM})"
    if field.is_required() or field.default is None:
        return ""
    default = field.default
    if isinstance(default, bool):  # --help shows no --no-NAME column (synalign.app.helpformat): named here
        return (
            f" (default: on; turn off with --no-{option_flag(name).removeprefix('--')})"
            if default
            else " (default: off)"
        )
    return f" (default: {default})"


def field_help(name: str) -> str:
    """``--help`` text of RunConfig field ``name``: its description and default (shared by every command
    that takes the same option, e.g. ``synalign optimize --llm``)."""
    field = RunConfig.model_fields[name]
    return (field.description or "") + _default_text(name, field)


def run_parameters() -> list[inspect.Parameter]:
    """One keyword parameter per RunConfig field, each a ``typer.Option`` defaulting to None, in the order of
    the ``--help`` sections."""
    params = []
    order = list(_GROUPS)
    fields = sorted(RunConfig.model_fields.items(), key=lambda item: order.index(_group(item[0])))
    for name, field in fields:
        kind = _option_type(field.annotation)
        decl = option_flag(name)
        if kind is bool:
            decl = f"{decl}/--no-{decl.removeprefix('--')}"
        help_text = field_help(name)
        cli_required = field.is_required() or _extra(field).get("cli_required", False)  # `out`: None in Python
        required = cli_required and name not in _REQUIRED_UNLESS_RESUME
        option = typer.Option(
            ... if required else None, decl, help=help_text, show_default=False, rich_help_panel=_group(name)
        )
        params.append(inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind if required else Optional[kind],
        ))
    return params


def config_option(name: str, *, default: Any = None, with_default: bool = True) -> Any:
    """A ``typer.Option`` for RunConfig field ``name`` in a command other than ``run`` (e.g. ``synalign align
    --selection``): its flag and help as in ``run`` (``with_default=False``: the description alone). The option
    defaults to None ("not given": RunConfig fills in the field's default), or to ``default``."""
    help_text = field_help(name) if with_default else RunConfig.model_fields[name].description
    return typer.Option(default, option_flag(name), help=help_text, show_default=False)


def run_default(name: str) -> Any:
    """RunConfig field ``name``'s default (for an option that must hold a value, not None)."""
    return RunConfig.model_fields[name].get_default(call_default_factory=True)


_SPEC_DEFAULT: Any = object()


def spec_option(spec: type, name: str, *, default: Any = _SPEC_DEFAULT, **kwargs: Any) -> Any:
    """A ``typer.Option`` for field ``name`` of the frozen dataclass ``spec`` (:mod:`synalign.evals.specs`): the
    flag its ``metadata["cli_flag"]`` names (else ``--field-name``), the help its ``metadata["help"]``, and its
    default (required when it has none). ``default`` overrides it for an option the command converts before it
    builds the spec (e.g. a comma-separated ``--strategy`` that defaults to None); ``kwargs`` go to typer."""
    field = next(f for f in dataclasses.fields(spec) if f.name == name)
    if default is _SPEC_DEFAULT:
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = ...
    flag = field.metadata.get("cli_flag") or "--" + name.replace("_", "-")
    return typer.Option(default, flag, help=field.metadata["help"], **kwargs)


def given_fields(ctx: typer.Context) -> dict[str, Any]:
    """The RunConfig fields the user gave on the command line, with their values."""
    return {
        name: ctx.params[name] for name in RunConfig.model_fields
        if ctx.params.get(name) is not None
        and getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"
    }


def unused_option_notes(config: RunConfig) -> list[str]:
    """Notes (one line each) on options the chosen backend accepts but does not use, e.g. ``--item-name`` with
    the EDA backend: said once, before the run, rather than ignored silently."""
    notes = []
    if config.item_name is not None and config.llm.kind == "eda":
        notes.append("--item-name names the examples in an LLM's completion prompts; the EDA backend writes no "
                     "prompts and ignores it")
    return notes
