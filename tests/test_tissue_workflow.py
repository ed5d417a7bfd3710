"""Integration tier for the tissue application: its real DAG on a tiny config (simulated patches,
the image+nuclei teacher, the builtin vision student trained with SFT, DPO and ORPO on images).

    .venv/bin/python -m pytest -q tests/test_tissue_workflow.py
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.dag import open_to_others
from tests.factories import job_stats

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
    # Under the usual umask, which would let anyone read the outputs (test_outputs_are_their_owners_alone).
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, umask=0o022)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return wd


def test_outputs_are_their_owners_alone(tissue_run):
    """As in the rare-disease run (tests/test_privacy.py): patches, answers, weights, logs 0600 in 0700 folders."""
    seen, offenders = open_to_others(tissue_run)
    assert seen > 100
    assert not offenders, f"{len(offenders)} of {seen} open to others: {offenders[:20]}"


def test_every_method_has_a_row(tissue_run):
    table = pl.read_csv(tissue_run / "results/report/metrics.csv")
    assert table["method"].to_list() == ["teacher_image_nuclei", "teacher_image", "base", "sft", "dpo", "orpo",
                                         "base_panel", "sft_panel", "dpo_panel", "orpo_panel"]
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
        # LLaVA never reads its vision tower's post_layernorm (mint.core.students.vision): the one exception.
        assert [n for n in metrics["unchanged_tensors"] if "post_layernorm" not in n] == []
    answers = pl.read_parquet(tissue_run / "results/predict/seed7/orpo.parquet")
    assert answers.height == pl.read_parquet(tissue_run / "results/cohort/cases.parquet").filter(
        pl.col("split") == "test").height


def snakemake(wd: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd),
           "--cores", "2", "--configfile", CONFIG, *args]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return res.stdout + res.stderr


def teacher_change(wd: Path, model: str) -> Path:
    """A config file that selects another teacher: a tiny CLIP checkpoint (made offline, in the working
    folder) or external rankings (the trained teacher's own image+nuclei scores, as another model's)."""
    import yaml

    from tests.factories import write_tiny_clip

    change: dict = {"model": model}
    if model == "clip":
        if not (wd / "clip").exists():
            write_tiny_clip(wd / "clip")
        change["clip"] = {"model": "clip", "batch_size": 8}
    else:
        ranks = pl.read_parquet(wd / "results/rankings/teacher.parquet").filter(pl.col("modality") == "image_nuclei")
        ranks.select("case_id", "label_id", "score").write_parquet(wd / "external.parquet")
        change["rankings"] = "external.parquet"
    path = wd / f"teacher-{model}.yaml"
    path.write_text(yaml.safe_dump({"teacher": change}))
    return path


# After the cohort and the student base, what reads the teacher's rankings (the base model's answers do not).
DOWNSTREAM = {"build_preferences": 1, "train_student": 3, "predict_student": 3, "score_student": 3, "rank_student": 3,
              "score_student_panel": 3, "make_report": 1}


@pytest.mark.parametrize("model, ranks, teacher_rows", [("clip", "rank_tissues_with_clip", 1),
                                                        ("external", "import_rankings", 1)])
def test_another_teacher_reruns_exactly_the_teacher_and_what_follows(tissue_run, model, ranks, teacher_rows):
    plan = job_stats(snakemake(tissue_run, teacher_change(tissue_run, model), "--dry-run", "--nolock"))
    assert plan == {ranks: 1, "score_teacher": teacher_rows, **DOWNSTREAM}


@pytest.fixture(scope="module")
def clip_run(tissue_run, tmp_path_factory):
    """The tiny DAG again with a tiny CLIPModel as the teacher, in a copy of the trained run's folder."""
    wd = tmp_path_factory.mktemp("clip") / "run"
    shutil.copytree(tissue_run, wd, symlinks=True)
    snakemake(wd, teacher_change(wd, "clip"))
    return wd


def test_a_clip_teacher_ranks_from_the_image_alone(clip_run):
    ranks = pl.read_parquet(clip_run / "results/rankings/teacher.parquet")
    cases = pl.read_parquet(clip_run / "results/cohort/cases.parquet")
    assert set(ranks["modality"]) == {"image"} and ranks.height == cases.height * 19
    table = pl.read_csv(clip_run / "results/report/metrics.csv")
    assert table["method"].to_list() == ["teacher_image", "base", "sft", "dpo", "orpo", "base_panel", "sft_panel",
                                         "dpo_panel", "orpo_panel"]
    assert table["label"][0] == "teacher (image only)"
    summary = (clip_run / "results/report/summary.md").read_text()
    assert "Teacher: CLIP model clip, zero-shot from the image alone" in summary
    prefs = pl.read_parquet(clip_run / "results/preferences/preferences.parquet")
    row = prefs.row(0, named=True)
    ranked = ranks.filter(pl.col("case_id") == row["case_id"]).sort("rank")["label_id"].to_list()
    assert row["chosen_ids"] == ranked[:3] and row["rejected_ids"] == ranked[-3:][::-1]
    assert "Nothing to be done" in snakemake(clip_run, teacher_change(clip_run, "clip"), "--dry-run")


def test_a_missing_clip_folder_stops_the_workflow_at_start_up(tissue_run):
    change = tissue_run / "teacher-missing.yaml"
    change.write_text("teacher: {model: clip, clip: {model: models/no-such-clip}}\n")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tissue_run),
           "--cores", "2", "--configfile", CONFIG, str(change), "--dry-run", "--nolock"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode != 0
    assert ("config key 'teacher.clip.model': 'models/no-such-clip': no folder of that name, and the hub id is not "
            "in the Hugging Face cache") in res.stdout + res.stderr


@pytest.mark.parametrize("key, value", [("model", "clip2"), ("batch_size", 3), ("prompt_template", "{name}")])
def test_a_clip_setting_reruns_the_clip_teacher_and_what_follows(clip_run, key, value):
    """Each key the CLIP ranking reads is one of its params (mint's rule: a step's params are its contract)."""
    import yaml

    if not (clip_run / "clip2").exists():
        shutil.copytree(clip_run / "clip", clip_run / "clip2")
    change = yaml.safe_load(teacher_change(clip_run, "clip").read_text())
    if key == "prompt_template":
        change["teacher"][key] = value
    else:
        change["teacher"]["clip"][key] = value
    path = clip_run / f"change-{key}.yaml"
    path.write_text(yaml.safe_dump(change))
    out = snakemake(clip_run, path, "--dry-run", "--nolock")
    assert job_stats(out) == {"rank_tissues_with_clip": 1, "score_teacher": 1, **DOWNSTREAM}
    reason = out.split("rule rank_tissues_with_clip:")[1].split("reason:")[1].splitlines()[0]
    assert "Params have changed" in reason or (key == "model" and "Set of input files has changed" in reason), reason
