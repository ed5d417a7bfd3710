"""Late fusion of a teacher's score sources, calibrated on the validation cases: a conditional logit.

A source is any (cases x labels) evidence about which label is a case's: a trained model's
log-probabilities, a knowledge-based similarity, a retrieval score. Each (case, label) pair gets a
feature vector f (one value per source, and any interactions the application builds); the fused
score of label l for a case is w . f(case, l), a softmax over the case's labels gives a probability,
and w maximises the log-likelihood of the true labels of the cases it is fitted on (L-BFGS with a
small L2 penalty; convex, so the fit has one optimum). A handful of weights, fitted on the
validation split: the training split made the sources, the test split is never seen.

    w = fit_weights(features[validation], truth[validation]); scores = fused_scores(features, w)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mint.core.io import MintError


def fit_weights(features: np.ndarray, truth: np.ndarray, l2: float = 1e-3, max_iter: int = 500) -> np.ndarray:
    """(n_features,) weights of a conditional logit over `features` (n_cases, n_labels, n_features) that
    maximise the mean log-likelihood of `truth` (n_cases label indices), less `l2` times their squared norm."""
    if features.ndim != 3:
        raise MintError(f"fusion: features must be (cases, labels, features), got shape {features.shape}")
    if len(truth) == 0:
        raise MintError("fusion: no case to fit the weights on (the validation split is empty)")
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).double()
    y = torch.from_numpy(np.asarray(truth, dtype=np.int64))
    w = torch.zeros(x.shape[-1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w, y) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    out = w.detach().numpy()
    if not np.all(np.isfinite(out)):
        raise MintError("fusion: the fit diverged (non-finite weights); are some features infinite?")
    return out


def fused_scores(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n_cases, n_labels) log-probabilities of the fused model."""
    logits = np.asarray(features, dtype=np.float64) @ np.asarray(weights, dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))


def within_case_z(scores: np.ndarray) -> np.ndarray:
    """Each case's scores standardised over its labels (mean 0, sd 1; a constant row gives 0s), so that
    sources on different scales, and cases with more or fewer findings, weigh alike."""
    scores = np.asarray(scores, dtype=np.float32)
    sd = scores.std(axis=1, keepdims=True)
    return np.where(sd > 0, (scores - scores.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1), 0.0)


def restricted_log_softmax(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Log-softmax of `logits` over the `allowed` labels only (a boolean mask over labels), 0 elsewhere:
    what a classifier says among the labels it has really learnt, without pushing the others down."""
    allowed = np.asarray(allowed, dtype=bool)
    if not allowed.any():
        return np.zeros_like(logits, dtype=np.float32)
    sub = logits[:, allowed].astype(np.float64)
    top = sub.max(axis=1, keepdims=True)
    sub = sub - top - np.log(np.exp(sub - top).sum(axis=1, keepdims=True))
    out = np.zeros(logits.shape, dtype=np.float32)
    out[:, allowed] = sub
    return out


def top_accuracy(scores: np.ndarray, truth: np.ndarray, ks: Sequence[int] = (1, 10)) -> dict[int, float]:
    """Share of cases whose true label is among the k best (ties counted against the truth)."""
    truth = np.asarray(truth)
    if len(truth) == 0:
        return {k: float("nan") for k in ks}
    own = scores[np.arange(len(truth)), truth][:, None]
    rank = (scores > own).sum(axis=1) + 1
    return {k: float((rank <= k).mean()) for k in ks}
