import polars as pl
import pytest

from mint.core import schemas
from mint.core.config import validate_config
from mint.core.io import MintError, read_parquet, write_parquet
from mint.core.preferences import build_preferences, pick_lists, sft_target
from mint.core.prompts import parse_answer
from mint.apps.rare_disease.teacher import rankings_frame

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


def test_build_preferences_writes_trl_conversational_format(tmp_path):
    import numpy as np

    panel = pl.DataFrame({"disease_id": [f"d{i}" for i in range(1, 9)], "name": [f"Disease {i}" for i in range(1, 9)]})
    cases = pl.DataFrame({
        "case_id": ["c1", "c2", "c3"], "disease_id": ["d1", "d2", "d3"], "split": ["train", "train", "test"],
        "note": ["note one", "note two", "note three"], "image_path": [None] * 3,
        "hpo_ids": [None] * 3, "note_hpo_ids": [None] * 3, "source": ["manifest"] * 3, "publication": [None] * 3,
    })
    cohort = tmp_path / "cohort"
    write_parquet(panel, cohort / "panel.parquet", schemas.PANEL)
    write_parquet(cases, cohort / "cases.parquet", schemas.CASES)
    scores = np.tile(np.arange(8, 0, -1, dtype=float), (3, 1))  # every case: d1 best ... d8 worst
    write_parquet(rankings_frame(["c1", "c2", "c3"], panel["disease_id"].to_list(), scores, "note_photo"),
                  tmp_path / "rank.parquet", schemas.RANKINGS)
    cfg = validate_config({"preferences": {"k": 3, "q": 2}})
    build_preferences(cfg, cohort, tmp_path / "rank.parquet", tmp_path / "out")
    prefs = read_parquet(tmp_path / "out/preferences.parquet", schemas.PREFERENCES)
    assert prefs["case_id"].to_list() == ["c1", "c2"]  # training split only
    row = prefs.row(0, named=True)
    assert [m["role"] for m in row["prompt"]] == ["system", "user"] and "note one" in row["prompt"][1]["content"]
    assert [m["role"] for m in row["chosen"]] == ["assistant"] and [m["role"] for m in row["rejected"]] == ["assistant"]
    assert parse_answer(row["chosen"][0]["content"]) == (["Disease 1", "Disease 2", "Disease 3"], True)
    assert parse_answer(row["rejected"][0]["content"])[0] == ["Disease 8", "Disease 7"]
    assert row["k"] == 3 and row["q"] == 2 and row["teacher"] == "note_photo" and row["truth_in_chosen"]
    sft = read_parquet(tmp_path / "out/sft.parquet", schemas.SFT)
    assert sft["target_ids"].to_list()[1] == ["d1", "d2", "d3"]
    # Same config and seed: byte-identical files.
    build_preferences(cfg, cohort, tmp_path / "rank.parquet", tmp_path / "again")
    for name in ("preferences.parquet", "sft.parquet"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
