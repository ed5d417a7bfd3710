"""Build the patient cohort: simulated from HPO annotations (the embedded default), a manifest or phenopackets.

Every source gives the core's tables (`mint.core.schemas`): the cases (CASES plus this
application's note, photo and HPO columns; one row per patient, with a seeded stratified
train/validation/test split), the candidate diseases and the matching vocabulary (LABELS), the
excluded input cases, and a folder of photos.

Simulated patients: phenotypes sampled by their annotated frequency, a few unrelated "noise"
findings, a demographic line, and a note built from the term labels. The photo is rendered
from the patient's facial findings, of which the note states only a configurable share, so
that the photo carries diagnostic information the note lacks, as real photos do.

    python -m mint.apps.rare_disease.cohort config/rare_disease/default.yaml results/knowledge results/cohort
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from tqdm import tqdm

from mint.apps.rare_disease.face import load_face, render_face_png
from mint.apps.rare_disease.knowledge import knowledge_files, load_knowledge
from mint.apps.rare_disease.notes import demographic_line, term_label, write_note
from mint.apps.rare_disease.phenopackets import read_panel, read_raw, split_by_publication, to_cases
from mint.core import schemas
from mint.core.cohort import check_case_text, check_kept, given_split, split_cases
from mint.core.config import load_config
from mint.core.io import MintError, atomic_dir, provenance, read_user_table, write_parquet
from mint.core.paths import check_name, file_in, resolve_inside

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("case_id", "note", "image_path", "disease_id")
# The cohort's columns while it is built (the domain's names); `to_core` renames them on the way out.
CASE_COLUMNS = ["case_id", "source", "publication", "disease_id", "split", "split_source", "note", "image_path",
                "hpo_ids", "note_hpo_ids"]
# This application's columns of cases.parquet (after the core's), as `Application.case_fields`.
CASE_FIELDS = (
    pa.field("note", pa.string()),
    pa.field("image_path", pa.string()),  # the photo, relative to the working directory; null: none
    pa.field("hpo_ids", schemas.STRINGS),  # all findings of the patient (null for manifest cases)
    pa.field("note_hpo_ids", schemas.STRINGS),  # the findings the note states
)
CORE_NAMES = {"publication": "group", "disease_id": "label_id"}
# The config lists of a user-given test set (`mint.core.cohort.split_cases`): case ids, publications.
SPLIT_KEYS = ("cohort.split.test_cases", "cohort.split.test_publications")
EXCLUDED_COLUMNS = {"case_id": pl.String, "disease_id": pl.String, "reason": pl.String, "detail": pl.String}


# ---------------------------------------------------------------- simulated cohort


def choose_panel(
    diseases: pl.DataFrame, annotations: pl.DataFrame, terms: pl.DataFrame, n: int, min_facial: int, seed: int
) -> pl.DataFrame:
    """`n` OMIM diseases (seeded) with at least `min_facial` facial and 3 other annotated findings."""
    facial = set(terms.filter(pl.col("is_facial"))["hpo_id"].to_list())
    counts = annotations.with_columns(facial=pl.col("hpo_id").is_in(facial)).group_by("disease_id").agg(
        n_facial=pl.col("facial").sum(), n_other=(~pl.col("facial")).sum()
    )
    eligible = counts.filter((pl.col("n_facial") >= min_facial) & (pl.col("n_other") >= 3)).sort("disease_id")
    if eligible.height < n:
        raise MintError(
            f"config key 'cohort.simulated.n_diseases' asks for {n} diseases but only {eligible.height} have "
            f">= {min_facial} facial findings (config key 'cohort.simulated.min_facial_terms')"
        )
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(eligible["disease_id"].to_numpy(), size=n, replace=False).tolist())
    return diseases.filter(pl.col("disease_id").is_in(picked)).select("disease_id", "name").sort("disease_id")


def _weighted_sample(ids: np.ndarray, weights: np.ndarray, n: int, rng: np.random.Generator) -> list[str]:
    n = min(n, len(ids))
    if n == 0:
        return []
    p = weights / weights.sum()
    return rng.choice(ids, size=n, replace=False, p=p).tolist()


def simulate_cohort(
    panel: pl.DataFrame,
    annotations: pl.DataFrame,
    terms: pl.DataFrame,
    sim: Mapping[str, Any],
    image_dir: Path,
    image_prefix: str,
    seed: int,
) -> pl.DataFrame:
    """Simulated patients of every panel disease (CASES columns, split not yet assigned)."""
    rng = np.random.default_rng(seed)
    names = dict(zip(terms["hpo_id"].to_list(), terms["name"].to_list()))
    facial = set(terms.filter(pl.col("is_facial"))["hpo_id"].to_list())
    panel_ann = annotations.filter(pl.col("disease_id").is_in(panel["disease_id"].to_list()))
    # Noise: findings of other panel diseases, the hard kind of distractor a real note has.
    noise_pool = np.array(sorted(set(panel_ann["hpo_id"].to_list()) - facial))
    rows = []
    disease_ids = panel["disease_id"].to_list()
    for disease_id in tqdm(disease_ids, desc="simulate patients", unit="disease"):
        ann = panel_ann.filter(pl.col("disease_id") == disease_id)
        is_face = ann["hpo_id"].is_in(list(facial)).to_numpy()
        face_ids, face_freq = ann["hpo_id"].to_numpy()[is_face], ann["frequency"].to_numpy()[is_face]
        other_ids, other_freq = ann["hpo_id"].to_numpy()[~is_face], ann["frequency"].to_numpy()[~is_face]
        own = set(ann["hpo_id"].to_list())
        for i in range(sim["cases_per_disease"]):
            case_id = f"{disease_id.replace(':', '_')}_{i:04d}"
            face = sample_facial(face_ids, face_freq, rng)
            n_true = int(rng.integers(sim["true_terms"][0], sim["true_terms"][1] + 1))
            true = _weighted_sample(other_ids, other_freq, n_true, rng)
            stated_face = [t for t in face if rng.random() < sim["note_facial_share"]]
            n_noise = int(rng.integers(sim["noise_terms"][0], sim["noise_terms"][1] + 1))
            candidates = np.array([t for t in noise_pool if t not in own])
            noise = rng.choice(candidates, size=min(n_noise, len(candidates)), replace=False).tolist()
            stated = true + stated_face + noise
            order = rng.permutation(len(stated))
            stated = [stated[j] for j in order]
            note = write_note(demographic_line(rng), [term_label(names[t]) for t in stated])
            image = file_in(image_dir, case_id, ".png")
            render_face_png(face, image, rng, size=sim["image_size"], jitter=sim["jitter"])
            rows.append(
                {
                    "case_id": case_id,
                    "source": "simulated",
                    "disease_id": disease_id,
                    "note": note,
                    "image_path": f"{image_prefix}/{case_id}.png",
                    "hpo_ids": sorted(set(face) | set(true) | set(noise)),
                    "note_hpo_ids": sorted(stated),
                }
            )
    schema = {"case_id": pl.String, "source": pl.String, "disease_id": pl.String, "note": pl.String,
              "image_path": pl.String, "hpo_ids": pl.List(pl.String), "note_hpo_ids": pl.List(pl.String)}
    return pl.DataFrame(rows, schema=schema).with_columns(publication=pl.lit(None, pl.String))


def sample_facial(face_ids: np.ndarray, face_freq: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Each facial finding of a disease, present with its annotated frequency; at least the likeliest one.

    A disease with no facial annotation gives none (its patients' photos show an unremarkable face).
    """
    if len(face_ids) == 0:
        return []
    present = face_freq > rng.random(len(face_freq))
    return face_ids[present].tolist() or [face_ids[np.argmax(face_freq)]]


