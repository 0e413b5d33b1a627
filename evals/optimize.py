"""``synalign optimize``: tune the generator's prompt with a DSPy optimiser and save the result.

Training examples are built from the real data only: for each example a label (round-robin), a random
cluster of ``cluster_size`` real demonstrations of that label, and their attributes from the offline
statistical summariser (no LLM cost; the ``attributes`` field has the same shape in a run). The
optimiser compiles :class:`~synalign.agents.generator.SampleGenerator` (its ``forward``: the predictor, then
:func:`~synalign.dedup.filter_texts`; the ``forward`` that ``synalign run`` executes for every generation call)
against :class:`~synalign.evals.metrics.GenerationMetric` (label fidelity, attribute adherence, novelty, MMD² drop);
the compiled program is scored against the uncompiled one on held-out examples (different real
demonstrations from those used for training and for choosing among candidates), then saved with
:func:`~synalign.agents.specs.save_optimized` (DSPy state + spec hash) for ``synalign run --prompts FILE``.

Optimisers: ``bootstrap`` (``BootstrapFewShotWithRandomSearch``, default: cheap and needs no prompt model),
``mipro`` (``MIPROv2``, ``auto="light"``), ``gepa`` (``GEPA``, reflective prompt evolution).
"""

from __future__ import annotations

import logging
import math
import random
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import synalign.agents  # noqa: F401  (sets LITELLM_LOCAL_MODEL_COST_MAP before this module imports DSPy)
from synalign.config import RunConfig
from synalign.errors import InputError, SynalignError, invalid_field_message
from synalign.evals.specs import OptimizeSpec

if TYPE_CHECKING:
    from synalign.agents.settings import LLMSettings

_RUN = RunConfig.model_fields
"""The defaults of the options ``synalign optimize`` shares with ``synalign run`` (stated once, in RunConfig)."""

__all__ = ["OPTIMIZERS", "OptimizeResult", "make_examples", "optimize"]

_log = logging.getLogger("synalign.evals")

OPTIMIZERS = ("bootstrap", "mipro", "gepa")


@dataclass
class OptimizeResult:
    """Outcome of :func:`optimize`.

    Attributes:
        path: the saved state file.
        optimizer: optimiser name.
        baseline_score, optimized_score: mean metric (0–1) on held-out examples (neither used for
            bootstrapping nor for choosing among candidates), before and after.
        train, val: numbers of training and validation (candidate-selection) examples.
        demos: few-shot demonstrations in the compiled predictor.
        components: mean metric components of the optimised program on the held-out examples.
        baseline_stderr, optimized_stderr: standard error of each mean score over the held-out examples
            (sample std / √n): a change smaller than about twice it is noise.
        unchanged: the optimiser kept no demonstration and left the instructions as they were, so the saved
            program is the one it started from (any score difference is sampling noise of the LM).
    """

    path: Path
    optimizer: str
    baseline_score: float
    optimized_score: float
    train: int
    val: int
    demos: int
    components: dict[str, float] = field(default_factory=dict)
    baseline_stderr: float = 0.0
    optimized_stderr: float = 0.0
    unchanged: bool = False

def make_examples(
    by_label: dict[str, list[str]],
    count: int,
    *,
    task: str,
    cluster_size: int,
    n: int,
    seed: int,
    exclude: set[str] | None = None,
) -> list[Any]:
    """``count`` DSPy examples (inputs task, label, attributes, demonstrations, n), labels round-robin,
    demonstrations drawn without replacement per label from texts not in ``exclude``.

    Raises:
        InputError: a label with fewer than ``cluster_size`` usable texts.
    """
    import dspy

    from synalign.backends import SummaryRequest
    from synalign.statsummary import StatisticalSummarizer

    rng = random.Random(seed)
    exclude = exclude or set()
    pools = {label: [t for t in texts if t not in exclude] for label, texts in by_label.items()}
    for label, texts in pools.items():
        if len(texts) < cluster_size:
            raise InputError(f"label {label!r} has {len(texts)} usable real texts; --cluster-size needs {cluster_size}")
        rng.shuffle(texts)
    summarizer = StatisticalSummarizer(by_label)
    labels = sorted(pools)
    examples = []
    cursor = {label: 0 for label in labels}
    for i in range(count):
        label = labels[i % len(labels)]
        texts = pools[label]
        if cursor[label] + cluster_size > len(texts):
            cursor[label] = 0
            rng.shuffle(texts)
        demos = texts[cursor[label] : cursor[label] + cluster_size]
        cursor[label] += cluster_size
        attributes = summarizer.summarize([SummaryRequest(task=task, label=label, demonstrations=demos)])[0]
        example = dspy.Example(task=task, label=label, attributes=attributes.render(), demonstrations=demos, n=n)
        examples.append(example.with_inputs("task", "label", "attributes", "demonstrations", "n"))
    return examples


