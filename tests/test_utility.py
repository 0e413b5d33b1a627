"""The validation slice, held-out utility, novelty and the verdict: core functions on real SST-2 embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synalign.holdout import holdout_counts, split_validation
from synalign.novelty import near_copies
from synalign.records import RealExample
from synalign.utility import estimate_utility
from synalign.verdict import Fidelity, Novelty, judge

DEMO = Path(__file__).resolve().parents[1] / "synalign" / "data" / "sst2-demo"


@pytest.fixture(scope="module")
def sst2() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embeddings, labels and texts of the bundled SST-2 train sample (800 rows)."""
    from synalign.embeddings import Embedder

    rows = [json.loads(line) for line in (DEMO / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = [r["text"] for r in rows]
    return Embedder().encode(texts), np.asarray([r["label"] for r in rows], dtype=object), texts


def _split(y: np.ndarray, seed: int, k: int, val: int, extra: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    perm = [rng.permutation(np.flatnonzero(y == label)) for label in ("negative", "positive")]
    return (np.concatenate([p[:k] for p in perm]), np.concatenate([p[100 : 100 + val] for p in perm]),
            np.concatenate([p[200 : 200 + extra] for p in perm]))


def test_holdout_counts_at_4_8_32_and_1000_per_label() -> None:
    assert holdout_counts({"a": 4, "b": 8, "c": 32, "d": 2}, 0.25) == {"a": 1, "b": 2, "c": 8, "d": 0}
    assert holdout_counts({"a": 1000, "b": 1000}, 0.25) == {"a": 250, "b": 250}
    assert holdout_counts({str(i): 1000 for i in range(20)}, 0.25)["0"] == 100  # 2,000 rows at most in all
    assert holdout_counts({"a": 32}, 0.0) == {"a": 0}
    with pytest.raises(ValueError):
        holdout_counts({"a": 4}, 1.0)


def test_split_validation_is_disjoint_stratified_and_prefers_a_validation_split() -> None:
    train = [RealExample(id=f"train-{i}", text=f"t{i}", label="ab"[i % 2]) for i in range(64)]
    fit, held, source = split_validation(train, None, fraction=0.25, seed=3)
    assert source == "25% of train" and len(held) == 16 and len(fit) == 48
    assert {r.id for r in fit}.isdisjoint(r.id for r in held)
    assert sum(r.label == "a" for r in held) == 8
    assert split_validation(train, None, fraction=0.25, seed=3)[1] == held  # deterministic
    val = [RealExample(id=f"validation-{i}", text=f"v{i}", label=lab) for i, lab in enumerate("abc")]
    fit, held, source = split_validation(train, val, fraction=0.25, seed=3)
    assert source == "validation split" and fit == train and [r.label for r in held] == ["a", "b"]  # "c": not in train
    assert split_validation(train[:4], None, fraction=0.25, seed=0)[2] == "none"  # 2 per label: nothing spared


def test_held_back_real_texts_help_and_shuffled_labels_hurt(sst2: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    x, y, _ = sst2
    fit, val, extra = _split(y, seed=2, k=24, val=100, extra=64)
    real = estimate_utility(x[fit], y[fit], x[extra], y[extra], x[val], y[val], pool=x[extra], pool_labels=y[extra])
    assert real.delta_log_likelihood.low > 0 and real.delta_accuracy.low > 0
    assert real.n_validation == 200 and set(real.per_label) == {"negative", "positive"}
    assert real.with_random is not None  # the pool is the accepted set here: the same texts
    shuffled = np.random.default_rng(0).permutation(y[extra])
    bad = estimate_utility(x[fit], y[fit], x[extra], shuffled, x[val], y[val])
    assert bad.delta_log_likelihood.high < 0
    novelty = Novelty(accepted_share=0.0, pool_share=0.0, excluded=0, ratio_threshold=0.9, cosine_threshold=0.95)
    assert judge(real, novelty, Fidelity(), accepted=128).level == "green"
    red = judge(bad, novelty, Fidelity(), accepted=128)
    assert red.level == "red" and "don't train on them" in red.headline
    copies = novelty.model_copy(update={"accepted_share": 0.8})
    assert judge(real, copies, Fidelity(), accepted=128).level == "amber"  # mostly near-copies: never green


def test_a_tiny_slice_says_it_cannot_measure_accuracy(sst2: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    x, y, _ = sst2
    fit, val, extra = _split(y, seed=0, k=24, val=4, extra=32)
    u = estimate_utility(x[fit], y[fit], x[extra], y[extra], x[val], y[val])
    assert not u.accuracy_measurable
    novelty = Novelty(accepted_share=0.0, pool_share=0.0, excluded=0, ratio_threshold=0.9, cosine_threshold=0.95)
    verdict = judge(u, novelty, Fidelity(), accepted=64)
    assert any("too few held-out examples (8) to measure accuracy" in line for line in verdict.evidence)
    none = judge(None, novelty, Fidelity(), accepted=64, no_slice_reason="the run held nothing out (--holdout 0)")
    assert none.level == "amber" and "--holdout 0" in none.headline


def test_near_copies_of_any_real_text_are_found_and_new_texts_are_not(
    sst2: tuple[np.ndarray, np.ndarray, list[str]],
) -> None:
    from synalign.backends import GenerationRequest
    from synalign.eda import EDAGenerator  # the EDA backend's own word swaps

    x, _, texts = sst2
    reference = texts[:400]
    demos = [t for t in reference if len(t.split()) >= 8][:16]
    request = GenerationRequest(task="t", label="negative", attributes=_attributes(), demonstrations=demos, n=40)
    (generation,) = EDAGenerator().generate([request])
    copies = generation.texts
    fresh = [json.loads(line)["text"] for line in (DEMO / "test.jsonl").read_text(encoding="utf-8").splitlines()[:40]]
    found = near_copies(copies + fresh, reference)
    assert found.mask[: len(copies)].mean() >= 0.5  # most word-swapped copies, by characters alone
    assert found.mask[len(copies):].mean() <= 0.05
    same = near_copies(texts[:5], reference, x[:5], x[:400])
    assert same.mask.all() and np.allclose(same.cosine, 1.0, atol=1e-5) and (same.nearest == np.arange(5)).all()


def _attributes():  # noqa: ANN202
    from synalign.records import AttributeSummary

    return AttributeSummary(style="plain", tone="negative", topic="film", subtopics=[], length="12 words",
                            perspective="third person", other=[])


def test_a_config_saved_before_the_slice_resumes_as_it_ran(tmp_path: Path) -> None:
    """A config.json written before the validation slice existed (every field dumped, no ``holdout``) resumes
    with no slice, no utility stop and near-copies allowed; a new config gets the new defaults."""
    from synalign.config import RunConfig

    new = RunConfig(data=tmp_path, out=tmp_path / "o")
    assert (new.holdout, new.patience, new.allow_near_copies) == (0.25, 2, False)
    old = new.model_dump(mode="json", exclude={"holdout", "patience", "allow_near_copies"})
    legacy = RunConfig.model_validate_json(json.dumps(old))
    assert (legacy.holdout, legacy.patience, legacy.allow_near_copies) == (0.0, None, True)
    assert RunConfig(data=tmp_path, out=tmp_path / "o", patience=0).patience is None
