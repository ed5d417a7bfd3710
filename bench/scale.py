"""Time and peak memory of the rankings steps as the cohort grows: synthetic cases x 800 labels.

For each size: a synthetic cohort (80 % training cases, random true labels, short notes) and
seeded random teacher scores; then, each step in its own process (peak RSS from `os.wait4`, so one
step's memory never counts towards the next):

- `rank`: the teacher's scores to RANKINGS (`mint.core.rankings.write_rankings`, one modality);
- `preferences`: preference and SFT pairs (`mint.core.preferences.build_preferences`, the paper's
  k = 10, q = 15);
- `score`: the teacher's CASE_SCORES on the test cases (`mint.core.report.score_ranker`, k = 10);
- `agreement`: the teacher's top-10 and bottom-15 lists that the report's agreement reads.

Up to `--whole-up-to` cases, the same steps the straightforward way too (`*_whole`: the whole
cases x labels table in memory, as before the steps were streamed), for the ratio. Scratch files
go to `--scratch` (removed at the end unless `--keep`).

    python -m bench.scale --sizes 1000 1250 10000 100000 --repeats 3 --whole-up-to 10000
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from mint.core import schemas
from mint.core.io import read_parquet, write_parquet

N_LABELS = 800
K, Q = 10, 15  # config/rare_disease/paper.yaml: preferences.k, preferences.q
BATCH = 4096  # cases a score batch (4096 x 800 float64 = 26 MB)
STEPS = ("rank", "preferences", "score", "agreement")


def labels() -> list[str]:
    return [f"L:{j:06d}" for j in range(N_LABELS)]


def make_cohort(folder: Path, n: int, seed: int = 0) -> None:
    """cases.parquet (n cases, 80 % train) and candidates.parquet (800 labels), as the cohort step writes them."""
    from tests.factories import make_labels

    rng = np.random.default_rng(seed)
    ids = [f"case{i:07d}" for i in range(n)]
    panel = labels()
    cases = pl.DataFrame({
        "case_id": ids, "source": "synthetic", "group": None,
        "label_id": [panel[j] for j in rng.integers(0, N_LABELS, n)],
        "split": np.where(rng.random(n) < 0.8, "train", "test"),
        "note": [f"synthetic note of case {i}: short stature, seizures" for i in range(n)],
    }, schema_overrides={"group": pl.String})
    write_parquet(cases, folder / "cases.parquet", schemas.cases_schema([pa.field("note", pa.string())]))
    write_parquet(make_labels(panel, [f"Label {j}" for j in range(N_LABELS)]), folder / "candidates.parquet",
                  schemas.LABELS)


def score_batches(n: int, seed: int = 1):
    """Seeded random (cases x labels) teacher scores, `BATCH` cases at a time: (start, matrix)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, BATCH):
        yield start, rng.standard_normal((min(BATCH, n - start), N_LABELS))


def run_step(step: str, folder: Path) -> None:
    """One step on the cohort in `folder` (run in a child process by `measure`)."""
    from mint.apps.rare_disease.prompts import PROMPT
    from mint.core import preferences
    from mint.core.cohort import load_cases
    from mint.core.evaluate import score_rankings, teacher_agreement
    from mint.core.rankings import RankingsWriter, rankings_frame
    from mint.core.report import agreement_with_teacher, score_ranker

    ids = load_cases(folder / "cases.parquet")["case_id"].to_list()
    rankings = folder / "rankings.parquet"
    if step == "rank":
        with RankingsWriter(rankings, labels()) as out:
            for start, scores in score_batches(len(ids)):
                out.add(ids[start:start + len(scores)], scores, "note")
    elif step == "rank_whole":
        scores = np.concatenate([s for _, s in score_batches(len(ids))])
        write_parquet(rankings_frame(ids, labels(), scores, "note"), folder / "rankings_whole.parquet",
                      schemas.RANKINGS)
    elif step in ("preferences", "preferences_whole"):
        if step.endswith("whole"):
            preferences._training_lists = WholeLists
        preferences.build_preferences(folder / "cases.parquet", folder / "candidates.parquet", rankings,
                                      folder / f"{step}.parquet", folder / f"{step}_sft.parquet", modality="note",
                                      prompt=PROMPT.resolved(None), text_field="note", k=K, q=Q)
    elif step == "score":
        score_ranker(folder / "cases.parquet", rankings, folder / "score.parquet", modality="note",
                     method="teacher_note", k=K)
    elif step == "score_whole":
        cases = load_cases(folder / "cases.parquet")
        truth = cases.filter(pl.col("split") == "test").select("case_id", "label_id")
        whole = read_parquet(rankings, schemas.RANKINGS).filter(
            pl.col("modality") == "note", pl.col("case_id").is_in(truth["case_id"].implode()))
        write_parquet(score_rankings(whole, truth, K, "teacher_note"), folder / "score_whole.parquet",
                      schemas.CASE_SCORES)
    elif step in ("agreement", "agreement_whole"):
        scores = read_parquet(folder / "score.parquet")
        if step == "agreement":
            agreement_with_teacher(scores, rankings, modality="note", k=K, q=Q)
        else:
            teacher_agreement(scores, read_parquet(rankings, schemas.RANKINGS).filter(pl.col("modality") == "note"),
                              K, Q)
    else:
        raise SystemExit(f"unknown step {step!r}")


