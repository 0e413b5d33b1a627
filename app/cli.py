"""Command line: ``synalign run`` (the main job), plus ``optimize``, ``trace``, ``compare``, ``eval`` and
``local-lm`` (:mod:`synalign.app.commands`).

``run``'s options are generated from :class:`~synalign.config.RunConfig` (:mod:`synalign.app.options`). Bad
input never shows a traceback: :class:`~synalign.errors.InputError` (and invalid options) print one line
``synalign: error: ...`` on stderr and exit with code 2. Heavy imports happen inside commands, so
``synalign --help`` answers fast.
"""

from __future__ import annotations

import inspect
import math
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from synalign.app import options as _options
from synalign.app.commands import fail, register
from synalign.app.helpformat import HelpCommand
from synalign.app.options import config_error, option_flag
from synalign.errors import InputError, SynalignError

__all__ = ["app", "main"]

app = typer.Typer(
    name="synalign",
    help="Distribution-matched LLM synthetic training data (SynAlign, Ren et al., WWW 2025).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _print_version(value: bool) -> None:
    if value:
        from synalign import __version__

        typer.echo(f"synalign {__version__}")
        raise typer.Exit()


_CHATTY_LOGGERS = ("LiteLLM", "httpx", "httpcore", "openai", "sentence_transformers", "huggingface_hub", "urllib3")


def _quiet_libraries() -> None:
    """Keep the libraries' own chatter out of a command's output (their INFO logs, tqdm bars; the commands
    show their own progress): LiteLLM and tqdm read their switches from the environment when imported."""
    import logging

    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", help="Let DSPy, LiteLLM, httpx and tqdm print their own INFO logs and progress bars."
    ),
) -> None:
    """Distribution-matched LLM synthetic training data (SynAlign, Ren et al., WWW 2025)."""
    if not verbose:
        _quiet_libraries()


_RUN_EXAMPLES = (
    "Examples:\n\n"
    "synalign run --data synalign/data/sst2-demo --out runs/demo --item-name 'Movie review'\n\n"
    "synalign run --data data/ --out runs/x --llm openai:gpt-4o-mini --rounds 2 --selection filter+herding\n\n"
    "synalign run --out runs/demo --resume"
)


def _resume_hint(out: Path) -> str:
    """How to go on after a stopped run: ``--resume`` only when ``out`` holds a run to resume."""
    from synalign.artifacts.rundir import RunDir

    if RunDir(out).is_run():
        return f"continue with: synalign run --out {out} --resume"
    return "the run had not started, nothing was written; run the same command again"


def _resumed_config(out: Path, given: dict[str, Any], flag: str = "--resume") -> Any:
    """The saved config of the run in ``out`` with the resume-safe options in ``given`` applied; any other
    given option is refused (exit 2). ``flag``: the option that continues the run, for the messages."""
    from pydantic import ValidationError

    from synalign.artifacts.rundir import InvalidRunConfig, RunDir
    from synalign.config import RunConfig

    run_dir = RunDir(out)
    saved = run_dir.config_file
    try:
        config = run_dir.read_config()
    except InvalidRunConfig as exc:
        fail(f"{flag}: {saved} is not a valid run config ({config_error(exc.error)})")
    except InputError as exc:  # no config.json
        fail(f"{flag}: {exc}")
    given = {name: value for name, value in given.items() if name != "out"}
    refused = [option_flag(name) for name in given if name not in _options.resume_safe_fields()]
    if refused:
        fail(
            f"{flag} continues the run as saved in {saved}; it cannot change {', '.join(refused)} "
            f"(start a new run with --overwrite or another --out)"
        )
    try:
        config = RunConfig.model_validate({**config.model_dump(), "out": out, **given})
    except ValidationError as exc:
        fail(config_error(exc))
    if given:
        applied = ", ".join(option_flag(name) for name in given)
        typer.echo(f"note: {flag} applies {applied}; every other setting comes from {saved}", err=True)
    return config


