"""The teacher's rankings as a table (RANKINGS), from score matrices or from an external model's file.

    python -c "import numpy; from mint.core.rankings import *; print(rankings_frame('a', 'x', numpy.ones((1, 1)), 'm'))"
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from mint.core import schemas
from mint.core.cohort import load_cases, load_labels
from mint.core.io import MintError, provenance, write_parquet


def rankings_frame(case_ids: Sequence[str], classes: Sequence[str], scores: np.ndarray, modality: str) -> pl.DataFrame:
    """RANKINGS rows of a (cases x labels) score matrix; rank 1 = highest score, ties by label order."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1)
    n, m = scores.shape
    return pl.DataFrame(
        {
            "case_id": np.repeat(np.asarray(case_ids, dtype=object), m),
            "modality": [modality] * (n * m),
            "label_id": np.tile(np.asarray(classes, dtype=object), n),
            "score": scores.reshape(-1).astype(np.float64),
            "rank": ranks.reshape(-1).astype(np.int32),
        }
    )


def import_rankings(external: str | Path, cases_path: str | Path, candidates_path: str | Path,
                    out_path: str | Path) -> None:
    """Check an external model's rankings (case_id, label_id, score) and store them as RANKINGS (`external`).

    Refused, naming the file, the row or case and what was expected: a missing column; a score that is
    null, NaN or infinite (it would sort as the best or the worst label); a (case, label) pair given
    twice; a case or label not in the cohort; a ranked case whose labels are not exactly the candidates
    (each case's ranking must cover the whole panel, as the application's teacher's does); a training
    case with no ranking.
    """
    src = Path(external)
    if not src.exists():
        raise MintError(f"config key 'teacher.rankings': file not found: {src}")
    try:
        df = pl.read_parquet(src)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise MintError(f"config key 'teacher.rankings': {src} is not a readable Parquet file ({err})") from err
    missing = [c for c in ("case_id", "label_id", "score") if c not in df.columns]
    if missing:
        raise MintError(f"{src}: rankings are missing column(s) {missing}; expected case_id, label_id, score")
    if not df["score"].dtype.is_numeric():
        raise MintError(f"{src}: column 'score' must be numeric, got {df['score'].dtype}")
    df = df.with_row_index("_row", offset=1).with_columns(pl.col("case_id", "label_id").cast(pl.String),
                                                          score=pl.col("score").cast(pl.Float64))
    for column in ("case_id", "label_id"):
        null = df.filter(pl.col(column).is_null())
        if null.height:
            raise MintError(f"{src} row {null['_row'][0]}: empty {column}")
    bad = df.filter(pl.col("score").is_null() | ~pl.col("score").is_finite())
    if bad.height:
        row = bad.row(0, named=True)
        raise MintError(f"{src} row {row['_row']} (case_id {row['case_id']!r}, label_id {row['label_id']!r}): "
                        f"score is {row['score']}; expected a finite number ({bad.height} such row(s))")
    dup = df.filter(pl.struct("case_id", "label_id").is_duplicated())
    if dup.height:
        row = dup.row(0, named=True)
        rows = dup.filter((pl.col("case_id") == row["case_id"]) & (pl.col("label_id") == row["label_id"]))["_row"]
        raise MintError(f"{src} rows {rows.to_list()}: case {row['case_id']!r} ranks label {row['label_id']!r} "
                        "more than once; expected one score per (case_id, label_id)")
    cases, candidates = load_cases(cases_path), load_labels(candidates_path)
    unknown_cases = set(df["case_id"].to_list()) - set(cases["case_id"].to_list())
    if unknown_cases:
        raise MintError(f"{src}: case id(s) not in the cohort: {sorted(unknown_cases)[:5]}")
    panel = set(candidates["label_id"].to_list())
    unknown = set(df["label_id"].to_list()) - panel
    if unknown:
        raise MintError(f"{src}: label id(s) not among the candidates: {sorted(unknown)[:5]}")
    counts = df.group_by("case_id").len().filter(pl.col("len") != len(panel)).sort("case_id")
    if counts.height:
        case_id, n = counts.row(0)
        have = set(df.filter(pl.col("case_id") == case_id)["label_id"].to_list())
        raise MintError(f"{src}: case {case_id!r} ranks {n} of the {len(panel)} candidate labels (missing "
                        f"{sorted(panel - have)[:5]}); expected a score for every candidate of every ranked case "
                        f"({counts.height} case(s) short)")
    train = cases.filter(pl.col("split") == "train")["case_id"].to_list()
    absent = set(train) - set(df["case_id"].to_list())
    if absent:
        raise MintError(f"{src}: no rankings for training case(s) {sorted(absent)[:5]}")
    df = df.drop("_row").with_columns(
        modality=pl.lit("external"),
        rank=pl.col("score").rank("ordinal", descending=True).over("case_id").cast(pl.Int32),
    ).sort("case_id", "rank")
    write_parquet(df, out_path, schemas.RANKINGS, provenance({"rankings": str(src)}))
