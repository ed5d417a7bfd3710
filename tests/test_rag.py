"""Retrieval baselines: nearest training notes (MiniLM embeddings or BM25) and kNN disease scores."""

import numpy as np
import pytest

from mint.apps.rare_disease.prompts import PROMPT
from mint.apps.rare_disease.rag import knn_rankings, knn_scores, neighbours, rag_context
from mint.core import schemas
from mint.core.io import MintError, read_parquet
from mint.core.prompts import build_prompt
from tests.factories import make_cases, make_labels, write_cohort

TRAIN = ["seizures and microcephaly", "short stature and hypertelorism", "seizures and ataxia"]


def test_minilm_neighbours_rank_by_cosine_and_break_ties_by_row():
    train = np.eye(3, dtype=np.float32)
    query = np.array([[0.0, 0.6, 0.8], [1.0, 0.0, 0.0]], dtype=np.float32)
    idx, sim = neighbours(TRAIN, ["a", "b"], 2, "minilm", train, query)
    assert idx.tolist() == [[2, 1], [0, 1]]  # row 1 and 2 tie at 0 for the second query: the earlier wins
    assert sim[0].tolist() == pytest.approx([0.8, 0.6])


def test_bm25_neighbours_share_words():
    idx, _ = neighbours(TRAIN, ["a patient with ataxia"], 1, "bm25")
    assert idx.tolist() == [[2]]
    with pytest.raises(MintError, match="baselines.retriever"):
        neighbours(TRAIN, ["x"], 1, "tfidf")


def test_knn_scores_sum_neighbour_similarity_per_disease():
    idx = np.array([[0, 2, 1]])
    sim = np.array([[0.9, 0.5, -0.2]])  # a negative similarity adds (almost) nothing
    scores = knn_scores(idx, sim, np.array([0, 1, 0]), 3)
    assert scores[0, 0] == pytest.approx(1.4) and scores[0, 1] == pytest.approx(0.0, abs=1e-6)
    assert scores[0, 2] == 0 and scores[0].argmax() == 0


def test_knn_rankings_rank_the_test_cases_by_their_neighbours(tmp_path):
    cases = make_cases(["d1", "d2", "d1", "d2"], ["train", "train", "train", "test"],
                       note=[*TRAIN, "ataxia and seizures since birth"])
    paths = write_cohort(tmp_path / "cohort", cases, make_labels(["d1", "d2", "d3"]))
    knn_rankings(paths["cases"], paths["candidates"], None, tmp_path / "knn.parquet", retriever="bm25",
                 n_neighbours=2)
    out = read_parquet(tmp_path / "knn.parquet", schemas.RANKINGS)
    assert set(out["case_id"]) == {"c4"}  # test cases only
    assert out.sort("rank")["label_id"].to_list() == ["d1", "d2", "d3"]  # both neighbours have d1
    assert set(out["modality"]) == {"knn"}


def test_rag_prompt_puts_the_diagnoses_before_the_note():
    context = rag_context(["Dravet syndrome", "Angelman syndrome"])
    user = build_prompt(PROMPT.resolved(None), 3, "A boy with seizures.", "note", context=context)[1]
    assert user["content"].startswith("Diagnoses of the most similar earlier patients, most similar first: "
                                      "Dravet syndrome; Angelman syndrome.")
    assert "A boy with seizures." in user["content"]
