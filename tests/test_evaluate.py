"""Unit tests of mint.core.evaluate on a handful of made-up diseases and cases."""

import numpy as np
import polars as pl
import pytest

from mint.apps.rare_disease.prompts import HEADER, normalise
from mint.core.evaluate import (
    CASE_SCORE_SCHEMA,
    NameMatcher,
    normalize_name,
    paired_bootstrap,
    score_predictions,
    score_rankings,
    summarize,
)
from mint.core.io import MintError
from mint.core.prompts import format_answer
from mint.core.rankings import rankings_frame
from tests.factories import make_cases, make_labels


@pytest.fixture
def diseases():
    return make_labels(
        ["OMIM:163950", "OMIM:216550", "OMIM:100001", "OMIM:100002", "OMIM:100003"],
        ["Noonan syndrome 1", "Cohen syndrome", "Shared name disease", "Shared name disease", "Zeta"],
        [["NS1"], ["Pepper syndrome"], [], [], ["Cohen syndrome"]],
    )


@pytest.fixture
def matcher(diseases):
    return NameMatcher(diseases)


GENERIC = [
    ("Noonan Syndrome 1", "noonan syndrome 1"),
    ("  Cohen-syndrome  ", "cohen syndrome"),
    ("3-methylglutaconic aciduria, type IX.", "3 methylglutaconic aciduria type ix"),
    ("Alzheimer's disease", "alzheimers disease"),
    ("Sjögren syndrome", "sjogren syndrome"),
    ("2,4-dienoyl-CoA reductase deficiency", "2 4 dienoyl coa reductase deficiency"),
]
OMIM_TAGGED = [
    ("#163950 Noonan syndrome 1", "noonan syndrome 1"),
    ("OMIM:163950 Noonan syndrome 1", "noonan syndrome 1"),
    ("Noonan syndrome 1 (OMIM #163950)", "noonan syndrome 1"),
    ("163950 Noonan syndrome 1", "noonan syndrome 1"),
]


@pytest.mark.parametrize(("raw", "expected"), GENERIC)
def test_normalize_name(raw, expected):
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), GENERIC + OMIM_TAGGED)
def test_rare_disease_normalise_also_drops_omim_numbers(raw, expected):
    assert normalise(raw) == expected


def test_generic_normaliser_keeps_numbers():
    assert normalize_name("OMIM:163950 Noonan syndrome 1") == "omim 163950 noonan syndrome 1"


def test_match_exact_synonym_fuzzy_and_hallucination(matcher):
    assert matcher.match("noonan syndrome 1") == "OMIM:163950"
    assert matcher.match("NS1") == "OMIM:163950"
    assert matcher.match("Pepper Syndrome") == "OMIM:216550"
    assert matcher.match("Noonan syndrom 1") == "OMIM:163950"
    assert matcher.match("Glorbix-Fentwhistle disease") is None
    assert matcher.match("") is None
    assert matcher.match(None) is None


def test_own_name_beats_synonym(diseases):
    # "Cohen syndrome" is OMIM:216550's name and OMIM:100003's synonym, whichever row comes first.
    assert NameMatcher(diseases).match("Cohen syndrome") == "OMIM:216550"
    assert NameMatcher(diseases.reverse()).match("Cohen syndrome") == "OMIM:216550"


def test_prefer_breaks_ties(diseases):
    assert NameMatcher(diseases).match("Shared name disease") == "OMIM:100001"
    assert NameMatcher(diseases, prefer={"OMIM:100002"}).match("Shared name disease") == "OMIM:100002"
    assert NameMatcher(diseases, prefer={"OMIM:100002"}).match("Shared name diseas") == "OMIM:100002"
    assert NameMatcher(diseases, prefer={"OMIM:100003"}).match("Cohen syndrome") == "OMIM:100003"


def test_matcher_uses_the_applications_normaliser(diseases):
    assert NameMatcher(diseases).match("OMIM:163950 Noonan syndrome 1") is None
    assert NameMatcher(diseases, normalise=normalise).match("OMIM:163950 Noonan syndrome 1") == "OMIM:163950"


def test_cutoff_controls_fuzzy(diseases):
    assert NameMatcher(diseases, cutoff=0.8).match("Nonan syndrom") == "OMIM:163950"
    assert NameMatcher(diseases, cutoff=0.99).match("Nonan syndrom") is None
    with pytest.raises(MintError, match="cutoff"):
        NameMatcher(diseases, cutoff=80)


@pytest.fixture
def truth():
    return make_cases(["OMIM:163950", "OMIM:216550", "OMIM:100003"], "test").select("case_id", "label_id")


