"""Build the patient cohort: simulated from HPO annotations (the embedded default) or a user manifest.

Both sources give the same table (`schemas.CASES`, one row per patient, with a seeded stratified
train/validation/test split) plus the candidate panel (`schemas.PANEL`) and a folder of photos.

Simulated patients: phenotypes sampled by their annotated frequency, a few unrelated "noise"
findings, a demographic line, and a note built from the term labels. The photo is rendered
from the patient's facial findings, of which the note states only a configurable share, so
that the photo carries diagnostic information the note lacks, as real photos do.

    python -m mint.cohort config/config.yaml results/knowledge results/cohort
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

from mint import schemas
from mint.config import load_config, section
from mint.face import load_face, render_face_png
from mint.io import MintError, atomic_dir, provenance, read_parquet, write_parquet
from mint.knowledge import load_knowledge

MANIFEST_COLUMNS = ("case_id", "note", "image_path", "disease_id")
SPLITS = ("train", "validation", "test")


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


def demographic_line(rng: np.random.Generator) -> str:
    """'A 6-year-old girl' / 'A 9-month-old boy': ages 1 month to 17 years, the dysmorphology clinic's range."""
    boy = rng.random() < 0.5
    months = int(rng.integers(1, 18 * 12))
    if months < 24:
        age = f"{months}-month-old"
    else:
        age = f"{months // 12}-year-old"
    article = "An" if age[0] in "8" or age.startswith("11-") or age.startswith("18-") else "A"
    return f"{article} {age} {'boy' if boy else 'girl'}"


def _label(name: str) -> str:
    # HPO labels are capitalised ('Global developmental delay'); lower-case unless an acronym leads.
    return name if name[:2].isupper() else name[:1].lower() + name[1:]


def write_note(demo: str, labels: Sequence[str]) -> str:
    if not labels:
        return f"{demo} was referred to the genetics clinic. The examination was unremarkable."
    findings = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
    return f"{demo} was referred to the genetics clinic with {findings}."


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
            # Each facial finding is present with its annotated frequency; at least one, the likeliest.
            present = face_freq > rng.random(len(face_freq))
            face = face_ids[present].tolist() or [face_ids[np.argmax(face_freq)]]
            n_true = int(rng.integers(sim["true_terms"][0], sim["true_terms"][1] + 1))
            true = _weighted_sample(other_ids, other_freq, n_true, rng)
            stated_face = [t for t in face if rng.random() < sim["note_facial_share"]]
            n_noise = int(rng.integers(sim["noise_terms"][0], sim["noise_terms"][1] + 1))
            candidates = np.array([t for t in noise_pool if t not in own])
            noise = rng.choice(candidates, size=min(n_noise, len(candidates)), replace=False).tolist()
            stated = true + stated_face + noise
            order = rng.permutation(len(stated))
            stated = [stated[j] for j in order]
            note = write_note(demographic_line(rng), [_label(names[t]) for t in stated])
            image = image_dir / f"{case_id}.png"
            render_face_png(face, image, rng, size=sim["image_size"], jitter=sim["jitter"])
            rows.append(
                {
                    "case_id": case_id,
                    "disease_id": disease_id,
                    "note": note,
                    "image_path": f"{image_prefix}/{case_id}.png",
                    "hpo_ids": sorted(set(face) | set(true) | set(noise)),
                    "note_hpo_ids": sorted(stated),
                }
            )
    return pl.DataFrame(rows, schema={"case_id": pl.String, "disease_id": pl.String, "note": pl.String,
                                      "image_path": pl.String, "hpo_ids": pl.List(pl.String),
                                      "note_hpo_ids": pl.List(pl.String)})


def assign_split(cases: pl.DataFrame, validation: float, test: float, seed: int) -> pl.DataFrame:
    """Seeded split stratified by disease: each disease puts about the same shares on each side."""
    rng = np.random.default_rng(seed)
    split_of: dict[str, str] = {}
    for disease_id, group in cases.sort("case_id").group_by("disease_id", maintain_order=True):
        ids = group["case_id"].to_list()
        rng.shuffle(ids)
        n = len(ids)
        n_test = max(1, round(n * test)) if n >= 3 else 0
        n_val = round(n * validation) if n - n_test >= 3 else 0
        for j, case_id in enumerate(ids):
            split_of[case_id] = "test" if j < n_test else "validation" if j < n_test + n_val else "train"
    return cases.with_columns(split=pl.col("case_id").replace_strict(split_of))


# ---------------------------------------------------------------- manifest cohort


