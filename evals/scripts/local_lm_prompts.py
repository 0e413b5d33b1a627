"""Which continuation prompt works with the embedded base model: attributes header on/off, item name.

For each task, the same demonstration clusters (8 random real train texts of one label) go to four variants
of the ``generate_samples`` completion template, through the project's own local backend
(``--llm local``: llama-server + DSPy ContinuationAdapter):

- ``lines``: continuation lines ``Text (label): ...``, no header;
- ``lines+attributes``: the statistical summariser's attributes as a header line (the shipped template);
- ``lines+noun`` / ``lines+noun+attributes``: the lines name the item (``Movie review``, ``News article``).

Per variant: label fidelity under a classifier fitted on the real train split (:class:`LabelOracle`),
distinct-2, near-copies of a demonstration, seconds per kept text. Generated texts are kept in
``evals/results/local-lm-prompts/<task>-<variant>.jsonl`` (a finished variant is not regenerated).

    python evals/scripts/local_lm_prompts.py [--tasks sst2,agnews] [--clusters 6] [--n 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _bench import REPO, markdown

OUT = REPO / "evals" / "results" / "local-lm-prompts"
TASKS = {"sst2": ("sst2", "Movie review"), "agnews": ("agnews", "News article")}
VARIANTS = ("lines", "lines+attributes", "lines+noun", "lines+noun+attributes")


def _spec(variant: str, noun: str):  # noqa: ANN202
    from synalign.prompts import load_spec

    spec = load_spec("generate_samples")
    template = spec.completion.model_copy(
        update={
            "header": "{attributes}" if "attributes" in variant else "", "item": noun if "noun" in variant else "Text"
        }
    )
    return spec.model_copy(update={"completion": template})


def _generate(task: str, variant: str, rows: list[dict], clusters: int, n: int, noun: str) -> list[dict]:
    from synalign.agents import build_backend
    from synalign.agents.completion import ContinuationAdapter
    from synalign.agents.generator import SampleGenerator
    from synalign.backends import GenerationRequest, SummaryRequest
    from synalign.config import RunConfig

    labels = sorted({r["label"] for r in rows})
    by_label = {label: [r["text"] for r in rows if r["label"] == label] for label in labels}
    reference = {label: texts[:2000] for label, texts in by_label.items()}
    run_dir = Path(tempfile.mkdtemp(prefix=f"synalign-{task}-"))  # the LLM trace goes here, not into results
    config = RunConfig(data=run_dir, out=run_dir, llm="local", llm_cache=False)
    backend = build_backend(config, run_dir, reference=reference)
    spec = _spec(variant, noun)
    backend.generator.module = SampleGenerator(spec)
    backend.generator.adapter = ContinuationAdapter(spec)
    rng = np.random.default_rng(0)
    requests, demos_of = [], []
    for label in labels:
        for k in range(clusters):
            demos = [by_label[label][i] for i in rng.choice(len(by_label[label]), 8, replace=False)]
            attributes = backend.summarizer.summarize([SummaryRequest(task="t", label=label, demonstrations=demos)])[0]
            requests.append(GenerationRequest(task="t", label=label, attributes=attributes, demonstrations=demos,
                                              n=n, seed=1000 + k))
            demos_of.append(demos)
    started = time.perf_counter()
    try:
        generations = backend.generator.generate(requests)
    finally:
        backend.close()
    seconds = time.perf_counter() - started
    out = []
    for k, (request, gen) in enumerate(zip(requests, generations)):
        out += [{"text": t, "label": request.label, "cluster": k, "demonstrations": demos_of[k]} for t in gen.texts]
    for row in out:
        row["seconds_per_text"] = seconds / max(len(out), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    from synalign.evals.fidelity import LabelOracle, copy_share, distinct_n, read_jsonl
    from synalign.fileio import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,agnews")
    parser.add_argument("--clusters", type=int, default=6, help="clusters per label")
    parser.add_argument("--n", type=int, default=5, help="texts per cluster")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    table = []
    for task in args.tasks.split(","):
        folder, noun = TASKS[task]
        train = read_jsonl(args.data / folder / "train.jsonl")
        oracle = LabelOracle(train)
        clusters = args.clusters if len({r["label"] for r in train}) <= 2 else max(1, args.clusters // 2)
        for variant in VARIANTS:
            path = OUT / f"{task}-{variant}.jsonl"
            if not path.is_file():
                print(f"{task} {variant}: generating", file=sys.stderr, flush=True)
                rows = _generate(task, variant, train, clusters, args.n, noun)
                atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            rows = read_jsonl(path)
            texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
            table.append([
                task, variant, len(rows), round(oracle.fidelity(texts, labels), 3), round(distinct_n(texts, 2), 3),
                round(copy_share(texts, [r["demonstrations"] for r in rows]), 3),
                round(float(np.mean([len(t.split()) for t in texts])), 1), round(rows[0]["seconds_per_text"], 2),
            ])
            print(markdown(["task", "variant", "texts", "fidelity", "distinct-2", "copies", "words", "s/text"],
                           table[-1:]).splitlines()[-1], flush=True)
    text = markdown(["task", "variant", "texts", "label fidelity", "distinct-2", "near-copies", "mean words", "s/text"],
                    table)
    atomic_write_text(OUT / "summary.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
