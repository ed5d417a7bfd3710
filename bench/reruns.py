"""What a one-setting change reruns, and what it costs, on the embedded default (config/rare_disease/default.yaml).

In a run folder (`--dir`; by default a new one under runs/, removed afterwards unless `--keep`),
with its own copy of the repository's `config` (paths in a config are relative to it; a config file,
bench-recipes.yaml, names the copy's default recipes): one complete run first (nothing to do if the folder
holds one already), then, per change, a dry run with the default config plus a config file that sets that
one key (`snakemake -n --configfile config/rare_disease/default.yaml bench-recipes.yaml change.yaml`):
the jobs Snakemake plans, per rule, and their cost estimated from the complete run (the mean wall
seconds of each rule's jobs, from Snakemake's records in `.snakemake/metadata`, times the planned
jobs). For the changes named in `--measure` (an evaluation setting by default) the rerun is also
run and timed (Snakemake's start-up and DAG included), then the default config is run again (also
timed) so the folder is as before.

    python -m bench.reruns --dir runs/reruns --keep            # the default changes, one at a time
    python -m bench.reruns --dir runs/reruns --keep --change evaluation.bootstrap=200 --measure evaluation.bootstrap
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = Path("config/rare_disease/default.yaml")
# The default recipes (the application's, which the default config leaves to the schema), as the run folder's
# copy: a recipe change edits them there.
DEFAULT_RECIPES = Path("config/rare_disease/recipes/tiny")
RECIPE_CHANGE = "recipe:orpo.learning_rate"  # a value inside a recipe file, not a config key
# One setting at a time: evaluation, preferences, a recipe value, the teacher, the seeds.
CHANGES = [
    "evaluation.bootstrap=200",
    "evaluation.fuzzy_cutoff=0.9",
    "evaluation.ks=[1, 5]",
    "evaluation.max_new_tokens=48",
    "preferences.q=4",
    "preferences.k=4",
    f"{RECIPE_CHANGE}=5.0e-4",
    "training.seeds=[42, 43]",
    "teacher.epochs=40",
    "seed=7",
]


def parse_change(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"--change {text!r}: expected key=value, e.g. evaluation.bootstrap=200")
    return key.strip(), yaml.safe_load(value)


def nested(key: str, value) -> dict:
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def snakemake(folder: Path, *args: str, check: bool = True) -> tuple[str, float]:
    """Snakemake on the run folder; (stdout and stderr, wall seconds)."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(folder), *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    seconds = time.perf_counter() - t0
    if check and res.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}")
    return res.stdout + res.stderr, seconds


def job_stats(out: str) -> dict[str, int]:
    """Rule -> planned jobs from Snakemake's 'Job stats' table, without the target `all`; {} when nothing to do."""
    if "Job stats:" not in out:
        return {}
    table = out.split("Job stats:")[1].split("total")[0]
    rows = [line.split() for line in table.splitlines()[3:] if line.strip()]
    return {rule: int(count) for rule, count in rows if rule != "all"}


def rule_seconds(folder: Path) -> dict[str, float]:
    """Rule -> mean wall seconds of its jobs' last runs in `folder`, from Snakemake's own records
    (`.snakemake/metadata`: start and end time of every output's job)."""
    jobs: dict[int, tuple[str, float]] = {}
    for path in (folder / ".snakemake" / "metadata").glob("*"):
        try:
            record = json.loads(path.read_text())
            jobs[record["job_hash"]] = (record["rule"], float(record["endtime"]) - float(record["starttime"]))
        except (ValueError, KeyError, TypeError):
            continue  # not a job record
    seconds: dict[str, list[float]] = {}
    for rule, s in jobs.values():
        seconds.setdefault(rule, []).append(s)
    return {rule: statistics.mean(s) for rule, s in seconds.items()}


