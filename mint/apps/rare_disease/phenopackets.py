"""Import real patients from GA4GH Phenopacket v2 files (phenopacket-store) into the workflow's cohort.

Two inputs give the same raw table (`RAW_COLUMNS`, one row per patient): a folder of
phenopacket JSON files (`read_phenopacket_json`) or the store's flat `cases.parquet`
(`read_flat`; a flat file may add a `split` column, a user-given split). `to_cases` turns raw rows
into patient rows with a note written from the observed (and explicitly excluded) HPO terms, plus an
exclusion table; `split_by_publication` puts whole publications on one side of the
train/validation/test split.

The cohort step (`mint.apps.rare_disease.cohort`, `cohort.source: phenopacket`) writes the tables; this command
imports a source and prints what would be kept, excluded (by reason) and split:

    python -m mint.apps.rare_disease.phenopackets ../shared/phenopacket-store/cases.parquet results/knowledge \
        --panel ../shared/phenopacket-store/diseases.tsv
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from google.protobuf import json_format
from phenopackets.schema.v2 import Phenopacket, Sex

from mint.apps.rare_disease.knowledge import knowledge_files, load_knowledge
from mint.apps.rare_disease.notes import write_case_note
from mint.core.cohort import given_split
from mint.core.io import MAX_TABLE_BYTES, MintError, check_json_depth, read_user_table, require_regular_file
from mint.core.paths import check_name

log = logging.getLogger(__name__)

STORE_ENV = "MINT_PHENOPACKET_STORE"  # where tests and users point at a phenopacket-store snapshot

STRINGS = pl.List(pl.String)
# The flat file's columns (phenopacket-store `cases.parquet`); both readers return exactly these.
RAW_SCHEMA = {
    "case_id": pl.String,
    "cohort": pl.String,
    "pmid": pl.String,
    "sex": pl.String,
    "age": pl.String,
    "disease_ids": STRINGS,
    "disease_labels": STRINGS,
    "genes": STRINGS,
    "observed_hpo": STRINGS,
    "observed_labels": STRINGS,
    "excluded_hpo": STRINGS,
}
RAW_COLUMNS = tuple(RAW_SCHEMA)

CASES_SCHEMA = {
    "case_id": pl.String,
    "disease_id": pl.String,
    "publication": pl.String,  # PMID, or f"case:{case_id}" so that an unpublished case is its own group
    "note": pl.String,
    "hpo_ids": STRINGS,  # observed
    "note_hpo_ids": STRINGS,  # the note states every observed term
    "excluded_hpo_ids": STRINGS,
    "sex": pl.String,
    "age": pl.String,  # ISO 8601 duration, as in the phenopacket
}
EXCLUDED_SCHEMA = {"case_id": pl.String, "disease_id": pl.String, "reason": pl.String, "detail": pl.String}
# Checked in this order; a case is excluded once, for the first that applies.
REASONS = ("no_diagnosis", "several_diagnoses", "disease_not_in_panel", "unknown_hpo_id", "no_observed_term")
# A phenopacket JSON file is refused above this size (bytes): phenopacket-store's largest is under 1 MB.
MAX_PHENOPACKET_BYTES = 50_000_000

# ---------------------------------------------------------------- reading


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def parse_phenopacket(text: str, source: str) -> dict:
    """One raw row (RAW_COLUMNS) from the JSON text of a phenopacket; `source` names it in errors.

    `cohort` is not in a phenopacket (phenopacket-store names it by the folder the file sits in,
    usually the causal gene): it is the gene symbol when the case has exactly one gene, else null.
    """
    packet = Phenopacket()
    check_json_depth(text, source)  # before the parsers, which recurse a level at a time
    try:
        json.loads(text)  # json_format's own message for broken JSON does not say where
        json_format.Parse(text, packet)
    except (ValueError, json_format.ParseError) as err:
        raise MintError(f"{source}: not a GA4GH Phenopacket v2 JSON file: {err}") from err
    except RecursionError as err:  # depth within the limit, yet too deep for this interpreter's stack
        raise MintError(f"{source}: JSON nested too deeply to parse ({err})") from err
    if not packet.id:
        raise MintError(f"{source}: not a GA4GH Phenopacket v2 JSON file: no 'id'")

    pmids = [r.id for r in packet.meta_data.external_references if r.id.startswith("PMID:")]
    subject = packet.subject if packet.HasField("subject") else None
    sex = Sex.Name(subject.sex) if subject is not None else None
    age = None
    if subject is not None and subject.time_at_last_encounter.HasField("age"):
        age = subject.time_at_last_encounter.age.iso8601duration or None

    # Diagnoses: `diseases` (not excluded); where a file has none, the interpretations' diagnoses.
    diseases = [(d.term.id, d.term.label) for d in packet.diseases if not d.excluded]
    if not diseases:
        diseases = [
            (i.diagnosis.disease.id, i.diagnosis.disease.label)
            for i in packet.interpretations
            if i.diagnosis.disease.id
        ]
    diseases = list(dict.fromkeys(diseases))
    genes = []
    for interpretation in packet.interpretations:
        for gi in interpretation.diagnosis.genomic_interpretations:
            if gi.HasField("gene"):
                genes.append(gi.gene.symbol)
            else:
                genes.append(gi.variant_interpretation.variation_descriptor.gene_context.symbol)
    genes = _unique(genes)

    observed = [f.type for f in packet.phenotypic_features if not f.excluded]
    return {
        "case_id": packet.id,
        "cohort": genes[0] if len(genes) == 1 else None,
        "pmid": pmids[0] if pmids else None,
        "sex": sex,
        "age": age,
        "disease_ids": [d[0] for d in diseases],
        "disease_labels": [d[1] for d in diseases],
        "genes": genes,
        "observed_hpo": [t.id for t in observed],
        "observed_labels": [t.label for t in observed],
        "excluded_hpo": [f.type.id for f in packet.phenotypic_features if f.excluded],
    }


def phenopacket_files(folder: str | Path) -> list[Path]:
    """The files `read_phenopacket_json` reads: the `*.json` files of `folder` (not below it), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MintError(f"phenopacket folder not found: {folder}")
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise MintError(f"{folder}: no *.json phenopacket files")
    return paths