def _disjoint(by_label: dict[str, list[str]], count: int, used: set[str], **kwargs: Any) -> list[Any]:
    """Examples whose demonstrations avoid ``used`` when the data allow it (small data: may overlap)."""
    try:
        return make_examples(by_label, count, exclude=used, **kwargs)
    except InputError:
        return make_examples(by_label, count, **kwargs)


def _score(program: Any, examples: list[Any], metric: Any) -> tuple[float, dict[str, float], float]:
    """Mean metric over ``examples``, its components' means and its standard error (sample std / √n; 0 for one
    example); a failed example scores 0, but *every* example failing is an error.

    Raises:
        SynalignError: no example got a reply (endpoint down, wrong model, ...): a score of 0 from a run whose
            every LM call failed is no result, and nothing must be saved from it.
    """
    totals: dict[str, float] = {}
    scores = []
    failed: list[Exception] = []
    for example in examples:
        try:
            prediction = program(**example.inputs())
            parts = metric.components(example.label, prediction.texts, example.demonstrations, example.attributes)
        except Exception as exc:  # noqa: BLE001 - a failed example scores 0, as in dspy.Evaluate
            _log.warning("validation example failed: %s: %s", type(exc).__name__, exc)
            failed.append(exc)
            parts = {"fidelity": 0.0, "adherence": 0.0, "novelty": 0.0, "mmd_drop": 0.0, "score": 0.0}
        scores.append(parts["score"])
        for key, value in parts.items():
            totals[key] = totals.get(key, 0.0) + value
    if examples and len(failed) == len(examples):
        last = str(failed[-1]).strip().splitlines()[0][:200] if str(failed[-1]).strip() else ""
        raise SynalignError(
            f"every LM call failed ({len(failed)} of {len(examples)} held-out examples; last: "
            f"{type(failed[-1]).__name__}: {last}); nothing was saved"
        )
    count = max(1, len(examples))
    stderr = statistics.stdev(scores) / math.sqrt(len(scores)) if len(scores) > 1 else 0.0
    return sum(scores) / count, {k: v / count for k, v in totals.items()}, stderr


def _trial_callback(on_trial: Callable[[int, float | None], None]) -> Any:
    """A DSPy callback reporting each evaluation of a candidate program by the optimiser (a trial, through
    ``dspy.Evaluate``): ``on_trial(trial, score)``, the trial's number from 1 and its mean metric (0–1), None
    when the evaluation failed."""
    from dspy.utils.callback import BaseCallback

    class _Trials(BaseCallback):
        def __init__(self) -> None:
            self.count = 0
            self.lock = threading.Lock()

        def on_evaluate_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
            with self.lock:
                self.count += 1
                trial = self.count
            score = getattr(outputs, "score", None) if exception is None else None
            on_trial(trial, None if score is None else float(score) / 100)  # dspy.Evaluate scores in percent

    return _Trials()