@contextlib.contextmanager
def change_files(folder: Path, key: str, value):
    """A config file that sets `key` to `value`, for the time of the block.

    A recipe change (`recipe:<method>.<arg>`) edits that recipe of the run folder's config in place,
    as a user would, then puts it back with its old content and time.
    """
    path = folder / "bench-change.yaml"
    if not key.startswith("recipe:"):
        path.write_text(yaml.safe_dump(nested(key, value)))
        yield path
        return
    method, _, arg = key.removeprefix("recipe:").partition(".")
    recipe_path = folder / DEFAULT_RECIPES / f"{method}.yaml"
    text, stat = recipe_path.read_text(), recipe_path.stat()
    try:
        recipe = yaml.safe_load(text)
        recipe["args"][arg] = value
        recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        path.write_text("{}\n")
        yield path
    finally:
        recipe_path.write_text(text)
        os.utime(recipe_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def estimate(row: dict) -> str:
    """The estimated seconds, with '+ ?' when some planned rule has no job record in the folder."""
    return f"{row['estimated_s']:.0f}" + (" + ?" if row["unknown_cost"] else "")


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, help="run folder (default: a new folder under runs/)")
    p.add_argument("--keep", action="store_true", help="keep a folder this script made")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--change", nargs="+", default=CHANGES, help="key=value, one setting per change")
    p.add_argument("--measure", nargs="*", default=["evaluation.bootstrap"], help="keys whose rerun is run and timed")
    p.add_argument("--dry-only", action="store_true",
                   help="dry runs only (no complete run, nothing measured): plan against what the folder holds")
    a = p.parse_args(argv)
    measure = set() if a.dry_only else set(a.measure)
    made = a.dir is None
    if made:
        (REPO / "runs").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="reruns-", dir=REPO / "runs")) if made else a.dir
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    if not (folder / "config").exists():
        shutil.copytree(REPO / "config", folder / "config")  # copy2: the files keep their times
    cores = ["--cores", str(a.cores)]
    recipes = folder / "bench-recipes.yaml"  # its paths are relative to it: the folder's copy
    recipes.write_text(yaml.safe_dump({"training": {"recipes": DEFAULT_RECIPES.as_posix()}}))
    base = ["--configfile", str(folder / DEFAULT_CONFIG), str(recipes)]
    rows = []
    try:
        if not a.dry_only:
            _, seconds = snakemake(folder, *cores, *base)
            print(f"complete run: {seconds:.0f} s (Snakemake's start-up only if the folder held one already)",
                  flush=True)
        costs = rule_seconds(folder)
        for text in a.change:
            key, value = parse_change(text)
            with change_files(folder, key, value) as change:
                out, dry_s = snakemake(folder, *cores, *base, str(change), "--dry-run", "--nolock")
            planned = job_stats(out)
            known = [r for r in planned if r in costs]
            row = {"change": text, "planned": planned, "dry_run_s": dry_s,
                   "estimated_s": sum(costs[r] * n for r, n in planned.items() if r in costs),
                   "unknown_cost": sorted(set(planned) - set(known))}
            if key in measure:
                with change_files(folder, key, value) as change:
                    out, row["rerun_s"] = snakemake(folder, *cores, *base, str(change))
                row["ran"] = job_stats(out)
                _, row["revert_s"] = snakemake(folder, *cores, *base)
            rows.append(row)
            ran = "; ".join(f"{r} x{n}" for r, n in planned.items()) or "nothing"
            measured = f", rerun {row['rerun_s']:.1f} s, back {row['revert_s']:.1f} s" if "rerun_s" in row else ""
            print(f"{text}: {ran} (estimated {estimate(row)} s{measured})", flush=True)
    finally:
        if made and not a.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print("\n| change | rules rerun (jobs) | estimated s | measured rerun s |\n|---|---|---:|---:|")
    for row in rows:
        ran = ", ".join(f"{r} ({n})" for r, n in row["planned"].items()) or "nothing"
        measured = f"{row['rerun_s']:.1f}" if "rerun_s" in row else ""
        print(f"| `{row['change']}` | {ran} | {estimate(row)} | {measured} |")
    return rows


if __name__ == "__main__":
    main()
