"""Integration tier: the real Snakemake DAG on a tiny config, in a scratch working directory."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY = "tests/data/tiny/config.yaml"

pytestmark = pytest.mark.integration


def workdir(tmp: Path) -> Path:
    """A scratch working directory with the config folders the tiny config names."""
    shutil.copytree(REPO / "config", tmp / "config")
    shutil.copytree(REPO / "tests" / "data", tmp / "tests" / "data")
    return tmp


def snakemake(wd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd), "--cores", "2", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}")
    return res


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    wd = workdir(tmp_path_factory.mktemp("wf"))
    snakemake(wd, "--configfile", TINY)
    return wd


def test_metrics_table_has_every_method_row(tiny_run):
    table = pl.read_csv(tiny_run / "results/report/metrics.csv")
    assert table["method"].to_list() == ["teacher_note_photo", "teacher_note", "phenomizer", "knn", "base",
                                         "rag_base", "sft", "rag_sft", "dpo", "orpo"]
    assert (table["n_cases"] == table["n_cases"][0]).all()
    for col in ("top1", "top1_lo", "top1_hi", "mrr", "hallucination_rate", "format_rate"):
        assert table[col].is_between(0, 1).all(), col
    assert (tiny_run / "results/report/accuracy.png").stat().st_size > 1000
    assert "MINT (ORPO)" in (tiny_run / "results/report/summary.md").read_text()


@pytest.mark.parametrize("method", ["sft", "dpo", "orpo"])
def test_training_changed_every_trainable_parameter(tiny_run, method):
    metrics = json.loads((tiny_run / f"results/train/seed7/{method}/metrics.json").read_text())
    assert metrics["trainable_tensors"] > 0
    assert metrics["unchanged_tensors"] == []
    assert metrics["fine_tuning"] == ("full" if method == "sft" else "lora")


def test_full_fine_tuning_changed_every_saved_weight(tiny_run):
    """Independent of the trainer's own bookkeeping: compare the saved weights with the base's."""
    from safetensors.torch import load_file

    base = load_file(tiny_run / "results/student/base/model.safetensors")
    tuned = load_file(tiny_run / "results/train/seed7/sft/model.safetensors")
    assert base.keys() == tuned.keys()
    assert [k for k in base if torch.equal(base[k], tuned[k])] == []
    assert all(torch.isfinite(v).all() for v in tuned.values())


def test_lora_adapter_weights_moved_from_init(tiny_run):
    """peft initialises every lora_B to zero: a trained adapter has none left at zero."""
    from safetensors.torch import load_file

    for method in ("dpo", "orpo"):
        weights = load_file(tiny_run / f"results/train/seed7/{method}/adapter_model.safetensors")
        lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
        assert lora_b and all(torch.isfinite(v).all() and v.abs().sum() > 0 for v in lora_b.values()), method


def test_html_report(tiny_run):
    snakemake(tiny_run, "--configfile", TINY, "--report", "report.html")
    html = (tiny_run / "report.html").read_text()
    assert "accuracy.png" in html and "summary.md" in html


def test_rerun_is_a_no_op(tiny_run):
    res = snakemake(tiny_run, "--configfile", TINY, "--dry-run")
    assert "Nothing to be done" in res.stdout + res.stderr


def test_provenance_sidecars(tiny_run):
    prov = json.loads((tiny_run / "results/preferences/preferences.parquet.provenance.json").read_text())
    assert prov["seed"] == 7 and prov["versions"]["trl"] == "1.16.0"


def test_bad_manifest_fails_with_a_clear_message_and_no_cohort(tmp_path):
    wd = workdir(tmp_path)
    (wd / "manifest.csv").write_text("case_id,note,disease_id\np1,seizures,OMIM:100100\n")
    # A manifest has notes only: no HPO terms for the Phenomizer baseline of the tiny config.
    (wd / "manifest.yaml").write_text("cohort: {source: manifest, manifest: {path: manifest.csv}}\n"
                                      "baselines: {phenomizer: false}\n")
    res = snakemake(wd, "--configfile", TINY, str(wd / "manifest.yaml"), "--until", "build_cohort", check=False)
    assert res.returncode != 0
    log = (wd / "logs/build_cohort/build_cohort.log").read_text()
    assert "manifest.csv: manifest is missing column(s) ['image_path']" in log
    assert not (wd / "results/cohort/cases.parquet").exists()


def test_invalid_config_names_the_key(tmp_path):
    wd = workdir(tmp_path)
    (wd / "bad.yaml").write_text("preferences:\n  k: 0\n")
    res = snakemake(wd, "--configfile", TINY, str(wd / "bad.yaml"), "--dry-run", check=False)
    assert res.returncode != 0
    assert "config key 'preferences.k': 0 is less than the minimum of 1" in res.stdout + res.stderr


def test_lint_is_clean():
    res = subprocess.run([*SNAKEMAKE, "--lint", "--snakefile", "Snakefile"], capture_output=True, text=True, cwd=REPO)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Lints for" not in out, out


def test_orpo_nll_covers_the_answer_only(tiny_run):
    """TRL's ORPO puts the prompt in its NLL; ours (recipe nll: completion) must not: then the NLL
    equals minus the mean per-token log-probability of the chosen answer, which TRL also logs."""
    rows = [json.loads(x) for x in (tiny_run / "results/train/seed7/orpo/trainer_log.jsonl").read_text().splitlines()]
    first = next(r for r in rows if "nll_loss" in r)
    assert first["nll_loss"] == pytest.approx(-first["logps/chosen"], rel=1e-3)


def test_training_resumes_after_a_kill(tiny_run, tmp_path):
    """Kill a training run once it has checkpointed; the rerun continues past step 0 and finishes."""
    import signal
    import time

    recipe = tmp_path / "sft.yaml"
    recipe.write_text(
        "method: sft\nlora: null\nargs:\n  learning_rate: 1.0e-4\n  max_steps: 400\n  per_device_train_batch_size: 2\n"
        "  max_length: 480\n  gradient_checkpointing: false\n  logging_steps: 10\n  save_strategy: steps\n"
        "  save_steps: 10\n  seed: 7\n"
    )
    ckpt, out = tmp_path / "checkpoints", tmp_path / "sft"
    cmd = [sys.executable, "-m", "mint.core.train", str(recipe), str(tiny_run / "results/student/base"),
           str(tiny_run / "results/preferences/sft.parquet"), str(out), "--checkpoints", str(ckpt)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(ckpt.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(ckpt.glob("checkpoint-*")), "no checkpoint was written before the kill"
    assert not out.exists(), "a killed run must not leave an output folder"
    subprocess.run(cmd, check=True, capture_output=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"] and int(metrics["resumed_from"].rsplit("-", 1)[1]) > 0
    assert metrics["global_step"] == 400
    assert not ckpt.exists()  # finished: checkpoints are cleaned up


def planned_jobs(wd: Path, change: dict) -> dict[str, int]:
    """Rule -> job count that a dry run plans with the tiny config plus `change` (a config file)."""
    import yaml

    (wd / "change.yaml").write_text(yaml.safe_dump(change))
    out = snakemake(wd, "--configfile", TINY, str(wd / "change.yaml"), "--dry-run").stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("total")[0]
    rows = [line.split() for line in table.splitlines()[3:] if line.strip()]
    return {rule: int(count) for rule, count in rows if rule != "all"}


def test_partial_recomputation(tiny_run):
    """A change reruns what depends on it and nothing upstream (the README's promise)."""
    upstream = {"build_knowledge", "build_cohort", "embed_notes", "train_teacher", "rank_diseases", "build_student"}
    k_change = planned_jobs(tiny_run, {"preferences": {"k": 2, "q": 3}})
    assert {"build_preferences", "train_student", "make_report"} <= set(k_change)
    assert not upstream & set(k_change)
    eval_change = planned_jobs(tiny_run, {"evaluation": {"max_new_tokens": 20, "bootstrap": 50}})
    assert set(eval_change) == {"predict_student", "predict_rag", "score_student", "score_teacher",
                                "score_baseline", "make_report"}
    assert eval_change["predict_student"] == 4 and eval_change["predict_rag"] == 2
    # Another training seed trains, answers and scores each method once more, and nothing upstream.
    seed_change = planned_jobs(tiny_run, {"training": {"seeds": [7, 8]}})
    assert seed_change["train_student"] == 3 and seed_change["predict_student"] == 3
    assert seed_change["predict_rag"] == 1  # RAG with the new seed's SFT model
    assert not upstream & set(seed_change)
