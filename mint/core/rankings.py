"""The teacher's rankings as a table (RANKINGS), from score matrices or from an external model's file.

Rankings grow as cases x labels (100,000 cases x 800 labels = 80 million rows a modality), so they
are written a row group at a time (`RankingsWriter`) and read back only in the part a step needs
(`RankedLists`: each case's best and worst few labels, a chunk of cases at a time), never whole.

    python -c "import numpy; from mint.core.rankings import *; print(rankings_frame('a', 'x', numpy.ones((1, 1)), 'm'))"
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from mint.core import schemas
from mint.core.cohort import load_cases, load_labels
from mint.core.io import MintError, ParquetStream, provenance, require_regular_file, write_parquet


def rankings_frame(case_ids: Sequence[str], classes: Sequence[str], scores: np.ndarray, modality: str) -> pl.DataFrame:
    """RANKINGS rows of a (cases x labels) score matrix; rank 1 = highest score, ties by label order."""
    ranks = _ranks(scores)
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


def _ranks(scores: np.ndarray) -> np.ndarray:
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1)
    return ranks


class RankingsWriter(ParquetStream):
    """RANKINGS written batch by batch (`ParquetStream`): memory holds one row group.

    Same rows in the same order give the same bytes as `write_parquet(pl.concat(rankings_frame(...)))`.

        with RankingsWriter(path, classes, prov) as out:
            out.add(case_ids, scores, modality)  # any number of (cases x labels) batches
    """

    def __init__(self, path: str | Path, classes: Sequence[str], prov: Mapping[str, Any] | None = None) -> None:
        super().__init__(path, schemas.RANKINGS, prov)
        self.classes = pa.array(list(classes), pa.string())

    def add(self, case_ids: Sequence[str], scores: np.ndarray, modality: str, top: int | None = None) -> None:
        """Rows of a (cases x labels) score matrix; rank 1 = highest score, ties by label order.

        `top`: only each case's `top` best labels (rank <= top), in label order.
        """
        n, m = scores.shape
        if m != len(self.classes) or n != len(case_ids):
            raise MintError(f"{self.path}: scores of shape {scores.shape} for {len(case_ids)} cases and "
                            f"{len(self.classes)} labels")
        ranks = _ranks(scores).reshape(-1)
        keep = np.flatnonzero(ranks <= top) if top is not None else np.arange(n * m)
        self.write(pa.table({
            "case_id": pa.array(list(case_ids), pa.string()).take(keep // m),
            "modality": pa.array([modality], pa.string()).take(np.zeros(len(keep), dtype=np.int64)),
            "label_id": self.classes.take(keep % m),
            "score": scores.reshape(-1)[keep].astype(np.float64),
            "rank": ranks[keep].astype(np.int32),
        }, schema=schemas.RANKINGS))


def write_rankings(path: str | Path, case_ids: Sequence[str], classes: Sequence[str],
                   scores: Mapping[str, np.ndarray], prov: Mapping[str, Any] | None = None,
                   batch: int = 4096) -> None:
    """RANKINGS of each modality's (cases x labels) matrix in `scores`, `batch` cases at a time.

    The bytes of `write_parquet(pl.concat([rankings_frame(case_ids, classes, s, m) for m, s in ...]))`,
    without the 5-column frame of cases x labels x modalities rows in memory.
    """
    case_ids = list(case_ids)
    with RankingsWriter(path, classes, prov) as out:
        for modality, matrix in scores.items():
            for start in range(0, len(case_ids), batch):
                out.add(case_ids[start:start + batch], matrix[start:start + batch], modality)


class RankedLists:
    """Each case's labels best first, of one modality, keeping only what a step reads: the `top` best,
    the `bottom` worst and (`keep_own`) the case's own label (the `label_id` of `cases`); with `scores`,
    also their scores and each case's log-sum-exp of all its scores (`lse`: the log of the softmax's
    denominator, so that exp(score - lse) is a kept label's softmax probability among all labels).

    Two streamed passes over the rankings (polars' streaming engine): the first counts each case's
    labels (`cases`: case_id, n, first = the row where the case first appears in the file), the
    second writes the kept rows to a temporary file; `chunks` then reads them a chunk of cases at a
    time. Memory holds a few numbers per case and one chunk's lists, never the cases x labels table.
    The temporary file lies in `scratch` (default: the current, i.e. the run's working, directory).
    With `cases` (a frame with case_id, and label_id for `keep_own`), only those cases. A case whose
    ranks are not exactly 1..n (never written by `rankings_frame` / `import_rankings`, but a hand-made
    file may tie) keeps all its labels, ordered by rank then label id.

        with RankedLists(path, "note", top=3) as ranked:
            for part in ranked.chunks(ranked.cases["case_id"], 10_000): ...
    """

    def __init__(self, path: str | Path, modality: str, *, top: int, bottom: int = 0,
                 cases: pl.DataFrame | None = None, keep_own: bool = False,
                 scratch: str | Path | None = None, scores: bool = False) -> None:
        if not Path(path).exists():
            raise MintError(f"file not found: {path}")
        have = pq.read_schema(path).names
        missing = [c for c in schemas.RANKINGS.names if c not in have]
        if missing:
            raise MintError(f"{path}: missing columns {missing}; have {have}")
        self.scores = scores
        score = ["score"] if scores else []
        lazy = (pl.scan_parquet(path).with_row_index("_row").filter(pl.col("modality") == modality)
                .select("_row", "case_id", "label_id", pl.col("rank").cast(pl.Int64), *score))
        if cases is not None:
            own = [pl.col("label_id").alias("_own")] if keep_own else []
            lazy = lazy.join(cases.lazy().select("case_id", *own), on="case_id")
        # Ranks 1..n: least 1, most n, and the sums of the ranks and of their squares those of 1..n.
        n = pl.len().cast(pl.Int64)
        rank = pl.col("rank")
        best = [pl.col("score").max().alias("_best")] if scores else []
        self.cases = lazy.group_by("case_id").agg(
            n=n, first=pl.col("_row").min(),
            ordinal=(rank.min() == 1) & (rank.max() == n) & (rank.sum() == n * (n + 1) // 2)
            & ((rank * rank).sum() == n * (n + 1) * (2 * n + 1) // 6),
            *best,
        ).collect(engine="streaming").sort("first")
        if scores:  # log-sum-exp after the best score is known: one more pass, each aggregate a streamed sum
            sums = (lazy.join(self.cases.lazy().select("case_id", "_best"), on="case_id").group_by("case_id")
                    .agg(_sum=(pl.col("score") - pl.col("_best")).exp().sum()).collect(engine="streaming"))
            self.cases = (self.cases.join(sums, on="case_id", how="left", maintain_order="left")
                          .with_columns(lse=pl.col("_best") + pl.col("_sum").log()).drop("_best", "_sum"))
        keep = (~pl.col("ordinal")) | (rank <= top) | (rank > pl.col("n") - bottom)
        if keep_own:
            keep = keep | (pl.col("label_id") == pl.col("_own"))
        # The kept rows name cases: they stay in the run (`scratch`, default the working directory), never
        # in the system's temporary folder, and go when the lists are closed.
        scratch = Path(scratch or Path.cwd()).absolute()
        while not scratch.is_dir():  # the nearest folder that exists: a failed step creates none
            scratch = scratch.parent
        self._tmp = tempfile.TemporaryDirectory(prefix=".mint-ranked-", dir=scratch)
        self._kept = Path(self._tmp.name) / "kept.parquet"
        (lazy.join(self.cases.lazy(), on="case_id").filter(keep).select("case_id", "label_id", "rank", *score)
         .sink_parquet(self._kept, engine="streaming"))

    def __enter__(self) -> RankedLists:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._tmp.cleanup()

    def chunks(self, case_ids: Sequence[str] | pl.Series, size: int) -> Iterator[pl.DataFrame]:
        """(case_id, n, first, label_ids; with `scores` also lse and scores, the kept labels' scores in the
        order of label_ids) of `case_ids`, `size` at a time, in the order given (null for a case the file
        does not rank)."""
        case_ids = pl.Series("case_id", case_ids, dtype=pl.String)
        per_case = ["case_id", "n", "first", *(["lse"] if self.scores else [])]
        lists_of = {"label_ids": pl.col("label_id"), **({"scores": pl.col("score")} if self.scores else {})}
        for start in range(0, len(case_ids), size):
            ids = case_ids.slice(start, size)
            rows = (pl.scan_parquet(self._kept).filter(pl.col("case_id").is_in(ids.implode()))
                    .collect(engine="streaming"))
            lists = (rows.sort("case_id", "rank", "label_id").group_by("case_id", maintain_order=True)
                     .agg(**lists_of))
            yield (ids.to_frame().join(self.cases.select(per_case), on="case_id", how="left",
                                       maintain_order="left")
                   .join(lists, on="case_id", how="left", maintain_order="left"))


def label_similarity(path: str | Path, modality: str, case_ids: Sequence[str] | pl.Series, labels: Sequence[str],
                     chunk: int = 4096) -> np.ndarray:
    """(labels x labels) Pearson correlation of the labels' score vectors across the cases `case_ids`.

    Each case's scores are first centred on their mean (an offset that a softmax ignores says nothing
    about the labels). Two labels that the teacher scores high (or low) on the same cases correlate:
    labels it takes for one another. Read `chunk` cases at a time (one streamed scan each); memory holds
    one chunk's (cases x labels) matrix and two (labels x labels) sums (800 labels: 5 MB each). A label
    with constant centred scores correlates 0 with every other. A case missing a label's score counts
    it at the case's mean.
    """
    index = {label: j for j, label in enumerate(labels)}
    n_labels = len(labels)
    total, products, n = np.zeros(n_labels), np.zeros((n_labels, n_labels)), 0
    case_ids = pl.Series("case_id", case_ids, dtype=pl.String)
    for start in range(0, len(case_ids), chunk):
        part = case_ids.slice(start, chunk)
        rows = (pl.scan_parquet(path).filter((pl.col("modality") == modality) & pl.col("case_id").is_in(part.implode()))
                .select("case_id", "label_id", "score").collect(engine="streaming"))
        where = dict(zip(part.to_list(), range(len(part))))
        matrix = np.full((len(part), n_labels), np.nan)
        matrix[rows["case_id"].replace_strict(where, return_dtype=pl.Int64).to_numpy(),
               rows["label_id"].replace_strict(index, return_dtype=pl.Int64).to_numpy()] = rows["score"].to_numpy()
        ranked = ~np.isnan(matrix).all(axis=1)  # a case the file does not rank adds nothing
        matrix = matrix[ranked]
        matrix = np.nan_to_num(matrix - np.nanmean(matrix, axis=1, keepdims=True))
        total += matrix.sum(axis=0)
        products += matrix.T @ matrix
        n += len(matrix)
    if n == 0:
        return np.zeros((n_labels, n_labels))
    mean = total / n
    cov = products / n - np.outer(mean, mean)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    scale = np.outer(sd, sd)
    return np.divide(cov, scale, out=np.zeros_like(cov), where=scale > 1e-12)


def ranked_lists(path: str | Path, modality: str, *, top: int, bottom: int = 0, cases: pl.DataFrame | None = None,
                 keep_own: bool = False) -> pl.DataFrame:
    """All of `RankedLists` at once (case_id, n, first, label_ids), cases in their order in the file."""
    with RankedLists(path, modality, top=top, bottom=bottom, cases=cases, keep_own=keep_own) as ranked:
        parts = [*ranked.chunks(ranked.cases["case_id"], max(ranked.cases.height, 1))]
    return pl.concat(parts) if parts else pl.DataFrame(schema={"case_id": pl.String, "n": pl.Int64, "first": pl.UInt32,
                                                               "label_ids": pl.List(pl.String)})


def import_rankings(external: str | Path, cases_path: str | Path, candidates_path: str | Path,
                    out_path: str | Path) -> None:
    """Check an external model's rankings (case_id, label_id, score) and store them as RANKINGS (`external`).

    Refused, naming the file, the row or case and what was expected: a missing column; a score that is
    null, NaN or infinite (it would sort as the best or the worst label); a (case, label) pair given
    twice; a case or label not in the cohort; a ranked case whose labels are not exactly the candidates
    (each case's ranking must cover the whole panel, as the application's teacher's does); a training
    case with no ranking; a case whose labels all have one score (it prefers none: every pair drawn from
    it would be a coin toss). The file must be a regular file (not a FIFO or a device).
    """
    src = Path(external)
    if not src.exists():
        raise MintError(f"config key 'teacher.rankings': file not found: {src}")
    require_regular_file(src, "rankings file (config key 'teacher.rankings')")
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
    flat = (df.group_by("case_id").agg(n=pl.len(), low=pl.col("score").min(), high=pl.col("score").max())
            .filter((pl.col("n") > 1) & (pl.col("low") == pl.col("high"))).sort("case_id"))
    if flat.height:
        case_id, n, score = flat.row(0)[:3]
        raise MintError(f"{src}: case {case_id!r} gives all its {n} labels the same score ({score}), a ranking "
                        f"that prefers none; expected scores that order the labels ({flat.height} such case(s): "
                        f"{flat['case_id'].to_list()[:5]})")
    df = df.drop("_row").with_columns(
        modality=pl.lit("external"),
        rank=pl.col("score").rank("ordinal", descending=True).over("case_id").cast(pl.Int32),
    ).sort("case_id", "rank")
    write_parquet(df, out_path, schemas.RANKINGS, provenance({"rankings": str(src)}))
