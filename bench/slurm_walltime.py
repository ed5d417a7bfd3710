"""Measure a workflow run through SLURM (profiles/slurm-local) against the same run on local cores.

Runs the config twice, one after the other, each from scratch in its own scratch working
directory: `snakemake --cores N`, then `snakemake --profile profiles/slurm-local`. Prints both
wall times, the SLURM jobs' own run time (squeue), and whether the result tables are identical.
Needs a SLURM cluster (`bash .ci/slurm-up`). Nothing here is asserted: it measures.

    .venv/bin/python bench/slurm_walltime.py --configfile tests/data/tiny/config.yaml
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Globs: the DAG nests training outputs by seed (results/train/seed<N>/<method>).
OUTPUTS = ["results/cohort/*.parquet", "results/rankings/*.parquet", "results/preferences/*.parquet",
           "results/train/**/model.safetensors", "results/train/**/adapter_model.safetensors",
           "results/predict/**/*.parquet", "results/report/metrics.csv"]


def run_once(args: list[str], configfile: str) -> tuple[float, Path, str]:
    wd = Path(tempfile.mkdtemp(prefix="mint-bench-slurm-"))
    shutil.copytree(REPO / "config", wd / "config")
    shutil.copytree(REPO / "tests" / "data", wd / "tests" / "data")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd),
           "--configfile", configfile, *args]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if res.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{(res.stdout + res.stderr)[-5000:]}")
    return elapsed, wd, res.stdout + res.stderr


def slurm_job_seconds(jobids: list[str]) -> list[int]:
    """Each job's run time as squeue reports it ([D-]H:MM:SS or M:SS), in seconds."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(jobids), "-o", "%M"],
                         capture_output=True, text=True, check=True).stdout
    secs = []
    for field in out.split():
        days, _, hms = field.rpartition("-")
        parts = [int(x) for x in hms.split(":")]
        secs.append(int(days or 0) * 86400 + sum(v * 60**i for i, v in enumerate(reversed(parts))))
    return secs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configfile", default="tests/data/tiny/config.yaml")
    p.add_argument("--cores", type=int, default=2)
    a = p.parse_args(argv)
    local_s, local_wd, _ = run_once(["--cores", str(a.cores)], a.configfile)
    print(f"local (--cores {a.cores}): {local_s:.1f} s", flush=True)
    slurm_s, slurm_wd, out = run_once(["--profile", str(REPO / "profiles" / "slurm-local")], a.configfile)
    jobids = re.findall(r"submitted with SLURM jobid (\d+)", out)
    job_s = slurm_job_seconds(jobids)
    print(f"SLURM (profiles/slurm-local): {slurm_s:.1f} s; {len(jobids)} jobs, their run times summed "
          f"{sum(job_s)} s (longest {max(job_s)} s)")
    for pattern in OUTPUTS:
        for path in sorted(local_wd.glob(pattern)):
            other = slurm_wd / path.relative_to(local_wd)
            same = other.exists() and path.read_bytes() == other.read_bytes()
            print(f"{path.relative_to(local_wd)}: {'identical' if same else 'DIFFERENT'}")
    print(f"\nscratch dirs: {local_wd} {slurm_wd}")


if __name__ == "__main__":
    main()