# ---------------------------------------------------------------- manifest cohort


def read_table(path: Path, what: str, key: str) -> pl.DataFrame:
    """A user's CSV/TSV/Parquet table as strings; MintError naming the file if it is missing, not UTF-8 or broken."""
    if not path.exists():
        raise MintError(f"config key '{key}': file not found: {path}")
    return read_user_table(path, what)


def manifest_table(path: Path) -> pl.DataFrame:
    """The manifest's rows, its columns (`MANIFEST_COLUMNS`) checked and read as strings."""
    df = read_table(path, "manifest", "cohort.manifest.path")
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise MintError(f"{path}: manifest is missing column(s) {missing}; it needs {list(MANIFEST_COLUMNS)}")
    if df.height == 0:
        raise MintError(f"{path}: the manifest has a header and no rows; expected one row per case")
    return df.with_columns(pl.col(c).cast(pl.String) for c in MANIFEST_COLUMNS)


def row_where(path: Path, row_no: int, case_id: str | None) -> str:
    """How errors name a manifest row: file, line number (1 is the header) and case id."""
    return f"{path} row {row_no} (case_id {case_id!r})"


def manifest_images(path: str | Path, image_root: str | Path | None, allow_absolute: bool = False) -> list[Path]:
    """Every photo the manifest's rows name, in row order, as `read_manifest` opens them (not opened here)."""
    path = Path(path)
    df = manifest_table(path)
    root = manifest_root(path, image_root)
    return [manifest_image(image, root, row_where(path, row_no, case_id), allow_absolute)
            for row_no, (case_id, image) in enumerate(zip(df["case_id"], df["image_path"]), start=2)]


