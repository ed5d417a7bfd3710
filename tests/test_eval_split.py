"""`evaluation.split`: students, rankers and the report are scored on the split it names, and only there."""

import json

import numpy as np
import polars as pl
import pytest

import mint.core.predict as predict_module
from mint.apps.rare_disease.prompts import PROMPT
from mint.core import schemas
from mint.core.app import load_application
from mint.core.cohort import cases_in
from mint.core.io import MintError, read_parquet, write_parquet
from mint.core.rankings import rankings_frame
from mint.core.report import make_report, score_ranker
from tests.factories import make_cases, make_labels, write_cohort

LABELS = ["A", "B", "A", "B", "A", "B", "A"]
SPLITS = ["train", "train", "validation", "validation", "test", "test", "test"]


@pytest.fixture
def cohort(tmp_path):
    return write_cohort(tmp_path, make_cases(LABELS, SPLITS), make_labels(["A", "B"]))


def _ids(split):
    return [f"c{i}" for i, s in enumerate(SPLITS, 1) if s == split]


def test_no_case_in_the_scored_split_is_an_error_naming_the_key():
    cases = make_cases(["A", "B", "A"], ["train", "train", "test"])
    assert cases_in(cases, "test")["case_id"].to_list() == ["c3"]
    with pytest.raises(MintError, match="evaluation.split"):
        cases_in(cases, "validation")


@pytest.mark.parametrize("split", ["test", "validation"])
def test_a_student_answers_and_a_ranker_is_scored_on_the_split_only(cohort, tmp_path, monkeypatch, split):
    asked = []

    def answer(model_dir, prompts, **kwargs):
        asked.extend(prompts)
        return ["Label A; Label B"] * len(prompts)

    monkeypatch.setattr(predict_module, "answer_prompts", answer)
    out = tmp_path / "predictions.parquet"
    predict_module.predict("unused", cohort["cases"], out, method="orpo", prompt=PROMPT.resolved(None),
                           text_field="note", k=2, split=split)
    assert read_parquet(out)["case_id"].to_list() == _ids(split) and len(asked) == len(_ids(split))

    ids = [f"c{i}" for i in range(1, len(LABELS) + 1)]  # a ranker ranks every case: A above B
    rankings = tmp_path / "rankings.parquet"
    write_parquet(rankings_frame(ids, ["A", "B"], np.tile([1.0, 0.0], (len(ids), 1)), "knn"), rankings,
                  schemas.RANKINGS)
    scores_path = tmp_path / "scores.parquet"
    score_ranker(cohort["cases"], rankings, scores_path, modality="knn", method="knn", k=2, split=split)
    scores = read_parquet(scores_path).sort("case_id")
    assert scores["case_id"].to_list() == _ids(split)
    truth = dict(zip(ids, LABELS))
    assert scores["rank"].to_list() == [1 if truth[c] == "A" else 2 for c in _ids(split)]


def test_a_validation_report_says_so_first(cohort, tmp_path):
    scored = _ids("validation")
    scores = pl.DataFrame({"case_id": scored, "method": ["orpo"] * 2, "label_id": ["A", "B"],
                           "predicted_ids": [["A"], ["A"]], "rank": [1, None], "n_predicted": [1, 1],
                           "n_hallucinated": [0, 0], "format_ok": [True, True], "seed": [1, 1]})
    path = tmp_path / "scores.parquet"
    write_parquet(scores, path, schemas.CASE_SCORES)
    out = tmp_path / "report"
    out.mkdir()
    make_report([path], [], out, app=load_application("rare_disease"), k=3, ks=[1, 3], n_boot=20, seed=0,
                cases_path=cohort["cases"], candidates_path=cohort["candidates"], split="validation")
    summary = (out / "summary.md").read_text().splitlines()
    assert summary[2].startswith("**Scored on the validation cases** (`evaluation.split: validation`)")
    assert any(line.startswith("Validation cases: 2.") for line in summary)
    assert json.loads((out / "metrics.json").read_text())["split"] == "validation"
