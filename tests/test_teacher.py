import numpy as np
import polars as pl
import pytest
import torch

from mint.apps.rare_disease.teacher import FusionTeacher, presence, rank_diseases, train_teacher
from mint.core import schemas
from mint.core.config import validate_config
from mint.core.io import MintError, load_checkpoint, read_parquet
from mint.core.rankings import import_rankings, rankings_frame
from tests.factories import make_cases, make_labels, write_cohort


def test_rankings_frame_ranks_by_score():
    scores = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.1]])
    df = rankings_frame(["a", "b"], ["d1", "d2", "d3"], scores, "note")
    ranked = df.filter(pl.col("case_id") == "a").sort("rank")["label_id"].to_list()
    assert ranked == ["d2", "d3", "d1"]
    assert df.filter(pl.col("case_id") == "b").sort("rank")["label_id"].to_list() == ["d1", "d2", "d3"]


def test_missing_modality_changes_nothing_but_its_branch():
    torch.manual_seed(0)
    model = FusionTeacher(text_dim=8, n_classes=4, hidden=16).eval()
    text, photo = torch.randn(3, 8), torch.randn(3, 32, 32)
    with torch.no_grad():
        note_only = model(text, photo, presence(3, "note"))
        other_photo = model(text, torch.randn(3, 32, 32), presence(3, "note"))
        both = model(text, photo, presence(3, "note_photo"))
    assert torch.allclose(note_only, other_photo)  # the photo is ignored when absent
    assert not torch.allclose(note_only, both)


@pytest.fixture
def cohort(tmp_path):
    return write_cohort(tmp_path / "cohort", make_cases(["d1", "d2"], ["train", "test"]),
                        make_labels(["d1", "d2"], ["One", "Two"]))


def _import(tmp_path, cohort, df):
    path = tmp_path / "external.parquet"
    df.write_parquet(path)
    import_rankings(path, cohort["cases"], cohort["candidates"], tmp_path / "r.parquet")


def test_external_rankings_are_ranked(tmp_path, cohort):
    _import(tmp_path, cohort, pl.DataFrame({"case_id": ["c1", "c1"], "label_id": ["d1", "d2"], "score": [0.2, 0.8]}))
    out = read_parquet(tmp_path / "r.parquet", schemas.RANKINGS)
    assert out.sort("rank")["label_id"].to_list() == ["d2", "d1"]
    assert set(out["modality"]) == {"external"}


@pytest.mark.parametrize(
    "df, message",
    [
        (pl.DataFrame({"case_id": ["c1"], "label_id": ["d1"]}), r"missing column\(s\) \['score'\]"),
        (pl.DataFrame({"case_id": ["c1"], "disease_id": ["d1"], "score": [1.0]}), r"\['label_id'\]"),
        (pl.DataFrame({"case_id": ["c1"], "label_id": ["d9"], "score": [1.0]}), r"not among the candidates: \['d9'\]"),
        (pl.DataFrame({"case_id": ["zz"], "label_id": ["d1"], "score": [1.0]}), r"not in the cohort: \['zz'\]"),
        (pl.DataFrame({"case_id": ["c2", "c2"], "label_id": ["d1", "d2"], "score": [1.0, 0.0]}),
         r"training case\(s\) \['c1'\]"),
    ],
)
def test_bad_external_rankings_are_named(tmp_path, cohort, df, message):
    with pytest.raises(MintError, match=message):
        _import(tmp_path, cohort, df)
    assert not (tmp_path / "r.parquet").exists()


def test_missing_external_rankings_name_the_key(tmp_path, cohort):
    with pytest.raises(MintError, match="teacher.rankings.*nope.parquet"):
        import_rankings(tmp_path / "nope.parquet", cohort["cases"], cohort["candidates"], tmp_path / "r.parquet")


def test_cross_fit_ranks_training_cases_out_of_fold(tmp_path):
    rng = np.random.default_rng(0)
    n = 30
    cases = make_cases([f"d{i % 3}" for i in range(n)], ["train"] * 18 + ["validation"] * 3 + ["test"] * 9,
                       case_id=[f"c{i:02d}" for i in range(n)])
    paths = write_cohort(tmp_path / "cohort", cases, make_labels(["d0", "d1", "d2"]))
    emb = tmp_path / "emb.parquet"
    embeddings = rng.normal(size=(n, 8)).astype(np.float32)
    pl.DataFrame({"case_id": cases["case_id"], "embedding": embeddings}).write_parquet(emb)
    ranked = {}
    for k in (0, 3):
        teacher = validate_config({"teacher": {"epochs": 2, "cross_fit": k, "threads": 1}})["teacher"]
        model = tmp_path / f"t{k}/model.pt"
        train_teacher(paths["cases"], paths["candidates"], emb, model, tmp_path / f"t{k}/metrics.json",
                      teacher=teacher, seed=0)
        ckpt = load_checkpoint(model)
        held = [c for f in ckpt["folds"] for c in f["case_ids"]]
        assert sorted(held) == (cases["case_id"].head(18).to_list() if k else [])  # each training case once
        rank_diseases(paths["cases"], paths["candidates"], emb, model, tmp_path / f"r{k}.parquet",
                      image_size=teacher["image_size"], threads=1)
        ranked[k] = read_parquet(tmp_path / f"r{k}.parquet").sort("case_id", "modality", "label_id")
    test_ids = cases.filter(pl.col("split") == "test")["case_id"].to_list()
    on = lambda df, ids: df.filter(pl.col("case_id").is_in(ids))  # noqa: E731
    assert on(ranked[0], test_ids).equals(on(ranked[3], test_ids))  # the main teacher scores new patients
    train_ids = cases["case_id"].head(18).to_list()
    assert not on(ranked[0], train_ids)["score"].equals(on(ranked[3], train_ids)["score"])
