"""Measure the demo's wall time from scratch (after set-up) and each step's time and peak memory.

Runs `snakemake --cores N` on the embedded default in a fresh scratch working directory, a given
number of times, and prints the median wall time and, from Snakemake's `benchmark:` files of the
last run, seconds and peak resident memory per step. Nothing here is asserted: it measures.

    .venv/bin/python bench/demo_walltime.py --repeats 1 --cores 2
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_once(cores: int, configfile: str | None, keep: Path | None) -> tuple[float, Path]:
    wd = Path(tempfile.mkdtemp(prefix="mint-bench-")) if keep is None else keep
    shutil.copytree(REPO / "config", wd / "config", dirs_exist_ok=True)
    if (REPO / "tests" / "data").exists():
        shutil.copytree(REPO / "tests" / "data", wd / "tests" / "data", dirs_exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd),
           "--cores", str(cores), "--quiet", "rules"]
    if configfile:
        cmd += ["--configfile", configfile]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    return time.perf_counter() - t0, wd


def step_table(wd: Path) -> list[tuple[str, float, float]]:
    rows = []
    for tsv in sorted((wd / "benchmarks").rglob("*.tsv")):
        with open(tsv) as fh:
            rec = next(csv.DictReader(fh, delimiter="\t"))
        name = str(tsv.relative_to(wd / "benchmarks").with_suffix(""))
        rss = float(rec["max_rss"]) if rec.get("max_rss") not in (None, "", "NA", "-") else float("nan")
        rows.append((name, float(rec["s"]), rss))
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--configfile", default=None,
                   help="default: config/rare_disease/default.yaml (the embedded default)")
    a = p.parse_args(argv)
    times, wd = [], None
    for i in range(a.repeats):
        if wd is not None:
            shutil.rmtree(wd, ignore_errors=True)
        elapsed, wd = run_once(a.cores, a.configfile, None)
        times.append(elapsed)
        print(f"run {i + 1}/{a.repeats}: {elapsed:.1f} s", flush=True)
    print(f"\ndemo wall time, {a.cores} cores, from scratch: median {statistics.median(times):.1f} s "
          f"over {len(times)} run(s) (min {min(times):.1f}, max {max(times):.1f})")
    print("\nper step (last run; steps may overlap when they run in parallel):")
    print(f"{'step':<34}{'seconds':>10}{'peak RSS MiB':>15}")
    for name, secs, rss in step_table(wd):
        print(f"{name:<34}{secs:>10.1f}{rss:>15.0f}")
    print(f"\nresults of the last run: {wd}/results/report/summary.md")


if __name__ == "__main__":
    main()
