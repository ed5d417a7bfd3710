"""The cohort tables every application writes and every later step reads: cases and labels.

An application's cohort step writes `cases.parquet` (CASES plus its own columns), `candidates.parquet`
(the labels the teacher ranks and the student names), `excluded.parquet`, and optionally
`vocabulary.parquet` (every name an answer may be matched to, e.g. a whole ontology around the
candidates). `assign_split` is the seeded split, stratified by label, or by group when cases come
in groups (such as publications) that must stay on one side.

    python -c "from mint.core.cohort import load_cases; print(load_cases('results/cohort/cases.parquet'))"
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from mint.core import schemas
from mint.core.io import MintError, read_parquet

SPLITS = ("train", "validation", "test")


def load_cases(path: str | Path) -> pl.DataFrame:
    return read_parquet(path, schemas.CASES)


def load_labels(path: str | Path) -> pl.DataFrame:
    """A candidates or vocabulary table (LABELS)."""
    return read_parquet(path, schemas.LABELS)


def split_truth(cases: pl.DataFrame, split: str = "test") -> pl.DataFrame:
    """(case_id, label_id) of the cases of `split`."""
    return cases.filter(pl.col("split") == split).select("case_id", "label_id")


def assign_split(cases: pl.DataFrame, validation: float, test: float, seed: int) -> pl.DataFrame:
    """Seeded split stratified by label: each label puts about the same shares on each side."""
    rng = np.random.default_rng(seed)
    split_of: dict[str, str] = {}
    for _, group in cases.sort("case_id").group_by("label_id", maintain_order=True):
        ids = group["case_id"].to_list()
        rng.shuffle(ids)
        n = len(ids)
        n_test = max(1, round(n * test)) if n >= 3 else 0
        n_val = round(n * validation) if n - n_test >= 3 else 0
        for j, case_id in enumerate(ids):
            split_of[case_id] = "test" if j < n_test else "validation" if j < n_test + n_val else "train"
    return cases.with_columns(split=pl.col("case_id").replace_strict(split_of))


def check_split_column(df: pl.DataFrame, where: str) -> None:
    """A user-given `split` column holds only train / validation / test."""
    bad = df.filter(~pl.col("split").is_in(SPLITS))
    if bad.height:
        raise MintError(f"{where}: column 'split' must be one of {SPLITS}; case {bad['case_id'][0]!r} has "
                        f"{bad['split'][0]!r}")
