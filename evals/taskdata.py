"""Evaluation data: real train/test splits, LM-generated synthetic pools, and few-shot splits (DESIGN §3.5).

* Real data: a directory with ``train.*`` and ``test.*`` (read with :func:`synalign.datafiles.load_dataset`).
* Synthetic pools: one or more JSONL/CSV/Parquet files of ``{"text", "label"}`` rows (e.g. the
  LM-generated sets in ``../shared/data/synthetic/*/generated.jsonl``). Pool labels are mapped onto the
  real label names by a canonical key (case-folded, runs of non-alphanumerics → ``_``), so ``Sci/Tech``
  and ``sci_tech`` are the same label. Rows whose text occurs verbatim in the real test split are dropped
  (decontamination), and each source file can be capped to a label-stratified random sample so that one
  generator does not dominate the union.
* Few-shot split (per seed): ``k`` labelled real examples per class drawn from ``train`` and an
  unlabelled real pool of ``n_unlabelled`` *other* train texts (their labels are never read by a
  selection strategy). The test split is never sampled from.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synalign.artifacts.rundir import POOL_FILE, RunDir
from synalign.errors import InputError

__all__ = ["Pool", "FewShotSplit", "canonical_label", "load_pool", "few_shot_split", "resolve_pool_paths"]


def canonical_label(label: str) -> str:
    """Canonical key of a label name: case-folded, runs of non-alphanumerics replaced by ``_``, stripped."""
    return re.sub(r"[^0-9a-z]+", "_", label.casefold()).strip("_")


@dataclass(frozen=True)
class Pool:
    """A synthetic pool after label mapping, decontamination and per-source capping.

    Attributes:
        texts: n texts.
        labels: n labels, spelled as the real data's label names.
        sources: n source names (the pool file's parent directory name, else its stem).
        stats: per source: ``read``, ``unknown_label``, ``in_test`` (dropped, verbatim in the real test
            split), ``duplicate`` (dropped, same text and label already in the union), ``kept``.
    """

    texts: list[str]
    labels: list[str]
    sources: list[str]
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def label_counts(self) -> dict[str, int]:
        """Rows per label (sorted by label)."""
        return dict(sorted(Counter(self.labels).items()))


def resolve_pool_paths(spec: str | Sequence[str | Path]) -> list[Path]:
    """Pool files from a comma-separated string or a sequence; a synalign run directory means its
    ``pool.parquet`` (every sample the run generated, accepted or not), another directory its
    ``*/generated.jsonl`` files or its own ``generated.jsonl``; an item with ``*``/``?`` is a glob pattern.

    Raises:
        InputError: a path that does not exist, a pattern matching nothing, or a directory with no pool file.
    """
    import glob

    items = [s for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    out: list[Path] = []
    for item in items:
        text = str(item).strip()
        if any(ch in text for ch in "*?["):
            matches = sorted(glob.glob(text))
            if not matches:
                raise InputError(f"pool pattern {text!r} matches no file")
            out.extend(Path(m) for m in matches)
            continue
        path = Path(text)
        run_dir = RunDir(path)
        if path.is_dir() and run_dir.is_run() and run_dir.pool_file.is_file():
            out.append(run_dir.pool_file)
        elif path.is_dir():
            found = (
                [path / "generated.jsonl"]
                if (path / "generated.jsonl").is_file()
                else sorted(path.glob("*/generated.jsonl"))
            )
            if not found:
                raise InputError(
                    f"{path}: no generated.jsonl pool file in this directory or its subdirectories"
                )
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise InputError(f"no such pool file or directory: {path}")
    if not out:
        raise InputError("no synthetic pool files given")
    return out


def _source_name(path: Path) -> str:
    """A pool file's source name: its directory's for ``DIR/generated.*`` and a run directory's ``pool.parquet``."""
    in_run = path.name == POOL_FILE and RunDir(path.parent).is_run()
    return path.parent.name if path.name.startswith("generated.") or in_run else path.stem


def load_pool(
    paths: Sequence[str | Path],
    real_labels: Sequence[str],
    *,
    exclude_texts: Sequence[str] = (),
    cap_per_source: int | None = None,
    seed: int = 0,
    sources_filter: str | None = None,
) -> Pool:
    """Read, label-map, decontaminate and cap synthetic pool files.

    Args:
        paths: pool files (JSONL, CSV or Parquet with ``text`` and ``label``).
        real_labels: the real data's label names; pool labels are matched to them by :func:`canonical_label`.
        exclude_texts: texts to drop from the pool (the real test split: decontamination).
        cap_per_source: at most this many rows per source file, a label-stratified random sample
            (largest-remainder quotas, ``numpy.random.default_rng(seed)``, file order kept); ``None`` = all.
        seed: seed of the cap's sample.
        sources_filter: keep only source files whose name starts with this prefix (e.g. ``"sst2-"``).

    Returns:
        :class:`Pool` (sources in the order given, rows in file order within a source).

    Raises:
        InputError: unreadable file (see :func:`synalign.datafiles.load_examples`), a pool whose labels match none of
            the real labels, or an empty pool after filtering.
    """
    from synalign.datafiles import load_examples
    from synalign.sampling import stratified_sample

    by_key = {canonical_label(lab): lab for lab in real_labels}
    excluded = set(exclude_texts)
    seen: set[tuple[str, str]] = set()
    texts: list[str] = []
    labels: list[str] = []
    sources: list[str] = []
    stats: dict[str, dict[str, int]] = {}
    for raw_path in paths:
        path = Path(raw_path)
        name = _source_name(path)
        if sources_filter and not name.startswith(sources_filter):
            continue
        rows = load_examples(path)
        st = {"read": len(rows), "unknown_label": 0, "in_test": 0, "duplicate": 0, "kept": 0}
        keep = []
        for row in rows:
            label = by_key.get(canonical_label(row.label))
            if label is None:
                st["unknown_label"] += 1
                continue
            if row.text in excluded:
                st["in_test"] += 1
                continue
            if (row.text, label) in seen:
                st["duplicate"] += 1
                continue
            seen.add((row.text, label))
            keep.append(row.model_copy(update={"label": label}))
        if st["unknown_label"] == st["read"]:
            found = sorted({r.label for r in rows})[:6]
            raise InputError(
                f"{path}: no pool label matches the real labels {sorted(by_key.values())} (pool has {found})"
            )
        if cap_per_source is not None and len(keep) > cap_per_source:
            keep = stratified_sample(keep, cap_per_source, seed)
        st["kept"] = len(keep)
        stats[name] = st
        texts.extend(r.text for r in keep)
        labels.extend(r.label for r in keep)
        sources.extend([name] * len(keep))
    if not texts:
        raise InputError("the synthetic pool is empty after label mapping and filtering")
    return Pool(texts=texts, labels=labels, sources=sources, stats=stats)


@dataclass(frozen=True)
class FewShotSplit:
    """Indices into the real train split for one seed.

    Attributes:
        labelled: k per class (sorted labels, then draw order), the labelled few-shot set.
        unlabelled: ``n_unlabelled`` other train rows (uniform draw, disjoint from ``labelled``); a
            strategy may use their texts/embeddings but never their labels.
        seed: the seed.
    """

    labelled: np.ndarray
    unlabelled: np.ndarray
    seed: int


def few_shot_split(train_labels: Sequence[str], k: int, n_unlabelled: int, seed: int) -> FewShotSplit:
    """Draw k labelled examples per class and a disjoint unlabelled pool from the train split.

    Args:
        train_labels: labels of the train split, (N,).
        k: labelled examples per class (≥ 1).
        n_unlabelled: size of the unlabelled pool (0 allowed; capped at what is left).
        seed: ``numpy.random.default_rng(seed)``.

    Raises:
        InputError: ``k`` < 1, or a class with fewer than ``k`` train examples.
    """
    if k < 1:
        raise InputError(f"k (real examples per class) must be >= 1, got {k}")
    if n_unlabelled < 0:
        raise InputError(f"unlabelled pool size must be >= 0, got {n_unlabelled}")
    labels = np.asarray(list(train_labels), dtype=object)
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for label in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == label)
        if len(rows) < k:
            raise InputError(f"label {label!r} has {len(rows)} train examples, fewer than k={k}")
        chosen.append(rng.choice(rows, size=k, replace=False))
    labelled = np.concatenate(chosen)
    rest = np.setdiff1d(np.arange(len(labels)), labelled)
    unl = (
        rng.choice(rest, size=min(n_unlabelled, len(rest)), replace=False)
        if n_unlabelled
        else np.zeros(0, int)
    )
    return FewShotSplit(labelled=labelled.astype(int), unlabelled=np.sort(unl).astype(int), seed=seed)