def _predictions(rows):
    return pl.DataFrame(
        [{"case_id": c, "method": m, "response": r, "predicted_names": n} for c, m, r, n in rows],
        schema={"case_id": pl.Utf8, "method": pl.Utf8, "response": pl.Utf8, "predicted_names": pl.List(pl.Utf8)},
    )


def test_score_predictions(matcher, truth):
    a1 = ["Cohen syndrome", "Noonan syndrom 1", "Made-up disorder"]
    a2 = ["Cohen syndrome", "Zeta"]
    a3 = ["Fake one", "Fake two", "Fake three"]
    preds = _predictions(
        [
            ("c1", "student", format_answer(a1, HEADER), a1),
            ("c2", "student", format_answer(a2, HEADER), a2),
            ("c3", "student", "1. Fake one\n2. Fake two\n3. Fake three", a3),
        ]
    )
    out = score_predictions(preds, truth, matcher, k=3, header=HEADER)
    assert out["predicted_ids"].to_list() == [
        ["OMIM:216550", "OMIM:163950", None],
        ["OMIM:216550", "OMIM:100003"],
        [None, None, None],
    ]
    assert out["rank"].to_list() == [2, 1, None]
    assert out["n_predicted"].to_list() == [3, 2, 3]
    assert out["n_hallucinated"].to_list() == [1, 0, 3]
    # c2 lists 2 of the 3 asked for; c3 has no header.
    assert out["format_ok"].to_list() == [True, False, False]
    assert out["label_id"].to_list() == ["OMIM:163950", "OMIM:216550", "OMIM:100003"]
    # The same answers under another application's header break the format, nothing else.
    other = score_predictions(preds, truth, matcher, k=3, header="TISSUES:")
    assert other["format_ok"].to_list() == [False, False, False]
    assert other.drop("format_ok").equals(out.drop("format_ok"))


def test_score_predictions_unknown_case(matcher, truth):
    preds = _predictions([("c9", "student", "", []), ("c1", "student", "", [])])
    with pytest.raises(MintError, match="c9"):
        score_predictions(preds, truth, matcher, k=3, header=HEADER)


def test_score_rankings_top_k(truth):
    labels = ["OMIM:216550", "OMIM:163950", "OMIM:100001", "OMIM:100002"]
    rankings = rankings_frame(["c1", "c2"], labels, np.array([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4]]), "note")
    out = score_rankings(rankings, truth, k=2, method="teacher_note")
    assert out["case_id"].to_list() == ["c1", "c2"]
    assert out["predicted_ids"].to_list() == [["OMIM:216550", "OMIM:163950"], ["OMIM:100002", "OMIM:100001"]]
    assert out["rank"].to_list() == [2, None]  # c2's truth is ranked 4th, outside the top 2
    assert out["n_hallucinated"].to_list() == [0, 0]
    assert out["format_ok"].to_list() == [True, True]
    with pytest.raises(MintError, match="modalities"):
        score_rankings(rankings.with_columns(modality=pl.Series(["note", "photo"] * 4)), truth, k=2, method="t")


def _scores(method, ranks, n_hall, n_pred, fmt, case_ids=None, seed=None):
    n = len(ranks)
    return pl.DataFrame(
        {
            "case_id": case_ids or [f"c{i}" for i in range(n)],
            "method": [method] * n,
            "label_id": ["D"] * n,
            "predicted_ids": [["D"]] * n,
            "rank": ranks,
            "n_predicted": n_pred,
            "n_hallucinated": n_hall,
            "format_ok": fmt,
            "seed": [seed] * n,
        },
        schema=CASE_SCORE_SCHEMA,
    )


def test_summarize_point_estimates_and_intervals():
    scores = pl.concat(
        [
            _scores("b", [1, 2, None, 4], [0, 1, 3, 0], [3, 3, 3, 2], [True, True, False, True]),
            _scores("a", [None, None, 1, 11], [0, 0, 0, 0], [0, 0, 1, 1], [False, False, False, True]),
        ]
    )
    out = summarize(scores, ks=(1, 3, 10), n_boot=200, seed=3)
    assert out["method"].to_list() == ["b", "a"]
    b = out.row(0, named=True)
    assert b["n_cases"] == 4
    assert b["top1"] == pytest.approx(0.25)
    assert b["top3"] == pytest.approx(0.5)
    assert b["top10"] == pytest.approx(0.75)
    assert b["mrr"] == pytest.approx((1 + 1 / 2 + 0 + 1 / 4) / 4)
    assert b["hallucination_rate"] == pytest.approx(4 / 11)
    assert b["format_rate"] == pytest.approx(0.75)
    a = out.row(1, named=True)
    assert a["top10"] == pytest.approx(0.25)
    assert a["mrr"] == pytest.approx((1 + 1 / 11) / 4)
    assert a["hallucination_rate"] == 0.0
    for row in (a, b):
        for metric in ("top1", "top3", "top10", "mrr", "hallucination_rate", "format_rate"):
            assert row[f"{metric}_lo"] <= row[metric] <= row[f"{metric}_hi"]
    assert b["top10_lo"] < b["top10_hi"]
    assert summarize(scores, n_boot=200, seed=3).equals(out)
    assert not summarize(scores, n_boot=200, seed=4).equals(out)


