"""The streamed rankings steps give what reading the whole (cases x labels) table gives, byte for byte.

Rankings are written a row group at a time and read back only in the part a step needs
(`mint.core.rankings`); each test here compares that with the straightforward way (the whole table
in memory, sorted per case) on a small random cohort whose ranks, truths and k/q settings reach
every branch: truth in the top, in the middle, in the bottom; hard and bottom negatives; truth moved
into chosen; SFT on the truth.
"""

import numpy as np
import polars as pl
import pytest

from bench.scale import WholeLists  # the whole-table way, as before streaming (also the bench's)
from mint.apps.rare_disease.prompts import PROMPT
from mint.core import preferences, schemas
from mint.core.evaluate import score_rankings, teacher_agreement
from mint.core.io import read_parquet, write_parquet
from mint.core.rankings import ranked_lists, rankings_frame, write_rankings
from mint.core.report import agreement_with_teacher, score_ranker
from tests.factories import make_cases, make_labels, write_cohort

N_LABELS = 30
LABELS = [f"L{j:03d}" for j in range(N_LABELS)]


@pytest.fixture
def cohort(tmp_path):
    """40 cases (30 train, 10 test), 2 modalities; case i's truth sits at rank i % 30 + 1 in modality 'a'."""
    rng = np.random.default_rng(7)
    n = 40
    scores = {m: rng.normal(size=(n, N_LABELS)) for m in ("a", "b")}
    order = np.argsort(-scores["a"], axis=1, kind="stable")
    truths = [LABELS[order[i, i % N_LABELS]] for i in range(n)]
    cases = make_cases(truths, ["train"] * 30 + ["test"] * 10)
    paths = write_cohort(tmp_path / "cohort", cases, make_labels(LABELS))
    ids = cases["case_id"].to_list()
    frame = pl.concat([rankings_frame(ids, LABELS, s, m) for m, s in scores.items()])
    write_parquet(frame, tmp_path / "whole.parquet", schemas.RANKINGS)
    write_rankings(tmp_path / "streamed.parquet", ids, LABELS, scores, batch=7)
    return {**paths, "rankings": tmp_path / "whole.parquet", "streamed": tmp_path / "streamed.parquet",
            "frame": frame, "cases": paths["cases"], "truth": cases.select("case_id", "label_id", "split")}


def test_streamed_writer_gives_the_bytes_of_the_whole_table(cohort):
    assert cohort["streamed"].read_bytes() == cohort["rankings"].read_bytes()


def test_streamed_writer_cuts_row_groups_where_pyarrow_does(tmp_path, monkeypatch):
    import mint.core.io as io

    monkeypatch.setattr(io, "ROW_GROUP", 100)  # several groups, cut mid-batch and mid-case
    scores = {"a": np.random.default_rng(1).normal(size=(23, 17))}
    ids, labels = [f"c{i}" for i in range(23)], [f"l{j}" for j in range(17)]
    write_rankings(tmp_path / "s.parquet", ids, labels, scores, batch=5)
    import pyarrow.parquet as pq

    table = rankings_frame(ids, labels, scores["a"], "a").to_arrow().cast(schemas.RANKINGS)
    pq.write_table(table, tmp_path / "w.parquet", compression="zstd", row_group_size=100)
    assert pq.ParquetFile(tmp_path / "s.parquet").metadata.num_row_groups == 4
    assert (tmp_path / "s.parquet").read_bytes() == (tmp_path / "w.parquet").read_bytes()