class WholeLists:
    """The straightforward way, as before streaming: the whole table in memory, each case's labels sorted
    by rank (the interface of `mint.core.rankings.RankedLists`)."""

    def __init__(self, rankings_path, modality, train, k, q, scratch=None, scores=False):
        rankings = read_parquet(rankings_path, schemas.RANKINGS).filter(pl.col("modality") == modality)
        groups = {case_id: group.sort("rank") for (case_id,), group in rankings.group_by("case_id")}
        ranked = {case_id: group["label_id"].to_list() for case_id, group in groups.items()}
        self.lists = pl.DataFrame({"case_id": list(ranked), "n": [len(v) for v in ranked.values()],
                                   "label_ids": list(ranked.values())})
        if scores:  # each case's log-sum-exp of its scores, and all its scores best first
            values = [group["score"].to_numpy() for group in groups.values()]
            self.lists = self.lists.with_columns(
                lse=pl.Series([float(np.logaddexp.reduce(v)) for v in values], dtype=pl.Float64),
                scores=pl.Series([v.tolist() for v in values], dtype=pl.List(pl.Float64)))
        self.cases = self.lists.select("case_id", "n")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def chunks(self, case_ids, size):
        ids = pl.Series("case_id", case_ids, dtype=pl.String).to_frame()
        yield from ids.join(self.lists, on="case_id", how="left", maintain_order="left").iter_slices(size)


def measure(step: str, folder: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of `step` in a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--step", step, "--folder", str(folder)],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"step {step} failed on {folder}")
    return wall, usage.ru_maxrss / 1024  # Linux: KiB


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 1250, 10000, 100000])
    p.add_argument("--repeats", type=int, default=3, help="runs of each step; medians printed")
    p.add_argument("--once-from", type=int, default=100000, help="sizes from this one run each step once")
    p.add_argument("--whole-up-to", type=int, default=10000, help="largest size also run the straightforward way")
    p.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "mint-scale")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--step", help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.step:
        logging.getLogger("mint.core.preferences").setLevel(logging.ERROR)  # "labels with no training case"
        run_step(a.step, a.folder)
        return
    print(f"{'cases':>7} {'rows':>11} {'step':<18} {'runs':>4} {'median s':>9} {'peak MiB':>9}", flush=True)
    results = {}
    for n in a.sizes:
        folder = a.scratch / f"n{n}"
        folder.mkdir(parents=True, exist_ok=True)
        make_cohort(folder, n)
        steps = [*STEPS, *((f"{s}_whole" for s in STEPS) if n <= a.whole_up_to else ())]
        repeats = 1 if n >= a.once_from else a.repeats
        for step in steps:
            runs = [measure(step, folder) for _ in range(repeats)]
            wall, peak = statistics.median(r[0] for r in runs), max(r[1] for r in runs)
            results[n, step] = wall, peak
            print(f"{n:>7} {n * N_LABELS:>11,} {step:<18} {repeats:>4} {wall:>9.2f} {peak:>9.0f}", flush=True)
        for step in STEPS:
            if (n, f"{step}_whole") in results:
                (w, m), (ww, wm) = results[n, step], results[n, f"{step}_whole"]
                print(f"{n:>7} {'':>11} {step + ' ratio':<18} {'':>4} {ww / w:>8.2f}x {wm / m:>8.2f}x", flush=True)
        if n <= a.whole_up_to:
            same = all((folder / x).read_bytes() == (folder / y).read_bytes() for x, y in (
                ("rankings.parquet", "rankings_whole.parquet"), ("preferences.parquet", "preferences_whole.parquet"),
                ("preferences_sft.parquet", "preferences_whole_sft.parquet"), ("score.parquet", "score_whole.parquet")))
            print(f"{n:>7} {'':>11} same bytes streamed and whole (rankings, pairs, SFT, scores): {same}", flush=True)
        if not a.keep:
            shutil.rmtree(folder)


if __name__ == "__main__":
    main()
