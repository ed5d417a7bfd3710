"""The tissue cohort step on each source: simulated patches, PanNuke folds and a manifest, written as
the core's tables plus the nucleus features the teacher reads.

    .venv/bin/python -m pytest -q tests/test_tissue_cohort.py
"""

import numpy as np
import polars as pl
import pytest

from mint.apps.tissue.cohort import build_cohort
from mint.apps.tissue.patches import FEATURE_NAMES
from mint.core.io import MintError
from tests.test_tissue_ingest import write_fold, write_patches

SPLIT = {"validation": 0.2, "test": 0.3}


def build(tmp_path, cohort):
    out = tmp_path / "cohort"
    build_cohort(cases_path=out / "cases.parquet", candidates_path=out / "candidates.parquet",
                 excluded_path=out / "excluded.parquet", nuclei_path=out / "nuclei.parquet", images_dir=out / "images",
                 cohort={"split": SPLIT, **cohort}, seed=3)
    return (pl.read_parquet(out / "cases.parquet"), pl.read_parquet(out / "candidates.parquet"),
            pl.read_parquet(out / "nuclei.parquet"), out)


def test_simulated_cohort(tmp_path):
    cases, candidates, nuclei, out = build(tmp_path, {"source": "simulated",
                                                      "simulated": {"per_tissue": 5, "size": 32}})
    assert candidates.height == 19 and cases.height == 95
    assert cases.group_by("label_id").len()["len"].to_list() == [5] * 19
    assert set(cases["split"]) == {"train", "validation", "test"}
    assert nuclei["case_id"].to_list() == cases["case_id"].to_list()
    assert all(len(f) == len(FEATURE_NAMES) for f in nuclei["features"].to_list())
    assert all((tmp_path / "cohort" / "images" / f"{c}.png").is_file() for c in cases["case_id"])
    assert cases["image_path"][0] == str(out / "images" / f"{cases['case_id'][0]}.png")
    row = cases.row(0, named=True)
    assert row["caption"].startswith("H&E patch of ") and "tissue" in row["caption"]


def test_pannuke_cohort_keeps_the_folds_as_splits(tmp_path):
    write_fold(tmp_path / "pannuke" / "fold1")
    write_fold(tmp_path / "pannuke" / "fold3", types=("Skin", "Lung"))
    cases, _, nuclei, _ = build(tmp_path, {"source": "pannuke", "pannuke": {
        "path": str(tmp_path / "pannuke"), "folds": {"train": [1], "test": [3]}}})
    assert cases.select("case_id", "label_id", "split", "group").rows() == [
        ("fold1-00000", "adrenal_gland", "train", "fold1"), ("fold1-00001", "bile_duct", "train", "fold1"),
        ("fold1-00002", "head_neck", "train", "fold1"), ("fold3-00000", "skin", "test", "fold3"),
        ("fold3-00001", "lung", "test", "fold3")]
    # Image 0 of each fold has two nuclei (neoplastic, epithelial): its features count them, its caption names them.
    first = np.array(nuclei["features"][0])
    assert first[FEATURE_NAMES.index("density_all")] > 0 and first[FEATURE_NAMES.index("density_neoplastic")] > 0
    assert cases["caption"][3] == "H&E patch of skin tissue, with sparse neoplastic and epithelial nuclei."
    assert cases["caption"][4] == "H&E patch of lung tissue, without nuclei."


def test_manifest_cohort_without_masks_has_zero_features(tmp_path):
    manifest = write_patches(tmp_path / "m", tissues=("Colon", "liver", "HeadNeck") * 3, size=32, masks=False)
    cases, _, nuclei, _ = build(tmp_path, {"source": "manifest", "manifest": {"path": str(manifest)}})
    assert sorted(set(cases["label_id"])) == ["colon", "head_neck", "liver"]
    assert all(not any(f) for f in nuclei["features"].to_list())
    assert cases["caption"].to_list()[0] in {"H&E patch of colon tissue.", "H&E patch of liver tissue.",
                                             "H&E patch of head & neck tissue."}


def test_a_manifests_given_split_and_test_groups_hold_on_every_seed(tmp_path):
    """Split cells, `test_groups` (a manifest's slides) and `test_cases` are used as is; the rest is seeded."""
    manifest = write_patches(tmp_path / "m", tissues=("Colon", "liver", "HeadNeck") * 8, size=32, masks=False)
    table = pl.read_csv(manifest).with_columns(group=pl.Series([f"slide{i // 3}" for i in range(24)]),
                                               split=pl.Series(["train"] + [None] * 23, dtype=pl.String))
    table.write_csv(manifest)
    runs = []
    for seed in (1, 2):
        out = tmp_path / f"seed{seed}"
        build_cohort(cases_path=out / "cases.parquet", candidates_path=out / "candidates.parquet",
                     excluded_path=out / "excluded.parquet", nuclei_path=out / "nuclei.parquet",
                     images_dir=out / "images", seed=seed, cohort={
                         "source": "manifest", "manifest": {"path": str(manifest)},
                         "split": {"validation": 0.2, "test": 0, "test_groups": ["slide3"], "test_cases": ["p4"]}})
        runs.append(pl.read_parquet(out / "cases.parquet"))
    for cases in runs:
        of = {c: (s, src) for c, s, src in cases.select("case_id", "split", "split_source").iter_rows()}
        assert {c for c, (s, _) in of.items() if s == "test"} == {"p3", "p4", "p5", "p9", "p10", "p11"}
        assert of["p0"] == ("train", "column") and of["p4"] == ("test", "config") and of["p3"] == ("test", "group")
        assert of["p1"][1] == "group" and of["p1"][0] == "train"  # p0's slide follows it
    assert runs[0]["split"].to_list() != runs[1]["split"].to_list()  # the seed splits the other slides


def test_an_unknown_source_is_named(tmp_path):
    with pytest.raises(MintError, match="cohort.source"):
        build(tmp_path, {"source": "camera"})