def read_phenopacket_json(folder: str | Path) -> pl.DataFrame:
    """One raw row per `*.json` file of `folder` (sorted by file name)."""
    paths = phenopacket_files(folder)
    rows, seen = [], {}
    for p in paths:
        require_regular_file(p, "phenopacket", MAX_PHENOPACKET_BYTES)
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise MintError(f"{p}: not UTF-8 text (byte {err.start}: {err.reason}); a phenopacket is UTF-8 "
                            "JSON") from err
        row = parse_phenopacket(text, str(p))
        # The id names the patient's photo: one safe file name per patient.
        check_name(row["case_id"], f"{p}: phenopacket 'id'", what="id")
        if row["case_id"] in seen:
            raise MintError(f"{p}: phenopacket id {row['case_id']!r} is also the id of {seen[row['case_id']]}")
        seen[row["case_id"]] = p.name
        rows.append(row)
    return pl.DataFrame(rows, schema=RAW_SCHEMA)


def read_flat(path: str | Path) -> pl.DataFrame:
    """phenopacket-store's flat `cases.parquet`, checked for RAW_COLUMNS; an optional `split` column (train,
    validation or test; empty: not given) is kept after them, each value checked."""
    path = Path(path)
    if not path.exists():
        raise MintError(f"file not found: {path}")
    require_regular_file(path, "phenopacket table", MAX_TABLE_BYTES)
    try:
        df = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise MintError(f"{path}: not a readable Parquet file of phenopackets ({err})") from err
    missing = [c for c in RAW_COLUMNS if c not in df.columns]
    if missing:
        raise MintError(f"{path}: missing columns {missing}; expected {list(RAW_COLUMNS)}")
    given = "split" in df.columns
    columns = [pl.col(c).cast(t) for c, t in RAW_SCHEMA.items()] + ([pl.col("split").cast(pl.String)] if given else [])
    df = df.select(columns)
    seen: set[str] = set()
    splits = []
    cells = df["split"].to_list() if given else [None] * df.height
    for i, (case_id, split) in enumerate(zip(df["case_id"].to_list(), cells)):
        check_name(case_id, f"{path} row {i + 1}")
        if case_id in seen:
            raise MintError(f"{path} row {i + 1}: duplicate case_id {case_id!r}")
        seen.add(case_id)
        splits.append(given_split(split, f"{path} row {i + 1} (case_id {case_id!r})"))
    return df.with_columns(split=pl.Series(splits, dtype=pl.String)) if given else df