def _compile(
    name: str, program: Any, metric: Any, train: list[Any], val: list[Any], lm: Any, seed: int, threads: int
) -> Any:
    import dspy

    if name == "bootstrap":
        optimizer = dspy.BootstrapFewShotWithRandomSearch(
            metric=metric,
            max_bootstrapped_demos=2,
            max_labeled_demos=0,
            num_candidate_programs=4,
            num_threads=threads,
            max_errors=len(train) + len(val),
        )
        return optimizer.compile(program, trainset=train, valset=val)
    if name == "mipro":
        optimizer = dspy.MIPROv2(
            metric=metric, auto="light", num_threads=threads, seed=seed, max_errors=len(train) + len(val)
        )
        return optimizer.compile(program, trainset=train, valset=val, max_bootstrapped_demos=2, max_labeled_demos=0)
    if name == "gepa":

        def feedback_metric(
            gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
        ) -> Any:
            parts = metric.components(
                gold.label, getattr(pred, "texts", []) or [], gold.demonstrations, gold.attributes
            )
            text = ", ".join(f"{k} {v:.2f}" for k, v in parts.items() if k != "score")
            return dspy.Prediction(score=parts["score"], feedback=f"Scores in [0, 1]: {text}. Raise the low ones.")

        optimizer = dspy.GEPA(metric=feedback_metric, auto="light", reflection_lm=lm, num_threads=threads, seed=seed)
        return optimizer.compile(program, trainset=train, valset=val)
    raise InputError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def optimize(
    data: Path | str,
    *,
    out: Path | str,
    llm: str | None = None,
    base_url: str | None = None,
    api_key_env: str = _RUN["api_key_env"].default,
    lm: Any = None,
    optimizer: str = OptimizeSpec.optimizer,
    train_size: int = OptimizeSpec.train_size,
    val_size: int = OptimizeSpec.val_size,
    cluster_size: int = OptimizeSpec.cluster_size,
    n: int = OptimizeSpec.n,
    task: str | None = None,
    temperature: float = _RUN["temperature"].default,
    max_tokens: int | None = None,
    threads: int = OptimizeSpec.threads,
    seed: int = OptimizeSpec.seed,
    text_field: str = _RUN["text_field"].default,
    label_field: str = _RUN["label_field"].default,
    featurize: Any = None,
    pass_mark: float = 0.5,
    on_trial: Callable[[int, float | None], None] | None = None,
) -> OptimizeResult:
    """Optimise the generator prompt on real data and write the state file ``out``.

    Args:
        data: real data (JSONL/CSV/Parquet file, or a directory with ``train.*``).
        out: where to write the optimised state (JSON with the spec hash).
        llm, base_url, api_key_env: the endpoint (``openai:MODEL``), as for ``synalign run``.
        lm: a ready ``dspy.LM`` (e.g. ``DummyLM``) instead of ``llm``.
        optimizer: ``bootstrap``, ``mipro`` or ``gepa``.
        train_size, val_size: numbers of training and validation examples (disjoint demonstrations).
        cluster_size: demonstrations per example; n: texts requested per example.
        featurize: text embedding for the metric: a callable, ``"minilm"`` (default; the bundled
            all-MiniLM-L6-v2) or ``"tfidf"`` (:func:`synalign.evals.metrics.tfidf_featurizer`, fast).
        pass_mark: metric score at which a bootstrapped trace becomes a few-shot demo.
        on_trial: called as ``on_trial(trial, score)`` after the optimiser scores each candidate program
            (``score``: its mean metric on the validation examples, 0–1; None when that evaluation failed).

    Returns:
        :class:`OptimizeResult`.

    Raises:
        InputError: bad data, options, ``--llm`` or a missing API key; nothing is written then.
    """
    import dspy

    from synalign.agents.backend import make_dspy_lm
    from synalign.agents.completion import ContinuationAdapter
    from synalign.agents.generator import SampleGenerator
    from synalign.agents.settings import LLMSettings

    if optimizer not in OPTIMIZERS:
        raise InputError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if train_size < 2 or val_size < 1 or cluster_size < 2 or n < 1:
        raise InputError("need --train ≥ 2, --val ≥ 1, --cluster-size ≥ 2 and -n ≥ 1")
    program = SampleGenerator()
    adapter: Any = dspy.ChatAdapter(use_json_adapter_fallback=False)
    server = None
    if lm is None:
        if not llm:
            raise InputError("synalign optimize needs --llm openai:MODEL or --llm local (or a dspy.LM from Python)")
        config = _run_config(data, out, llm=llm, base_url=base_url, api_key_env=api_key_env,
                             temperature=temperature, max_tokens=max_tokens)
        kind, model = config.llm.kind, config.llm.model  # --llm, parsed once (with the other options)
        if kind == "eda":
            raise InputError("synalign optimize needs a language model (--llm local or openai:MODEL), not eda")
        settings = LLMSettings.from_config(config)  # the SYNALIGN_LLM_* variables apply, as in a run
        if kind == "local":
            server, lm = _local_lm(settings, model)
            adapter = ContinuationAdapter(program.spec)
        else:
            key = settings.api_key()
            if not key and base_url is None:
                raise InputError(f"--llm {llm} needs an API key in ${api_key_env}")
            lm = make_dspy_lm(settings, key or "EMPTY")
        lm.num_retries = 3  # no LLMRunner here: let DSPy retry transient errors (it honours Retry-After)
    try:
        return _optimize(
            data, out=out, lm=lm, adapter=adapter, program=program, optimizer=optimizer, train_size=train_size,
            val_size=val_size, cluster_size=cluster_size, n=n, task=task, threads=threads, seed=seed,
            featurize=featurize, text_field=text_field, label_field=label_field, pass_mark=pass_mark,
            on_trial=on_trial,
        )
    finally:
        if server is not None:
            server.stop()


def _run_config(data: Path | str, out: Path | str, **options: Any) -> RunConfig:
    """The :class:`~synalign.config.RunConfig` that :meth:`~synalign.agents.settings.LLMSettings.from_config`
    builds the LLM settings from (so ``synalign optimize`` validates ``--llm``, ``--base-url``,
    ``--temperature`` and ``--max-tokens`` and reads the ``SYNALIGN_LLM_*`` variables as ``synalign run`` does).

    Raises:
        InputError: an invalid option (one line naming it).
    """
    from pydantic import ValidationError

    try:
        return RunConfig(data=Path(data), out=Path(out), **options)
    except ValidationError as exc:
        raise InputError(invalid_field_message(exc)) from None


