"""Run-time context of the loop: what nodes need but the checkpoint must not hold.

The context is rebuilt from ``config.json`` when a run is resumed; it holds the real examples and their
embeddings (re-read from the embedding cache, never re-encoded), the embedder and the LLM/offline backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synalign.backends import Backend
from synalign.config import RunConfig
from synalign.embeddings import Embedder
from synalign.graphs.state import SampleRecord
from synalign.records import RealExample

__all__ = ["SynAlignContext"]


@dataclass
class SynAlignContext:
    """Everything a node may use besides the state.

    Attributes:
        config: the resolved run configuration.
        real: the real examples the run matches (a stratified sample of at most ``config.max_real``).
        real_embeddings: (len(real), d) float32, unit-norm rows aligned with ``real``.
        heldout: real test examples (never used to fit anything; reported only), may be empty.
        heldout_embeddings: (len(heldout), d) float32.
        validation: the validation slice (:mod:`synalign.holdout`): real examples that are never a
            demonstration, never summarised and never fitted on; the held-out utility is scored on them. Empty
            when the run has none (``--holdout 0``, or labels too small to spare any).
        validation_embeddings: (len(validation), d) float32, or None.
        validation_source: where the slice came from (``"validation split"``, ``"25% of train"``, ``"none"``).
        near_copy: per synthetic sample id seen so far, (character similarity, cosine) to the nearest real
            text (:mod:`synalign.novelty`), computed once per process.
        embedder: shared embedder with its content-hash cache.
        backend: summariser + generator (offline or LLM).
        task: task description given to the backend.
        run_dir: the run's output directory (None for a graph embedded in an app: nothing is written).
        sample_vectors: embedding of each synthetic sample embedded so far in this process, by sample id
            (d float32, unit norm): a round embeds only its new samples, never the whole pool again.
        sample_batches: each round's samples read from the store so far in this process, by store key (a key
            names its content): a round reads only its new batch, never the whole pool again.
        prune_alignments: ``align`` deletes the store's alignment before the previous one (the CLI run, whose
            saver keeps 2 checkpoints); False keeps every one (a server that keeps every checkpoint).
        label_names: label value → the name the prompts and the card use (``--label-names``, else the data's
            ``ClassLabel`` names; :func:`synalign.labeltypes.label_names_for_run`); a label not in it is its value.
        neighbours: each label's most confusable other label(s) on the real set (:func:`synalign.contrast.
            confusable_labels`), computed on first use by a run with ``contrast`` > 0; None before.
    """

    config: RunConfig
    real: list[RealExample]
    real_embeddings: np.ndarray
    embedder: Embedder
    backend: Backend
    task: str
    run_dir: Path | None
    heldout: list[RealExample] = field(default_factory=list)
    heldout_embeddings: np.ndarray | None = None
    validation: list[RealExample] = field(default_factory=list)
    validation_embeddings: np.ndarray | None = None
    validation_source: str = "none"
    sample_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    near_copy: dict[str, tuple[float, float]] = field(default_factory=dict)
    sample_batches: dict[str, list[SampleRecord]] = field(default_factory=dict)
    prune_alignments: bool = True
    label_names: dict[str, str] = field(default_factory=dict)
    neighbours: dict[str, list[str]] | None = None

    def require_run_dir(self) -> Path:
        """``run_dir``, for code that writes the run's files.

        Raises:
            ValueError: the context has no run directory (a graph embedded in an app writes nothing).
        """
        if self.run_dir is None:
            raise ValueError("this context has no run directory: a graph embedded in an app writes nothing")
        return self.run_dir

    @property
    def labels(self) -> list[str]:
        """Sorted labels of the real set."""
        return sorted({r.label for r in self.real})

    def label_name(self, label: str) -> str:
        """What the prompts call ``label``: its name (:attr:`label_names`), else the value itself."""
        return self.label_names.get(label, label)

    @property
    def label_check_on(self) -> bool:
        """Whether the run scores its texts with the LM's own label check: the config asks for it
        (:attr:`synalign.config.RunConfig.label_check_on`) and the backend has a checker (``auto`` with a backend
        given in Python without one runs without it; ``lm`` without one is refused when the context is made)."""
        return self.config.label_check_on and self.backend.label_checker is not None

    @property
    def device(self) -> str:
        return self.config.device
