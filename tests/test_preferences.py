import numpy as np
import pytest

from mint.apps.rare_disease.prompts import HEADER, PROMPT
from mint.core import schemas
from mint.core.io import MintError, read_parquet
from mint.core.preferences import build_preferences, pick_lists, sft_target
from mint.core.prompts import parse_answer
from tests.factories import make_cases, make_labels, write_cohort, write_rankings

RANKED = ["d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8"]


def test_bottom_and_hard_negatives():
    chosen, rejected = pick_lists(RANKED, "d2", k=3, q=2, rejected="bottom", truth_in_chosen=False)
    assert chosen == ["d1", "d2", "d3"] and rejected == ["d8", "d7"]
    chosen, rejected = pick_lists(RANKED, "d2", k=3, q=2, rejected="hard", truth_in_chosen=False)
    assert rejected == ["d4", "d5"]


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
