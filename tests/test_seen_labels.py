"""Accuracy apart on test cases whose label has a real training case (seen) and on the others (unseen):
the grouping, the metrics of each group on a hand-made example, and the report's section.

    .venv/bin/python -m pytest -q tests/test_seen_labels.py
"""

import dataclasses
import json

import polars as pl
import pytest

from mint.core import schemas
from mint.core.app import load_application
from mint.core.evaluate import CASE_SCORE_SCHEMA, seen_labels, summarize_by_seen, training_counts
from mint.core.io import MintError, write_parquet
from mint.core.report import make_report
from tests.factories import make_cases, make_labels, write_cohort

# Training cases: A only simulated; B simulated and one real; C real only in validation; D one real.
# Test cases t1..t6: A, A, B, B, C, D; so t3, t4, t6 are seen and t1, t2, t5 unseen.
LABELS = ["A", "A", "B", "B", "C", "C", "D", "A", "A", "B", "B", "C", "D"]
SPLITS = ["train"] * 5 + ["validation", "train"] + ["test"] * 6
SOURCES = ["simulated", "simulated", "simulated", "manifest", "simulated", "manifest", "manifest",
           "manifest", "manifest", "manifest", "manifest", "manifest", "manifest"]
CASE_IDS = [f"r{i}" for i in range(7)] + [f"t{i}" for i in range(1, 7)]
TEST = CASE_IDS[7:]


def _cases(sources=SOURCES):
    return make_cases(LABELS, SPLITS, source=sources, case_id=CASE_IDS)


def _scores(method, ranks, seed=None):
    truth = dict(zip(CASE_IDS, LABELS))
    return pl.DataFrame({"case_id": TEST, "method": [method] * 6, "label_id": [truth[c] for c in TEST],
                         "predicted_ids": [[]] * 6, "rank": ranks, "n_predicted": [3] * 6,
                         "n_hallucinated": [0] * 6, "format_ok": [True] * 6, "seed": [seed] * 6},
                        schema=CASE_SCORE_SCHEMA)


def _all_scores():
    # ranker: t1..t6 ranked 1, -, 2, 1, 5, -; orpo seed 1: 1, 1, -, -, -, 1; seed 2: 1, -, 1, -, -, -.
    return pl.concat([_scores("teacher_external", [1, None, 2, 1, 5, None]),
                      _scores("orpo", [1, 1, None, None, None, 1], seed=1),
                      _scores("orpo", [1, None, 1, None, None, None], seed=2)])


def test_a_label_is_seen_only_with_a_real_training_case():
    cases = _cases()
    assert seen_labels(cases, ("simulated",)) == {"B", "D"}  # A: simulated only; C: real only in validation
    assert seen_labels(cases, ("simulated", "manifest")) == set()
    assert seen_labels(cases, ()) == {"A", "B", "C", "D"}  # nothing synthetic: every label with a training case
    counts = {r["label_id"]: (r["n_train"], r["n_train_real"]) for r in
              training_counts(cases, ("simulated",)).iter_rows(named=True)}
    assert counts == {"A": (2, 0), "B": (2, 1), "C": (1, 0), "D": (1, 1)}
    with pytest.raises(MintError, match="source"):
        seen_labels(cases.drop("source"), ("simulated",))


def test_each_group_is_scored_on_its_own_cases():
    out = summarize_by_seen(_all_scores(), {"B", "D"}, ks=(1, 3, 10), n_boot=200, seed=0)
    rows = {(r["group"], r["method"]): r for r in out.iter_rows(named=True)}
    assert out["group"].to_list() == ["seen", "seen", "unseen", "unseen"]
    assert all(r["n_cases"] == 3 for r in rows.values())
    seen, unseen = rows["seen", "teacher_external"], rows["unseen", "teacher_external"]
    # seen: t3 (rank 2), t4 (1), t6 (-); unseen: t1 (1), t2 (-), t5 (5)
    assert (seen["top1"], seen["top3"], seen["top10"]) == pytest.approx((1 / 3, 2 / 3, 2 / 3))
    assert seen["mrr"] == pytest.approx((1 / 2 + 1) / 3)
    assert (unseen["top1"], unseen["top3"], unseen["top10"]) == pytest.approx((1 / 3, 1 / 3, 2 / 3))
    assert unseen["mrr"] == pytest.approx((1 + 1 / 5) / 3)
    # orpo, seed-averaged per case: seen t3 1/2, t4 0, t6 1/2; unseen t1 1, t2 1/2, t5 0
    assert rows["seen", "orpo"]["top1"] == pytest.approx(1 / 3)
    assert rows["unseen", "orpo"]["top1"] == pytest.approx(1 / 2)
    assert rows["seen", "orpo"]["n_seeds"] == 2
    for r in rows.values():
        assert r["top1_lo"] <= r["top1"] <= r["top1_hi"]
    # Nothing seen: one group only.
    assert summarize_by_seen(_all_scores(), set(), n_boot=50)["group"].unique().to_list() == ["unseen"]