def read_raw(path: str | Path) -> pl.DataFrame:
    """A folder of phenopacket JSON files or a flat Parquet file, whichever `path` is."""
    return read_phenopacket_json(path) if Path(path).is_dir() else read_flat(path)


def raw_files(path: str | Path) -> list[Path]:
    """The files `read_raw(path)` reads: a folder's phenopackets, or the flat file."""
    return phenopacket_files(path) if Path(path).is_dir() else [Path(path)]


# ---------------------------------------------------------------- notes


# ---------------------------------------------------------------- cases and exclusions


def _exclusion(row: Mapping, panel: set[str], known: set[str]) -> tuple[str, str | None, str] | None:
    """(reason, disease_id, detail) of the first rule the raw row breaks, or None."""
    diseases = _unique(row["disease_ids"] or [])
    if not diseases:
        return "no_diagnosis", None, "no disease and no interpretation's diagnosis"
    if len(diseases) != 1:
        return "several_diagnoses", None, ", ".join(diseases)
    disease = diseases[0]
    if disease not in panel:
        return "disease_not_in_panel", disease, disease
    unknown = _unique(t for t in (row["observed_hpo"] or []) + (row["excluded_hpo"] or []) if t not in known)
    if unknown:
        return "unknown_hpo_id", disease, ", ".join(unknown)
    if not row["observed_hpo"]:
        return "no_observed_term", disease, "no observed phenotypic feature"
    return None


