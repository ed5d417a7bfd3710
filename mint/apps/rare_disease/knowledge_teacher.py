"""The knowledge-aware teacher: the note+photo teacher fused with what HPO knows of every panel disease.

The note+photo network (`teacher.py`) learns diseases from their training patients; it knows little
of a disease with no real patient among them, and about half the phenopacket benchmark's test
patients have such a disease. HPO knows every annotated disease: the Phenomizer similarity of the
case's findings to each disease's annotations (`phenomizer.py`, three ways of averaging best
matches) scores the whole panel. The fused teacher is a conditional logit (`mint.core.fusion`) over,
for each (case, disease):

- knowledge: each similarity standardised within the case, and (when cross-validation on the
  validation split prefers it) minus the log of its rank among the panel;
- the network, for diseases it learnt from patients like the test patients ("learnt": a training
  case from a real source; where every training case is simulated, any training case): its
  log-probability among those diseases, an indicator of them, and that indicator times the network's
  confidence (its top probability) and times the knowledge's z-score of the network's top disease
  (do the two agree?). A disease the network never learnt is left to the knowledge.

The weights are fitted on the validation cases only. The modalities it adds to the rankings, with
the network's own (note_photo, note, photo), make the ablation: knowledge alone, each of note and
photo left out (`photo_knowledge`, `note_knowledge`), and all three (`note_photo_knowledge`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import rankdata

from mint.core.fusion import fit_weights, fused_scores, restricted_log_softmax, select_features, within_case_z

KNOWLEDGE_MODES = ("symmetric", "one_way", "bma")
# Fused modality -> the network's head it uses (None: knowledge alone).
FUSED = {"note_photo_knowledge": "note_photo", "note_knowledge": "note", "photo_knowledge": "photo",
         "knowledge": None}
FEATURE_SETS = ("scores", "scores_and_ranks")


def knowledge_scores(annotations: pl.DataFrame, terms: pl.DataFrame, panel_ids: Sequence[str],
                     hpo_lists: Sequence[Sequence[str] | None]) -> dict[str, np.ndarray]:
    """Per Phenomizer mode, the (cases x panel) similarity of each case's HPO terms to each disease."""
    from mint.apps.rare_disease.phenomizer import PhenomizerRanker

    out = {}
    for mode in KNOWLEDGE_MODES:
        ranker = PhenomizerRanker(annotations, terms, panel_ids, mode)
        out[mode] = ranker.score([t or [] for t in hpo_lists])
    return out


def learnt_labels(cases: pl.DataFrame, classes: Sequence[str], synthetic_sources: Sequence[str]) -> np.ndarray:
    """Boolean mask over `classes`: labels with a real training case; where the training split has no real
    case at all (a simulated cohort), labels with any training case."""
    train = cases.filter(pl.col("split") == "train")
    real = train.filter(~pl.col("source").is_in(list(synthetic_sources)))
    ids = set((real if real.height else train)["label_id"].to_list())
    return np.array([c in ids for c in classes])


class FusionFeatures:
    """Builds the (cases x labels x features) array of a fused modality, for any rows of the cohort."""

    def __init__(self, heads: Mapping[str, np.ndarray], knowledge: Mapping[str, np.ndarray], learnt: np.ndarray):
        self.z = [within_case_z(knowledge[m]) for m in KNOWLEDGE_MODES]
        # -log(rank), rank 1 = most similar; ties share the best rank.
        self.r = [-np.log(rankdata(-k, axis=1, method="min")).astype(np.float32) for k in
                  (knowledge[m] for m in KNOWLEDGE_MODES)]
        self.learnt = learnt.astype(np.float32)[None, :]
        self.heads = {h: restricted_log_softmax(s, learnt) for h, s in heads.items()}
        self.top = {h: np.where(learnt[None, :], s, -np.inf).argmax(axis=1) for h, s in heads.items()}

    def __call__(self, modality: str, feature_set: str, rows: np.ndarray) -> np.ndarray:
        parts = [z[rows] for z in self.z]
        if feature_set == "scores_and_ranks":
            parts += [r[rows] for r in self.r]
        head = FUSED[modality]
        if head is not None and self.learnt.any():
            t = self.heads[head][rows]
            confidence = np.exp(t.max(axis=1, where=self.learnt[0] > 0, initial=-np.inf))[:, None]
            agree = np.take_along_axis(self.z[0][rows], self.top[head][rows][:, None], axis=1)
            parts += [t, np.broadcast_to(self.learnt, t.shape), self.learnt * confidence, self.learnt * agree]
        return np.stack(parts, axis=-1).astype(np.float32)


def fuse_with_knowledge(heads: Mapping[str, np.ndarray], knowledge: Mapping[str, np.ndarray], learnt: np.ndarray,
                        truth: np.ndarray, validation: np.ndarray, seed: int,
                        chunk: int = 1024) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every fused modality's (cases x labels) log-probabilities, and what was fitted (feature set chosen by
    5-fold cross-validation on the validation cases, its weights, each candidate's CV top-1 / log-likelihood).

    `heads`: the network's log-probabilities per head; `truth`: every case's label index; `validation`:
    the row indices of the validation cases, the only ones the weights see.
    """
    features = FusionFeatures(heads, knowledge, learnt)
    n = len(truth)
    scores, fitted = {}, {}
    for modality in FUSED:
        candidates = {fs: features(modality, fs, validation) for fs in FEATURE_SETS}
        chosen, cv = select_features(candidates, truth[validation], seed=seed)
        weights = fit_weights(candidates[chosen], truth[validation])
        out = np.empty((n, len(learnt)), dtype=np.float32)
        for start in range(0, n, chunk):
            rows = np.arange(start, min(start + chunk, n))
            out[rows] = fused_scores(features(modality, chosen, rows), weights)
        scores[modality] = out
        fitted[modality] = {"feature_set": chosen, "weights": [round(float(w), 6) for w in weights],
                            "cv": {fs: {"top1": top1, "loglik": ll} for fs, (top1, ll) in cv.items()}}
    return scores, {"n_validation": int(len(validation)), "n_learnt_labels": int(learnt.sum()),
                    "modalities": fitted}