pytestmark = pytest.mark.filterwarnings("ignore:No artists with labels")  # no training curves here


def test_synthetic_sources_must_be_a_sequence_of_names():
    app = load_application("rare_disease")
    assert app.synthetic_sources == ("simulated",)
    with pytest.raises(MintError, match="synthetic_sources"):
        dataclasses.replace(app, synthetic_sources="simulated")


def _report(tmp_path, cases):
    paths = write_cohort(tmp_path, cases, make_labels(["A", "B", "C", "D"]))
    scores = tmp_path / "scores.parquet"
    write_parquet(_all_scores(), scores, schemas.CASE_SCORES)
    out = tmp_path / "report"
    out.mkdir()
    make_report([scores], [], out, app=load_application("rare_disease"), k=3, ks=[1, 3, 10], n_boot=100, seed=0,
                cases_path=paths["cases"], candidates_path=paths["candidates"])
    summary = (out / "summary.md").read_text()
    return summary.split("## By whether the label has a real training case\n")[1].split("\n## ")[0], out


def test_report_splits_the_main_rows_by_seen_label(tmp_path):
    section, out = _report(tmp_path, _cases())
    lines = [x for x in section.splitlines() if x.startswith("|")]
    assert lines[0] == ("| method | top-1 % seen (3 cases) | top-10 % seen (3 cases) | top-1 % unseen (3 cases) | "
                        "top-10 % unseen (3 cases) |")
    assert [x.split(" | ")[0] for x in lines[2:]] == ["| teacher (external)", "| MINT (ORPO)"]
    cells = lines[2].strip("| ").split(" | ")
    assert [c.split(" [")[0] for c in cells[1:]] == ["33.3", "66.7", "33.3", "66.7"]
    assert lines[3].split(" | ")[1].startswith("33.3 [") and lines[3].split(" | ")[3].startswith("50.0 [")
    table = pl.read_csv(out / "by_seen_label.csv")
    assert table.select("group", "method").rows() == [("seen", "teacher_external"), ("seen", "orpo"),
                                                      ("unseen", "teacher_external"), ("unseen", "orpo")]
    assert table["top3"].to_list() == pytest.approx([2 / 3, 1 / 3, 1 / 3, 1 / 2])


@pytest.mark.parametrize(("source", "which"), [("simulated", "no test case's"), ("manifest", "every test case's")])
def test_report_says_in_one_line_when_a_group_is_empty(tmp_path, source, which):
    section, out = _report(tmp_path, _cases([source] * len(SOURCES)))
    assert "|" not in section
    group = "unseen" if source == "simulated" else "seen"
    assert pl.read_csv(out / "by_seen_label.csv")["group"].unique().to_list() == [group]
    assert section.strip() == (f"Not split: {which} disease has a real training case (source not `simulated`), "
                               "so either group would repeat the main table.")


def test_report_compares_the_pairs_teacher_with_each_ranker(tmp_path):
    """The teacher whose lists make the pairs against every ranker, paired on the same cases."""
    paths = write_cohort(tmp_path, _cases(), make_labels(["A", "B", "C", "D"]))
    scores = tmp_path / "scores.parquet"
    # teacher: ranks 1, 1, 2, 1, 5, 3; Phenomizer: 2, 1, 1, 4, -, 1
    write_parquet(pl.concat([_scores("teacher_note_photo_knowledge", [1, 1, 2, 1, 5, 3]),
                             _scores("phenomizer", [2, 1, 1, 4, None, 1])]), scores, schemas.CASE_SCORES)
    out = tmp_path / "report"
    out.mkdir()
    make_report([scores], [], out, app=load_application("rare_disease"), k=3, ks=[1, 3, 10], n_boot=100, seed=0,
                cases_path=paths["cases"], candidates_path=paths["candidates"], modality="note_photo_knowledge")
    summary = (out / "summary.md").read_text()
    section = summary.split("## The teacher against each ranker, paired bootstrap on the same cases\n")[1]
    rows = [x for x in section.split("\n## ")[0].splitlines() if x.startswith("| teacher (")]
    assert [r.split(" | ")[2] for r in rows] == ["top1", "top10", "mrr"]
    assert rows[0].split(" | ")[3] == f"{3 / 6 - 3 / 6:+.3f}" and rows[1].split(" | ")[3] == f"{1 - 5 / 6:+.3f}"
    assert {c["metric"] for c in json.loads((out / "metrics.json").read_text())["teacher_vs"]} == {"top1", "top10",
                                                                                                   "mrr"}