def read_manifest(
    path: str | Path, image_root: str | Path | None, known_diseases: pl.DataFrame, image_size: int
) -> pl.DataFrame:
    """The user's cases, checked row by row; any problem raises MintError naming file, row and case."""
    path = Path(path)
    if not path.exists():
        raise MintError(f"config key 'cohort.manifest.path': file not found: {path}")
    if path.suffix.lower() == ".parquet":
        df = pl.read_parquet(path)
    elif path.suffix.lower() in (".csv", ".tsv"):
        df = pl.read_csv(path, separator="\t" if path.suffix.lower() == ".tsv" else ",", infer_schema=False)
    else:
        raise MintError(f"{path}: manifest must be .csv, .tsv or .parquet")
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise MintError(f"{path}: manifest is missing column(s) {missing}; it needs {list(MANIFEST_COLUMNS)}")
    df = df.with_columns(pl.col(c).cast(pl.String) for c in MANIFEST_COLUMNS)
    root = Path(image_root) if image_root else path.parent
    known = set(known_diseases["disease_id"].to_list())
    seen: set[str] = set()
    for row_no, row in enumerate(df.iter_rows(named=True), start=2):  # row 1 is the header
        where = f"{path} row {row_no} (case_id {row['case_id']!r})"
        if not row["case_id"]:
            raise MintError(f"{path} row {row_no}: empty case_id")
        if row["case_id"] in seen:
            raise MintError(f"{where}: duplicate case_id")
        seen.add(row["case_id"])
        if not (row["note"] or "").strip():
            raise MintError(f"{where}: empty note")
        if row["disease_id"] not in known:
            raise MintError(
                f"{where}: unknown disease id {row['disease_id']!r} (not an OMIM disease of the HPO release)"
            )
        if not row["image_path"]:
            raise MintError(f"{where}: empty image_path")
        try:
            load_face(root / row["image_path"], image_size)
        except MintError as err:  # a missing or corrupt image: say which row
            raise MintError(f"{where}: {err}") from err
    if "split" in df.columns:
        bad = df.filter(~pl.col("split").is_in(SPLITS))
        if bad.height:
            raise MintError(
                f"{path}: column 'split' must be one of {SPLITS}; case {bad['case_id'][0]!r} has {bad['split'][0]!r}"
            )
    paths = [str(root / p) for p in df["image_path"].to_list()]
    return df.with_columns(image_path=pl.Series(paths, dtype=pl.String))


# ---------------------------------------------------------------- step entry point


def build_cohort(config: Mapping[str, Any], knowledge_dir: str | Path, out_dir: str | Path) -> None:
    """Write `cases.parquet`, `panel.parquet` and `images/` under `out_dir`."""
    out_dir = Path(out_dir)
    diseases, annotations, terms = load_knowledge(knowledge_dir)
    cohort = config["cohort"]
    seed = config["seed"]
    images = out_dir / "images"
    if cohort["source"] == "simulated":
        sim = cohort["simulated"]
        panel = choose_panel(diseases, annotations, terms, sim["n_diseases"], sim["min_facial_terms"], seed)
        with atomic_dir(images) as tmp_images:
            cases = simulate_cohort(panel, annotations, terms, sim, tmp_images, str(images), seed)
    else:
        man = cohort["manifest"]
        cases = read_manifest(man["path"], man["image_root"], diseases, cohort["simulated"]["image_size"])
        panel = (
            diseases.filter(pl.col("disease_id").is_in(cases["disease_id"].unique().to_list()))
            .select("disease_id", "name").sort("disease_id")
        )
        # Copy the photos in, so later steps depend on files the workflow owns.
        with atomic_dir(images) as tmp_images:
            new_paths = []
            for case_id, src in zip(cases["case_id"].to_list(), cases["image_path"].to_list()):
                dest = f"{case_id}{Path(src).suffix.lower()}"
                shutil.copyfile(src, tmp_images / dest)
                new_paths.append(str(images / dest))
        cases = cases.with_columns(image_path=pl.Series(new_paths), hpo_ids=None, note_hpo_ids=None)
    if "split" not in cases.columns:
        cases = assign_split(cases, cohort["split"]["validation"], cohort["split"]["test"], seed)
    cases = cases.sort("case_id")
    prov = provenance(section(config, "cohort", "knowledge"), seed=seed)
    write_parquet(panel, out_dir / "panel.parquet", schemas.PANEL, prov)
    write_parquet(cases, out_dir / "cases.parquet", schemas.CASES, prov)


def load_cohort(cohort_dir: str | Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    d = Path(cohort_dir)
    return read_parquet(d / "cases.parquet", schemas.CASES), read_parquet(d / "panel.parquet", schemas.PANEL)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the MINT cohort.")
    parser.add_argument("config")
    parser.add_argument("knowledge_dir")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    build_cohort(load_config(args.config), args.knowledge_dir, args.out_dir)


if __name__ == "__main__":
    main()
