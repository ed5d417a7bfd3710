import numpy as np
import pytest

from mint.apps.rare_disease.prompts import HEADER, PROMPT
from mint.core import schemas
from mint.core.io import MintError, read_parquet
from mint.core.preferences import (
    build_preferences,
    build_student_error_pairs,
    mass_size,
    pick_lists,
    sft_target,
    similar_labels,
    student_errors,
)
from mint.core.prompts import parse_answer
from mint.core.rankings import label_similarity
from tests.factories import make_cases, make_labels, write_cohort, write_rankings

RANKED = ["d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8"]


def test_bottom_and_hard_negatives():
    chosen, rejected = pick_lists(RANKED, "d2", k=3, q=2, rejected="bottom", truth_in_chosen=False)
    assert chosen == ["d1", "d2", "d3"] and rejected == ["d8", "d7"]
    chosen, rejected = pick_lists(RANKED, "d2", k=3, q=2, rejected="hard", truth_in_chosen=False)
    assert rejected == ["d4", "d5"]


def test_confident_errors_are_the_best_wrong_labels_below_the_chosen():
    """`hard` takes the q just below rank k, the truth too; `confident_errors` skips the truth."""
    assert pick_lists(RANKED, "d4", k=3, q=2, rejected="hard", truth_in_chosen=False)[1] == ["d4", "d5"]
    assert pick_lists(RANKED, "d4", k=3, q=2, rejected="confident_errors", truth_in_chosen=False) == (
        ["d1", "d2", "d3"], ["d5", "d6"])
    # With the truth moved into chosen, the errors start right after the chosen ones.
    assert pick_lists(RANKED, "d6", k=3, q=2, rejected="confident_errors", truth_in_chosen=True) == (
        ["d6", "d1", "d2"], ["d3", "d4"])
    # A shorter chosen list (chosen: mass) moves the errors up.
    assert pick_lists(RANKED, "d2", k=3, q=2, rejected="confident_errors", truth_in_chosen=False, n_chosen=1) == (
        ["d1"], ["d3", "d4"])


def test_mass_is_the_shortest_top_list_reaching_the_probability():
    probs = np.array([0.5, 0.3, 0.1, 0.05, 0.05])
    logits = np.log(probs) + 2.0  # an offset the softmax ignores
    lse = float(np.logaddexp.reduce(logits))
    sizes = {mass: mass_size(logits[:4], lse, mass, k=3) for mass in (0.4, 0.5, 0.6, 0.8, 0.9, 0.99)}
    assert sizes == {0.4: 1, 0.5: 1, 0.6: 2, 0.8: 2, 0.9: 3, 0.99: 3}  # at most k
    assert pick_lists(RANKED, "d8", k=3, q=2, rejected="bottom", truth_in_chosen=False,
                      n_chosen=2) == (["d1", "d2"], ["d8", "d7"])


def test_similar_rejects_what_the_teacher_confuses_with_the_chosen():
    labels = ["d1", "d2", "d3", "d4", "d5"]
    similarity = np.eye(5)
    similarity[0, 3] = similarity[3, 0] = 0.9  # d1 ~ d4
    similarity[1, 4] = similarity[4, 1] = 0.5  # d2 ~ d5
    similarity[0, 2] = similarity[2, 0] = -0.5
    similar_to = similar_labels(similarity, labels)
    assert similar_to(["d1"]) == ["d1", "d4", "d2", "d5", "d3"]
    chosen, rejected = pick_lists(labels, "d5", k=2, q=2, rejected="similar", truth_in_chosen=False,
                                  similar_to=similar_to)
    assert chosen == ["d1", "d2"] and rejected == ["d4", "d3"]  # never chosen, never the truth (d5)


def test_label_similarity_is_the_correlation_of_centred_scores(tmp_path):
    rng = np.random.default_rng(3)
    labels = [f"d{j}" for j in range(6)]
    scores = rng.normal(size=(11, 6)) + rng.normal(size=(11, 1)) * 5  # large per-case offsets
    scores[:, 4] = scores[:, 1] + rng.normal(scale=0.01, size=11)  # d4 follows d1
    ids = [f"c{i}" for i in range(11)]
    path = write_rankings(tmp_path / "r.parquet", dict(zip(ids, scores.tolist())), labels, "m")
    got = label_similarity(path, "m", ids[:10] + ["absent"], labels, chunk=3)
    centred = scores[:10] - scores[:10].mean(axis=1, keepdims=True)
    np.testing.assert_allclose(got, np.corrcoef(centred, rowvar=False), atol=1e-10)
    assert got[1, 4] > 0.9


