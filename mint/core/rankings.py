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
    """Check an external model's rankings (case_id, label_id, score) and store them as RANKINGS (`external`)."""
    src = Path(external)
    if not src.exists():
        raise MintError(f"config key 'teacher.rankings': file not found: {src}")
    df = pl.read_parquet(src)
    missing = [c for c in ("case_id", "label_id", "score") if c not in df.columns]
    if missing:
        raise MintError(f"{src}: rankings are missing column(s) {missing}; expected case_id, label_id, score")
    cases, candidates = load_cases(cases_path), load_labels(candidates_path)
    unknown_cases = set(df["case_id"].to_list()) - set(cases["case_id"].to_list())
    if unknown_cases:
        raise MintError(f"{src}: case id(s) not in the cohort: {sorted(unknown_cases)[:5]}")
    unknown = set(df["label_id"].to_list()) - set(candidates["label_id"].to_list())
    if unknown:
        raise MintError(f"{src}: label id(s) not among the candidates: {sorted(unknown)[:5]}")
    train = cases.filter(pl.col("split") == "train")["case_id"].to_list()
    absent = set(train) - set(df["case_id"].to_list())
    if absent:
        raise MintError(f"{src}: no rankings for training case(s) {sorted(absent)[:5]}")
    df = df.with_columns(
        modality=pl.lit("external"),
        score=pl.col("score").cast(pl.Float64),
        rank=pl.col("score").rank("ordinal", descending=True).over("case_id").cast(pl.Int32),
    ).sort("case_id", "rank")
    write_parquet(df, out_path, schemas.RANKINGS, provenance({"rankings": str(src)}))
