"""The cohort tables every application writes and every later step reads: cases and labels.

An application's cohort step writes `cases.parquet` (CASES plus its own columns), `candidates.parquet`
(the labels the teacher ranks and the student names), `excluded.parquet`, and optionally
`vocabulary.parquet` (every name an answer may be matched to, e.g. a whole ontology around the
candidates). `assign_split` is the seeded split, stratified by label; an application whose cases come
in groups (such as publications) that must stay on one side brings its own. `split_cases` puts a split
the user gives (a `split` column, or case ids and groups named in config) before the seeded one, and
records in `split_source` where each case's split came from (`SPLIT_SOURCES`).

    python -c "from mint.core.cohort import load_cases; print(load_cases('results/cohort/cases.parquet'))"
"""

from __future__ import annotations

import argparse
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from mint.core import schemas
from mint.core.io import MintError, read_parquet

SPLITS = ("train", "validation", "test")
# The splits the students, the teacher and the baselines can be scored on (`evaluation.split`).
SCORED_SPLITS = ("test", "validation")
# Where a case's split came from: given with the input (a `split` column, or folds); a config list of test
# cases or groups;
# the given split of the case's group (no group on two sides); the seeded split; or a rule of the
# application (its generated training cases always train).
SPLIT_SOURCES = ("column", "config", "group", "seeded", "always_train")


def load_cases(path: str | Path) -> pl.DataFrame:
    return read_parquet(path, schemas.CASES)


def load_labels(path: str | Path) -> pl.DataFrame:
    """A candidates or vocabulary table (LABELS)."""
    return read_parquet(path, schemas.LABELS)


def add_split_argument(p: argparse.ArgumentParser) -> None:
    """The `--split` option of a step that scores or answers one split (`SCORED_SPLITS`)."""
    p.add_argument("--split", default="test", choices=SCORED_SPLITS, help="the cases to score")


def cases_in(cases: pl.DataFrame, split: str = "test") -> pl.DataFrame:
    """The cases of `split` (the one scored: `evaluation.split`) in case order; an error when there are none."""
    out = cases.filter(pl.col("split") == split).sort("case_id")
    if out.height == 0:
        raise MintError(f"the cohort has no {split} cases to score (config key 'evaluation.split': {split!r}); "
                        f"give the cohort {split} cases (cohort.split) or score another split")
    return out


def split_truth(cases: pl.DataFrame, split: str = "test") -> pl.DataFrame:
    """(case_id, label_id) of the cases of `split` (`cases_in`)."""
    return cases_in(cases, split).select("case_id", "label_id")


def assign_split(cases: pl.DataFrame, validation: float, test: float, seed: int) -> pl.DataFrame:
    """Seeded split stratified by label: each label puts about the same shares on each side."""
    rng = np.random.default_rng(seed)
    split_of: dict[str, str] = {}
    for _, group in cases.sort("case_id").group_by("label_id", maintain_order=True):
        ids = group["case_id"].to_list()
        rng.shuffle(ids)
        n = len(ids)
        n_test = max(1, round(n * test)) if n >= 3 and test > 0 else 0
        n_val = round(n * validation) if n - n_test >= 3 else 0
        for j, case_id in enumerate(ids):
            split_of[case_id] = "test" if j < n_test else "validation" if j < n_test + n_val else "train"
    return cases.with_columns(split=pl.col("case_id").replace_strict(split_of))


def check_split_column(df: pl.DataFrame, where: str) -> None:
    """A user-given `split` column holds only train / validation / test, or null (not given)."""
    bad = df.filter(pl.col("split").is_not_null() & ~pl.col("split").is_in(SPLITS))
    if bad.height:
        raise MintError(f"{where}: column 'split' must be one of {SPLITS} (or empty); case {bad['case_id'][0]!r} "
                        f"has {bad['split'][0]!r}")


