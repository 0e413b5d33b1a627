"""Downstream classifiers of the evaluation protocol (DESIGN §3.5) and their scores.

* ``"lr"`` (default, fast): multinomial logistic regression (scikit-learn, L2, C = 1) on frozen, unit-norm
  all-MiniLM-L6-v2 sentence embeddings.
* ``"finetune"``: the bundled all-MiniLM-L6-v2 encoder (transformers ``AutoModel``) with mean pooling and a
  linear classification head, all weights fine-tuned with AdamW and cross-entropy for a few epochs
  (CPU-feasible on a few thousand short texts).

Both are fitted on the training texts only; the test texts are used for prediction only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, overload

import numpy as np

from synalign._threads import single_blas_thread
from synalign.errors import InputError
from synalign.evals.specs import FinetuneConfig

__all__ = ["CLASSIFIERS", "FinetuneConfig", "scores", "fit_predict_lr", "fit_predict_finetune"]

#: Names accepted by ``--classifier``.
CLASSIFIERS: tuple[str, ...] = ("lr", "finetune")


def scores(y_true: Sequence[str] | np.ndarray, y_pred: Sequence[str] | np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (unweighted mean of per-class F1 over the classes in ``y_true``)."""
    from sklearn.metrics import accuracy_score, f1_score

    labels = sorted(set(y_true))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    }


def _check_train(n_x: int, y: Sequence[str] | np.ndarray) -> None:
    if n_x != len(y):
        raise InputError(f"{n_x} training rows but {len(y)} labels")
    if len(set(y)) < 2:
        raise InputError("a classifier needs at least two labels in its training data")


@overload
def fit_predict_lr(
    x_train: np.ndarray, y_train: Sequence[str] | np.ndarray, x_test: np.ndarray, *, c: float = ...,
    sample_weight: np.ndarray | None = ..., return_proba: Literal[False] = ...,
) -> np.ndarray: ...


@overload
def fit_predict_lr(
    x_train: np.ndarray, y_train: Sequence[str] | np.ndarray, x_test: np.ndarray, *, c: float = ...,
    sample_weight: np.ndarray | None = ..., return_proba: Literal[True],
) -> tuple[np.ndarray, np.ndarray, list[str]]: ...


@single_blas_thread
def fit_predict_lr(
    x_train: np.ndarray,
    y_train: Sequence[str] | np.ndarray,
    x_test: np.ndarray,
    *,
    c: float = 1.0,
    sample_weight: np.ndarray | None = None,
    return_proba: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray, list[str]]:
    """Fit L2 logistic regression on frozen embeddings and predict.

    Args:
        x_train: (n, d) embeddings; y_train: n labels. x_test: (t, d) embeddings.
        c: inverse L2 strength (scikit-learn ``C``).
        sample_weight: optional (n,) non-negative weights.
        return_proba: also return the (t, C) class probabilities and the class order.

    Returns:
        (t,) predicted labels (object array), or ``(pred, proba, classes)``.

    Raises:
        InputError: length mismatch or fewer than two labels.
    """
    from sklearn.linear_model import LogisticRegression

    _check_train(len(x_train), y_train)
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(
        np.asarray(x_train, dtype=np.float64),
        np.asarray(list(y_train), dtype=object),
        sample_weight=sample_weight,
    )
    x_t = np.asarray(x_test, dtype=np.float64)
    pred = model.predict(x_t)
    if return_proba:
        return pred, model.predict_proba(x_t), [str(c_) for c_ in model.classes_]
    return pred


def fit_predict_finetune(
    train_texts: Sequence[str],
    y_train: Sequence[str],
    test_texts: Sequence[str],
    *,
    seed: int = 0,
    config: FinetuneConfig | None = None,
    model_path: str | None = None,
) -> np.ndarray:
    """Fine-tune MiniLM (mean pooling + linear head) on the training texts and predict the test texts.

    Args:
        train_texts: n texts; y_train: n labels. test_texts: t texts.
        seed: torch seed (head initialisation, batch order).
        config: :class:`FinetuneConfig`.
        model_path: a transformers encoder directory; ``None`` = the bundled all-MiniLM-L6-v2.

    Returns:
        (t,) predicted labels (object array).

    Raises:
        InputError: length mismatch or fewer than two labels.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from synalign.embeddings import default_model_path

    _check_train(len(train_texts), y_train)
    cfg = config or FinetuneConfig()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(seed)
    path = model_path or default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path).to(cfg.device)
    classes = sorted(set(y_train))
    index = {c: i for i, c in enumerate(classes)}
    head = torch.nn.Linear(encoder.config.hidden_size, len(classes)).to(cfg.device)
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder.parameters(), "lr": cfg.lr},
            {"params": head.parameters(), "lr": cfg.lr * 10},
        ],
        weight_decay=cfg.weight_decay,
    )
    texts = list(train_texts)
    targets = torch.tensor([index[y] for y in y_train], dtype=torch.long)
    steps = cfg.epochs * ((len(texts) + cfg.batch_size - 1) // cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1.0 - step / max(steps, 1))
    )
    gen = torch.Generator().manual_seed(seed)

    def embed(batch: list[str]) -> torch.Tensor:
        enc = tokenizer(
            batch, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt"
        ).to(cfg.device)
        hidden = encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    encoder.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(texts), generator=gen).tolist()
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            logits = head(embed([texts[i] for i in idx]))
            loss = torch.nn.functional.cross_entropy(logits, targets[idx].to(cfg.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    encoder.eval()
    preds: list[int] = []
    test = list(test_texts)
    with torch.no_grad():
        for start in range(0, len(test), 128):
            preds.extend(head(embed(test[start : start + 128])).argmax(dim=1).tolist())
    return np.asarray([classes[p] for p in preds], dtype=object)
