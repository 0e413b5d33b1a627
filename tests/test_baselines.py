"""The DSIR and IMP-Loss baselines (evals/baselines.py) on the bundled real SST-2 sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synalign.errors import InputError
from synalign.evals.baselines import dsir_log_weights, dsir_select, imp_loss_weights

# Off-domain texts: IT-support and household instructions, about as long as the in-domain pool texts below.
OFF_DOMAIN = [
    "restart the router and wait two minutes before you reconnect the laptop to the network .",
    "to reset your password , open the account settings page and click forgot password .",
    "the printer driver must be updated before the scanner will show up in the device list .",
    "unplug the charger , hold the power button for ten seconds and then plug it back in .",
    "your ticket has been escalated to the second level support team for further investigation .",
    "please attach the log file from the installation folder when you reply to this email .",
    "the backup job failed last night because the external drive was almost full .",
    "clear the browser cache and cookies , then sign in to the portal again .",
    "the invoice is due within thirty days of the delivery date shown on the receipt .",
    "set the thermostat to nineteen degrees at night to lower the heating bill .",
    "replace the filter of the vacuum cleaner every three months for best suction .",
    "the water meter is located in the basement next to the main shut-off valve .",
    "install the latest firmware from the vendor website and reboot the device twice .",
    "the vpn client disconnects whenever the laptop switches from wired to wireless .",
    "check that the cable is firmly seated in the port at the back of the monitor .",
    "run the disk cleanup tool to free space on the system drive before updating .",
    "the meeting room projector needs the hdmi adapter stored in the top drawer .",
    "your parcel will be delivered between nine and twelve on tuesday morning .",
    "descale the coffee machine with vinegar and rinse it with clean water afterwards .",
    "the spreadsheet macro stopped working after the office suite was upgraded .",
    "enter the six digit code from the authenticator app to finish signing in .",
    "the garage door remote needs two new batteries of the small round type .",
    "please book the conference call for thursday and send the dial-in number to everyone .",
    "the shared drive is mapped automatically when you log in to a company computer .",
]
OTHER = {"negative": "positive", "positive": "negative"}


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def dsir_data(demo_dir: Path) -> dict[str, list[str]]:
    """Target: the 800 real train texts. In-domain pool: 60 real test texts of 12-18 tokens (the length of the
    off-domain texts: DSIR's log weights are sums over n-grams, so length alone moves them), 30 per label."""
    train, test = _read(demo_dir / "train.jsonl"), _read(demo_dir / "test.jsonl")
    mid = [r for r in test if 12 <= len(r["text"].split()) <= 18]
    pool = [r for r in mid if r["label"] == "negative"][:30] + [r for r in mid if r["label"] == "positive"][:30]
    labels = [r["label"] for r in pool] + ["negative", "positive"] * (len(OFF_DOMAIN) // 2)
    return {"target": [r["text"] for r in train], "pool": [r["text"] for r in pool] + OFF_DOMAIN,
            "labels": labels}


@pytest.fixture(scope="module")
def imp_data(demo_rows: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """Of the first 192 train rows per label, a seeded 32 per label are the real set and the other 320 the
    synthetic pool, with a random 25% of the pool's labels flipped."""
    from synalign.embeddings import Embedder

    per = {label: [r for r in demo_rows if r["label"] == label][:192] for label in ("negative", "positive")}
    rows = per["negative"] + per["positive"]
    x, y = Embedder().encode([r["text"] for r in rows]), np.array([r["label"] for r in rows], dtype=object)
    rng = np.random.default_rng(0)
    neg, pos = rng.permutation(192), 192 + rng.permutation(192)
    real, pool = np.r_[neg[:32], pos[:32]], np.r_[neg[32:], pos[32:]]
    flipped = rng.random(len(pool)) < 0.25
    labels = y[pool].copy()
    labels[flipped] = [OTHER[label] for label in labels[flipped]]
    return {"real_emb": x[real], "real_labels": y[real], "pool_emb": x[pool], "pool_labels": labels,
            "flipped": flipped}


# --- DSIR -----------------------------------------------------------------------------------------------


def test_dsir_weights_favour_the_target_domain(dsir_data: dict[str, list[str]]) -> None:
    w = dsir_log_weights(dsir_data["pool"], dsir_data["target"])
    assert w.shape == (len(dsir_data["pool"]),) and np.isfinite(w).all()
    inside, outside = w[: -len(OFF_DOMAIN)], w[-len(OFF_DOMAIN):]
    # nearly every in-domain text outranks nearly every off-domain one (AUC), not only on average
    auc = np.mean(inside[:, None] > outside[None, :])
    assert inside.mean() > outside.mean() + 3.0 and auc > 0.8, (inside.mean(), outside.mean(), auc)
    # not a length effect: the same holds per token
    tokens = np.array([len(t.split()) for t in dsir_data["pool"]])
    per_token = w / tokens
    assert per_token[: -len(OFF_DOMAIN)].mean() > per_token[-len(OFF_DOMAIN):].mean()


def test_dsir_features_are_lowercased_word_punct_ngrams(dsir_data: dict[str, list[str]]) -> None:
    pool = ["A Gorgeous, Moving Film!", "a gorgeous , moving film !", "film moving gorgeous a , !"]
    w = dsir_log_weights(pool + dsir_data["pool"], dsir_data["target"])
    assert w[0] == pytest.approx(w[1])  # case and spacing around punctuation do not matter
    assert w[2] != pytest.approx(w[1])  # word order does (bigrams)


def test_dsir_select_keeps_quotas_and_prefers_the_target_domain(dsir_data: dict[str, list[str]]) -> None:
    pool, labels = dsir_data["pool"], dsir_data["labels"]
    idx = dsir_select(pool, labels, dsir_data["target"], {"negative": 20, "positive": 20}, seed=0)
    assert idx.dtype == np.int64 and list(idx) == sorted(set(idx.tolist()))
    assert sum(labels[i] == "negative" for i in idx) == 20 and sum(labels[i] == "positive" for i in idx) == 20
    off = np.mean(idx >= len(pool) - len(OFF_DOMAIN))
    assert off < 0.5 * len(OFF_DOMAIN) / len(pool), off  # off-domain share well below its share of the pool
    assert dsir_select(pool, labels, dsir_data["target"], {"positive": 5}, seed=0).size == 5


def test_dsir_select_is_seeded_and_resamples_by_weight(dsir_data: dict[str, list[str]]) -> None:
    pool, labels, target = dsir_data["pool"], dsir_data["labels"], dsir_data["target"]
    quotas = {"negative": 20, "positive": 20}
    first = dsir_select(pool, labels, target, quotas, seed=1)
    assert np.array_equal(first, dsir_select(pool, labels, target, quotas, seed=1))
    draws = [dsir_select(pool, labels, target, quotas, seed=s) for s in range(60)]
    assert any(not np.array_equal(first, d) for d in draws)  # a sample, not a fixed top-k
    rate = np.bincount(np.concatenate(draws), minlength=len(pool)) / len(draws)
    w = dsir_log_weights(pool, target)
    neg = np.flatnonzero(np.array(labels) == "negative")
    order = neg[np.argsort(w[neg])]
    # inclusion probability grows with the importance weight within a label
    assert rate[order[-10:]].mean() > rate[order[:10]].mean() + 0.3


def test_dsir_input_errors(dsir_data: dict[str, list[str]]) -> None:
    pool, labels, target = dsir_data["pool"], dsir_data["labels"], dsir_data["target"]
    with pytest.raises(InputError, match="quota 100"):
        dsir_select(pool, labels, target, {"negative": 100}, seed=0)
    with pytest.raises(InputError, match="quota -1"):
        dsir_select(pool, labels, target, {"negative": -1}, seed=0)
    with pytest.raises(InputError, match="quota 1 for label 'neutral'"):
        dsir_select(pool, labels, target, {"neutral": 1}, seed=0)
    with pytest.raises(InputError, match="target"):
        dsir_select(pool, labels, [], {"negative": 1}, seed=0)
    with pytest.raises(InputError, match="labels"):
        dsir_select(pool, labels[:-1], target, {"negative": 1}, seed=0)


# --- IMP-Loss -------------------------------------------------------------------------------------------


def test_imp_loss_down_weights_contradicted_labels(imp_data: dict[str, np.ndarray]) -> None:
    w = imp_loss_weights(imp_data["pool_emb"], imp_data["pool_labels"], imp_data["real_emb"], imp_data["real_labels"])
    flipped = imp_data["flipped"]
    assert w.shape == (len(flipped),) and (w >= 0).all() and w.mean() == pytest.approx(1.0)
    # the real data contradict the flipped labels, so those rows weigh less (0.80x here; the 1/2-scale
    # checkers of a fixed C = 1 give them 1.08x: see imp_loss_weights)
    assert w[flipped].mean() < 0.9 * w[~flipped].mean(), (w[flipped].mean(), w[~flipped].mean())
    auc = np.mean(w[~flipped][:, None] > w[flipped][None, :])
    assert auc > 0.6, auc


def test_imp_loss_is_seeded_and_clipped(imp_data: dict[str, np.ndarray]) -> None:
    args = (imp_data["pool_emb"], imp_data["pool_labels"], imp_data["real_emb"], imp_data["real_labels"])
    w = imp_loss_weights(*args, seed=3, c=1.0)
    assert np.array_equal(w, imp_loss_weights(*args, seed=3, c=1.0))
    assert w.std() > 0.05  # the weights do vary
    # every ratio exceeds 1e-6, so all are clipped to it and the rescaled weights are all 1
    assert np.allclose(imp_loss_weights(*args, clip=1e-6, c=1.0), 1.0)


def test_imp_loss_input_errors(imp_data: dict[str, np.ndarray]) -> None:
    pool, labels = imp_data["pool_emb"], imp_data["pool_labels"]
    real, real_labels = imp_data["real_emb"], imp_data["real_labels"]
    with pytest.raises(InputError, match="do not occur in the real rows"):
        imp_loss_weights(pool, np.where(labels == "negative", "neutral", labels), real, real_labels)
    with pytest.raises(InputError, match="labels"):
        imp_loss_weights(pool, labels[:-1], real, real_labels)
    with pytest.raises(InputError, match=r"\(m, d\)"):
        imp_loss_weights(pool[:, :10], labels, real, real_labels)
    with pytest.raises(InputError, match="at least 5 rows"):
        imp_loss_weights(pool[:8], labels[:8], real, real_labels)
    with pytest.raises(InputError, match="positive"):
        imp_loss_weights(pool, labels, real, real_labels, clip=0.0)


def test_diversity_metrics_rank_a_repetitive_set_below_real_reviews(dsir_data: dict[str, list[str]]) -> None:
    """Self-BLEU-4 (Texygen) and distinct-2 on real SST-2 sentences vs a set built from one template."""
    from synalign.evals.fidelity import distinct_n, self_bleu

    real = dsir_data["pool"][:40]  # real SST-2 test sentences
    templated = [f"this movie is {w} and the acting is {w} ." for w in ("great", "awful", "fine", "dull") * 10]
    assert self_bleu(real) < 0.2 < 0.6 < self_bleu(templated)
    assert distinct_n(real, 2) > 0.8 > 0.3 > distinct_n(templated, 2)
    assert self_bleu(templated, max_hypotheses=5, seed=1) > 0.6
    assert np.isnan(self_bleu(real[:1]))
