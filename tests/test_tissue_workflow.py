"""Integration tier for the tissue application: its real DAG on a tiny config (simulated patches,
the image+nuclei teacher, the builtin vision student trained with SFT, DPO and ORPO on images).

    .venv/bin/python -m pytest -q tests/test_tissue_workflow.py
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIG = "tests/data/tissue/config.yaml"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def tissue_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("tissue")
    shutil.copytree(REPO / "config", wd / "config")
    shutil.copytree(REPO / "tests" / "data", wd / "tests" / "data")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd),
           "--cores", "2", "--configfile", CONFIG]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return wd


def test_every_method_has_a_row(tissue_run):
    table = pl.read_csv(tissue_run / "results/report/metrics.csv")
    assert table["method"].to_list() == ["teacher_image_nuclei", "teacher_image", "base", "sft", "dpo", "orpo"]
    assert table["label"].to_list()[:2] == ["teacher (image+nuclei)", "teacher (image only)"]
    cases = pl.read_parquet(tissue_run / "results/cohort/cases.parquet")
    assert (table["n_cases"] == cases.filter(pl.col("split") == "test").height).all()
    summary = (tissue_run / "results/report/summary.md").read_text()
    assert "Students answer from the image only, with a list of k=3 tissues" in summary


def test_pairs_hold_the_image_and_the_teacher_lists(tissue_run):
    prefs = pl.read_parquet(tissue_run / "results/preferences/preferences.parquet")
    ranks = pl.read_parquet(tissue_run / "results/rankings/teacher.parquet").filter(
        pl.col("modality") == "image_nuclei")
    cases = pl.read_parquet(tissue_run / "results/cohort/cases.parquet")
    image_of = dict(cases.select("case_id", "image_path").iter_rows())
    for row in prefs.iter_rows(named=True):
        ranked = ranks.filter(pl.col("case_id") == row["case_id"]).sort("rank")["label_id"].to_list()
        assert row["chosen_ids"] == ranked[:3] and row["rejected_ids"] == ranked[-3:][::-1]
        assert row["images"] == [image_of[row["case_id"]]] and (tissue_run / row["images"][0]).is_file()
        assert row["chosen"][0]["content"].startswith("POTENTIAL_TISSUES:\n1. ")
        # The image only: no caption, tissue or nucleus word of the case is in the prompt.
        assert all(row["case_id"] not in m["content"] for m in row["prompt"])


def test_the_students_are_vision_models_trained_on_every_weight(tissue_run):
    for method in ("sft", "dpo", "orpo"):
        spec = json.loads((tissue_run / f"results/train/seed7/{method}/mint_student.json").read_text())
        assert spec["kind"] == "vision"
        metrics = json.loads((tissue_run / f"results/train/seed7/{method}/metrics.json").read_text())
        # LLaVA never reads its vision tower's post_layernorm (mint.core.vision): the one exception.
        assert [n for n in metrics["unchanged_tensors"] if "post_layernorm" not in n] == []
    answers = pl.read_parquet(tissue_run / "results/predict/seed7/orpo.parquet")
    assert answers.height == pl.read_parquet(tissue_run / "results/cohort/cases.parquet").filter(
        pl.col("split") == "test").height
