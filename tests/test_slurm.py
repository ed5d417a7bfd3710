"""SLURM tier: the tiny workflow through Snakemake's own SLURM executor on a real cluster.

Needs a SLURM cluster that answers `sinfo` on this machine, with MinJobAge long enough for
`squeue` to list finished jobs; `.ci/slurm-up` starts such a one-node cluster (CI runs it
before the tests). Without one, every test here is skipped, naming the reason.

    bash .ci/slurm-up && .venv/bin/python -m pytest -m slurm
"""

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.factories import job_stats

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY = "tests/data/tiny/config.yaml"
TISSUE = "tests/data/tissue/config.yaml"
PROFILE = REPO / "profiles" / "slurm-local"

pytestmark = [pytest.mark.slurm, pytest.mark.integration]

SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


def cluster_problem() -> str | None:
    """Why the tests cannot use a SLURM cluster here, or None when one answers with a usable node."""
    if shutil.which("sinfo") is None:
        return "sinfo is not on PATH: no SLURM cluster here (start one with `bash .ci/slurm-up`, as root)"
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 30 s: is slurmctld running? (`bash .ci/slurm-up`)"
    states = res.stdout.split()
    if res.returncode != 0 or not any(s.rstrip("*~#$@").startswith(("idle", "mix", "alloc")) for s in states):
        return f"the SLURM cluster has no usable node (sinfo: {(res.stdout + res.stderr).strip()!r})"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = cluster_problem()
    if problem:
        pytest.skip(problem)


def workdir(tmp: Path) -> Path:
    """A scratch working directory with the config folders the tiny config names."""
    shutil.copytree(REPO / "config", tmp / "config")
    shutil.copytree(REPO / "tests" / "data", tmp / "tests" / "data")
    return tmp


def command(wd: Path, *args: str, config: str = TINY) -> list[str]:
    return [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd), "--configfile", config, *args]


def on_slurm(wd: Path, *args: str, config: str = TINY) -> list[str]:
    return command(wd, "--profile", str(PROFILE), *args, config=config)


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


def check(res: subprocess.CompletedProcess) -> str:
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{' '.join(res.args)} failed:\n{out[-6000:]}"
    return out


def submitted(out: str) -> dict[str, list[str]]:
    """Rule -> SLURM job ids, from snakemake's 'submitted with SLURM jobid' lines."""
    jobs: dict[str, list[str]] = {}
    for jobid, log in SUBMITTED.findall(out):
        rule = next(p for p in Path(log).parts if p.startswith("rule_"))[len("rule_"):]
        jobs.setdefault(rule, []).append(jobid)
    return jobs


def squeue_states(jobids: list[str]) -> dict[str, str]:
    res = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(jobids), "-o", "%i|%T"],
                         capture_output=True, text=True, check=True)
    return dict(line.split("|") for line in res.stdout.split())


def mtimes(wd: Path, pattern: str) -> dict[str, int]:
    return {str(p.relative_to(wd)): p.stat().st_mtime_ns for p in sorted(wd.glob(pattern))}


def side_by_side(tmp_path_factory, config: str) -> dict:
    """`config` twice: on SLURM (profiles/slurm-local) and locally (--cores 2), side by side
    (the SLURM run mostly waits for status checks, so the local run uses the idle cores)."""
    local_wd = workdir(tmp_path_factory.mktemp("local"))
    slurm_wd = workdir(tmp_path_factory.mktemp("slurm"))
    local = subprocess.Popen(command(local_wd, "--cores", "2", config=config), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, cwd=REPO)
    start = time.monotonic()
    slurm = run(on_slurm(slurm_wd, config=config))
    slurm_s = time.monotonic() - start
    local_out, _ = local.communicate()
    assert local.returncode == 0, f"local run failed:\n{local_out[-6000:]}"
    print(f"{config}: wall time side by side: SLURM {slurm_s:.0f} s")  # measured, never asserted (bench/)
    return {"local": local_wd, "slurm": slurm_wd, "slurm_out": check(slurm), "local_out": local_out}


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The rare-disease tiny config on SLURM and locally."""
    return side_by_side(tmp_path_factory, TINY)


@pytest.fixture(scope="module")
def tissue_runs(cluster, tmp_path_factory):
    """The tissue application's tiny config on SLURM and locally."""
    return side_by_side(tmp_path_factory, TISSUE)


def every_step_ran_as_a_slurm_job(runs: dict) -> None:
    out, wd = runs["slurm_out"], runs["slurm"]
    jobs = submitted(out)
    plan = job_stats(out)
    assert plan == job_stats(runs["local_out"]) and len(plan) >= 10
    assert {rule: len(ids) for rule, ids in jobs.items()} == plan  # every job of the plan went to SLURM
    ids = [i for rule_ids in jobs.values() for i in rule_ids]
    assert len(set(ids)) == len(ids)
    # One SLURM log per job, named by its job id (profiles/slurm-local keeps successful jobs' logs).
    logs = {p.stem: p for p in (wd / ".snakemake/slurm_logs").rglob("*.log")}
    assert set(ids) <= set(logs)
    for rule, rule_ids in jobs.items():
        assert all(f"rule_{rule}" in logs[i].parts for i in rule_ids), rule
    # SLURM itself knows them, finished, under this run's job name (run id).
    assert set(squeue_states(ids).values()) == {"COMPLETED"}
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
    res = subprocess.run(["squeue", "-h", "-t", "all", "--name", run_id, "-o", "%i"], capture_output=True, text=True)
    assert sorted(res.stdout.split(), key=int) == sorted(ids, key=int)