def manifest_root(path: Path, image_root: str | Path | None) -> Path:
    """The folder a manifest's relative image paths start from: config `cohort.manifest.image_root`, else the
    manifest's own folder."""
    return Path(image_root) if image_root else path.parent


def manifest_image(value: str | None, root: Path, where: str, allow_absolute: bool) -> Path:
    """A manifest row's photo (`image_path` cell) as the cohort step opens it; MintError naming `where` if the
    cell is empty or the path leaves `root`."""
    if not value:
        raise MintError(f"{where}: empty image_path")
    return resolve_inside(value, root, f"{where}: image_path", allow_absolute=allow_absolute)


def read_manifest(
    path: str | Path, image_root: str | Path | None, known_diseases: pl.DataFrame, image_size: int,
    allow_absolute: bool = False,
) -> pl.DataFrame:
    """The user's cases, checked row by row; any problem raises MintError naming file, row and case.

    A case id names the copy of its photo, so it must be a safe file name (`mint.core.paths`); an
    image path must lie inside the image root (the manifest's folder by default), or be absolute
    where `allow_absolute` (config key `cohort.allow_absolute_paths`). An optional `split` column gives a
    case's split (train, validation or test; empty: the seeded split decides).
    """
    path = Path(path)
    df = manifest_table(path)
    root = manifest_root(path, image_root)
    known = set(known_diseases["disease_id"].to_list())
    seen: set[str] = set()
    paths, splits = [], []
    for row_no, row in enumerate(df.iter_rows(named=True), start=2):  # row 1 is the header
        where = row_where(path, row_no, row["case_id"])
        if not row["case_id"]:
            raise MintError(f"{path} row {row_no}: empty case_id")
        check_name(row["case_id"], f"{path} row {row_no}")
        if row["case_id"] in seen:
            raise MintError(f"{where}: duplicate case_id")
        seen.add(row["case_id"])
        check_case_text(row["note"], where, "note")
        if row["disease_id"] not in known:
            raise MintError(
                f"{where}: unknown disease id {row['disease_id']!r} (not an OMIM disease of the HPO release)"
            )
        splits.append(given_split(row.get("split"), where))
        image = manifest_image(row["image_path"], root, where, allow_absolute)
        try:
            load_face(image, image_size)
        except MintError as err:  # a missing or corrupt image: say which row
            raise MintError(f"{where}: {err}") from err
        paths.append(str(image))
    df = df.with_columns(image_path=pl.Series(paths, dtype=pl.String))
    return df.with_columns(split=pl.Series(splits, dtype=pl.String)) if "split" in df.columns else df