def test_an_unknown_pair_option_names_the_key(tmp_path):
    with pytest.raises(MintError, match="'preferences.rejected': 'worst'"):
        pick_lists(RANKED, "d1", k=3, q=2, rejected="worst", truth_in_chosen=False)
    with pytest.raises(MintError, match="'preferences.chosen': 'all'"):
        build_preferences("c", "l", "r", tmp_path / "p", tmp_path / "s", modality="m", prompt={}, text_field=None,
                          k=3, q=2, chosen="all")


def test_truth_forced_into_chosen():
    chosen, rejected = pick_lists(RANKED, "d8", k=3, q=2, rejected="bottom", truth_in_chosen=True)
    assert chosen == ["d8", "d1", "d2"] and "d8" not in rejected
    chosen, _ = pick_lists(RANKED, "d8", k=3, q=2, rejected="bottom", truth_in_chosen=False)
    assert "d8" not in chosen


def test_panel_too_small_names_the_keys():
    with pytest.raises(MintError, match="preferences.k"):
        pick_lists(RANKED[:4], "d1", k=3, q=2, rejected="bottom", truth_in_chosen=False)


def test_sft_targets():
    assert sft_target(RANKED, "d5", 3, "teacher") == ["d1", "d2", "d3"]
    assert sft_target(RANKED, "d5", 3, "truth") == ["d5", "d1", "d2"]


def _build(tmp_path, paths, rankings, out, **params):
    build_preferences(paths["cases"], paths["candidates"], rankings, tmp_path / out / "preferences.parquet",
                      tmp_path / out / "sft.parquet", modality="note_photo", prompt=PROMPT.resolved(None),
                      text_field="note", k=3, q=2, **params)