def _local_lm(settings: LLMSettings, model: str) -> tuple[Any, Any]:
    """Start the local server (``--llm local[:PATH]``) with ``settings``' threads and slots, and a completion
    ``dspy.LM`` on it."""
    from dataclasses import replace

    from synalign.agents.backend import make_completion_lm
    from synalign.agents.llamacpp import LocalServer, resolve_model
    from synalign.agents.local import ensure_server_binary

    path = resolve_model(model or None)
    server = LocalServer.start(path, binary=ensure_server_binary(), threads=settings.local_threads,
                               slots=settings.local_slots, ctx_size=2048 * max(1, settings.local_slots))
    return server, make_completion_lm(replace(settings, base_url=server.base_url), "EMPTY")


def _optimize(
    data: Path | str,
    *,
    out: Path | str,
    lm: Any,
    adapter: Any,
    program: Any,
    optimizer: str,
    train_size: int,
    val_size: int,
    cluster_size: int,
    n: int,
    task: str | None,
    threads: int,
    seed: int,
    featurize: Any,
    text_field: str,
    label_field: str,
    pass_mark: float,
    on_trial: Callable[[int, float | None], None] | None = None,
) -> OptimizeResult:
    import dspy

    from synalign.agents.specs import save_optimized
    from synalign.datafiles import load_dataset
    from synalign.evals.metrics import GenerationMetric
    out = Path(out)
    if out.exists() and out.is_dir():
        raise InputError(f"--out {out} is a directory; give a file path like prompts.json")
    dataset = load_dataset(data, text_field=text_field, label_field=label_field)
    by_label = {label: [r.text for r in rows] for label, rows in dataset.by_label().items()}
    if len(by_label) < 2:
        raise InputError(f"{data}: optimisation needs at least two labels, found {len(by_label)}")
    task = task or "Text classification into the labels: " + ", ".join(sorted(by_label)) + "."
    train = make_examples(by_label, train_size, task=task, cluster_size=cluster_size, n=n, seed=seed)
    used = {d for example in train for d in example.demonstrations}
    val = _disjoint(by_label, val_size, used, task=task, cluster_size=cluster_size, n=n, seed=seed + 1)
    used |= {d for example in val for d in example.demonstrations}
    holdout = _disjoint(by_label, val_size, used, task=task, cluster_size=cluster_size, n=n, seed=seed + 2)
    texts = [r.text for r in dataset.train]
    labels = [r.label for r in dataset.train]
    if featurize == "tfidf":
        from synalign.evals.metrics import tfidf_featurizer

        featurize = tfidf_featurizer(texts, seed=seed)
    elif featurize in (None, "minilm"):
        featurize = None
    elif not callable(featurize):
        raise InputError(f"--metric-embeddings must be minilm or tfidf, got {featurize!r}")
    metric = GenerationMetric(texts, labels, featurize=featurize, threshold=pass_mark)
    with dspy.context(lm=lm, adapter=adapter):
        baseline, _, baseline_se = _score(program, holdout, metric)
        trials = [_trial_callback(on_trial)] if on_trial else []
        with dspy.context(callbacks=[*(dspy.settings.get("callbacks") or []), *trials]):
            compiled = _compile(optimizer, program, metric, train, val, lm, seed, threads)
        optimized, components, optimized_se = _score(compiled, holdout, metric)
    demos = len(compiled.generate.demos)
    unchanged = demos == 0 and compiled.generate.signature.instructions == program.generate.signature.instructions
    spec = program.spec
    save_optimized(
        compiled,
        out,
        spec,
        extra={
            "optimizer": optimizer,
            "model": getattr(lm, "model", type(lm).__name__),
            "baseline_score": baseline,
            "optimized_score": optimized,
            "baseline_stderr": baseline_se,
            "optimized_stderr": optimized_se,
            "unchanged": unchanged,
            "components": components,
            "train": len(train),
            "val": len(val),
            "holdout": len(holdout),
            "metric_weights": [float(w) for w in metric.weights],
        },
    )
    _log.info("optimised generator (%s): validation score %.3f → %.3f; saved %s", optimizer, baseline, optimized, out)
    return OptimizeResult(
        path=out,
        optimizer=optimizer,
        baseline_score=baseline,
        optimized_score=optimized,
        train=len(train),
        val=len(val),
        demos=demos,
        components=components,
        baseline_stderr=baseline_se,
        optimized_stderr=optimized_se,
        unchanged=unchanged,
    )