# A case's text (a note) is refused above this many characters at the cohort step (about 25,000 tokens; a long
# discharge summary is 20,000 characters). The student reads at most its context: a longer prompt is cut
# where it is answered (`mint.core.prompts.CasePrompts`), and the count is recorded.
MAX_TEXT_CHARS = 100_000
# Characters that show nothing: categories Cc (controls), Cf (format: zero-width space U+200B, BOM U+FEFF,
# soft hyphen U+00AD, ...), Zs/Zl/Zp (spaces, separators), Mn/Me (marks, alone on nothing), Cn/Co/Cs
# (unassigned, private, surrogates); and the few blank letters and symbols (Hangul fillers, braille blank).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cn", "Co", "Cs", "Zs", "Zl", "Zp", "Mn", "Me"})
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_blank(text: str | None) -> bool:
    """Whether `text` shows nothing: empty, or only whitespace and invisible characters (see above)."""
    return all(c in _BLANK_GLYPHS or unicodedata.category(c) in _INVISIBLE_CATEGORIES for c in text or "")


def check_case_text(text: str | None, where: str, what: str = "text") -> None:
    """A case's text as the cohort step keeps it (unchanged): not blank (`is_blank`), at most `MAX_TEXT_CHARS`
    characters; MintError naming `where` (file, row, case) otherwise."""
    if is_blank(text):
        shown = "" if not text else f" (only whitespace or invisible characters: {text[:8]!r})"
        raise MintError(f"{where}: empty {what}{shown}")
    if len(text) > MAX_TEXT_CHARS:
        raise MintError(f"{where}: the {what} has {len(text):,} characters, more than the {MAX_TEXT_CHARS:,} read "
                        "at most (docs/inputs.md, Limits)")


def check_kept(cases: pl.DataFrame, where: str, *, read: int | None = None,
               excluded: pl.DataFrame | None = None) -> None:
    """The cohort step's last check before it writes: some case is kept, and some of them train (the teacher
    and the students learn from the training cases). MintError naming `where` (the source), how many cases
    were read and how many excluded, by reason (`excluded`: a table with `reason`)."""
    reasons = (dict(excluded.group_by("reason").len().sort("reason").iter_rows())
               if excluded is not None and excluded.height else {})
    read_part = f"{read} read, " if read is not None else ""
    if cases.height == 0:
        raise MintError(f"{where}: no case kept ({read_part}{sum(reasons.values())} excluded: {reasons or 'none'}); "
                        "the log names each excluded case and its reason")
    if "split" in cases.columns and not (cases["split"] == "train").any():
        by_split = dict(cases.group_by("split").len().sort("split").iter_rows())
        raise MintError(f"{where}: no training case among the {cases.height} kept ({by_split}); the teacher and the "
                        "students need some: give cases split train, or lower 'cohort.split.test' and "
                        "'cohort.split.validation'")


def given_split(value: str | None, where: str) -> str | None:
    """One cell of a user's `split` column: train / validation / test, None where empty; `where` names the row."""
    split = (value or "").strip() or None
    if split is not None and split not in SPLITS:
        raise MintError(f"{where}: column 'split' must be one of {SPLITS} (or empty), got {value!r}")
    return split


Seeded = Callable[[pl.DataFrame, float, float, int], pl.DataFrame]