def test_build_preferences_writes_trl_conversational_format(tmp_path):
    candidates = make_labels(RANKED, [f"Disease {i}" for i in range(1, 9)])
    cases = make_cases(["d1", "d2", "d3"], ["train", "train", "test"], note=["note one", "note two", "note three"])
    paths = write_cohort(tmp_path / "cohort", cases, candidates)
    best_first = list(np.arange(8, 0, -1, dtype=float))  # every case: d1 best ... d8 worst
    rankings = write_rankings(tmp_path / "rank.parquet", {c: best_first for c in ("c1", "c2", "c3")}, RANKED,
                              "note_photo")
    _build(tmp_path, paths, rankings, "out")
    prefs = read_parquet(tmp_path / "out/preferences.parquet", schemas.PREFERENCES)
    assert prefs["case_id"].to_list() == ["c1", "c2"]  # training split only
    row = prefs.row(0, named=True)
    assert [m["role"] for m in row["prompt"]] == ["system", "user"] and "note one" in row["prompt"][1]["content"]
    assert [m["role"] for m in row["chosen"]] == ["assistant"] and [m["role"] for m in row["rejected"]] == ["assistant"]
    assert parse_answer(row["chosen"][0]["content"], HEADER) == (["Disease 1", "Disease 2", "Disease 3"], True)
    assert parse_answer(row["rejected"][0]["content"], HEADER)[0] == ["Disease 8", "Disease 7"]
    # c1's truth d1 is the teacher's best; c2's truth d2 its second: both in chosen without forcing it.
    assert prefs["truth_in_chosen"].to_list() == [True, True]
    sft = read_parquet(tmp_path / "out/sft.parquet", schemas.SFT)
    assert sft["target_ids"].to_list() == [["d1", "d2", "d3"], ["d1", "d2", "d3"]]
    # Same inputs and seed: byte-identical files.
    _build(tmp_path, paths, rankings, "again")
    for name in ("preferences.parquet", "sft.parquet"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_sft_target_truth_puts_the_label_first(tmp_path):
    candidates = make_labels(RANKED)
    paths = write_cohort(tmp_path / "cohort", make_cases(["d6"]), candidates)
    rankings = write_rankings(tmp_path / "rank.parquet", {"c1": list(np.arange(8, 0, -1, dtype=float))}, RANKED,
                              "note_photo")
    _build(tmp_path, paths, rankings, "out", sft_target_kind="truth", truth_in_chosen=True)
    assert read_parquet(tmp_path / "out/sft.parquet")["target_ids"].to_list() == [["d6", "d1", "d2"]]
    prefs = read_parquet(tmp_path / "out/preferences.parquet")
    assert prefs["chosen_ids"].to_list() == [["d6", "d1", "d2"]] and prefs["rejected_ids"].to_list() == [["d8", "d7"]]


def test_training_case_without_ranking_is_named(tmp_path):
    paths = write_cohort(tmp_path / "cohort", make_cases(["d1", "d2"]), make_labels(RANKED))
    rankings = write_rankings(tmp_path / "rank.parquet", {"c1": list(range(8))}, RANKED, "note_photo")
    with pytest.raises(MintError, match="'note_photo' ranking for training case 'c2'"):
        _build(tmp_path, paths, rankings, "out")
    assert not (tmp_path / "out").exists()


def test_student_errors_are_its_best_labels_neither_chosen_nor_true():
    """The student's own mistakes, best first; the teacher's list fills a short one, never with the truth."""
    assert student_errors(["d2", "d5", "d1", "d6", "d7"], ["d1", "d2", "d3"], "d4", ["d8", "d7"], 2) == ["d5", "d6"]
    assert student_errors(["d4", "d1", "d5"], ["d1", "d2", "d3"], "d4", ["d5", "d4", "d8"], 3) == ["d5", "d8"]
    assert student_errors([], ["d1"], "d2", ["d8", "d7"], 2) == ["d8", "d7"]


def test_student_error_pairs_keep_the_teachers_pairs_but_their_rejected(tmp_path):
    candidates = make_labels(RANKED, [f"Disease {i}" for i in range(1, 9)])
    cases = make_cases(["d1", "d2", "d3"], ["train", "train", "test"], note=["note one", "note two", "note three"])
    paths = write_cohort(tmp_path / "cohort", cases, candidates)
    best_first = list(np.arange(8, 0, -1, dtype=float))
    teacher = write_rankings(tmp_path / "rank.parquet", {c: best_first for c in ("c1", "c2", "c3")}, RANKED,
                             "note_photo")
    _build(tmp_path, paths, teacher, "out")
    # The student: c1 ranks d5 > d1 > d6 > ..., c2 ranks d2 > d4 > d8 > ... (d2 is c2's truth and chosen).
    student = write_rankings(tmp_path / "student.parquet",
                             {"c1": [7, 1, 0, 0, 8, 6, 0, 0], "c2": [0, 9, 0, 8, 0, 0, 0, 7]}, RANKED, "student")
    build_student_error_pairs(tmp_path / "out/preferences.parquet", paths["cases"], paths["candidates"], student,
                              tmp_path / "errors.parquet", header=HEADER, q=2)
    pairs = read_parquet(tmp_path / "errors.parquet", schemas.PREFERENCES)
    assert pairs["rejected_ids"].to_list() == [["d5", "d6"], ["d4", "d8"]]
    assert parse_answer(pairs["rejected"][0][0]["content"], HEADER)[0] == ["Disease 5", "Disease 6"]
    before = read_parquet(tmp_path / "out/preferences.parquet")
    assert pairs.drop("rejected", "rejected_ids").equals(before.drop("rejected", "rejected_ids"))
    # A training case the student did not rank is named.
    write_rankings(tmp_path / "c1_only.parquet", {"c1": list(range(8))}, RANKED, "student")
    with pytest.raises(MintError, match="no labels for training case 'c2'"):
        build_student_error_pairs(tmp_path / "out/preferences.parquet", paths["cases"], paths["candidates"],
                                  tmp_path / "c1_only.parquet", tmp_path / "bad.parquet", header=HEADER, q=2)
    assert not (tmp_path / "bad.parquet").exists()
