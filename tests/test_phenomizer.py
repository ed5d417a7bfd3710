"""Phenomizer on a hand-made ontology whose IC values and scores are worked out by hand below."""

import math

import numpy as np
import polars as pl
import pytest

from mint.apps.rare_disease import schemas as knowledge_schemas
from mint.apps.rare_disease.knowledge import knowledge_files
from mint.apps.rare_disease.phenomizer import PhenomizerRanker, rank_cohort
from mint.core import schemas
from mint.core.io import MintError, read_parquet, write_parquet
from tests.factories import make_cases, make_labels, write_cohort

# R is the root; A and B its children; A1, A2 under A; B1 under B; C under both A and B.
R, A, B, A1, A2, B1, C = (f"HP:000000{i}" for i in range(1, 8))
TERMS = pl.DataFrame(
    {
        "hpo_id": [R, A, B, A1, A2, B1, C],
        "name": ["root", "a", "b", "a1", "a2", "b1", "c"],
        "parents": [[], [R], [R], [A], [A], [B], [A, B]],
    }
)
# Closures: D1 {A1,A,B1,B,R}, D2 {A2,A,R}, D3 {C,A,B,R}, D4 {B1,B,R}; 4 annotated diseases.
ANNOTATIONS = pl.DataFrame(
    {
        "disease_id": ["OMIM:1", "OMIM:1", "OMIM:2", "OMIM:3", "OMIM:4"],
        "hpo_id": [A1, B1, A2, C, B1],
        "frequency": [1.0, 0.5, 1.0, 1.0, 0.2],
    }
)
# OMIM:0 has no annotation in this "release"; its id sorts first, yet it must rank last.
PANEL = ["OMIM:1", "OMIM:2", "OMIM:3", "OMIM:4", "OMIM:0"]
LN = math.log


def ranker(mode="one_way"):
    return PhenomizerRanker(ANNOTATIONS, TERMS, PANEL, mode)


def test_information_content_by_hand():
    r = ranker()
    expected = {R: 0.0, A: LN(4 / 3), B: LN(4 / 3), A1: LN(4), A2: LN(4), B1: LN(2), C: LN(4)}
    for term, ic in expected.items():
        assert r.information_content(term) == pytest.approx(ic, abs=1e-6), term
    assert r.n_diseases == 4
    assert r.n_unannotated == 1


def test_one_way_scores_by_hand():
    # Patient A1, B1: best matches D1 (A1: ln4, B1: ln2), D2 (A: ln 4/3, R: 0),
    # D3 (A: ln 4/3, B: ln 4/3), D4 (R: 0, B1: ln2), OMIM:0 nothing.
    got = ranker().score([[A1, B1]])[0]
    want = [(LN(4) + LN(2)) / 2, LN(4 / 3) / 2, LN(4 / 3), LN(2) / 2, 0.0]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_symmetric_scores_by_hand():
    # Disease -> patient (patient closure A1, A, R, B1, B): D1 (ln4 + ln2)/2, D2 ln 4/3, D3 ln 4/3,
    # D4 ln2; the symmetric score averages that with the one-way score.
    got = ranker("symmetric").score([[A1, B1]])[0]
    want = [(LN(4) + LN(2)) / 2, 0.75 * LN(4 / 3), LN(4 / 3), 0.75 * LN(2), 0.0]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_bma_scores_by_hand():
    # (sum of the 2 patient-side best matches + sum of the m disease-side ones) / (2 + m).
    got = ranker("bma").score([[A1, B1]])[0]
    want = [(LN(4) + LN(2)) / 2, 2 * LN(4 / 3) / 3, LN(4 / 3), 2 * LN(2) / 3, 0.0]
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("mode", ["one_way", "symmetric", "bma"])
def test_exact_annotations_rank_their_disease_first(mode):
    r = ranker(mode)
    for disease, terms in [("OMIM:1", [A1, B1]), ("OMIM:2", [A2]), ("OMIM:3", [C]), ("OMIM:4", [B1])]:
        scores = r.score([terms])[0]
        others = np.delete(scores, PANEL.index(disease))
        if mode == "one_way" and disease == "OMIM:4":
            # One-way scoring cannot tell D4 {B1} from its superset D1 {A1, B1}: a tie, at the top.
            assert scores[PANEL.index(disease)] == others.max()
        else:
            assert scores[PANEL.index(disease)] > others.max(), (mode, terms)


