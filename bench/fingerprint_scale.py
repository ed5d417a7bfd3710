"""What the workflow's start pays to fingerprint a large manifest's files: a 100,000-row manifest and its images.

In a scratch folder: one small PNG, hard-linked `--rows` times (each row its own image file, made
in seconds), and a manifest of each application listing them (rare disease: case_id, note,
image_path, disease_id; tissue: image_path, tissue). Then, `--repeats` times each, timed apart:

- `list`: the application's `input_files` hook (reads the manifest, resolves every image path as
  the cohort step does, opens no image);
- `fingerprint`: `fingerprint_files` over the manifest and the images, with the default
  `content_limit` (small files read and hashed) and with `content_limit=0` (images by size and
  modification time only).

With `--dry-run`, also `snakemake --dry-run` of the whole workflow on each manifest (the start-up a
user waits for: config validation, the start-up checks of the manifest, the hook and the
fingerprints, then the DAG), `--repeats` times.

Prints the median and every time, in seconds. The files are hard links of one file, so they sit in the
page cache after the first read: these are warm-cache figures (a cold cache adds the reads' I/O to the
default's column, not to the `content_limit=0` one). Asserts nothing.

    python -m bench.fingerprint_scale --rows 100000 --repeats 3 --dry-run
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from mint.core.app import load_application
from mint.core.config import validate_config
from mint.core.fingerprint import fingerprint_files

DISEASES = ["OMIM:163950", "OMIM:154700"]  # any ids: the hook reads paths, not diseases
TISSUES = ["Colon", "Breast"]
REPO = Path(__file__).resolve().parent.parent


def make_scratch(folder: Path, rows: int) -> dict[str, Path]:
    """One PNG hard-linked `rows` times under images/ (1,000 a folder), and each application's manifest.

    Each folder links its own copy of the PNG: a file system caps one file's links (ext4: 65,000).
    """
    png = folder / "one.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(png)
    names = [f"images/{i // 1000:03d}/p{i:06d}.png" for i in range(rows)]
    for i in range(0, rows, 1000):
        (folder / f"images/{i // 1000:03d}").mkdir(parents=True)
        shutil.copyfile(png, folder / f"images/{i // 1000:03d}.png")
    for i, name in enumerate(names):
        os.link(folder / f"images/{i // 1000:03d}.png", folder / name)
    rare = folder / "rare_disease.csv"
    pl.DataFrame({"case_id": [f"p{i:06d}" for i in range(rows)], "note": "A 3-year-old with seizures.",
                  "image_path": names, "disease_id": [DISEASES[i % 2] for i in range(rows)]}).write_csv(rare)
    tissue = folder / "tissue.csv"
    pl.DataFrame({"image_path": names, "tissue": [TISSUES[i % 2] for i in range(rows)]}).write_csv(tissue)
    return {"rare_disease": rare, "tissue": tissue}


def timed(fn: Callable[[], object], repeats: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def dry_run(folder: Path, name: str, manifest: Path) -> float:
    """Seconds of `snakemake --dry-run` over the manifest (two labels: k = q = 1), in its own run folder."""
    run = folder / f"run-{name}"
    run.mkdir(exist_ok=True)
    config = run / "config.yaml"
    config.write_text(f"application: {name}\ncohort:\n  source: manifest\n  manifest:\n    path: {manifest}\n"
                      "preferences:\n  k: 1\n  q: 1\n")
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                          str(run), "--configfile", str(config), "--cores", "2", "--dry-run", "--quiet"],
                         capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if res.returncode:
        raise SystemExit(f"dry run of {name} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=None, help="parent of the scratch folder (default: tmp)")
    parser.add_argument("--dry-run", action="store_true", help="also time snakemake --dry-run on each manifest")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="fingerprint-scale-", dir=args.scratch))
    try:
        start = time.perf_counter()
        manifests = make_scratch(folder, args.rows)
        print(f"{args.rows:,} rows, one {(folder / 'one.png').stat().st_size}-byte PNG hard-linked; "
              f"scratch made in {time.perf_counter() - start:.1f} s; {os.cpu_count()} CPUs; median of {args.repeats}")
        for name, manifest in manifests.items():
            app = load_application(name)
            config = validate_config({"application": name, "cohort": {"source": "manifest",
                                                                      "manifest": {"path": str(manifest)}}})
            list_times, groups = timed(lambda: app.input_files(config), args.repeats)
            files = [f for group in groups.values() for f in group]
            for label, limit in (("fingerprint, default content_limit", 1 << 20), ("fingerprint, content_limit=0", 0)):
                fp_times, _ = timed(lambda: fingerprint_files(files, content_limit=limit), args.repeats)
                total = [a + b for a, b in zip(list_times, fp_times)]
                print(f"{name:>12} {label:<36} list {statistics.median(list_times):6.2f} s  "
                      f"fingerprint {statistics.median(fp_times):6.2f} s  total {statistics.median(total):6.2f} s  "
                      f"({len(files):,} files; fingerprint runs {', '.join(f'{t:.2f}' for t in fp_times)})")
            if args.dry_run:
                runs = [dry_run(folder, name, manifest) for _ in range(args.repeats)]
                print(f"{name:>12} snakemake --dry-run of the workflow: median {statistics.median(runs):6.2f} s "
                      f"(runs {', '.join(f'{t:.2f}' for t in runs)})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
