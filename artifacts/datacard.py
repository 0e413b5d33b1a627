"""The run's dataset card: ``README.md`` in the Hugging Face format, so a run directory loads with ``datasets``.

A YAML header (between ``---`` lines) that ``datasets`` and the Hub read, then a factual body built only from
the run's own records (``config.json``, ``summary.json``, ``metrics.json``) and the real examples it used::

    configs:                       # load_dataset(RUN_DIR) -> DatasetDict({"train": accepted samples})
    - config_name: default         # load_dataset(RUN_DIR, "pool") -> every generated sample
      data_files: [{split: train, path: synthetic.parquet}]
    - config_name: pool
      data_files: [{split: train, path: pool.parquet}]
    task_categories: [text-classification]
    size_categories: [n<1K]
    tags: [synthetic, synalign]
    license: other
    synalign: {text_field, label_field, label_dtype, backend, selection, features, label_names}

``synalign.label_dtype`` is the type of the label column in the user's data (``int``, ``float``, ``bool`` or
``str``): the run's records hold labels as strings, and ``synalign export`` casts them back with it;
``synalign.features`` holds the source's ``datasets`` features of those two columns (``ClassLabel`` names, the
Arrow string type), and ``synalign.label_names`` the names the prompts used (``--label-names`` or ``ClassLabel``).
The body: the verdict ("Should you train on this?": level, headline, evidence, where the validation slice came from;
omitted for runs from before it), source data (path, splits, counts per label, the ``validation``/``dev`` split
that is the run's validation slice), generated and accepted counts, backend and model, selection strategy, the
divergence table per round, and a license note on the generator's terms. :func:`write_datacard` is called by the
runner with the other outputs (atomically); :func:`render_card` / :func:`read_card` are what the export uses to
rewrite the header for its own layout.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from synalign.artifacts.rundir import CARD_FILE, POOL_FILE, SYNTHETIC_PARQUET
from synalign.artifacts.summary import RunSummary, as_summary
from synalign.datafiles import SUPPORTED_SUFFIXES, validation_splits
from synalign.errors import InputError
from synalign.fileio import atomic_write_text
from synalign.labeltypes import LABEL_DTYPES, detect_label_dtype, source_features
from synalign.records import RealExample
from synalign.runspecs import StrategySpec

__all__ = [
    "CARD_FILE",
    "LABEL_DTYPES",
    "RUN_DATA_FILES",
    "build_card",
    "card_parts",
    "read_card",
    "render_card",
    "size_category",
    "write_datacard",
]

RUN_DATA_FILES: dict[str, str] = {"default": SYNTHETIC_PARQUET, "pool": POOL_FILE}
"""Config name → data file of a run directory (split ``train`` each)."""


# --------------------------------------------------------------------------------------------------------
# Reading and writing the card
# --------------------------------------------------------------------------------------------------------


def render_card(meta: Mapping[str, Any], body: str) -> str:
    """The card text: ``meta`` as a YAML header between ``---`` lines, then ``body``.

    Args:
        meta: the YAML metadata (plain data: dicts, lists, strings, numbers).
        body: the Markdown body.

    Returns:
        The whole ``README.md`` text (ends with a newline).
    """
    header = yaml.safe_dump(dict(meta), sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{header}---\n\n{body.strip()}\n"


def read_card(path: Path | str) -> tuple[dict[str, Any], str]:
    """Split a card into its YAML metadata and its Markdown body.

    Args:
        path: a ``README.md`` written by :func:`render_card` (or any card with a ``---`` YAML header).

    Returns:
        ``(meta, body)``; ``meta`` is empty for a file without a YAML header.

    Raises:
        InputError: the file cannot be read, or its header is not valid YAML or not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path} ({exc})") from None
    match = re.match(r"\A---\s*\n(.*?\n)?---\s*(?:\n|\Z)", text, flags=re.S)
    if match is None:
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1) or "") or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: the YAML header is not valid ({' '.join(str(exc).split())})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: the YAML header is not a mapping")
    return meta, text[match.end() :]


