"""Are two run folders' results the same bytes, and who may read what a run wrote?

For a change that should not change results (a refactor, a speed-up): run the same config at two commits,
each in its own folder, then compare every Parquet, safetensors, `model.pt`, CSV and Markdown file under
`results/` byte for byte (`report/timings.csv` holds wall-clock seconds and differs by nature). `--modes`
counts the permission modes of every file and folder the run wrote (`results/`, `logs/`, `benchmarks/`,
`.snakemake/`).

    python -m bench.same_results runs/before runs/after
    python -m bench.same_results runs/after --modes
"""

from __future__ import annotations

import argparse
import hashlib
import stat
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

COMPARED = (".parquet", ".safetensors", ".pt", ".csv", ".md")
WRITTEN = ("results", "logs", "benchmarks", ".snakemake")


def result_files(run: Path) -> set[Path]:
    """The compared files under `run/results`, relative to it."""
    root = run / "results"
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.suffix in COMPARED}


def compare(before: Path, after: Path) -> dict[str, list[str]]:
    """The compared files of two runs: the same bytes, different bytes, only in `before`, only in `after`."""
    old, new = result_files(before), result_files(after)

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    both = sorted(old & new)
    same = [str(f) for f in both if digest(before / "results" / f) == digest(after / "results" / f)]
    return {"same": same, "different": sorted(set(map(str, both)) - set(same)),
            "only before": sorted(map(str, old - new)), "only after": sorted(map(str, new - old))}


def modes(run: Path) -> Counter:
    """(octal mode, 'file' | 'folder') -> how many, over what the run wrote."""
    counts: Counter = Counter()
    for top in WRITTEN:
        for path in [run / top, *(run / top).rglob("*")] if (run / top).exists() else ():
            st = path.lstat()
            kind = "folder" if stat.S_ISDIR(st.st_mode) else "file"
            counts[(oct(stat.S_IMODE(st.st_mode))[2:], kind)] += 1
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="two run folders to compare, or one with --modes")
    p.add_argument("--modes", action="store_true", help="count the permission modes of what each run wrote")
    a = p.parse_args(argv)
    if a.modes:
        for run in a.runs:
            for (mode, kind), n in sorted(modes(run).items()):
                print(f"{run}: {n:6d} {kind}s {mode}")
        return
    if len(a.runs) != 2:
        p.error("give two run folders to compare")
    for name, files in compare(*a.runs).items():
        print(f"{name}: {len(files)}" + (f"  {files}" if files and name != "same" else ""))


if __name__ == "__main__":
    main()
