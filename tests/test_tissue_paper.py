"""The paper's tissue config (config/tissue/paper.yaml) plans its DAG and runs its first steps.

PanNuke's three folds are tiny fake arrays the test writes where the config expects them
(data/pannuke/fold1..3). PLIP (`vinid/plip`) is not on this machine and the hub is offline, so the
workflow's start-up check would refuse it: the test points `teacher.clip.model` at a tiny CLIPModel
made offline (the one key it overrides). The student's hub id is left as the config has it; the start-up
check wants it in the Hugging Face cache, so the test writes a cache entry with its config.json alone
(nothing reads the weights before training).

    .venv/bin/python -m pytest -q tests/test_tissue_paper.py
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.factories import job_stats, write_tiny_clip
from tests.test_tissue_ingest import write_fold

REPO = Path(__file__).resolve().parent.parent
CONFIG = "config/tissue/paper.yaml"

pytestmark = pytest.mark.integration


def snakemake(wd: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd),
           "--cores", "2", "--configfile", CONFIG, str(wd / "local.yaml"), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(wd / "hub")}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=wd, env=env)  # CONFIG: the run folder's copy
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def paper_dir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("paper")
    shutil.copytree(REPO / "config", wd / "config")
    folds = {1: ("Adrenal_gland", "Bile-duct", "HeadNeck", "Skin", "Lung", "Colon"), 2: ("Liver", "Kidney"),
             3: ("Breast", "Colon", "Testis")}
    for k, tissues in folds.items():
        write_fold(wd / "data" / "pannuke" / f"fold{k}", types=tissues)
    write_tiny_clip(wd / "clip")
    # The student as `hf download` leaves it in the cache (refs/main -> a snapshot), its config only.
    student = wd / "hub" / "models--meta-llama--Llama-3.2-11B-Vision-Instruct"
    (student / "refs").mkdir(parents=True)
    (student / "refs" / "main").write_text("0" * 40)
    (student / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (student / "snapshots" / ("0" * 40) / "config.json").write_text('{"model_type": "mllama"}')
    (wd / "local.yaml").write_text("teacher: {clip: {model: clip}}\n")
    return wd


def test_the_paper_dag_plans_every_step(paper_dir):
    plan = job_stats(snakemake(paper_dir, "--dry-run"))
    # PLIP ranks (a CLIP checkpoint: no teacher is trained here); the student is a hub id (none is built).
    assert plan == {"build_cohort": 1, "rank_tissues_with_clip": 1, "score_teacher": 1, "build_preferences": 1,
                    "train_student": 3, "predict_student": 4, "score_student": 4, "rank_student": 4,
                    "score_student_panel": 4, "make_report": 1}


def test_the_paper_cohort_and_pairs_from_pannuke_folds(paper_dir):
    snakemake(paper_dir, "--until", "build_preferences")
    cases = pl.read_parquet(paper_dir / "results/cohort/cases.parquet")
    assert cases.group_by("split").len().sort("split").rows() == [("test", 3), ("train", 6), ("validation", 2)]
    ranks = pl.read_parquet(paper_dir / "results/rankings/teacher.parquet")
    assert set(ranks["modality"]) == {"image"} and ranks.height == cases.height * 19
    prefs = pl.read_parquet(paper_dir / "results/preferences/preferences.parquet")
    assert prefs.height == 6  # one pair per training patch
    assert all(len(c) == 5 and len(r) == 5 and not set(c) & set(r)
               for c, r in zip(prefs["chosen_ids"], prefs["rejected_ids"], strict=True))