def split_cases(
    cases: pl.DataFrame, validation: float, test: float, seed: int, *, seeded: Seeded = assign_split,
    test_cases: Sequence[str] = (), test_groups: Sequence[str] = (), group: str = "group",
    keys: tuple[str, str] = ("cohort.split.test_cases", "cohort.split.test_groups"), where: str = "the cohort",
) -> pl.DataFrame:
    """`cases` with `split` and `split_source`: the split the user gives, and the seeded split of the rest.

    A given split is used as is: the `split` column where it holds a value (null: not given), and
    `test` for the case ids `test_cases` and the cases of the groups `test_groups` (column `group`).
    A case without one whose group has given cases joins them, so that no group lies on two sides
    (on several: MintError naming the group). The remaining cases get `seeded(remaining,
    validation, test, seed)`, whose shares are then of the remaining cases; with nothing given this
    is the seeded split of all cases, as before. Ids or groups that no case has, a case named test
    in config but given another split in the column, and (with `test` = 0) no test case at all are
    MintErrors naming the config key (`keys`: of the two lists) and the ids; `where` names the cases.
    Rows keep their order.
    """
    ids = cases["case_id"]
    if "split" in cases.columns:
        column = cases["split"].cast(pl.String)  # a column of nulls only may come without a type
        check_split_column(cases.with_columns(split=column), where)
    else:
        column = pl.Series("split", [None] * cases.height, dtype=pl.String)
    groups = (cases[group] if group in cases.columns else pl.Series(group, [None] * cases.height)).cast(pl.String)
    for key, named, have in ((keys[0], test_cases, ids), (keys[1], test_groups, groups)):
        unknown = sorted(set(named) - set(have.drop_nulls().to_list()))
        if unknown:
            noun = "case id" if key == keys[0] else group
            raise MintError(f"config key '{key}': {noun}(s) {unknown[:5]}{' ...' if len(unknown) > 5 else ''} "
                            f"not among {where} ({len(unknown)} unknown)")
    by_config = ids.is_in(list(test_cases)) | groups.is_in(list(test_groups)).fill_null(False)
    clash = cases.filter(by_config & column.is_not_null() & (column != "test"))
    if clash.height:
        raise MintError(f"{where}: case {clash['case_id'][0]!r} has split {clash['split'][0]!r} in column 'split' "
                        f"but config key '{keys[0]}' or '{keys[1]}' names it test; give it one split")
    split = pl.when(by_config).then(pl.lit("test")).otherwise(column)
    source = pl.when(by_config).then(pl.lit("config")).when(column.is_not_null()).then(pl.lit("column"))
    frame = cases.select("case_id", _group=groups).with_columns(split=split, split_source=source)

    # A case without a given split follows the given cases of its group.
    sides = frame.filter(pl.col("split").is_not_null() & pl.col("_group").is_not_null()).group_by("_group").agg(
        pl.col("split").unique().sort())
    torn = sides.filter(pl.col("split").list.len() > 1)
    if torn.height and frame.filter(pl.col("split").is_null() & pl.col("_group").is_in(torn["_group"].implode())
                                    ).height:
        raise MintError(f"{where}: {group} {torn['_group'][0]!r} has cases given {torn['split'][0].to_list()} and "
                        f"cases with no split; give those a split too, so that the {group} is not split by chance")
    follow = dict(sides.filter(pl.col("split").list.len() == 1).select("_group", pl.col("split").list.first())
                  .iter_rows())
    inherited = pl.col("split").is_null() & pl.col("_group").is_in(list(follow))
    frame = frame.with_columns(
        split=pl.when(inherited).then(pl.col("_group").replace_strict(follow, default=None)).otherwise("split"),
        split_source=pl.when(inherited).then(pl.lit("group")).otherwise("split_source"))

    rest = frame.filter(pl.col("split").is_null())["case_id"]
    if rest.len() == cases.height:  # nothing given: the seeded split of all cases, exactly as before
        out = seeded(cases.drop("split", strict=False), validation, test, seed).with_columns(
            split_source=pl.lit("seeded"))
    else:
        if rest.len():
            remaining = cases.filter(pl.col("case_id").is_in(rest.implode())).drop("split", strict=False)
            done = seeded(remaining, validation, test, seed)
            of = dict(zip(done["case_id"].to_list(), done["split"].to_list()))
            frame = frame.with_columns(
                split_source=pl.when(pl.col("split").is_null()).then(pl.lit("seeded")).otherwise("split_source"),
                split=pl.col("split").fill_null(pl.col("case_id").replace_strict(of, default=None)))
        out = cases.drop("split", "split_source", strict=False).with_columns(
            split=frame["split"], split_source=frame["split_source"])
    if test == 0 and not (out["split"] == "test").any():
        raise MintError(f"{where}: no test case: config key 'cohort.split.test' is 0 and no case is given test "
                        f"(column 'split', '{keys[0]}', '{keys[1]}')")
    return out