def test_row_group_is_pyarrows_default(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mint.core.io import ROW_GROUP

    pq.write_table(pa.table({"x": np.arange(ROW_GROUP + 1)}), tmp_path / "x.parquet")
    groups = pq.ParquetFile(tmp_path / "x.parquet").metadata
    assert groups.num_row_groups == 2 and groups.row_group(0).num_rows == ROW_GROUP


def test_empty_stream_gives_the_bytes_of_an_empty_table(tmp_path):
    from mint.core.io import ParquetStream

    with ParquetStream(tmp_path / "s.parquet", schemas.RANKINGS):
        pass
    write_parquet(pl.from_arrow(schemas.RANKINGS.empty_table()), tmp_path / "w.parquet", schemas.RANKINGS)
    assert (tmp_path / "s.parquet").read_bytes() == (tmp_path / "w.parquet").read_bytes()


SETTINGS = [
    {"k": 3, "q": 3},
    {"k": 3, "q": 2, "rejected": "hard"},
    {"k": 5, "q": 4, "rejected": "hard", "truth_in_chosen": True},
    {"k": 4, "q": 3, "truth_in_chosen": True, "sft_target_kind": "truth"},
    {"k": 10, "q": 20},  # k + q = the whole panel: nothing left out
    {"k": 3, "q": 3, "rejected": "confident_errors"},
    {"k": 4, "q": 3, "chosen": "mass", "mass": 0.3},
    {"k": 4, "q": 2, "chosen": "mass", "mass": 0.25, "rejected": "confident_errors", "truth_in_chosen": True},
    {"k": 3, "q": 2, "rejected": "similar"},
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_preferences_equal_those_from_the_whole_table(cohort, tmp_path, monkeypatch, settings):
    def build(out, **chunk):
        preferences.build_preferences(cohort["cases"], cohort["candidates"], cohort["rankings"],
                                      tmp_path / out / "p.parquet", tmp_path / out / "s.parquet", modality="a",
                                      prompt=PROMPT.resolved(None), text_field="note", **settings, **chunk)

    build("streamed", chunk=7)  # rows made 7 cases at a time, written as one table
    with monkeypatch.context() as m:
        m.setattr(preferences, "_training_lists", WholeLists)
        build("whole")
    for name in ("p.parquet", "s.parquet"):
        assert (tmp_path / "streamed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    prefs = read_parquet(tmp_path / "streamed" / "p.parquet")
    assert prefs.height == 30 and len(set(map(tuple, prefs["rejected_ids"].to_list()))) > 1


def test_pair_options_change_the_lists(cohort, tmp_path):
    """Each option gives other lists than today's top k / bottom q on the same cohort: mass chosen lists of
    several lengths, at most k; confident errors and similar labels never the truth."""
    def lists(**settings):
        out = tmp_path / "_".join(f"{v}" for v in settings.values())
        preferences.build_preferences(cohort["cases"], cohort["candidates"], cohort["rankings"], out / "p.parquet",
                                      out / "s.parquet", modality="a", prompt=PROMPT.resolved(None),
                                      text_field="note", k=4, q=3, **settings)
        return read_parquet(out / "p.parquet").join(cohort["truth"], on="case_id")

    today = lists()
    by_mass = lists(chosen="mass", mass=0.3)
    assert set(by_mass["chosen_ids"].list.len()) > {4} and by_mass["chosen_ids"].list.len().max() <= 4
    assert by_mass["rejected_ids"].to_list() == today["rejected_ids"].to_list()  # bottom q either way
    for rejected in ("confident_errors", "similar"):
        other = lists(rejected=rejected)
        assert other["chosen_ids"].to_list() == today["chosen_ids"].to_list()
        assert other["rejected_ids"].to_list() != today["rejected_ids"].to_list()
        assert not any(t in r for t, r in zip(other["label_id"], other["rejected_ids"].to_list()))
        assert not any(set(c) & set(r) for c, r in zip(other["chosen_ids"].to_list(), other["rejected_ids"].to_list()))


def test_preferences_beyond_one_row_group_hold_the_same_rows(cohort, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    monkeypatch.setattr(preferences, "ROW_GROUP", 8)  # 30 training cases: 4 row groups
    preferences.build_preferences(cohort["cases"], cohort["candidates"], cohort["rankings"], tmp_path / "p.parquet",
                                  tmp_path / "s.parquet", modality="a", prompt=PROMPT.resolved(None),
                                  text_field="note", k=3, q=3, chunk=5)
    with monkeypatch.context() as m:
        m.setattr(preferences, "_training_lists", WholeLists)
        m.setattr(preferences, "ROW_GROUP", None)
        preferences.build_preferences(cohort["cases"], cohort["candidates"], cohort["rankings"],
                                      tmp_path / "wp.parquet", tmp_path / "ws.parquet", modality="a",
                                      prompt=PROMPT.resolved(None), text_field="note", k=3, q=3)
    for name in ("p", "s"):
        assert pq.ParquetFile(tmp_path / f"{name}.parquet").metadata.num_row_groups == 4
        assert pq.read_table(tmp_path / f"{name}.parquet").equals(pq.read_table(tmp_path / f"w{name}.parquet"))


def test_teacher_scores_equal_those_from_the_whole_table(cohort, tmp_path):
    score_ranker(cohort["cases"], cohort["rankings"], tmp_path / "streamed.parquet", modality="b", method="t", k=5,
                 chunk=3)
    truth = cohort["truth"].filter(pl.col("split") == "test").select("case_id", "label_id")
    whole = cohort["frame"].filter(pl.col("modality") == "b", pl.col("case_id").is_in(truth["case_id"].implode()))
    write_parquet(score_rankings(whole, truth, 5, "t"), tmp_path / "whole.parquet", schemas.CASE_SCORES)
    assert (tmp_path / "streamed.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()


def test_agreement_equals_that_from_the_whole_table(cohort):
    frame = cohort["frame"].filter(pl.col("modality") == "a")
    truth = cohort["truth"].select("case_id", "label_id")
    scores = pl.concat([score_rankings(cohort["frame"].filter(pl.col("modality") == m), truth, 3, method)
                        for m, method in (("a", "x"), ("b", "y"))]).sample(fraction=1.0, shuffle=True, seed=0)
    streamed = agreement_with_teacher(scores, cohort["rankings"], modality="a", k=3, q=2, chunk=4)
    assert streamed.equals(teacher_agreement(scores, frame, 3, 2)) and streamed["n_cases"].to_list() == [40, 40]


def test_ranked_lists_keep_only_the_ends_and_the_truth(cohort):
    truth = cohort["truth"].select("case_id", "label_id")
    lists = ranked_lists(cohort["rankings"], "a", top=2, bottom=1, cases=truth, keep_own=True)
    whole = cohort["frame"].filter(pl.col("modality") == "a").sort("case_id", "rank")
    for case_id, n, ids in lists.select("case_id", "n", "label_ids").iter_rows():
        full = whole.filter(pl.col("case_id") == case_id)["label_id"].to_list()
        own = truth.filter(pl.col("case_id") == case_id)["label_id"].item()
        assert n == N_LABELS and ids == [d for d in full if d in {*full[:2], full[-1], own}]


def test_tied_ranks_keep_the_whole_case(tmp_path):
    frame = rankings_frame(["c1", "c2"], list("abcde"), np.array([[5.0, 4, 3, 2, 1], [1.0, 2, 3, 4, 5]]), "m")
    frame = frame.with_columns(rank=pl.when(pl.col("case_id") == "c2").then(pl.lit(1, pl.Int32))
                               .otherwise(pl.col("rank")))
    write_parquet(frame, tmp_path / "r.parquet", schemas.RANKINGS)
    lists = dict(ranked_lists(tmp_path / "r.parquet", "m", top=1).select("case_id", "label_ids").iter_rows())
    assert lists == {"c1": ["a"], "c2": list("abcde")}  # c2 all tied: all kept, by label id


def test_kept_rows_stay_in_the_run_and_go_when_closed(cohort, tmp_path, monkeypatch):
    """The temporary file names cases: it lies in `scratch` (default: the working directory), never in the
    system's temporary folder, and nothing is left once the lists are closed."""
    import tempfile

    from mint.core.rankings import RankedLists

    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    (run / "results").mkdir()
    for scratch in (None, run / "results", run / "results" / "scores"):  # the last one does not exist
        with RankedLists(cohort["rankings"], "a", top=2, scratch=scratch) as ranked:
            assert ranked._kept.parent.parent == (run / "results" if scratch else run) and ranked._kept.exists()
        assert not ranked._kept.parent.exists()
    assert list(system_tmp.iterdir()) == []
