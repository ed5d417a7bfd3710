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

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

from mint.core.io import MintError


def fit_weights(features: np.ndarray, truth: np.ndarray, l2: float = 1e-3, max_iter: int = 500) -> np.ndarray:
    """(n_features,) weights of a conditional logit over `features` (n_cases, n_labels, n_features) that
    maximise the mean log-likelihood of `truth` (n_cases label indices), less `l2` times their squared norm.

    SciPy's L-BFGS-B with the exact gradient, X'(p - y) / n + 2 l2 w, in float64.
    """
    if features.ndim != 3:
        raise MintError(f"fusion: features must be (cases, labels, features), got shape {features.shape}")
    if len(truth) == 0:
        raise MintError("fusion: no case to fit the weights on (the validation split is empty)")
    x = np.asarray(features, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    rows = np.arange(len(truth))
    own = x[rows, truth]  # (n, F): the true labels' features

    def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        logp = fused_scores(x, w)
        p = np.exp(logp)
        loss = -logp[rows, truth].mean() + l2 * w @ w
        grad = (np.einsum("nl,nlf->f", p, x) - own.sum(axis=0)) / len(truth) + 2 * l2 * w
        return float(loss), grad

    result = minimize(loss_and_grad, np.zeros(x.shape[-1]), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "gtol": 1e-9, "ftol": 1e-15})
    if not np.all(np.isfinite(result.x)):
        raise MintError("fusion: the fit diverged (non-finite weights); are some features infinite?")
    return result.x


def fused_scores(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n_cases, n_labels) log-probabilities of the fused model."""
    return log_softmax(np.asarray(features, dtype=np.float64) @ np.asarray(weights, dtype=np.float64), axis=1)


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
    out = np.zeros(logits.shape, dtype=np.float32)
    out[:, allowed] = log_softmax(logits[:, allowed].astype(np.float64), axis=1)
    return out


def cross_validated(features: np.ndarray, truth: np.ndarray, folds: int = 5, seed: int = 0,
                    l2: float = 1e-3) -> tuple[float, float]:
    """(top-1, mean log-likelihood) of the fit on `folds` - 1 folds of the cases, scored on the held-out one."""
    truth = np.asarray(truth)
    fold = np.random.default_rng(seed).permutation(len(truth)) % max(2, min(folds, len(truth)))
    hits, loglik = [], []
    for f in np.unique(fold):
        held = fold == f
        if held.all():
            continue
        scores = fused_scores(features[held], fit_weights(features[~held], truth[~held], l2))
        hits.append(scores.argmax(axis=1) == truth[held])
        loglik.append(scores[np.arange(held.sum()), truth[held]])
    return float(np.concatenate(hits).mean()), float(np.concatenate(loglik).mean())


def select_features(candidates: dict[str, np.ndarray], truth: np.ndarray, folds: int = 5,
                    seed: int = 0) -> tuple[str, dict[str, tuple[float, float]]]:
    """The candidate feature set with the best cross-validated top-1 on these (validation) cases, ties
    broken by log-likelihood, then by order; with each candidate's (top-1, log-likelihood)."""
    cv = {name: cross_validated(f, truth, folds, seed) for name, f in candidates.items()}
    best = max(cv, key=lambda name: (round(cv[name][0], 9), cv[name][1]))
    return best, cv
