"""The specs of ``synalign eval`` and ``synalign optimize``: frozen dataclasses, each default stated once.

A field's ``metadata["help"]`` is its ``--help`` text and ``metadata["cli_flag"]`` names a flag other than
``--field-name``; the commands (:mod:`synalign.app.commands`) build their options from these fields
(:func:`synalign.app.options.spec_option`), so a default lives here and nowhere else. The LLM and data options
that ``synalign optimize`` shares with ``synalign run`` come from :class:`~synalign.config.RunConfig` instead.
Nothing heavy is imported here: ``synalign --help`` reads these classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EvalSpec", "FinetuneConfig", "OptimizeSpec"]


def _cli(help_text: str, flag: str | None = None) -> dict[str, str]:
    """A field's ``metadata``: its ``--help`` text and, when it is not ``--field-name``, its flag."""
    return {"help": help_text, **({"cli_flag": flag} if flag else {})}


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning hyper-parameters (fixed in advance, never tuned on test data).

    Attributes:
        epochs: passes over the training set. batch_size: texts per step. lr: AdamW learning rate of the
        encoder; the head uses 10× this. max_length: tokens per text (truncation). weight_decay: AdamW.
        threads: torch CPU threads. device: ``"cpu"`` or ``"cuda"``.
    """

    epochs: int = field(default=3, metadata=_cli("Fine-tuning epochs (--classifier finetune)."))
    batch_size: int = 32
    lr: float = 5e-5
    max_length: int = 64
    weight_decay: float = 0.01
    threads: int = 2
    device: str = "cpu"


@dataclass(frozen=True)
class EvalSpec:
    """Configuration of one downstream evaluation (:func:`synalign.evals.downstream.run_eval`).

    Attributes:
        data: real dataset directory with ``train.*`` and ``test.*``.
        pools: synthetic pool files (see :func:`synalign.evals.taskdata.resolve_pool_paths`).
        out: output directory (``None`` = do not write files).
        k: real labelled examples per class. m: synthetic rows selected per strategy.
        seeds: number of seeds (0 … seeds−1) or an explicit list.
        n_unlabelled: unlabelled real pool size. cap_per_source: rows per pool file (None = all).
        strategies: selection strategies (names as :func:`synalign.selection.parse_strategy` takes them);
            empty = the evaluation's default set.
        classifier: ``"lr"`` or ``"finetune"``. whole_pool / real_only: include those conditions.
        tau: fixed label-consistency threshold (None = cross-validated per seed).
        cache_dir: embedding cache directory (None = ``$SYNALIGN_CACHE_DIR`` or the default).
        device: torch device for kernels and embeddings. finetune: :class:`FinetuneConfig` overrides.
        sources_prefix: keep only pool sources whose name starts with it.
        max_test: evaluate on a stratified random subset of this many test rows (None = the whole split).
        unlabelled_split: where the unlabelled real pool comes from: ``"train"`` (other train rows, default)
            or ``"dev"`` (a uniform draw from the data directory's ``dev.*`` split, e.g. SST-2's full-sentence
            dev split; never the test split). Its labels are never read.
    """

    data: Path = field(metadata=_cli("Real dataset directory with train and test splits."))
    pools: list[Path] = field(metadata=_cli(
        "Synthetic pool(s): files, directories, synalign run directories (their pool.parquet) or glob patterns, "
        "comma-separated.", "--pool"))
    out: Path | None = field(default=None, metadata=_cli("Output directory (results.json, results.md, results.png)."))
    k: int = field(default=32, metadata=_cli("Real labelled examples per class, drawn from train."))
    m: int = field(default=1000, metadata=_cli("Synthetic examples selected per strategy."))
    seeds: int | list[int] = field(default=5, metadata=_cli("Number of seeds (few-shot draws)."))
    n_unlabelled: int = field(default=1000, metadata=_cli("Unlabelled real texts strategies may use."))
    cap_per_source: int | None = field(default=2500, metadata=_cli("Rows per pool file, label-stratified (0 = all)."))
    strategies: Sequence[str] = field(default=(), metadata=_cli(
        "Selection strategies, comma-separated: filter, filter+NAME or a NAME such as herding, top_weight, "
        "proportional or random (default: all compared).", "--strategy"))
    classifier: str = field(default="lr", metadata=_cli("lr (logistic regression on frozen MiniLM) or finetune."))
    whole_pool: bool = field(default=True, metadata=_cli("Skip the real + whole pool condition.", "--no-whole-pool"))
    real_only: bool = True
    tau: float | None = None
    cache_dir: Path | None = None
    device: str = field(default="cpu", metadata=_cli("cpu or cuda."))
    finetune: dict[str, Any] = field(default_factory=dict)
    sources_prefix: str | None = None
    max_test: int | None = field(default=None, metadata=_cli("Score on a stratified subset of the test split."))
    unlabelled_split: str = field(default="train", metadata=_cli("Unlabelled texts from train or dev."))

    def seed_list(self) -> list[int]:
        """The seeds: ``0 … seeds−1``, or the explicit list."""
        return list(range(self.seeds)) if isinstance(self.seeds, int) else [int(s) for s in self.seeds]


@dataclass(frozen=True)
class OptimizeSpec:
    """The settings of ``synalign optimize`` (:func:`synalign.evals.optimize.optimize`) that are its own.

    Attributes:
        out: where to write the optimised generator state (JSON with the spec hash).
        optimizer: ``bootstrap``, ``mipro`` or ``gepa``.
        train_size, val_size: numbers of training and validation examples (disjoint demonstrations).
        cluster_size: demonstrations per example; n: texts requested per example.
        threads: parallel evaluation threads of the optimiser. seed: random seed.
        metric_embeddings: text embedding of the metric, ``"minilm"`` or ``"tfidf"``.
    """

    out: Path = field(default=Path("synalign-prompts.json"),
                      metadata=_cli("Where to write the optimised generator state."))
    optimizer: str = field(default="bootstrap", metadata=_cli("bootstrap, mipro or gepa."))
    train_size: int = field(default=16, metadata=_cli("Training examples (demonstration clusters).", "--train"))
    val_size: int = field(default=8, metadata=_cli(
        "Validation examples (candidate selection; as many again are held out).", "--val"))
    cluster_size: int = field(default=6, metadata=_cli("Demonstrations per example."))
    n: int = field(default=4, metadata=_cli("Texts requested per example.", "-n"))
    threads: int = field(default=1, metadata=_cli("Parallel evaluation threads of the optimiser."))
    seed: int = field(default=0, metadata=_cli("Random seed."))
    metric_embeddings: str = field(default="minilm", metadata=_cli(
        "Embedding of the metric: minilm (bundled) or tfidf (fast)."))