def test_summarize_averages_seeds_per_case():
    ids = [f"c{i}" for i in range(4)]
    s1 = _scores("m", [1, 1, None, None], [0] * 4, [1] * 4, [True] * 4, case_ids=ids, seed=1)
    s2 = _scores("m", [1, None, None, None], [0] * 4, [1] * 4, [True] * 4, case_ids=ids, seed=2)
    out = summarize(pl.concat([s1, s2]), n_boot=200, seed=0).row(0, named=True)
    assert out["n_cases"] == 4 and out["n_seeds"] == 2
    assert out["top1"] == pytest.approx((0.5 + 0.25) / 2)
    assert out["top1_seed_sd"] == pytest.approx(np.std([0.5, 0.25], ddof=1))
    single = summarize(s1, n_boot=200, seed=0).row(0, named=True)
    assert single["n_seeds"] == 1 and single["top1_seed_sd"] == 0.0
    # Paired against itself across seeds: the seed-averaged scores differ only by seed noise.
    res = paired_bootstrap(pl.concat([s1, s2, s1.with_columns(method=pl.lit("o"))]), "m", "o", n_boot=100)
    assert res["n_cases"] == 4 and res["diff"] == pytest.approx(0.375 - 0.5)


def test_summarize_rejects_duplicate_case():
    scores = _scores("a", [1, 2], [0, 0], [1, 1], [True, True], case_ids=["c1", "c1"])
    with pytest.raises(MintError, match="a/c1"):
        summarize(scores)


def test_paired_bootstrap_sign():
    n = 40
    ids = [f"c{i}" for i in range(n)]
    good = _scores("good", [1] * 30 + [None] * 10, [0] * n, [1] * n, [True] * n, case_ids=ids)
    bad = _scores("bad", [1] * 5 + [None] * 35, [0] * n, [1] * n, [True] * n, case_ids=ids[::-1])
    scores = pl.concat([good, bad])
    res = paired_bootstrap(scores, "good", "bad", n_boot=500, seed=1)
    assert res["n_cases"] == n
    # Paired by case id although "bad" lists its cases in reverse.
    assert res["diff"] == pytest.approx(30 / 40 - 5 / 40)
    assert 0 < res["lo"] <= res["diff"] <= res["hi"]
    assert res["p_value"] < 0.01
    flipped = paired_bootstrap(scores, "bad", "good", n_boot=500, seed=1)
    assert flipped["diff"] == pytest.approx(-res["diff"])
    assert flipped["hi"] < 0
    same = paired_bootstrap(pl.concat([good, good.with_columns(method=pl.lit("copy"))]), "good", "copy")
    assert same["diff"] == 0 and same["p_value"] == 1.0
    with pytest.raises(MintError, match="nope"):
        paired_bootstrap(scores, "good", "nope")


def test_teacher_agreement_counts_the_lists_an_answer_follows():
    from mint.core.evaluate import teacher_agreement
    from mint.core.rankings import rankings_frame

    # The teacher ranks a > b > c > d > e for case c1: top 2 = {a, b}, bottom 2 = {d, e}.
    rankings = rankings_frame(["c1"], list("abcde"), np.array([[5.0, 4, 3, 2, 1]]), "m")
    scores = pl.DataFrame({"case_id": ["c1", "c1", "c9"], "method": ["x", "y", "x"], "label_id": ["a"] * 3,
                           "predicted_ids": [["a", "e"], ["c", None], ["a"]]})
    table = teacher_agreement(scores, rankings, k=2, q=2)
    assert table.rows() == [("x", 1, 0.5, 0.5), ("y", 1, 0.0, 1.0)]  # c9 is not ranked: left out


def test_confusion_counts_the_first_named_label():
    from mint.core.evaluate import confusion

    scores = pl.DataFrame({"case_id": ["c1", "c2", "c3"], "method": ["m"] * 3, "label_id": ["a", "a", "b"],
                           "predicted_ids": [["a", "b"], [None], ["a"]]})
    assert confusion(scores, "m", ["a", "b"]).tolist() == [[1, 0, 1], [1, 0, 0]]