def _new_config(given: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from synalign.config import RunConfig

    if "data" not in given:
        fail("missing option --data (the real data file or directory)")
    try:
        config = RunConfig(**given)
    except ValidationError as exc:
        fail(config_error(exc))
    for note in _options.unused_option_notes(config):
        typer.echo(f"note: {note}", err=True)
    return config


def run(
    ctx: typer.Context, resume: bool = False, overwrite: bool = False, extend: Optional[int] = None, **_fields: Any
) -> None:
    """Generate distribution-matched synthetic data: explore → summarise → generate → align, until the target."""
    given = _options.given_fields(ctx)
    if extend is not None and overwrite:
        fail("--extend continues the finished run in --out; it cannot be combined with --overwrite")
    if extend is not None:
        config = _resumed_config(given["out"], given, flag="--extend")
    else:
        config = _resumed_config(given["out"], given) if resume else _new_config(given)

    from rich.console import Console

    from synalign.app.interrupt import sigint_guard
    from synalign.app.progress import RoundProgress

    console = Console(stderr=True)
    console.soft_wrap = not console.is_terminal  # a log file gets whole lines, never cut at 80 columns
    try:
        from synalign.graphs import run as run_graph

        with sigint_guard(lambda: f"synalign: error: interrupted; {_resume_hint(config.out)}"):
            with RoundProgress(config.max_rounds) as progress:
                result = run_graph(
                    config, resume=resume, overwrite=overwrite, on_event=progress, extend=extend or 0
                )
    except InputError as exc:
        fail(str(exc))
    except SynalignError as exc:  # e.g. an LLM request that still failed after every retry
        fail(f"{exc}; {_resume_hint(config.out)}", code=1)
    except KeyboardInterrupt:
        fail(f"interrupted; {_resume_hint(config.out)}", code=130)
    _print_result(console, result)


def _print_result(console: Any, result: Any) -> None:
    s = result.summary
    verdict = s.verdict
    console.print(
        f"[bold]done[/bold]: {s.rounds} rounds, {s.generated} generated, {s.accepted} accepted; "
        f"{_target_verdict(s)}" + (f"; verdict {verdict.level.upper()}" if verdict else "") + "; "
        f"stop: {s.stop_reason}; MMD² {s.final_mmd2:.3e} (target {s.target_mmd2:.3e}; a random real "
        f"subset of that size scores {s.noise_floor_same_size:.3e}, two real halves {s.noise_floor:.3e}); "
        f"{s.wall_seconds:.0f} s"
    )
    if verdict:
        color = {"green": "green", "amber": "yellow", "red": "red"}.get(verdict.level, "white")
        console.print(f"[bold {color}]verdict {verdict.level.upper()}[/bold {color}]: {verdict.headline}",
                      soft_wrap=True, highlight=False)
        for line in verdict.evidence:
            console.print(f"  {line}", soft_wrap=True, highlight=False)
    backend = s.backend or {}
    if backend.get("note"):
        console.print(f"note: synthetic data {backend['note']}")
    if backend.get("is_llm"):
        u = s.usage or {}
        console.print(
            f"LLM {backend['name']}: {u.get('llm_calls', 0)} calls, {u.get('retries', 0)} retries, "
            f"{u.get('failures', 0)} failed attempts, cache hit rate {u.get('cache_hit_rate') or 0:.0%}, "
            f"tokens {u.get('tokens_in', 0)} in / {u.get('tokens_out', 0)} out"
            + (f", cost ${u['cost_usd']:.4f}" if u.get("cost_usd") is not None else "")
            + (f"; {s.cost.llm_calls_per_accepted:.2f} calls per accepted text"
               if s.cost is not None and s.cost.llm_calls_per_accepted is not None else "")
            + (f"; label check: {u['label_check_calls']} requests, {float(u.get('label_check_seconds', 0)):.0f} s"
               if u.get("label_check_calls") else "")
        )
    typer.echo(f"outputs in {result.run_dir}:")
    for name, path in result.outputs.items():
        typer.echo(f"  {name:<18} {path}")


def _target_verdict(summary: Any) -> str:
    """``target met (0.8×)`` / ``target missed (4.1×)``: the final MMD² against the target, as a ratio
    (``summary``: a :class:`~synalign.artifacts.summary.RunSummary` or its content)."""
    from synalign.artifacts.summary import as_summary

    summary = as_summary(summary)
    final, target = summary.final_mmd2, summary.target_mmd2
    if final is None or target is None or math.isnan(final):
        return "target missed (nothing accepted)"
    met = "met" if final <= target else "missed"
    if target <= 0:
        return f"target {met} (target MMD² 0)"
    ratio = final / target
    return f"target {met} ({ratio:.1f}×)" if abs(ratio - 1) >= 0.05 else f"target {met} ({ratio:.2f}×)"


run.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
    inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
    *_options.run_parameters(),
    inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
        False, "--resume", help="Continue the checkpointed run in --out.", rich_help_panel="Output")),
    inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
        False, "--overwrite", help="Replace an existing run directory.", rich_help_panel="Output")),
    inspect.Parameter("extend", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[int], default=typer.Option(
        None, "--extend", min=1, metavar="N", show_default=False, rich_help_panel="Output",
        help="Continue the finished run in --out for up to N more rounds (same thread, nothing regenerated).")),
])
app.command(epilog=_RUN_EXAMPLES, cls=HelpCommand)(run)
register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the typer app. A usage error (unknown option, a value of the wrong
    type) and an :class:`InputError` raised outside a command body are one ``synalign: error: ...`` line
    and exit 2, like every other bad input."""
    try:  # typer >= 0.20 vendors click; older ones use click itself
        from typer._click.exceptions import NoArgsIsHelpError, UsageError
    except ImportError:  # pragma: no cover
        # the same classes, from click itself: mypy sees typer's vendored copy as another type
        from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[assignment]

    try:
        code = app(args=argv, prog_name="synalign", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # bare `synalign` / `synalign local-lm`: the help, as click prints it
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else str(exc), err=True)
        sys.exit(exc.exit_code)
    except UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        typer.echo(f"synalign: error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except typer.Abort:  # Ctrl-C outside a run (a run handles it itself)
        typer.echo("synalign: error: interrupted", err=True)
        sys.exit(130)
    except InputError as exc:  # raised outside a command body (should not happen, kept as a safety net)
        typer.echo(f"synalign: error: {_options.cli_message(str(exc))}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
