"""The calibrated late fusion (mint.core.fusion) and the knowledge-aware rare-disease teacher built on it."""

import numpy as np
import polars as pl
import pytest

from mint.apps.rare_disease.knowledge_teacher import FUSED, FusionFeatures, fuse_with_knowledge, learnt_labels
from mint.core.fusion import (
    cross_validated,
    fit_weights,
    fused_scores,
    restricted_log_softmax,
    select_features,
    within_case_z,
)
from mint.core.io import MintError
from tests.factories import make_cases


def simulate(n_cases, n_labels, weights, seed=0):
    """Features and labels drawn from the conditional logit the fit assumes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_cases, n_labels, len(weights))).astype(np.float32)
    logits = x @ np.asarray(weights)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(n_labels, p=row) for row in p])
    return x, y


def test_fit_recovers_the_weights_that_made_the_labels():
    x, y = simulate(3000, 8, [2.0, -1.0, 0.0])
    w = fit_weights(x, y, l2=0.0)
    np.testing.assert_allclose(w, [2.0, -1.0, 0.0], atol=0.15)


def test_fused_scores_are_log_probabilities():
    x, y = simulate(50, 5, [1.0, 0.5])
    s = fused_scores(x, np.array([1.0, 0.5]))
    np.testing.assert_allclose(np.exp(s).sum(1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(s.argmax(1), (x @ np.array([1.0, 0.5])).argmax(1))


def test_fit_refuses_empty_and_misshapen_input():
    with pytest.raises(MintError, match="validation split is empty"):
        fit_weights(np.zeros((0, 3, 2)), np.zeros(0, dtype=int))
    with pytest.raises(MintError, match="cases, labels, features"):
        fit_weights(np.zeros((4, 3)), np.zeros(4, dtype=int))


def test_within_case_z_and_restricted_softmax():
    z = within_case_z(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(z[0], [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    np.testing.assert_array_equal(z[1], 0.0)  # a constant row carries no information
    logits = np.array([[0.0, np.log(3.0), 100.0]])
    r = restricted_log_softmax(logits, np.array([True, True, False]))
    np.testing.assert_allclose(np.exp(r[0, :2]), [0.25, 0.75], rtol=1e-6)
    assert r[0, 2] == 0.0  # an unlearnt label is not pushed down


def test_feature_selection_prefers_the_informative_set_by_cross_validation():
    x, y = simulate(600, 6, [3.0, 0.0])
    noise = np.random.default_rng(1).normal(size=x[..., :1].shape).astype(np.float32)
    best, cv = select_features({"noise": noise, "signal": x[..., :1]}, y)
    assert best == "signal"
    assert cv["signal"][0] > cv["noise"][0] + 0.2
    top1, loglik = cross_validated(x, y)
    assert 0 < top1 <= 1 and loglik < 0


def top1(scores, truth):
    return float((scores.argmax(1) == truth).mean())


def test_learnt_labels_are_those_with_a_real_training_case():
    cases = make_cases(["A", "B", "C", "D"], ["train", "train", "validation", "train"],
                       source=["phenopacket", "simulated", "phenopacket", "phenopacket"])
    np.testing.assert_array_equal(learnt_labels(cases, ["A", "B", "C", "D"], ["simulated"]), [True, False, False, True])
    # A cohort with no real training case at all (the simulated default): every trained label counts.
    simulated = cases.with_columns(source=pl.lit("simulated"))
    np.testing.assert_array_equal(learnt_labels(simulated, ["A", "B", "C", "D"], ["simulated"]),
                                  [True, True, False, True])


def knowledge_world(n=400, n_labels=6, seed=0):
    """Labels 0-2 learnt by a network that is right about them; knowledge right, noisily, about all."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_labels, n)
    onehot = np.eye(n_labels, dtype=np.float32)[truth]
    learnt = np.arange(n_labels) < 3
    network = np.where(learnt, 4 * onehot, -4.0) + rng.normal(size=(n, n_labels)).astype(np.float32)
    heads = {h: network - np.log(np.exp(network).sum(1, keepdims=True)) for h in ("note_photo", "note", "photo")}
    knowledge = {m: (onehot + rng.normal(scale=0.8, size=(n, n_labels))).astype(np.float32)
                 for m in ("symmetric", "one_way", "bma")}
    return heads, knowledge, learnt, truth


def test_fused_teacher_beats_both_sources_where_each_is_blind():
    heads, knowledge, learnt, truth = knowledge_world()
    validation = np.arange(0, 200)
    test = np.arange(200, 400)
    scores, fitted = fuse_with_knowledge(heads, knowledge, learnt, truth, validation, seed=0)
    assert set(scores) == set(FUSED)
    fused = top1(scores["note_photo_knowledge"][test], truth[test])
    network = top1(heads["note_photo"][test], truth[test])
    alone = top1(knowledge["symmetric"][test], truth[test])
    assert fused > network + 0.2  # the network is blind to labels 3-5
    assert fused > alone + 0.1  # the knowledge is noisy where the network is sure
    assert fitted["n_validation"] == 200 and fitted["n_learnt_labels"] == 3
    info = fitted["modalities"]["note_photo_knowledge"]
    assert info["feature_set"] in info["cv"]
    # knowledge alone never reads the network: same scores whatever the network says
    other = {h: np.zeros_like(s) for h, s in heads.items()}
    again, _ = fuse_with_knowledge(other, knowledge, learnt, truth, validation, seed=0)
    np.testing.assert_allclose(again["knowledge"], scores["knowledge"], rtol=1e-6)


def test_fusion_features_shapes_and_network_only_on_learnt_labels():
    heads, knowledge, learnt, truth = knowledge_world(n=20)
    features = FusionFeatures(heads, knowledge, learnt)
    rows = np.arange(5)
    assert features("knowledge", "scores", rows).shape == (5, 6, 3)
    assert features("knowledge", "scores_and_ranks", rows).shape == (5, 6, 6)
    f = features("note_knowledge", "scores", rows)
    assert f.shape == (5, 6, 7)
    assert np.all(f[:, ~learnt, 3:] == 0)  # unlearnt labels: knowledge only
