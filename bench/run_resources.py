"""Time and memory of a finished workflow run, from the files Snakemake wrote (no test asserts them).

Every rule with a `benchmark:` directive leaves `benchmarks/<rule>[/<wildcards>].tsv` (seconds,
peak resident memory of the job); the run's wall time comes from the first and last timestamps
of each Snakemake log in `.snakemake/log/`, summed over the invocations (a run made in several
invocations counts each one's duration, not the gaps between them). Prints one row per step, the
sum of the steps' seconds, the largest peak, and the wall time.

    python bench/run_resources.py runs/benchmark
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from pathlib import Path

import polars as pl

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def step_table(run_dir: Path) -> pl.DataFrame:
    rows = []
    for tsv in sorted((run_dir / "benchmarks").rglob("*.tsv")):
        last = pl.read_csv(tsv, separator="\t").row(-1, named=True)
        rows.append({"step": str(tsv.relative_to(run_dir / "benchmarks").with_suffix("")),
                     "seconds": float(last["s"]), "peak_mib": float(last["max_rss"])})
    return pl.DataFrame(rows, schema={"step": pl.String, "seconds": pl.Float64, "peak_mib": pl.Float64})


def wall_seconds(run_dir: Path) -> tuple[float, int] | None:
    """(summed duration of the Snakemake invocations, their number), or None without logs."""
    spans = []
    for log in sorted((run_dir / ".snakemake" / "log").glob("*.snakemake.log")):
        stamps = [datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
                  for m in map(_STAMP.match, (line.strip() for line in log.read_text().splitlines())) if m]
        if len(stamps) > 1:
            spans.append((max(stamps) - min(stamps)).total_seconds())
    return (sum(spans), len(spans)) if spans else None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Time and memory of a finished workflow run.")
    p.add_argument("run_dir", type=Path, help="the workflow's working directory")
    a = p.parse_args(argv)
    table = step_table(a.run_dir)
    if table.height == 0:
        raise SystemExit(f"{a.run_dir}/benchmarks: no benchmark files (has the workflow run there?)")
    with pl.Config(tbl_rows=200, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(table)
    print(f"sum of step seconds: {table['seconds'].sum():.0f} s ({table['seconds'].sum() / 60:.1f} min)")
    top = table.sort("peak_mib", descending=True).row(0, named=True)
    print(f"largest peak resident memory of a step: {top['peak_mib']:.0f} MiB ({top['step']})")
    wall = wall_seconds(a.run_dir)
    if wall is not None:
        print(f"wall time of {wall[1]} Snakemake invocation(s), summed: {wall[0]:.0f} s ({wall[0] / 60:.1f} min)")


if __name__ == "__main__":
    main()