# ---------------------------------------------------------------- phenopacket cohort


def phenopacket_cohort(
    pp: Mapping[str, Any],
    split: Mapping[str, float],
    diseases: pl.DataFrame,
    annotations: pl.DataFrame,
    terms: pl.DataFrame,
    image: Mapping[str, Any],
    image_dir: Path,
    image_prefix: str,
    seed: int,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Real patients (split by publication) plus simulated training patients of the panel diseases.

    Returns (cases, panel, excluded). Notes state at most `max_observed` observed and
    `max_excluded` excluded findings, in the phenopacket's order, so they fit the student's context;
    `hpo_ids` and `note_hpo_ids` are the observed findings the note states. A real patient's photo
    is rendered from its own facial findings plus facial findings sampled from its disease's
    annotations, as for a simulated patient.
    """

    if not Path(pp["path"]).exists():
        raise MintError(f"config key 'cohort.phenopacket.path': not found: {pp['path']}")
    raw = read_raw(pp["path"])
    panel = read_panel(pp["panel"], diseases) if pp["panel"] else (
        pl.DataFrame({"disease_id": raw["disease_ids"].explode().drop_nulls().unique().sort()})
        .join(diseases.select("disease_id", "name"), on="disease_id", how="left")
        .with_columns(name=pl.col("name").fill_null(pl.col("disease_id")))
    )
    panel_ids = panel["disease_id"].to_list()
    known_terms = set(terms["hpo_id"].to_list())
    names = dict(zip(terms["hpo_id"].to_list(), terms["name"].to_list()))
    # Exclusions are judged on the whole phenopacket, the note on its first findings.
    _, excluded = to_cases(raw, panel_ids, known_terms, names)
    kept = raw.filter(~pl.col("case_id").is_in(excluded["case_id"].implode()))
    check_kept(kept, f"config key 'cohort.phenopacket.path': {pp['path']}", read=raw.height, excluded=excluded)
    capped = kept.with_columns(pl.col("observed_hpo").list.head(pp["max_observed"]),
                               pl.col("excluded_hpo").list.head(pp["max_excluded"]))
    real, _ = to_cases(capped, panel_ids, known_terms, names)
    real = split_phenopackets(real, raw, excluded, split, seed)

    rng = np.random.default_rng(seed)
    facial = set(terms.filter(pl.col("is_facial"))["hpo_id"].to_list())
    face_ann = annotations.filter(pl.col("hpo_id").is_in(list(facial)))
    face_of = {d: (g["hpo_id"].to_numpy(), g["frequency"].to_numpy())
               for (d,), g in face_ann.group_by("disease_id", maintain_order=True)}
    empty = (np.array([], dtype=object), np.array([], dtype=float))
    paths = []
    for case_id, disease_id, hpo in tqdm(real.select("case_id", "disease_id", "hpo_ids").iter_rows(),
                                         total=real.height, desc="render photos", unit="case"):
        face = sorted(set(sample_facial(*face_of.get(disease_id, empty), rng)) | (set(hpo) & facial))
        render_face_png(face, file_in(image_dir, case_id, ".png"), rng, size=image["image_size"],
                        jitter=image["jitter"])
        paths.append(f"{image_prefix}/{case_id}.png")
    real = real.with_columns(image_path=pl.Series(paths, dtype=pl.String), source=pl.lit("phenopacket"))

    parts = [real.select(CASE_COLUMNS)]
    per_disease = pp["simulated_per_disease"]
    annotated = panel.filter(pl.col("disease_id").is_in(annotations["disease_id"].unique().implode()))
    if per_disease:
        sim_cfg = {**image, "cases_per_disease": per_disease}
        sim = simulate_cohort(annotated, annotations, terms, sim_cfg, image_dir, image_prefix, seed + 1)
        parts.append(sim.with_columns(split=pl.lit("train"), split_source=pl.lit("always_train")).select(CASE_COLUMNS))
    log.info("phenopacket cohort: %d real cases (%s), %d excluded, %d simulated training cases of %d annotated "
             "panel diseases", real.height, dict(real["split"].value_counts().iter_rows()), excluded.height,
             sum(p.height for p in parts[1:]), annotated.height)
    cases = pl.concat(parts)
    check_kept(cases, f"config key 'cohort.phenopacket.path': {pp['path']}")
    return cases, panel, excluded


def split_phenopackets(
    real: pl.DataFrame, raw: pl.DataFrame, excluded: pl.DataFrame, split: Mapping[str, Any], seed: int
) -> pl.DataFrame:
    """The kept phenopacket cases with `split` and `split_source` (`mint.core.cohort.split_cases`).

    Given first: the flat file's optional `split` column, and config's `test_cases` and
    `test_publications` (the cases' `publication`: a PMID, or `case:<id>` for a case without one);
    the rest split by publication (`split_by_publication`), so no publication lies on two sides.
    A case named in `test_cases` that the import excluded is an error naming its reason.
    """
    if "split" in raw.columns:
        real = real.join(raw.select("case_id", "split"), on="case_id", how="left", maintain_order="left")
    reason = dict(zip(excluded["case_id"].to_list(), excluded["reason"].to_list()))
    dropped = [c for c in split.get("test_cases", []) if c in reason]
    if dropped:
        raise MintError(f"config key '{SPLIT_KEYS[0]}': case {dropped[0]!r} is excluded from the cohort "
                        f"({reason[dropped[0]]}; excluded.parquet lists each excluded case with its reason)")
    return split_cases(real, split["validation"], split["test"], seed, seeded=split_by_publication,
                       test_cases=split.get("test_cases", []), test_groups=split.get("test_publications", []),
                       group="publication", keys=SPLIT_KEYS,
                       where="the kept phenopacket cases (simulated training cases always train)")


# ---------------------------------------------------------------- step entry point


def vocabulary(diseases: pl.DataFrame, panel: pl.DataFrame) -> pl.DataFrame:
    """LABELS an answer's names are matched against: the whole HPO release plus the panel's own names.

    A real panel may spell a disease its own way, or list a disease this HPO release lacks: its
    names join the release's as synonyms, so that naming a panel disease is never a hallucination.
    """
    own = panel.select("disease_id", panel_name="name")
    known = (
        diseases.join(own, on="disease_id", how="left")
        .with_columns(synonyms=pl.when(pl.col("panel_name").is_null()).then(pl.col("synonyms"))
                      .otherwise(pl.concat_list(pl.col("synonyms").fill_null([]), pl.col("panel_name"))))
        .select("disease_id", "name", "synonyms")
    )
    extra = own.filter(~pl.col("disease_id").is_in(diseases["disease_id"].implode())).select(
        "disease_id", name="panel_name", synonyms=pl.lit([], pl.List(pl.String)))
    return pl.concat([known, extra]).rename({"disease_id": "label_id"})


def candidates(diseases: pl.DataFrame, panel: pl.DataFrame) -> pl.DataFrame:
    """LABELS of the panel: its names, with the release's synonyms where the release knows the disease."""
    return (panel.join(diseases.select("disease_id", "synonyms"), on="disease_id", how="left", maintain_order="left")
            .with_columns(pl.col("synonyms").fill_null([])).rename({"disease_id": "label_id"}))


def build_cohort(
    knowledge: Mapping[str, str | Path], *, cases_path: str | Path, candidates_path: str | Path,
    vocabulary_path: str | Path, excluded_path: str | Path, images_dir: str | Path,
    cohort: Mapping[str, Any], seed: int,
) -> None:
    """Write the cases, candidates, vocabulary, exclusions and the photo folder.

    `knowledge`: the paths of the `diseases`, `annotations` and `terms` tables; `cohort`: the
    config's `cohort` section (source and its settings, split shares and given test cases). A given
    split (a `split` column, `cohort.split.test_cases` and `test_publications`) comes first, before
    any file is written; the other cases get the seeded split (`mint.core.cohort.split_cases`).
    """
    diseases, annotations, terms = load_knowledge(knowledge["diseases"], knowledge["annotations"], knowledge["terms"])
    images = Path(images_dir)
    excluded = pl.DataFrame(schema=EXCLUDED_COLUMNS)

    def split(cases: pl.DataFrame) -> pl.DataFrame:
        """A given split, then the seeded one (phenopacket cohorts split by publication themselves)."""
        named = cases.rename({k: v for k, v in CORE_NAMES.items() if k in cases.columns})
        shares = cohort["split"]
        done = split_cases(named, shares["validation"], shares["test"], seed, test_cases=shares.get("test_cases", []),
                           test_groups=shares.get("test_publications", []), keys=SPLIT_KEYS,
                           where=f"the {cohort['source']} cases")
        check_kept(done, f"the {cohort['source']} cases")
        return cases.with_columns(split=done["split"], split_source=done["split_source"])  # rows keep their order

    if cohort["source"] == "phenopacket":
        with atomic_dir(images) as tmp_images:
            cases, panel, excluded = phenopacket_cohort(
                cohort["phenopacket"], cohort["split"], diseases, annotations, terms, cohort["simulated"],
                tmp_images, str(images), seed)
    elif cohort["source"] == "simulated":
        sim = cohort["simulated"]
        panel = choose_panel(diseases, annotations, terms, sim["n_diseases"], sim["min_facial_terms"], seed)
        with atomic_dir(images) as tmp_images:
            cases = split(simulate_cohort(panel, annotations, terms, sim, tmp_images, str(images), seed))
    else:
        man = cohort["manifest"]
        cases = split(read_manifest(man["path"], man["image_root"], diseases, cohort["simulated"]["image_size"],
                                    allow_absolute=cohort.get("allow_absolute_paths", False)))
        panel = (
            diseases.filter(pl.col("disease_id").is_in(cases["disease_id"].unique().to_list()))
            .select("disease_id", "name").sort("disease_id")
        )
        # Copy the photos in, so later steps depend on files the workflow owns.
        with atomic_dir(images) as tmp_images:
            new_paths = []
            for case_id, src in zip(cases["case_id"].to_list(), cases["image_path"].to_list()):
                dest = file_in(tmp_images, case_id, Path(src).suffix.lower())
                shutil.copyfile(src, dest)
                new_paths.append(str(images / dest.name))
        cases = cases.with_columns(image_path=pl.Series(new_paths), hpo_ids=None, note_hpo_ids=None,
                                   source=pl.lit("manifest"), publication=pl.lit(None, pl.String))
    cases = cases.rename({k: v for k, v in CORE_NAMES.items() if k in cases.columns}).sort("case_id")
    sources = dict(cases.group_by("split_source").len().sort("split_source").iter_rows())
    log.info("split of the %d cases by source: %s", cases.height, sources)
    prov = provenance({"cohort": dict(cohort)}, seed=seed, split_source=sources)
    write_parquet(candidates(diseases, panel), candidates_path, schemas.LABELS, prov)
    write_parquet(vocabulary(diseases, panel), vocabulary_path, schemas.LABELS, prov)
    write_parquet(cases, cases_path, schemas.cases_schema([schemas.SPLIT_SOURCE, *CASE_FIELDS]), prov)
    write_parquet(excluded.rename({"disease_id": "label_id"}), excluded_path, schemas.EXCLUDED, prov)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the rare-disease cohort.")
    parser.add_argument("config")
    parser.add_argument("knowledge_dir")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    config, out = load_config(args.config), Path(args.out_dir)
    build_cohort(knowledge_files(args.knowledge_dir), cases_path=out / "cases.parquet",
                 candidates_path=out / "candidates.parquet", vocabulary_path=out / "vocabulary.parquet",
                 excluded_path=out / "excluded.parquet", images_dir=out / "images", cohort=config["cohort"],
                 seed=config["seed"])


if __name__ == "__main__":
    main()
