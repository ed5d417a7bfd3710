"""The real Snakemake DAG on a tiny config, in a scratch working directory: helpers of the integration tests."""

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from tests.factories import job_stats

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY = "tests/data/tiny/config.yaml"

def workdir(tmp: Path) -> Path:
    """A scratch working directory with its own copy of the configs (`TINY`: its tiny config), so that
    a run's settings name its own files and a copy of the run stays valid."""
    shutil.copytree(REPO / "config", tmp / "config")
    shutil.copytree(REPO / "tests" / "data", tmp / "tests" / "data")
    return tmp


def open_to_others(wd: Path) -> tuple[int, list[str]]:
    """(files and folders the workflow wrote in `wd`: results/, logs/, benchmarks/, .snakemake/ and the HTML
    reports at the top, those of them that its owner's group or others may read, write or enter, as
    'path mode'). Not the workflow's: the copies of the configs (`workdir`) and what tests write beside a
    run (config changes, external rankings); links have no mode of their own."""
    paths = [wd / d for d in ("results", "logs", "benchmarks", ".snakemake") if (wd / d).is_dir()]
    paths += sorted(wd.glob("*.html"))
    for top in list(paths):
        for folder, dirs, files in os.walk(top):
            paths += [Path(folder, name) for name in dirs + files]
    seen, offenders = 0, []
    for path in paths:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        seen += 1
        if mode & 0o077:
            offenders.append(f"{path.relative_to(wd)} {stat.S_IMODE(mode):o}")
    return seen, offenders


def snakemake(wd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd), "--cores", "2", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=wd)  # config file arguments are the run's
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}")
    return res


def planned_jobs(wd: Path, change: dict) -> dict[str, int]:
    """Rule -> job count that a dry run plans with the tiny config plus `change` (a config file)."""
    import yaml

    (wd / "change.yaml").write_text(yaml.safe_dump(change))
    out = snakemake(wd, "--configfile", TINY, str(wd / "change.yaml"), "--dry-run").stdout
    if "Nothing to be done" in out:
        return {}
    return job_stats(out)


def dry_run(wd: Path, change: dict, *args: str) -> tuple[set[str], set[str]]:
    """(rules planned, rules planned because their params changed) by a dry run with `change`."""
    import yaml

    path = wd / f"change-{abs(hash(yaml.safe_dump(change)))}.yaml"
    path.write_text(yaml.safe_dump(change))
    out = snakemake(wd, "--configfile", TINY, str(path), "--dry-run", "--nolock", *args).stdout
    planned, flagged = set(), set()
    for rule, block in planned_blocks(out):
        planned.add(rule)
        if re.search(r"^\s*reason:.*Params have changed", block, re.M):
            flagged.add(rule)
    return planned - {"all"}, flagged


def planned_blocks(dry_run_output: str) -> list[tuple[str, str]]:
    """(rule, its job's block of lines) for each job a `snakemake --dry-run` prints, in order."""
    blocks = re.split(r"\n(?=(?:local)?rule \w+:)", "\n" + dry_run_output)
    return [(head.group(1), block) for block in blocks if (head := re.match(r"(?:local)?rule (\w+):", block))]


def rule_graph(wd: Path) -> dict[str, set[str]]:
    """Rule -> the rules whose outputs it reads, in the tiny DAG (`snakemake --rulegraph`)."""
    dot = snakemake(wd, "--configfile", TINY, "--rulegraph", "--nolock").stdout
    names = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", dot, re.M))
    parents: dict[str, set[str]] = {n: set() for n in names.values()}
    for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M):
        if a != b:
            parents[names[b]].add(names[a])
    return parents


def levels_and_below(parents: dict[str, set[str]]) -> list[tuple[set[str], set[str]]]:
    """Per depth (longest path from a source): its rules, and every rule below them.

    No rule is another's ancestor within a level, so a DAG of one level and what lies below it
    (`--allowed-rules`) remakes none of the level's inputs: Snakemake then checks their params.
    """
    depth: dict[str, int] = {}

    def level(rule: str) -> int:
        if rule not in depth:
            depth[rule] = 1 + max((level(p) for p in parents[rule]), default=-1)
        return depth[rule]

    def below(rules: set[str]) -> set[str]:
        children = {r for r, ps in parents.items() if ps & rules}
        return children | below(children) if children else set()

    by_level: dict[int, set[str]] = {}
    for rule in parents:
        by_level.setdefault(level(rule), set()).add(rule)
    return [(by_level[d], below(by_level[d])) for d in sorted(by_level)]


def params_changed(wd: Path, change: dict, levels: list[tuple[set[str], set[str]]]) -> set[str]:
    """Rules whose params a config change changes.

    Snakemake checks a job's params only when none of its inputs is being remade, so rules below a
    changed one are checked again, a level at a time, with the rules above them left out of the DAG.
    """
    planned, flagged = dry_run(wd, change)
    unresolved = planned - flagged
    for rules, below in levels:
        if rules & unresolved:
            allowed = sorted(rules | below | {"all"})
            flagged |= dry_run(wd, change, "--allowed-rules", *allowed)[1] & rules
    return flagged


def nested(key: str, value) -> dict:
    for part in reversed(key.split(".")):
        value = {part: value}
    return value