def write_datacard(
    path: Path | str,
    *,
    config: Any,
    real: Sequence[RealExample],
    summary: RunSummary | Mapping[str, Any],
    metrics: Sequence[Mapping[str, Any]],
) -> None:
    """Write the run's dataset card (``README.md``) atomically; the runner calls it before ``summary.json``.

    Args:
        path: where to write it (``RUN_DIR/README.md``).
        config: the run's :class:`~synalign.config.RunConfig`.
        real: the real examples the run used (their labels are counted).
        summary: the content of ``summary.json`` (written right after the card).
        metrics: the content of ``metrics.json``.

    Raises:
        OSError: the file cannot be written (no partial file is left).
    """
    config_dict = json.loads(config.model_dump_json())
    text = build_card(
        config=config_dict,
        summary=summary,
        metrics=metrics,
        real_counts=dict(sorted(Counter(r.label for r in real).items())),
        label_dtype=detect_label_dtype(config.data, config.label_field),
        features=source_features(config.data, config.text_field, config.label_field),
    )
    atomic_write_text(Path(path), text)


# --------------------------------------------------------------------------------------------------------
# The card
# --------------------------------------------------------------------------------------------------------


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n`` rows (``"n<1K"``, ``"1K<n<10K"``, ...)."""
    bounds = ["1K", "10K", "100K", "1M", "10M", "100M", "1B", "10B", "100B", "1T"]
    if n < 1000:
        return "n<1K"
    for i, upper in enumerate(bounds[1:], start=1):
        if n < 10 ** (3 + i):
            return f"{bounds[i - 1]}<n<{upper}"
    return "n>1T"


def build_card(
    *,
    config: Mapping[str, Any],
    summary: RunSummary | Mapping[str, Any],
    metrics: Sequence[Mapping[str, Any]],
    real_counts: Mapping[str, int] | None = None,
    label_dtype: str | None = None,
    data_files: Mapping[str, str] | None = None,
    features: Mapping[str, Any] | None = None,
) -> str:
    """The dataset card of a run, from its records: :func:`render_card` of :func:`card_parts` (same arguments).

    Returns:
        The ``README.md`` text.
    """
    return render_card(
        *card_parts(
            config=config, summary=summary, metrics=metrics, real_counts=real_counts, label_dtype=label_dtype,
            data_files=data_files, features=features,
        )
    )


def card_parts(
    *,
    config: Mapping[str, Any],
    summary: RunSummary | Mapping[str, Any],
    metrics: Sequence[Mapping[str, Any]],
    real_counts: Mapping[str, int] | None = None,
    label_dtype: str | None = None,
    data_files: Mapping[str, str] | None = None,
    features: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """The YAML metadata and the Markdown body of a run's dataset card, from its records.

    Args:
        config: the content of ``config.json``.
        summary: the content of ``summary.json`` (a mapping is validated as a :class:`RunSummary`).
        metrics: the content of ``metrics.json`` (one row per round).
        real_counts: label → real examples the run used; ``None`` when unknown (the section says so).
        label_dtype: the label type of the user's data (:func:`detect_label_dtype`), ``None`` when unknown.
        data_files: config name → data file path (split ``train``); default :data:`RUN_DATA_FILES` (the run
            directory's layout).
        features: the ``datasets`` features of the source's text and label columns
            (:func:`synalign.labeltypes.source_features`), recorded as ``synalign.features`` for the export.

    Returns:
        ``(meta, body)``.
    """
    data_files = dict(data_files or RUN_DATA_FILES)
    summary = as_summary(summary)
    backend = dict(summary.backend or {})
    accepted = int(summary.accepted or 0)
    meta: dict[str, Any] = {
        "configs": [
            {"config_name": name, "data_files": [{"split": "train", "path": path}]}
            for name, path in data_files.items()
        ],
        "task_categories": ["text-classification"],
        "size_categories": [size_category(accepted)],
        "tags": ["synthetic", "synalign"],
        "license": "other",
    }
    terms = backend.get("terms")
    if terms and "ai.google.dev/gemma/terms" in str(terms):
        meta["license_name"] = "gemma-terms-of-use"
        meta["license_link"] = "https://ai.google.dev/gemma/terms"
    meta["synalign"] = {
        "text_field": config.get("text_field", "text"),
        "label_field": config.get("label_field", "label"),
        "label_dtype": label_dtype,
        "backend": backend.get("name"),
        "selection": summary.selection or config.get("selection"),
        **({"features": dict(features)} if features else {}),
        **({"label_names": dict(summary.label_names)} if summary.label_names else {}),
    }
    sections = [
        _intro(summary, backend),
        _verdict_section(summary),
        _loading_section(data_files, summary),
        _source_section(config, summary, real_counts, label_dtype),
        _generated_section(summary),
        _backend_section(backend, summary),
        _selection_section(config, summary, metrics),
        _divergence_section(summary, metrics),
        _license_section(backend),
    ]
    body = "\n\n".join(section for section in sections if section)
    return meta, body


def _fmt(value: Any, spec: str = ".3e") -> str:
    return "-" if value is None else format(float(value), spec)


def _intro(summary: RunSummary, backend: Mapping[str, Any]) -> str:
    if backend.get("kind") == "external":
        kind = f"generated outside synalign (`{backend.get('source')}`) and weighted by `synalign align`"
    elif backend.get("is_llm"):
        kind = "written by a language model"
    else:
        kind = "made without a language model (EDA)"
    return (
        "# Synthetic text-classification data (synalign)\n\n"
        f"Synthetic labelled texts {kind}, selected by synalign (SynAlign, Ren et al., WWW 2025, "
        "arXiv 2502.08661) to match the distribution of a real dataset. This card is generated from the run's "
        "own records (`config.json`, `summary.json`, `metrics.json`); every number below comes from them. "
        f"Stop reason: `{summary.stop_reason}` after {summary.rounds} round(s)."
    )


_VALIDATION_SOURCES = {
    "validation split": "the validation/dev split of the source data",
    "none": "",
}


def _verdict_section(summary: RunSummary) -> str:
    """``## Should you train on this?``: the verdict's level and headline, its evidence, and where the
    validation slice came from; empty for a summary without a verdict (a run from before it existed)."""
    judged = summary.verdict
    if judged is None:
        return ""
    lines = [
        "## Should you train on this?",
        "",
        f"**{judged.level.upper()}**: {judged.headline}",
    ]
    if judged.evidence:
        lines += ["", *(f"- {e}" for e in judged.evidence)]
    if judged.advice:
        lines += ["", f"What to try next: {'; '.join(judged.advice)}."]
    validation = summary.validation
    if validation is not None and validation.source:
        source = validation.source
        if source == "none":
            lines += ["", "There was no validation slice: the data's effect on a model was not measured."]
        else:
            where = _VALIDATION_SOURCES.get(source, source)
            lines += [
                "",
                f"Validation slice: {validation.size} real examples ({where}), never a demonstration nor "
                "fitted on; utility and the held-out fidelity above are measured on them.",
            ]
    return "\n".join(lines)


def _loading_section(data_files: Mapping[str, str], summary: RunSummary) -> str:
    lines = [
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        'accepted = load_dataset("PATH_OR_REPO")           # DatasetDict({"train": accepted samples})',
    ]
    if "pool" in data_files:
        lines.append('pool = load_dataset("PATH_OR_REPO", "pool")     # every generated sample')
    lines += ["```", ""]
    counts = {"default": summary.accepted, "pool": summary.generated}
    what = {"default": "accepted samples", "pool": "every generated sample, with its KMM weight and accepted flag"}
    lines += ["| config | split | file | rows | content |", "|---|---|---|---|---|"]
    for name, path in data_files.items():
        lines.append(f"| `{name}` | train | `{path}` | {counts.get(name, '-')} | {what.get(name, '')} |")
    lines += [
        "",
        "Columns: the text and the label; in a run directory (and an export with `--columns all`) also the "
        "provenance: `id`, `round` (loop round that generated it), `backend`, `demonstration_ids` (the real "
        "examples it was conditioned on), `kmm_weight` (the kernel-mean-matching importance weight within "
        "its label: a diagnostic of how typical a text is, not a training weight; many accepted texts have 0), "
        "`accepted` and `sample_weight` (the training weight: 1.0 for every accepted text, 0.0 otherwise; the "
        "selection keeps a subset, it does not reweight).",
    ]
    return "\n".join(lines)


def _source_section(
    config: Mapping[str, Any],
    summary: RunSummary,
    real_counts: Mapping[str, int] | None,
    label_dtype: str | None,
) -> str:
    data = config.get("data")
    lines = ["## Source data", "", f"- path: `{data}`"]
    lines.append(
        f"- text field `{config.get('text_field', 'text')}`, label field `{config.get('label_field', 'label')}`"
        + (f" (label type in the source data: `{label_dtype}`)" if label_dtype else " (label type: unknown)")
    )
    names = summary.label_names or {}
    if names:
        lines.append("- label names: " + ", ".join(f"`{value}` = {name}" for value, name in names.items())
                     + " (what the prompts call each label; the data keeps the values)")
    if real_counts is not None:
        listed = ", ".join(f"`{label}`{f' ({names[label]})' if label in names else ''} {count}"
                           for label, count in real_counts.items())
        lines.append(
            f"- real examples used: {sum(real_counts.values())} ({listed}); a label-stratified sample of at most "
            f"{config.get('max_real')} from the train split"
        )
    else:
        lines.append(f"- real examples used: {summary.real_examples} (per-label counts not recorded)")
    data_path = Path(str(data)) if data is not None else None
    if data_path is not None and data_path.is_dir():
        test = [
            c.name for c in sorted(data_path.iterdir()) if c.stem == "test" and c.suffix.lower() in SUPPORTED_SUFFIXES
        ]
        if test:
            lines.append(f"- test split `{test[0]}`: never used to fit anything; its MMD² to the accepted set is "
                         "reported as a held-out check")
        for split in validation_splits(data_path)[:1]:
            lines.append(f"- {split.stem} split `{split.name}`: the run's validation slice: never a demonstration "
                         "and never fitted on; it measures whether the synthetic data helps")
    return "\n".join(lines)


def _generated_section(summary: RunSummary) -> str:
    accepted = summary.labels or {}
    generated = summary.generated_per_label or {}
    lines = [
        "## Generated data",
        "",
        f"{summary.generated} texts generated, {summary.accepted} accepted.",
        "",
        "| label | generated | accepted |",
        "|---|---|---|",
    ]
    for label in sorted(set(accepted) | set(generated)):
        lines.append(f"| `{label}` | {generated.get(label, 0)} | {accepted.get(label, 0)} |")
    return "\n".join(lines)


def _backend_section(backend: Mapping[str, Any], summary: RunSummary) -> str:
    lines = ["## Backend and model", "", f"- backend: `{backend.get('name')}` (kind `{backend.get('kind')}`)"]
    lines.append(f"- model: `{backend['model']}`" if backend.get("model") else "- model: none (no language model)")
    if backend.get("gguf_sha256"):
        lines.append(f"- GGUF sha256: `{backend['gguf_sha256']}`")
    if backend.get("base_url"):
        lines.append(f"- endpoint: `{backend['base_url']}`")
    if backend.get("prompt_style"):
        lines.append(f"- prompt style: `{backend['prompt_style']}`")
    if backend.get("summarizer"):
        lines.append(f"- attribute summariser: `{backend['summarizer']}`")
    usage = summary.usage or {}
    if usage:
        lines.append(
            f"- LLM calls: {usage.get('llm_calls', 0)}, tokens in/out: {usage.get('tokens_in', 0)}/"
            f"{usage.get('tokens_out', 0)}"
        )
    if summary.embedding_model:
        lines.append(f"- embedding model (divergences, selection): `{summary.embedding_model}`")
        if summary.embedding_max_seq_length:
            lines.append(f"- embedding truncation: {summary.embedding_max_seq_length} tokens")
    if backend.get("note"):
        lines.append(f"- note: {backend['note']}")
    return "\n".join(lines)


def _selection_section(
    config: Mapping[str, Any], summary: RunSummary, metrics: Sequence[Mapping[str, Any]]
) -> str:
    name = str(summary.selection or config.get("selection"))
    note = StrategySpec.describe(name)  # from the name: the strategy may be registered only where the run ran
    lines = [
        "## Selection strategy",
        "",
        f"- `{name}`: {note}",
        f"- accepted fraction of each label's pool: {summary.accept_fraction or config.get('accept_fraction')}",
    ]
    if float(config.get("overgenerate") or 1) > 1:
        lines.append(f"- over-generation: {config['overgenerate']}× the texts per cluster, the same number accepted")
    thresholds = [m.get("filter_threshold") for m in metrics if m.get("filter_threshold") is not None]
    if thresholds:
        filtered = [m.get("filtered", 0) for m in metrics]
        lines.append(
            f"- label-consistency filter threshold per round: {', '.join(f'{t:g}' for t in thresholds)}; "
            f"samples filtered per round: {', '.join(str(f) for f in filtered)}"
        )
    return "\n".join(lines)


def _spread(value: Any, std: Any) -> str:
    """``3.070e-03 ± 1.4e-04`` (the value alone when the spread is unknown)."""
    return _fmt(value) + (f" ± {float(std):.1e}" if isinstance(std, (int, float)) and std == std else "")


def _divergence_section(summary: RunSummary, metrics: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "## Divergence to the real data",
        "",
        f"Final MMD² of the accepted set: {_fmt(summary.final_mmd2)}; target {_fmt(summary.target_mmd2)} "
        f"(`{summary.target}`). Noise floors (mean ± std over random real subsets): a random real subset of "
        "the accepted set's size scores "
        f"{_spread(summary.noise_floor_same_size, (metrics or [{}])[-1].get('noise_floor_same_size_std'))}; "
        f"two halves of the real set score {_spread(summary.noise_floor, summary.noise_floor_std)}. "
        f"RBF bandwidth {_fmt(summary.bandwidth, '.4g')}.",
        "",
        "| round | generated | accepted | MMD² accepted | MMD² pool | target | noise floor (same size) "
        "| Sinkhorn accepted | MMD² held-out test |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in metrics:
        lines.append(
            f"| {m.get('round')} | {m.get('generated')} | {m.get('accepted')} | {_fmt(m.get('mmd2_accepted'))} "
            f"| {_fmt(m.get('mmd2_pool'))} | {_fmt(m.get('target_mmd2'))} | {_fmt(m.get('noise_floor_same_size'))} "
            f"| {_fmt(m.get('sinkhorn_accepted'), '.4f')} | {_fmt(m.get('mmd2_accepted_heldout'))} |"
        )
    return "\n".join(lines)


def _license_section(backend: Mapping[str, Any]) -> str:
    terms = backend.get("terms")
    kind = backend.get("kind")
    if terms:
        note = f"The texts were {terms}. The Gemma Terms of Use apply to the use of these outputs."
    elif kind == "eda":
        note = (
            "No language model was used: the texts are derived from the user's data (EDA word swaps of real "
            "demonstrations), so the source data's license and terms apply to them."
        )
    elif kind == "external":
        note = (
            f"The texts were generated outside synalign (`{backend.get('source')}`); the terms of whatever "
            "generated them apply to their use."
        )
    elif kind == "local":
        note = (
            "The texts were generated by a user-supplied local model "
            f"(`{backend.get('gguf') or backend.get('model')}`); "
            "that model's license applies to their use."
        )
    else:
        note = (
            f"The texts were generated by `{backend.get('model')}` through an OpenAI-compatible endpoint; the model "
            "provider's terms of use apply to their use."
        )
    if kind not in ("eda", "external"):
        note += " They are conditioned on demonstrations from the source data, whose license applies as well."
    return f"## License\n\n`license: other`. {note}"