def test_ancestor_only_match_scores_lower_than_exact():
    scores = ranker().score([[A2], [A]])
    d2 = PANEL.index("OMIM:2")
    assert scores[1, d2] == pytest.approx(LN(4 / 3), abs=1e-6)
    assert scores[1, d2] < scores[0, d2] == pytest.approx(LN(4), abs=1e-6)


def test_duplicates_and_empty_cases():
    r = ranker()
    np.testing.assert_allclose(r.score([[A1, B1, A1]]), r.score([[A1, B1]]))
    assert not r.score([[]]).any()


def test_unknown_term_raises_naming_it():
    with pytest.raises(MintError, match=r"HP:9999999.*not a term"):
        ranker().score([[A1], [A1, "HP:9999999"]])
    cases = pl.DataFrame({"case_id": ["p1"], "hpo_ids": [["HP:9999999"]]})
    with pytest.raises(MintError, match=r"case 'p1'.*HP:9999999"):
        ranker().rank_cases(cases)


def test_bad_mode_raises():
    with pytest.raises(MintError, match="mode"):
        ranker("two_way")


def test_rank_cases_writes_rankings(tmp_path):
    cases = pl.DataFrame({"case_id": ["p1", "p2"], "hpo_ids": [[A1, B1], [R]]})
    df = ranker().rank_cases(cases)
    write_parquet(df, tmp_path / "r.parquet", schemas.RANKINGS)
    df = read_parquet(tmp_path / "r.parquet", schemas.RANKINGS)
    assert df.height == 2 * len(PANEL)
    assert set(df["modality"].to_list()) == {"phenomizer"}
    p1 = df.filter(pl.col("case_id") == "p1").sort("rank")
    assert p1["label_id"].to_list() == ["OMIM:1", "OMIM:4", "OMIM:3", "OMIM:2", "OMIM:0"]
    # Only the root matches: every score is 0, so ties go to annotated diseases, then by id.
    p2 = df.filter(pl.col("case_id") == "p2").sort("rank")
    assert p2["label_id"].to_list() == ["OMIM:1", "OMIM:2", "OMIM:3", "OMIM:4", "OMIM:0"]
    assert p2["rank"].to_list() == [1, 2, 3, 4, 5]


def test_rank_cohort_skips_cases_without_terms(tmp_path, capsys):
    knowledge = knowledge_files(tmp_path / "knowledge")
    write_parquet(ANNOTATIONS, knowledge["annotations"], knowledge_schemas.ANNOTATIONS)
    write_parquet(TERMS.with_columns(is_facial=False), knowledge["terms"], knowledge_schemas.TERMS)
    # p3 is a training case: only the test split is ranked.
    cases = make_cases(["OMIM:2", "OMIM:1", "OMIM:3"], ["test", "test", "train"], case_id=["p1", "p2", "p3"],
                       hpo_ids=[[A2], None, [C]])
    cohort = write_cohort(tmp_path / "cohort", cases, make_labels(PANEL))

    rank_cohort(knowledge["annotations"], knowledge["terms"], cohort["cases"], cohort["candidates"],
                tmp_path / "rankings.parquet")
    df = read_parquet(tmp_path / "rankings.parquet", schemas.RANKINGS)
    assert set(df["case_id"].to_list()) == {"p1"}
    assert df.height == len(PANEL)
    assert df.filter(pl.col("rank") == 1)["label_id"].to_list() == ["OMIM:2"]
    assert "skipping 1 case(s) without HPO terms" in capsys.readouterr().out