def test_every_step_ran_as_a_slurm_job(runs):
    every_step_ran_as_a_slurm_job(runs)


def test_every_tissue_step_ran_as_a_slurm_job(tissue_runs):
    every_step_ran_as_a_slurm_job(tissue_runs)


# What a run reproduces bit for bit, whatever runs it: everything but timings. (LoRA adapters too,
# since mint/core/train.py seeds peft's draw of lora_A, and the teacher's model.pt since it is saved
# through a file handle; before, each differed from one process to the next.) Globs: the DAG
# nests some paths by seed.
IDENTICAL = ["results/cohort/*.parquet", "results/teacher/model.pt", "results/rankings/*.parquet",
             "results/preferences/*.parquet",
             "results/train/**/model.safetensors", "results/train/**/adapter_model.safetensors",
             "results/predict/**/*.parquet", "results/scores/**/*.parquet", "results/report/metrics.csv"]


def byte_identical(runs: dict, pattern: str) -> None:
    files = sorted(str(p.relative_to(runs["local"])) for p in runs["local"].glob(pattern))
    assert files and files == sorted(str(p.relative_to(runs["slurm"])) for p in runs["slurm"].glob(pattern))
    assert [f for f in files if (runs["slurm"] / f).read_bytes() != (runs["local"] / f).read_bytes()] == []


@pytest.mark.parametrize("pattern", IDENTICAL)
def test_slurm_outputs_are_byte_identical_to_a_local_run(runs, pattern):
    byte_identical(runs, pattern)


# The tissue DAG writes its patches as PNGs and its text embeddings besides.
TISSUE_IDENTICAL = [*IDENTICAL, "results/cohort/images/*.png", "results/teacher/text_embeddings.parquet"]


@pytest.mark.parametrize("pattern", TISSUE_IDENTICAL)
def test_tissue_slurm_outputs_are_byte_identical_to_a_local_run(tissue_runs, pattern):
    byte_identical(tissue_runs, pattern)


def test_slurm_report_lists_every_method(runs):
    table = pl.read_csv(runs["slurm"] / "results/report/metrics.csv")
    assert {"teacher_note_photo_knowledge", "teacher_note_photo", "base", "sft", "dpo", "orpo", "orpo_panel"} <= set(
        table["method"])


def test_tissue_slurm_report_lists_every_method(tissue_runs):
    table = pl.read_csv(tissue_runs["slurm"] / "results/report/metrics.csv")
    students = ["base", "sft", "dpo", "orpo"]
    assert table["method"].to_list() == ["teacher_image_nuclei", "teacher_image", *students,
                                         *(f"{m}_panel" for m in students)]


def test_a_job_slurm_refuses_fails_clearly_and_the_rerun_reuses_what_was_made(cluster, tmp_path):
    wd = workdir(tmp_path)
    # build_cohort asks for 10 TB (mem_mb): sbatch refuses it, after build_knowledge has finished.
    res = run(on_slurm(wd, "--until", "build_cohort", "--set-resources", "build_cohort:mem_mb=10000000"))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "Error in rule build_cohort" in out
    assert "SLURM sbatch failed. The error message was 'sbatch: error: Memory specification can not be satisfied" in out
    assert "--mem 10000000" in out  # the request that was refused, as sent
    knowledge = mtimes(wd, "results/knowledge/*.parquet")
    assert len(knowledge) == 3 and not (wd / "results/cohort/cases.parquet").exists()

    out = check(run(on_slurm(wd, "--until", "build_cohort")))
    assert set(submitted(out)) == {"build_cohort"}
    assert (wd / "results/cohort/cases.parquet").exists()
    assert mtimes(wd, "results/knowledge/*.parquet") == knowledge


def test_a_cancelled_job_fails_clearly_and_leaves_no_output(cluster, tmp_path):
    wd = workdir(tmp_path)
    proc = subprocess.Popen(on_slurm(wd, "--until", "build_knowledge"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        jobid, deadline = None, time.monotonic() + 120
        while jobid is None and time.monotonic() < deadline and proc.poll() is None:
            logs = list((wd / ".snakemake/slurm_logs/rule_build_knowledge").glob("*.log"))
            if logs and squeue_states([logs[0].stem]).get(logs[0].stem) == "RUNNING":
                jobid = logs[0].stem
            time.sleep(0.2)
        assert jobid, "build_knowledge never ran on SLURM"
        subprocess.run(["scancel", jobid], check=True)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert f"SLURM-job '{jobid}' failed, SLURM status is: 'CANCELLED'" in out
    assert "Error in rule build_knowledge" in out
    assert not list(wd.glob("results/knowledge/*.parquet"))
    plan = check(run(command(wd, "--until", "build_knowledge", "--dry-run")))
    assert "build_knowledge" in plan