def to_cases(
    raw: pl.DataFrame, panel_ids: Iterable[str], known_hpo_ids: Iterable[str], names: Mapping[str, str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(cases, excluded) from raw rows. Notes use `names` (HPO labels of the workflow's release),
    not the labels inside the phenopackets, so that the JSON and the flat input give the same notes.
    Every exclusion is logged by case id and reason, without any phenotype of the patient."""
    panel, known = set(panel_ids), set(known_hpo_ids)
    cases, excluded = [], []
    for row in raw.iter_rows(named=True):
        problem = _exclusion(row, panel, known)
        if problem is not None:
            reason, disease, detail = problem
            excluded.append({"case_id": row["case_id"], "disease_id": disease, "reason": reason, "detail": detail})
            extra = f": {detail}" if reason == "unknown_hpo_id" else ""  # ids, not the patient's findings
            log.warning("phenopacket case %r excluded (%s)%s", row["case_id"], reason, extra)
            continue
        observed, ruled_out = _unique(row["observed_hpo"]), _unique(row["excluded_hpo"] or [])
        cases.append(
            {
                "case_id": row["case_id"],
                "disease_id": row["disease_ids"][0],
                "publication": row["pmid"] or f"case:{row['case_id']}",
                "note": write_case_note(
                    row["sex"], row["age"], [names[t] for t in observed], [names[t] for t in ruled_out]
                ),
                "hpo_ids": observed,
                "note_hpo_ids": observed,
                "excluded_hpo_ids": ruled_out,
                "sex": row["sex"],
                "age": row["age"],
            }
        )
    if excluded:
        counts = {r: sum(e["reason"] == r for e in excluded) for r in REASONS}
        log.warning("%d of %d phenopacket cases excluded: %s", len(excluded), raw.height, counts)
    return pl.DataFrame(cases, schema=CASES_SCHEMA), pl.DataFrame(excluded, schema=EXCLUDED_SCHEMA)


# ---------------------------------------------------------------- split


def split_by_publication(cases: pl.DataFrame, validation: float, test: float, seed: int) -> pl.DataFrame:
    """Add 'split' (train | validation | test), keeping each publication on one side.

    Publications are visited in a seeded random order; each goes to the side that is furthest
    below its target share of the cases assigned so far (itself included). Every share thus ends
    within about one publication's size of its target (largest in phenopacket-store: 157 of 6,336
    cases, 2.5%); on the store's 6,172 importable cases, shares land within 0.2 points of the targets.
    """
    if not (0 <= validation and 0 <= test and validation + test < 1):
        raise MintError(f"split shares validation={validation}, test={test}: need >= 0 and a sum below 1")
    groups = cases["publication"].fill_null(pl.lit("case:") + cases["case_id"])
    sizes = groups.value_counts().sort("publication")
    order = np.random.default_rng(seed).permutation(sizes.height)
    names, shares = ("train", "validation", "test"), np.array([1 - validation - test, validation, test])
    counts, assigned, side_of = np.zeros(3), 0, {}
    pubs, ns = sizes["publication"].to_list(), sizes["count"].to_list()
    for i in order:
        assigned += ns[i]
        side = int(np.argmax(shares * assigned - counts))  # first side wins ties: train
        counts[side] += ns[i]
        side_of[pubs[i]] = names[side]
    return cases.with_columns(split=groups.replace_strict(side_of, return_dtype=pl.String))


# ---------------------------------------------------------------- the candidate panel


def read_panel(path: str | Path, diseases: pl.DataFrame) -> pl.DataFrame:
    """The candidate panel from a TSV/CSV with `disease_id` and `name` (or `label`, as phenopacket-store's).

    Panel diseases that this HPO release does not annotate stay in the panel (a patient may have
    one); their names come from the file.
    """
    path = Path(path)
    if not path.exists():
        raise MintError(f"config key 'cohort.phenopacket.panel': file not found: {path}")
    df = read_user_table(path, "panel")
    if "name" not in df.columns and "label" in df.columns:
        df = df.rename({"label": "name"})
    missing = [c for c in ("disease_id", "name") if c not in df.columns]
    if missing:
        raise MintError(f"{path}: panel is missing column(s) {missing}; it needs disease_id and name (or label)")
    if df.height == 0:
        raise MintError(f"{path}: the panel has a header and no rows; expected one row per candidate disease")
    dup = df.filter(pl.col("disease_id").is_duplicated())["disease_id"].unique().sort().to_list()
    if dup:
        raise MintError(f"{path}: disease id(s) listed twice: {dup[:5]}")
    known = dict(zip(diseases["disease_id"].to_list(), diseases["name"].to_list()))
    df = df.with_columns(name=pl.when(pl.col("name").fill_null("").str.strip_chars() == "").then(
        pl.col("disease_id").replace_strict(known, default=None)).otherwise(pl.col("name")))
    unnamed = df.filter(pl.col("name").is_null())["disease_id"].to_list()
    if unnamed:
        raise MintError(f"{path}: no name for disease(s) {unnamed[:5]} (not in this HPO release either)")
    return df.select("disease_id", "name").sort("disease_id")


# ---------------------------------------------------------------- step entry point


def summarize_import(
    source: str | Path, knowledge_dir: str | Path, panel: str | Path | None,
    validation: float = 0.15, test: float = 0.15, seed: int = 0,
) -> dict:
    """Import `source` as the cohort step would and count what happens (no patient data in the summary)."""
    diseases, _, terms = load_knowledge(*knowledge_files(knowledge_dir).values())
    names = dict(zip(terms["hpo_id"].to_list(), terms["name"].to_list()))
    start = time.perf_counter()
    raw = read_raw(source)
    panel_ids = (read_panel(panel, diseases)["disease_id"].to_list() if panel
                 else raw["disease_ids"].explode().drop_nulls().unique().to_list())
    cases, excluded = to_cases(raw, panel_ids, names.keys(), names)
    seconds = time.perf_counter() - start  # reading + to_cases, the part that grows with the cohort
    split = split_by_publication(cases, validation, test, seed)
    return {
        "source": str(source),
        "raw_cases": raw.height,
        "cases": cases.height,
        "excluded": {r: int((excluded["reason"] == r).sum()) for r in REASONS},
        "diseases": cases["disease_id"].n_unique(),
        "publications": cases["publication"].n_unique(),
        "split": {s: int((split["split"] == s).sum()) for s in ("train", "validation", "test")},
        "read_and_to_cases_s": round(seconds, 3),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a folder of phenopacket JSON files or phenopacket-store's cases.parquet")
    parser.add_argument("knowledge_dir", help="folder written by `python -m mint.apps.rare_disease.knowledge`")
    parser.add_argument("--panel", help="TSV/CSV of candidate diseases (disease_id); default: the cases' diseases")
    parser.add_argument("--validation", type=float, default=0.15)
    parser.add_argument("--test", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    summary = summarize_import(args.source, args.knowledge_dir, args.panel, args.validation, args.test, args.seed)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
