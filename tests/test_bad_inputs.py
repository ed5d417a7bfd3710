"""The bad-input matrix: each bad config, recipe, manifest, image, phenopacket, ranking or panel is refused,
the message names the thing at fault (key, file, row, case), and nothing is left behind, in the working
directory or outside it.

Each row calls what the workflow calls: the start-up checks of rules/common.smk (`load_config` +
`check_inputs`), or the step function that reads the input (the cohort steps of both applications,
`import_rankings`), in a working directory `work/` beside an `outside/` folder. Every file under both is
listed before and after: a refused input must add none (no output, no temporary file, nothing outside).
`ACCEPTED` lists inputs that look suspicious and are accepted by design, with the reason. docs/usage.md's
"What is checked" gives the counts that `test_the_docs_count_the_matrix` checks.

    pytest -q tests/test_bad_inputs.py
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from PIL import Image

from mint.apps.rare_disease import cohort as rd_cohort
from mint.apps.rare_disease import schemas as rd_schemas
from mint.apps.tissue import cohort as tissue_cohort
from mint.apps.tissue.tissues import TISSUES
from mint.core.config import check_inputs, load_config
from mint.core.io import MintError, write_parquet
from mint.core.rankings import import_rankings
from tests.factories import make_cases, make_labels, write_cohort

REPO = Path(__file__).resolve().parent.parent
START_UP = "start-up"  # refused by rules/common.smk before any step runs


@dataclass(frozen=True)
class Bad:
    name: str
    kind: str  # config | recipe | manifest | image | phenopacket | ranking | panel
    stage: str  # START_UP, or the step that refuses it before writing anything
    make: Callable[[Path], tuple[Callable[[], object], str]]  # work dir -> (what runs, regex the error matches)


# ---------------------------------------------------------------- what the rows run


def start_up(path: Path) -> Callable[[], object]:
    """What rules/common.smk does with a config: validate it, then check the files it names."""
    def run():
        cfg = load_config(path)
        check_inputs(cfg, str(path))
    return run


def config(wd: Path, cfg: dict, text: str | bytes | None = None) -> Path:
    path = wd / "config.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text if text is not None else yaml.safe_dump(cfg))
    return path


def config_row(cfg: dict | None = None, text: str | bytes | None = None, setup: Callable[[Path], None] | None = None,
               pattern: str = ""):
    def make(wd: Path):
        if setup is not None:
            setup(wd)
        return start_up(config(wd, cfg or {}, text)), pattern
    return make


def recipe_row(method: str, text: str, pattern: str, methods: list[str] | None = None):
    def make(wd: Path):
        (wd / "config/rare_disease/recipes/tiny" / f"{method}.yaml").write_text(text)
        # The work folder's recipes (the config file's folder is what its paths are relative to).
        cfg = {"training": {"recipes": "config/rare_disease/recipes/tiny", **({"methods": methods} if methods else {})}}
        return start_up(config(wd, cfg)), pattern
    return make


# Rare disease: tiny knowledge tables (two diseases), a photo, a manifest; the cohort step itself.
DISEASES = ["OMIM:100001", "OMIM:100002"]


def rd_knowledge(wd: Path) -> dict[str, Path]:
    folder = wd / "results/knowledge"
    paths = {name: folder / f"{name}.parquet" for name in ("diseases", "annotations", "terms")}
    write_parquet(pl.DataFrame({"disease_id": DISEASES, "name": ["Alpha syndrome", "Beta syndrome"],
                                "synonyms": [[], []]}), paths["diseases"], rd_schemas.DISEASES)
    write_parquet(pl.DataFrame({"disease_id": DISEASES, "hpo_id": ["HP:0000001"] * 2, "frequency": [0.5, 0.5]}),
                  paths["annotations"], rd_schemas.ANNOTATIONS)
    write_parquet(pl.DataFrame({"hpo_id": ["HP:0000001"], "name": ["All"], "parents": [[]], "is_facial": [False]}),
                  paths["terms"], rd_schemas.TERMS)
    return paths


def rd_rows(n: int = 6) -> list[dict]:
    return [{"case_id": f"p{i}", "note": "A 3-year-old with seizures.", "image_path": "face.png",
             "disease_id": DISEASES[i % 2]} for i in range(n)]


def rd_manifest(wd: Path, rows: list[dict] | None = None, change: dict | None = None, raw: bytes | None = None) -> Path:
    data = wd / "data"
    data.mkdir(exist_ok=True)
    Image.new("L", (64, 64), 200).save(data / "face.png")
    path = data / "manifest.csv"
    if raw is not None:
        path.write_bytes(raw)
        return path
    rows = rows if rows is not None else rd_rows()
    if change:
        rows[2] = dict(rows[2], **change)
    pl.DataFrame(rows, schema={c: pl.String for c in rows[0]}).write_csv(path)
    return path


def rd_build(wd: Path, source: str, split: dict | None = None, **settings) -> Callable[[], object]:
    knowledge = rd_knowledge(wd)
    cfg = load_config(config(wd, {"cohort": {"source": source, source: settings, "split": split or {}}}))
    out = wd / "results/cohort"

    def run():
        rd_cohort.build_cohort(knowledge, cases_path=out / "cases.parquet", candidates_path=out / "candidates.parquet",
                               vocabulary_path=out / "vocabulary.parquet", excluded_path=out / "excluded.parquet",
                               images_dir=out / "images", cohort=cfg["cohort"], seed=1)
    return run


def rd_manifest_row(pattern: str, change: dict | Callable[[Path], dict] | None = None, raw: bytes | None = None,
                    setup: Callable[[Path], None] | None = None, rows: Callable[[], list[dict]] | None = None):
    def make(wd: Path):
        if setup is not None:
            setup(wd)
        path = rd_manifest(wd, rows() if rows else None, change(wd) if callable(change) else change, raw)
        return rd_build(wd, "manifest", path=str(path)), pattern
    return make


def split_row(pattern: str, split: dict, given: dict[str, str] | None = None):
    """The manifest's cohort step with `cohort.split` settings, and a `split` column where `given` names cases."""
    def make(wd: Path):
        rows = [dict(r, split=(given or {}).get(r["case_id"], "")) for r in rd_rows()]
        return rd_build(wd, "manifest", split=split, path=str(rd_manifest(wd, rows))), pattern
    return make


def pp_split_row(pattern: str, split: dict, given: list | None = None):
    """A flat phenopacket file of cases a and b (PMID:1), with a `split` column where `given`."""
    def make(wd: Path):
        target = write_flat(wd, ["a", "b"])
        if given is not None:
            pl.read_parquet(target).with_columns(split=pl.Series(given, dtype=pl.String)).write_parquet(target)
        return rd_build(wd, "phenopacket", split=split, path=str(target)), pattern
    return make


def outside_file(wd: Path, name: str = "outside.png") -> Path:
    """A readable image in the `outside` folder beside the working directory (must never be read or written)."""
    target = wd.parent / "outside" / name
    Image.new("L", (64, 64), 10).save(target)
    return target


# Phenopackets: one JSON file per patient (or a flat Parquet), read by the cohort step.
def packet(case_id: str, disease: str = DISEASES[0]) -> str:
    return json.dumps({"id": case_id, "subject": {"id": "s", "sex": "FEMALE"},
                       "phenotypicFeatures": [{"type": {"id": "HP:0000001", "label": "All"}}],
                       "diseases": [{"term": {"id": disease, "label": "Alpha syndrome"}}],
                       "metaData": {"createdBy": "test"}})


def write_flat(wd: Path, case_ids: list[str]) -> Path:
    """phenopacket-store's flat table of `case_ids`, all with the first disease, at data/cases.parquet."""
    target, n = wd / "data/cases.parquet", len(case_ids)
    target.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"case_id": case_ids, "cohort": ["G"] * n, "pmid": ["PMID:1"] * n, "sex": ["FEMALE"] * n,
                  "age": [None] * n, "disease_ids": [[DISEASES[0]]] * n, "disease_labels": [["A"]] * n,
                  "genes": [["G"]] * n, "observed_hpo": [["HP:0000001"]] * n, "observed_labels": [["All"]] * n,
                  "excluded_hpo": [[]] * n}, schema_overrides={"age": pl.String}).write_parquet(target)
    return target


def pp_row(pattern: str, files: dict[str, str | bytes] | None = None, flat: list[str] | None = None,
           panel: str | bytes | Callable[[Path], object] | None = None,
           special: dict[str, Callable[[Path], object]] | None = None):
    """The phenopacket cohort step on a folder of `files` (and `special` ones, each made by its function at
    its path: a FIFO, a link), or on the flat file of cases `flat`; a panel file from text or a function."""
    def make(wd: Path):
        folder = wd / "data/phenopackets"
        folder.mkdir(parents=True)
        target = folder
        if flat is not None:
            target = write_flat(wd, flat)
        for name, content in (files or {"a.json": packet("pa")}).items():
            (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
        for name, make_file in (special or {}).items():
            make_file(folder / name)
        settings = {"path": str(target)}
        if panel is not None:
            if callable(panel):
                panel(wd / "data/panel.tsv")
            else:
                (wd / "data/panel.tsv").write_bytes(panel if isinstance(panel, bytes) else panel.encode())
            settings["panel"] = str(wd / "data/panel.tsv")
        return rd_build(wd, "phenopacket", **settings), pattern
    return make


# Tissue: a manifest of patches (and masks), the cohort step itself.
def tissue_manifest(wd: Path, change: dict | None = None, raw: bytes | None = None) -> Path:
    data = wd / "patches"
    data.mkdir(exist_ok=True)
    rows = []
    for i in range(4):
        Image.new("RGB", (32, 32), (200, 100 + i, 150)).save(data / f"p{i}.png")
        np.save(data / f"p{i}_mask.npy", np.zeros((32, 32), np.int32))
        rows.append({"case_id": f"p{i}", "image_path": f"p{i}.png", "tissue": TISSUES[i].name,
                     "mask_path": f"p{i}_mask.npy"})
    if change:
        rows[1] = dict(rows[1], **change)
    path = data / "manifest.csv"
    if raw is not None:
        path.write_bytes(raw)
    else:
        pl.DataFrame(rows).write_csv(path)
    return path


def tissue_build(wd: Path, path: Path, allow_absolute: bool = False, split: dict | None = None
                 ) -> Callable[[], object]:
    cfg = load_config(config(wd, {"application": "tissue", "cohort": {
        "source": "manifest", "manifest": {"path": str(path)}, "allow_absolute_paths": allow_absolute,
        "split": split or {}}}))
    out = wd / "results/cohort"

    def run():
        tissue_cohort.build_cohort(cases_path=out / "cases.parquet", candidates_path=out / "candidates.parquet",
                                   excluded_path=out / "excluded.parquet", nuclei_path=out / "nuclei.parquet",
                                   images_dir=out / "images", cohort=cfg["cohort"], seed=1)
    return run


def tissue_row(pattern: str, change: dict | None = None, raw: bytes | None = None,
               setup: Callable[[Path], dict] | None = None, split: dict | None = None):
    def make(wd: Path):
        extra = setup(wd) if setup is not None else {}
        return tissue_build(wd, tissue_manifest(wd, {**(change or {}), **extra}, raw), split=split), pattern
    return make


# External rankings: a cohort (c1 train, c2 test; labels d1-d3) and the file the user names.
def ranking_row(pattern: str, df: Callable[[], pl.DataFrame] | None = None, raw: bytes | None = None,
                special: Callable[[Path], object] | None = None, damage: Callable[[dict], object] | None = None):
    """import_rankings of the file `df` or `raw` gives (or `special` makes at its path); `damage` then
    changes the cohort's files (`write_cohort`'s paths)."""
    def make(wd: Path):
        paths = write_cohort(wd / "results/cohort", make_cases(["d1", "d2"], ["train", "test"]),
                             make_labels(["d1", "d2", "d3"]))
        external = wd / "external.parquet"
        if special is not None:
            special(external)
        elif raw is not None:
            external.write_bytes(raw)
        else:
            df().write_parquet(external)
        if damage is not None:
            damage(paths)
        return (lambda: import_rankings(external, paths["cases"], paths["candidates"],
                                        wd / "results/rankings/teacher.parquet")), pattern
    return make


def ranks(case_ids, label_ids, scores):
    return pl.DataFrame({"case_id": case_ids, "label_id": label_ids, "score": scores},
                        schema_overrides={"score": pl.Float64})


FULL = (["c1"] * 3 + ["c2"] * 3, ["d1", "d2", "d3"] * 2)


def special_row(run: Callable[[Path], Callable[[], object]], pattern: str):
    """A row whose `run(work dir)` makes its own input and returns what runs."""
    return lambda wd: (run(wd), pattern)


def _fifo(path: Path) -> Path:
    """A FIFO (named pipe) at `path`: opening it for reading waits for a writer."""
    os.mkfifo(path)
    return path


def _zero_link(path: Path) -> Path:
    """A symbolic link at `path` to /dev/zero, which reads zeros without end."""
    path.symlink_to("/dev/zero")
    return path


def _sparse(path: Path, size: int) -> None:
    """A file of `size` bytes that takes no disk (a hole): the size check reads none of it."""
    with open(path, "wb") as f:
        f.truncate(size)


def _truncate(path: Path) -> None:
    """Cut a file to its first half, as a full disk or a killed copy leaves it."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _pannuke_zero(wd: Path) -> Callable[[], object]:
    """The tissue cohort step on a PanNuke fold whose images.npy links to /dev/zero."""
    fold = _mk(wd / "pannuke/fold1")
    _zero_link(fold / "images.npy")
    np.save(fold / "masks.npy", np.zeros((1, 4, 4, 6)))
    np.save(fold / "types.npy", np.array(["Lung"]))
    cfg = load_config(config(wd, {"application": "tissue", "cohort": {
        "source": "pannuke", "pannuke": {"path": str(wd / "pannuke"), "folds": {"train": [1]}}}}))
    out = wd / "results/cohort"
    return lambda: tissue_cohort.build_cohort(
        cases_path=out / "cases.parquet", candidates_path=out / "candidates.parquet",
        excluded_path=out / "excluded.parquet", nuclei_path=out / "nuclei.parquet", images_dir=out / "images",
        cohort=cfg["cohort"], seed=1)


def with_score(i: int, value):
    scores: list = [0.9, 0.5, 0.1, 0.8, 0.3, 0.2]
    scores[i] = value
    return lambda: ranks(*FULL, scores)


# ---------------------------------------------------------------- the matrix

BAD = [
    # Config: refused at start-up (rules/common.smk), naming the file, the line or the key.
    Bad("config: YAML syntax error", "config", START_UP,
        config_row(text="seed: 3\ncohort:\n  source: [simulated\n", pattern=r"config.yaml line \d+ column \d+")),
    Bad("config: a list, not a mapping", "config", START_UP,
        config_row(text="- seed\n- 3\n", pattern="config.yaml: the config must be a mapping")),
    Bad("config: not UTF-8", "config", START_UP,
        config_row(text="prompt:\n  system: caf\xe9\n".encode("latin-1"), pattern="config.yaml: not UTF-8")),
    Bad("config: unknown top-level key", "config", START_UP,
        config_row({"studnet": {}}, pattern=r"config.yaml: .*config key '\(top level\)'.*studnet")),
    Bad("config: k = 0", "config", START_UP, config_row({"preferences": {"k": 0}}, pattern="'preferences.k'")),
    Bad("config: k + q above the simulated panel", "config", START_UP,
        config_row({"cohort": {"simulated": {"n_diseases": 4}}},
                   pattern=r"'preferences.k' \+ 'preferences.q' = 3 \+ 3 = 6, more than the 4 .*n_diseases")),
    Bad("config: k + q above the 19 tissues", "config", START_UP,
        config_row({"application": "tissue", "preferences": {"k": 10, "q": 10}},
                   pattern=r"'preferences.k' \+ 'preferences.q' = 10 \+ 10 = 20, more than the 19 .*tissue panel")),
    Bad("config: unknown application", "config", START_UP,
        config_row({"application": "tissues"}, pattern="config key 'application'.*'tissues'")),
    Bad("config: duplicate training seeds", "config", START_UP,
        config_row({"training": {"seeds": [1, 1]}}, pattern="'training.seeds'")),
    Bad("config: split leaves < 10% to train", "config", START_UP,
        config_row({"cohort": {"split": {"validation": 0.4, "test": 0.6}}}, pattern="'cohort.split.validation'")),
    Bad("config: student.base folder that does not exist", "config", START_UP,
        config_row({"student": {"base": "./models/none"}}, pattern=r"'student.base': './models/none': no such folder")),
    Bad("config: student.base hub id not in the cache (offline)", "config", START_UP,
        config_row({"student": {"base": "no-such-org/no-such-model"}},
                   pattern="'student.base': 'no-such-org/no-such-model': .*not in the Hugging Face cache")),
    Bad("config: student.base folder that is no model", "config", START_UP,
        config_row({"student": {"base": "empty_model"}}, setup=lambda wd: (wd / "empty_model").mkdir(),
                   pattern="'student.base': 'empty_model' is not a Hugging Face model folder")),
    Bad("config: teacher.rankings file not found", "config", START_UP,
        config_row({"teacher": {"rankings": "teacher.parquet"}},
                   pattern="'teacher.rankings': file not found: teacher.parquet")),
    Bad("config: recipes folder without the method's recipe", "config", START_UP,
        config_row({"training": {"recipes": "config/rare_disease/recipes/none"}},
                   pattern=r"'training.recipes': no recipe config/rare_disease/recipes/none/sft.yaml for method "
                           r"'sft'")),
    Bad("config: manifest file not found", "config", START_UP,
        config_row({"cohort": {"source": "manifest", "manifest": {"path": "cases.csv"}}},
                   pattern="'cohort.manifest.path': file not found: cases.csv")),
    Bad("config: manifest's diseases fewer than k + q", "config", START_UP,
        config_row({"cohort": {"source": "manifest", "manifest": {"path": "data/manifest.csv"}}},
                   setup=lambda wd: rd_manifest(wd),
                   pattern=r"= 6, more than the 2 candidate labels of the manifest data/manifest.csv")),
    Bad("config: image_root folder not found", "config", START_UP,
        config_row({"cohort": {"source": "manifest", "manifest": {"path": "data/manifest.csv", "image_root": "img"}},
                    "preferences": {"k": 1, "q": 1}},
                   setup=lambda wd: rd_manifest(wd), pattern="'cohort.manifest.image_root': folder not found: img")),
    Bad("config: tissue manifest not found", "config", START_UP,
        config_row({"application": "tissue", "cohort": {"source": "manifest", "manifest": {"path": "patches"}}},
                   pattern="'cohort.manifest.path': not found: patches")),
    Bad("config: PanNuke folder not given", "config", START_UP,
        config_row({"application": "tissue", "cohort": {"source": "pannuke"}},
                   pattern="'cohort.pannuke.path' is required when cohort.source is 'pannuke'")),
    Bad("config: phenopacket path not found", "config", START_UP,
        config_row({"cohort": {"source": "phenopacket", "phenopacket": {"path": "store"}}},
                   pattern="'cohort.phenopacket.path': not found: store")),
    # Panels (phenopacket cohorts): at start-up when the config names the file, else in the cohort step.
    Bad("panel: fewer diseases than k + q", "panel", START_UP,
        config_row({"cohort": {"source": "phenopacket", "phenopacket": {"path": "data", "panel": "data/p.tsv"}}},
                   setup=lambda wd: ((wd / "data").mkdir(),
                                     (wd / "data/p.tsv").write_text("disease_id\tname\nOMIM:1\tA\nOMIM:2\tB\n")),
                   pattern=r"= 6, more than the 2 candidate labels of the panel data/p.tsv")),
    Bad("panel: a flat file's diseases (no panel file) fewer than k + q", "panel", START_UP,
        config_row({"cohort": {"source": "phenopacket", "phenopacket": {"path": "data/cases.parquet"}}},
                   setup=lambda wd: write_flat(wd, ["a", "b"]),
                   pattern=r"= 6, more than the 1 candidate labels of the diseases of data/cases.parquet")),
    Bad("panel: not UTF-8", "panel", "build_cohort",
        pp_row("panel.tsv: the panel is not UTF-8 text", panel="disease_id\tname\nOMIM:100001\tCaf\xe9\n"
               .encode("latin-1"))),
    Bad("panel: header and no rows", "panel", "build_cohort",
        pp_row("panel.tsv: the panel has a header and no rows", panel="disease_id\tname\n")),
    Bad("panel: a disease listed twice", "panel", "build_cohort",
        pp_row(r"panel.tsv: disease id\(s\) listed twice: \['OMIM:100001'\]",
               panel="disease_id\tname\nOMIM:100001\tA\nOMIM:100001\tB\n")),
    Bad("panel: no disease_id column", "panel", "build_cohort",
        pp_row(r"panel.tsv: panel is missing column\(s\) \['disease_id'\]", panel="id\tname\nOMIM:100001\tA\n")),
    # Recipes: refused at start-up, naming the recipe file.
    Bad("recipe: a list", "recipe", START_UP,
        recipe_row("sft", "- method: sft\n", "sft.yaml: a recipe must be a mapping of keys .* got list")),
    Bad("recipe: method does not match its file", "recipe", START_UP,
        recipe_row("orpo", "method: dpo\n", "orpo.yaml: recipe key 'method' is 'dpo', but the file is the recipe of "
                   "'orpo'")),
    Bad("recipe: YAML syntax error", "recipe", START_UP,
        recipe_row("dpo", "method: dpo\nargs: {beta: 0.1\n", r"dpo.yaml line \d+ column \d+: not valid YAML")),
    Bad("recipe: unknown key", "recipe", START_UP,
        recipe_row("sft", "method: sft\nepochs: 3\n", r"sft.yaml: unknown recipe key\(s\) \['epochs'\]")),
    Bad("recipe: init neither base nor sft", "recipe", START_UP,
        recipe_row("sft", "method: sft\ninit: dpo\n", "sft.yaml: recipe key 'init' must be 'base' or 'sft'")),
    Bad("recipe: init sft without sft trained", "recipe", START_UP,
        recipe_row("orpo", "method: orpo\ninit: sft\n", r"'training.methods': the orpo recipe starts from the SFT",
                   methods=["orpo"])),
    # Rare-disease manifest: refused by the cohort step before it writes anything.
    Bad("manifest: case_id escaping with ../", "manifest", "build_cohort",
        rd_manifest_row(r"manifest.csv row 4: case_id '../../outside/x' cannot name a file",
                        {"case_id": "../../outside/x"})),
    Bad("manifest: case_id an absolute path", "manifest", "build_cohort",
        rd_manifest_row(r"manifest.csv row 4: case_id '/.*/outside/x' cannot name a file",
                        lambda wd: {"case_id": str(wd.parent / "outside" / "x")})),
    Bad("manifest: case_id with a slash", "manifest", "build_cohort",
        rd_manifest_row(r"manifest.csv row 4: case_id 'a/b' cannot name a file", {"case_id": "a/b"})),
    Bad("manifest: case_id hidden (leading dot)", "manifest", "build_cohort",
        rd_manifest_row(r"manifest.csv row 4: case_id '.p2' cannot name a file", {"case_id": ".p2"})),
    Bad("manifest: image_path escaping with ../", "manifest", "build_cohort",
        rd_manifest_row(r"row 4 \(case_id 'p2'\): image_path: path '../../outside/outside.png' is not inside",
                        {"image_path": "../../outside/outside.png"}, setup=outside_file)),
    Bad("manifest: image_path absolute (not allowed)", "manifest", "build_cohort",
        rd_manifest_row(r"row 4 \(case_id 'p2'\): image_path: absolute path .*'cohort.allow_absolute_paths: true'",
                        {"image_path": "/etc/hostname"})),
    Bad("manifest: not UTF-8", "manifest", "build_cohort",
        rd_manifest_row("manifest.csv: the manifest is not UTF-8 text",
                        raw="case_id,note,image_path,disease_id\np0,caf\xe9,face.png,OMIM:100001\n".encode("latin-1"))),
    Bad("manifest: header and no rows", "manifest", "build_cohort",
        rd_manifest_row("manifest.csv: the manifest has a header and no rows",
                        raw=b"case_id,note,image_path,disease_id\n")),
    Bad("manifest: empty file", "manifest", "build_cohort",
        rd_manifest_row("manifest.csv: the manifest is empty", raw=b"")),
    Bad("manifest: missing column", "manifest", "build_cohort",
        rd_manifest_row(r"manifest.csv: manifest is missing column\(s\) \['disease_id'\]",
                        raw=b"case_id,note,image_path\np0,n,face.png\n")),
    Bad("manifest: duplicate case_id", "manifest", "build_cohort",
        rd_manifest_row(r"row 4 \(case_id 'p1'\): duplicate case_id", {"case_id": "p1"})),
    Bad("manifest: empty note", "manifest", "build_cohort",
        rd_manifest_row(r"row 4 \(case_id 'p2'\): empty note", {"note": "  "})),
    Bad("manifest: unknown disease", "manifest", "build_cohort",
        rd_manifest_row(r"row 4 \(case_id 'p2'\): unknown disease id 'OMIM:999999'", {"disease_id": "OMIM:999999"})),
    Bad("manifest: bad split value", "manifest", "build_cohort",
        rd_manifest_row(r"manifest.csv row 3 \(case_id 'p1'\): column 'split' must be one of .*'dev'",
                        rows=lambda: [dict(r, split="dev" if i == 1 else "train") for i, r in enumerate(rd_rows())])),
    Bad("manifest: a case given train in its split column and named test in config", "manifest", "build_cohort",
        split_row(r"case 'p1' has split 'train' in column 'split' but config key 'cohort.split.test_cases' .*names it "
                  "test", {"test_cases": ["p1"]}, given={"p1": "train"})),
    Bad("config: cohort.split.test_cases names a case the manifest lacks", "config", "build_cohort",
        split_row(r"config key 'cohort.split.test_cases': case id\(s\) \['p9'\] not among the manifest cases",
                  {"test_cases": ["p0", "p9"]})),
    Bad("config: cohort.split.test_publications names a publication no case has", "config", "build_cohort",
        pp_split_row(r"'cohort.split.test_publications': publication\(s\) \['PMID:2'\] not among the kept "
                     "phenopacket cases", {"test_publications": ["PMID:2"]})),
    Bad("config: cohort.split.test 0 and no case given test", "config", "build_cohort",
        split_row(r"no test case: config key 'cohort.split.test' is 0", {"test": 0})),
    Bad("config: tissue cohort.split.test_groups names a group no patch has", "config", "build_cohort",
        tissue_row(r"config key 'cohort.split.test_groups': group\(s\) \['slide9'\] not among the manifest cases",
                   split={"test_groups": ["slide9"]})),
    # Images (rare-disease photos and tissue patches): refused by the cohort step, naming row and file.
    Bad("image: photo not found", "image", "build_cohort",
        rd_manifest_row(r"row 4 \(case_id 'p2'\): face image not found: .*missing.png", {"image_path": "missing.png"})),
    Bad("image: photo not an image", "image", "build_cohort",
        rd_manifest_row(r"row 4 \(case_id 'p2'\): .*bad.png: not a readable image", {"image_path": "bad.png"},
                        setup=lambda wd: ((wd / "data").mkdir(), (wd / "data/bad.png").write_bytes(b"no png " * 9)))),
    Bad("image: patch of another size", "image", "build_cohort",
        tissue_row(r"line 3 \(case_id 'p1'\): image .*big.png is 48x48 px; all patches must share one size",
                   setup=lambda wd: (Image.new("RGB", (48, 48)).save(_mk(wd / "patches") / "big.png"),
                                     {"image_path": "big.png"})[1])),
    Bad("image: mask of another shape", "image", "build_cohort",
        tissue_row(r"line 3 \(case_id 'p1'\): mask .*m.npy has shape \(16, 16\)",
                   setup=lambda wd: (np.save(_mk(wd / "patches") / "m.npy", np.zeros((16, 16))),
                                     {"mask_path": "m.npy"})[1])),
    # Tissue manifest: the same rules of names and paths.
    Bad("tissue manifest: case_id escaping with ../", "manifest", "build_cohort",
        tissue_row(r"manifest.csv line 3: case_id '../../outside/x' cannot name a file",
                   {"case_id": "../../outside/x"})),
    Bad("tissue manifest: image_path escaping with ../", "manifest", "build_cohort",
        tissue_row(r"line 3 \(case_id 'p1'\): image_path: path '../../outside/outside.png' is not inside",
                   setup=lambda wd: (outside_file(wd), {"image_path": "../../outside/outside.png"})[1])),
    Bad("tissue manifest: mask_path escaping with ../", "manifest", "build_cohort",
        tissue_row(r"line 3 \(case_id 'p1'\): mask_path: path '../p1_mask.npy' is not inside",
                   {"mask_path": "../p1_mask.npy"})),
    Bad("tissue manifest: image_path absolute (not allowed)", "manifest", "build_cohort",
        tissue_row(r"line 3 \(case_id 'p1'\): image_path: absolute path",
                   setup=lambda wd: {"image_path": str(wd / "patches" / "p1.png")})),
    Bad("tissue manifest: case_id made from an unsafe image name", "manifest", "build_cohort",
        tissue_row(r"line 3: the case_id made from image_path 'a b.png': case_id 'a b' cannot name a file",
                   setup=lambda wd: (_save_patch(wd / "patches/a b.png"),
                                     {"image_path": "a b.png", "case_id": ""})[1])),
    Bad("tissue manifest: not UTF-8", "manifest", "build_cohort",
        tissue_row("manifest.csv: the manifest is not UTF-8 text",
                   raw="image_path,tissue\np0.png,caf\xe9\n".encode("latin-1"))),
    Bad("tissue manifest: unknown tissue", "manifest", "build_cohort",
        tissue_row(r"line 3 \(case_id 'p1'\): unknown tissue 'Spleen'", {"tissue": "Spleen"})),
    # Phenopackets: refused by the cohort step, naming the file (or row) and the id.
    Bad("phenopacket: id escaping with ../", "phenopacket", "build_cohort",
        pp_row(r"a.json: phenopacket 'id': id '../../outside/x' cannot name a file",
               {"a.json": packet("../../outside/x")})),
    Bad("phenopacket: not UTF-8", "phenopacket", "build_cohort",
        pp_row("a.json: not UTF-8 text", {"a.json": b'{"id": "caf\xe9"}'})),
    Bad("phenopacket: not JSON", "phenopacket", "build_cohort",
        pp_row("a.json: not a GA4GH Phenopacket v2 JSON file", {"a.json": "{ not json"})),
    Bad("phenopacket: no id", "phenopacket", "build_cohort",
        pp_row("a.json: not a GA4GH Phenopacket v2 JSON file: no 'id'", {"a.json": json.dumps({"subject": {}})})),
    Bad("phenopacket: one id in two files", "phenopacket", "build_cohort",
        pp_row("b.json: phenopacket id 'pa' is also the id of a.json",
               {"a.json": packet("pa"), "b.json": packet("pa")})),
    Bad("phenopacket: flat file with an unsafe case_id", "phenopacket", "build_cohort",
        pp_row(r"cases.parquet row 2: case_id 'x/y' cannot name a file", flat=["ok", "x/y"])),
    Bad("phenopacket: flat file with a bad split value", "phenopacket", "build_cohort",
        pp_split_row(r"cases.parquet row 2 \(case_id 'b'\): column 'split' must be one of .*'later'", {},
                     given=[None, "later"])),
    Bad("phenopacket: folder without phenopackets", "phenopacket", "build_cohort",
        pp_row(r"no \*.json phenopacket files", {"readme.txt": "nothing"})),
    # External teacher rankings: refused by import_rankings, naming the file, the row or the case.
    Bad("ranking: NaN score", "ranking", "import_rankings",
        ranking_row(r"external.parquet row 2 \(case_id 'c1', label_id 'd2'\): score is nan; expected a finite",
                    with_score(1, float("nan")))),
    Bad("ranking: null score", "ranking", "import_rankings",
        ranking_row(r"external.parquet row 5 \(case_id 'c2', label_id 'd2'\): score is None", with_score(4, None))),
    Bad("ranking: infinite score", "ranking", "import_rankings",
        ranking_row(r"row 1 \(case_id 'c1', label_id 'd1'\): score is inf", with_score(0, float("inf")))),
    Bad("ranking: duplicate (case, label)", "ranking", "import_rankings",
        ranking_row(r"external.parquet rows \[1, 7\]: case 'c1' ranks label 'd1' more than once",
                    lambda: ranks(FULL[0] + ["c1"], FULL[1] + ["d1"], [0.9, 0.5, 0.1, 0.8, 0.3, 0.2, 0.4]))),
    Bad("ranking: unknown label", "ranking", "import_rankings",
        ranking_row(r"label id\(s\) not among the candidates: \['d9'\]",
                    lambda: ranks(FULL[0], ["d1", "d2", "d9"] * 2, [1.0] * 6))),
    Bad("ranking: unknown case", "ranking", "import_rankings",
        ranking_row(r"case id\(s\) not in the cohort: \['zz'\]",
                    lambda: ranks(FULL[0] + ["zz"], FULL[1] + ["d1"], [1.0] * 7))),
    Bad("ranking: part of the panel", "ranking", "import_rankings",
        ranking_row(r"case 'c2' ranks 2 of the 3 candidate labels \(missing \['d3'\]\)",
                    lambda: ranks(["c1"] * 3 + ["c2"] * 2, ["d1", "d2", "d3", "d1", "d2"], [1.0] * 5))),
    Bad("ranking: training case absent", "ranking", "import_rankings",
        ranking_row(r"no rankings for training case\(s\) \['c1'\]", lambda: ranks(["c2"] * 3, FULL[1][:3], [1.0] * 3))),
    Bad("ranking: score not numeric", "ranking", "import_rankings",
        ranking_row("column 'score' must be numeric", lambda: pl.DataFrame(
            {"case_id": FULL[0], "label_id": FULL[1], "score": ["high"] * 6}))),
    Bad("ranking: missing column", "ranking", "import_rankings",
        ranking_row(r"external.parquet: rankings are missing column\(s\) \['score'\]",
                    lambda: pl.DataFrame({"case_id": FULL[0], "label_id": FULL[1]}))),
    Bad("ranking: not a Parquet file", "ranking", "import_rankings",
        ranking_row("'teacher.rankings': .*external.parquet is not a readable Parquet file", raw=b"case_id,score\n")),
    Bad("ranking: empty case_id", "ranking", "import_rankings",
        ranking_row(r"external.parquet row 4: empty case_id",
                    lambda: ranks(["c1"] * 3 + [None] * 3, FULL[1], [1.0] * 6))),
]

# Round two (each class in its own block; docs/usage.md's counts are the sum).
# ---- images in every mode (16-bit, float, palette, RGBA, CMYK, EXIF)
# Each mode's conversion is tested in tests/test_images.py; here, what mint.core.images refuses, in the
# cohort step of each application (photos: row 4, case p2; patches: line 3, case p1), before any output.
def _image_in(folder: Path, name: str, write: Callable[[Path], object]) -> str:
    """Write `folder/name` with `write(path)`; the manifest cell that names it."""
    write(_mk(folder) / name)
    return name


def _grey16(path: Path, side: int = 32, truncate: bool = False) -> None:
    values = np.random.default_rng(0).integers(0, 65536, (side, side), dtype=np.uint16)
    Image.fromarray(values).save(path)
    if truncate:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _png_claiming(side: int) -> Callable[[Path], None]:
    """A valid PNG header claiming side x side 8-bit grey pixels, with almost no data: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return lambda path: path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(
        ">IIBBBBB", side, side, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _array_tif(values, mode: str) -> Callable[[Path], None]:
    return lambda path: Image.fromarray(np.array(values, np.float32 if mode == "F" else np.int32), mode).save(path)


def _photo(name: str, write: Callable[[Path], object]) -> Callable[[Path], dict]:
    return lambda wd: {"image_path": _image_in(wd / "data", name, write)}


def _patch(name: str, write: Callable[[Path], object]) -> Callable[[Path], dict]:
    return lambda wd: {"image_path": _image_in(wd / "patches", name, write)}


PHOTO, PATCH = r"row 4 \(case_id 'p2'\): ", r"line 3 \(case_id 'p1'\): "
BAD += [
    Bad("image: photo 16-bit PNG, truncated", "image", "build_cohort",
        rd_manifest_row(PHOTO + r"data/cut16.png: not a readable image",
                        _photo("cut16.png", lambda p: _grey16(p, truncate=True)))),
    Bad("image: photo float TIFF holding NaN", "image", "build_cohort",
        rd_manifest_row(PHOTO + r"data/nan.tif: mode F \(float\) image holds NaN or infinite values",
                        _photo("nan.tif", _array_tif([[0.0, np.nan], [0.5, 1.0]], "F")))),
    Bad("image: photo 32-bit integer TIFF above 16 bits", "image", "build_cohort",
        rd_manifest_row(PHOTO + r"data/wide.tif: mode I image with values 0 to 70000; integer images must lie "
                        r"in 0-65535", _photo("wide.tif", _array_tif([[0, 70000], [1, 2]], "I")))),
    Bad("image: photo of a mode not read (CIELab TIFF)", "image", "build_cohort",
        rd_manifest_row(PHOTO + r"data/lab.tif: images of mode 'LAB' are not read; accepted modes: 1, L, RGB",
                        _photo("lab.tif", lambda p: Image.new("LAB", (8, 8)).save(p)))),
    Bad("image: photo path a FIFO", "image", "build_cohort",
        rd_manifest_row(PHOTO + r"data/pipe.png: the face image is a FIFO \(named pipe\), not a regular file",
                        _photo("pipe.png", os.mkfifo))),
    Bad("image: photo a decompression bomb above Pillow's error limit", "image", "build_cohort",
        rd_manifest_row(PHOTO + r"data/bomb.png: refused as a possible decompression bomb \(Image size "
                        r"\(400000000 pixels\) exceeds limit .*\); MINT decodes images of at most 67108864 pixels",
                        _photo("bomb.png", _png_claiming(20_000)))),
    Bad("image: patch a decompression bomb above Pillow's warning limit", "image", "build_cohort",
        tissue_row(PATCH + r"patches/bomb.png: refused as a possible decompression bomb \(Image size "
                   r"\(100000000 pixels\) exceeds limit", setup=_patch("bomb.png", _png_claiming(10_000)))),
    Bad("image: patch above MINT's pixel limit", "image", "build_cohort",
        tissue_row(PATCH + r"patches/huge.png: 8200x8200 px is 67240000 pixels, more than the 67108864 MINT "
                   r"decodes", setup=_patch("huge.png", _png_claiming(8200)))),
    Bad("image: patch path a FIFO", "image", "build_cohort",
        tissue_row(PATCH + r"patches/pipe.png: the image is a FIFO \(named pipe\), not a regular file",
                   setup=_patch("pipe.png", os.mkfifo))),
    Bad("image: patch path a directory", "image", "build_cohort",
        tissue_row(PATCH + r"patches/folder.png: the image is a folder, not a regular file",
                   setup=_patch("folder.png", Path.mkdir))),
    Bad("image: patch 16-bit PNG, truncated", "image", "build_cohort",
        tissue_row(PATCH + r"patches/cut16.png: not a readable image",
                   setup=_patch("cut16.png", lambda p: _grey16(p, truncate=True)))),
    Bad("image: patch 16-bit PNG of another size", "image", "build_cohort",
        tissue_row(PATCH + r"image patches/big16.png is 48x48 px; all patches must share one size",
                   setup=_patch("big16.png", lambda p: _grey16(p, side=48)))),
    Bad("image: patch float TIFF outside [0, 1]", "image", "build_cohort",
        tissue_row(PATCH + r"patches/raw.tif: mode F \(float\) image with values 0 to 4095; float images must "
                   r"lie in \[0, 1\]", setup=_patch("raw.tif", _array_tif(np.linspace(0, 4095, 1024).reshape(32, 32),
                                                                         "F")))),
]
# ---- config and recipe values checked by type and range
# Config: JSON schema's types, strictly (mint.core.config): no 2.0 for an integer, no boolean for a number, no NaN.
BAD += [
    Bad("config: preferences.k 2.0 (a float for an integer)", "config", START_UP,
        config_row({"preferences": {"k": 2.0}}, pattern=r"config.yaml: invalid value at config key 'preferences.k': "
                   r"2.0 is not of type 'integer' \(expected a whole number: write 2\)")),
    Bad("config: seed 7.0 (folders would be named seed7.0)", "config", START_UP,
        config_row({"seed": 7.0}, pattern=r"config key 'seed': 7.0 is not of type 'integer'")),
    Bad("config: negative seed", "config", START_UP,
        config_row({"seed": -1}, pattern=r"config key 'seed': -1 is less than the minimum of 0")),
    Bad("config: a training seed 1.0", "config", START_UP,
        config_row({"training": {"seeds": [1.0, 2]}}, pattern=r"'training.seeds.0': 1.0 is not of type 'integer'")),
    Bad("config: evaluation.ks empty", "config", START_UP,
        config_row({"evaluation": {"ks": []}}, pattern=r"'evaluation.ks': \[\] should be non-empty")),
    Bad("config: evaluation.ks with a k twice", "config", START_UP,
        config_row({"evaluation": {"ks": [1, 1]}}, pattern=r"'evaluation.ks': \[1, 1\] has non-unique elements")),
    Bad("config: an integer given as text", "config", START_UP,
        config_row({"evaluation": {"batch_size": "64"}},
                   pattern=r"'evaluation.batch_size': '64' is not of type 'integer' \(.*remove the quotes\)")),
    Bad("config: k: yes (YAML's boolean for an integer)", "config", START_UP,
        config_row(text="preferences:\n  k: yes\n",
                   pattern=r"'preferences.k': True is not of type 'integer' \(YAML reads yes/no")),
    Bad("config: preferences.mass .nan", "config", START_UP,
        config_row(text="preferences:\n  chosen: mass\n  mass: .nan\n",
                   pattern=r"'preferences.mass': nan is not of type 'number' \(expected a finite number\)")),
    Bad("config: teacher.learning_rate 1e-3 (text to YAML)", "config", START_UP,
        config_row(text="teacher:\n  learning_rate: 1e-3\n", pattern=r"'teacher.learning_rate': '1e-3' is not of "
                   r"type 'number' \(YAML reads 1e-3 as text: write 1.0e-3\)")),
    Bad("config: a PanNuke fold 1.0", "config", START_UP,
        config_row({"application": "tissue", "cohort": {"pannuke": {"folds": {"train": [1.0]}}}},
                   pattern=r"'cohort.pannuke.folds.train.0': 1.0 is not of type 'integer'")),
]
# Recipes: `args` against the option types of the method's TRL config class (mint.core.recipe_args) and the ranges
# TRL leaves unchecked; the other keys by value. A number YAML reads as text (5e-5) is converted (test_recipes.py).
BAD += [
    Bad("recipe: learning_rate not a number", "recipe", START_UP,
        recipe_row("sft", "method: sft\nargs:\n  learning_rate: fast\n",
                   r"sft.yaml: recipe key 'args.learning_rate' must be a number, got 'fast'")),
    Bad("recipe: learning_rate .nan", "recipe", START_UP,
        recipe_row("sft", "method: sft\nargs:\n  learning_rate: .nan\n",
                   r"sft.yaml: recipe key 'args.learning_rate' must be a finite number, got nan")),
    Bad("recipe: learning_rate .inf", "recipe", START_UP,
        recipe_row("orpo", "method: orpo\nargs:\n  learning_rate: .inf\n",
                   r"orpo.yaml: recipe key 'args.learning_rate' must be a finite number, got inf")),
    Bad("recipe: learning_rate 0", "recipe", START_UP,
        recipe_row("sft", "method: sft\nargs:\n  learning_rate: 0\n",
                   r"sft.yaml: recipe key 'args.learning_rate' must be a number > 0, got 0")),
    Bad("recipe: negative learning_rate", "recipe", START_UP,
        recipe_row("dpo", "method: dpo\ninit: sft\nargs:\n  learning_rate: -1.0e-5\n",
                   r"dpo.yaml: recipe key 'args.learning_rate' must be a number > 0, got -1e-05")),
    Bad("recipe: per_device_train_batch_size 0", "recipe", START_UP,
        recipe_row("sft", "method: sft\nargs:\n  per_device_train_batch_size: 0\n",
                   r"sft.yaml: recipe key 'args.per_device_train_batch_size' must be an integer >= 1, got 0")),
    Bad("recipe: per_device_train_batch_size 16.0", "recipe", START_UP,
        recipe_row("sft", "method: sft\nargs:\n  per_device_train_batch_size: 16.0\n",
                   r"'args.per_device_train_batch_size' must be an integer \(a whole number.*got 16.0")),
    Bad("recipe: per_device_train_batch_size yes", "recipe", START_UP,
        recipe_row("sft", "method: sft\nargs:\n  per_device_train_batch_size: yes\n",
                   r"'args.per_device_train_batch_size' must be an integer, got True")),
    Bad("recipe: gradient_accumulation_steps 0", "recipe", START_UP,
        recipe_row("orpo", "method: orpo\nargs:\n  gradient_accumulation_steps: 0\n",
                   r"orpo.yaml: recipe key 'args.gradient_accumulation_steps' must be an integer >= 1, got 0")),
    Bad("recipe: num_train_epochs 0", "recipe", START_UP,
        recipe_row("sft", "method: sft\nargs:\n  num_train_epochs: 0\n",
                   r"sft.yaml: recipe key 'args.num_train_epochs' must be a number > 0, got 0")),
    Bad("recipe: num_train_epochs as a word", "recipe", START_UP,
        recipe_row("sft", "method: sft\nargs:\n  num_train_epochs: three\n",
                   r"sft.yaml: recipe key 'args.num_train_epochs' must be a number, got 'three'")),
    Bad("recipe: max_steps 2.5", "recipe", START_UP,
        recipe_row("sft", "method: sft\nargs:\n  max_steps: 2.5\n",
                   r"sft.yaml: recipe key 'args.max_steps' must be an integer .*got 2.5")),
    Bad("recipe: bf16 maybe", "recipe", START_UP,
        recipe_row("orpo", "method: orpo\nargs:\n  bf16: maybe\n",
                   r"orpo.yaml: recipe key 'args.bf16' must be true or false or null, got 'maybe'")),
    Bad("recipe: a negative seed", "recipe", START_UP,
        recipe_row("sft", "method: sft\nargs:\n  seed: -1\n",
                   r"sft.yaml: recipe key 'args.seed' must be an integer from 0 to 4294967295, got -1")),
    Bad("recipe: an option TRL's config does not have", "recipe", START_UP,
        recipe_row("sft", "method: sft\nargs:\n  learning_rat: 0.1\n",
                   r"sft.yaml: recipe 'args' key\(s\) \['learning_rat'\] are not options of TRL's SFTConfig "
                   r"\('learning_rat': did you mean 'learning_rate'\?\)")),
    Bad("recipe: args a list", "recipe", START_UP,
        recipe_row("sft", "method: sft\nargs: [1, 2]\n", r"sft.yaml: recipe key 'args' must be a mapping")),
    Bad("recipe: dtype not a float type", "recipe", START_UP,
        recipe_row("sft", "method: sft\ndtype: int8\n", r"sft.yaml: recipe key 'dtype' must be one of .*'int8'")),
    Bad("recipe: nll neither completion nor full", "recipe", START_UP,
        recipe_row("orpo", "method: orpo\nnll: prompt\n", r"orpo.yaml: recipe key 'nll' must be 'completion' or "
                   r"'full'")),
]
# ---- inputs that could hang or flood a step; degenerate data
BAD += [
    # Only regular files are read (mint.core.io.require_regular_file, before anything opens them): a FIFO would
    # block the step for ever, a link to a device would read without end.
    Bad("manifest: a FIFO", "manifest", "build_cohort",
        special_row(lambda wd: rd_build(wd, "manifest", path=str(_fifo(_mk(wd / "data") / "manifest.csv"))),
                    r"manifest.csv: the manifest is a FIFO \(named pipe\), not a regular file")),
    Bad("manifest: a link to /dev/zero", "manifest", "build_cohort",
        special_row(lambda wd: rd_build(wd, "manifest", path=str(_zero_link(_mk(wd / "data") / "manifest.csv"))),
                    r"manifest.csv: the manifest is a character device \(a link to /dev/zero\), not a regular file")),
    Bad("manifest: a FIFO named in the config", "manifest", START_UP,
        special_row(lambda wd: start_up(config(wd, {"cohort": {"source": "manifest", "manifest": {
            "path": str(_fifo(_mk(wd / "data") / "manifest.csv"))}}})), r"manifest.csv: the manifest is a FIFO")),
    Bad("config: the config file a FIFO", "config", START_UP,
        special_row(lambda wd: start_up(_fifo(wd / "config.yaml")), r"config.yaml: the YAML file is a FIFO")),
    Bad("ranking: teacher.rankings a FIFO, at start-up", "ranking", START_UP,
        special_row(lambda wd: start_up(config(wd, {"teacher": {"rankings": str(_fifo(wd / "external.parquet"))}})),
                    r"external.parquet: the rankings file \(config key 'teacher.rankings'\) is a FIFO")),
    Bad("ranking: rankings file a FIFO", "ranking", "import_rankings",
        ranking_row(r"external.parquet: the rankings file \(config key 'teacher.rankings'\) is a FIFO", special=_fifo)),
    Bad("phenopacket: a FIFO among the JSON files", "phenopacket", "build_cohort",
        pp_row(r"b.json: the phenopacket is a FIFO \(named pipe\), not a regular file", special={"b.json": _fifo})),
    Bad("phenopacket: a link to /dev/zero among the JSON files", "phenopacket", "build_cohort",
        pp_row(r"b.json: the phenopacket is a character device \(a link to /dev/zero\)",
               special={"b.json": _zero_link})),
    Bad("phenopacket: the flat file a FIFO", "phenopacket", "build_cohort",
        special_row(lambda wd: rd_build(wd, "phenopacket", path=str(_fifo(_mk(wd / "data") / "cases.parquet"))),
                    r"cases.parquet: the phenopacket table is a FIFO")),
    Bad("panel: a FIFO", "panel", "build_cohort",
        pp_row(r"panel.tsv: the panel is a FIFO \(named pipe\)", panel=_fifo)),
    Bad("tissue manifest: a FIFO", "manifest", "build_cohort",
        special_row(lambda wd: tissue_build(wd, _fifo(_mk(wd / "patches") / "manifest.csv")),
                    r"manifest.csv: the manifest is a FIFO \(named pipe\)")),
    Bad("tissue manifest: a mask that links to /dev/zero", "manifest", "build_cohort",
        tissue_row(r"line 3 \(case_id 'p1'\): .*zero.npy: the .npy array is a character device \(a link to /dev/zero\)",
                   setup=lambda wd: (_zero_link(_mk(wd / "patches") / "zero.npy"), {"mask_path": "zero.npy"})[1])),
    Bad("image: a PanNuke fold's images.npy a link to /dev/zero", "image", "build_cohort",
        special_row(_pannuke_zero, r"images.npy: the .npy array is a character device \(a link to /dev/zero\)")),
    # Stated limits (mint.core.io, phenopackets.MAX_PHENOPACKET_BYTES, mint.core.cohort.MAX_TEXT_CHARS).
    Bad("phenopacket: JSON nested 10,001 deep", "phenopacket", "build_cohort",
        pp_row(r"a.json: JSON nested 10001 levels deep; at most 64 are read",
               {"a.json": '{"id": "pa", "x": ' + "[" * 10_000 + "]" * 10_000 + "}"})),
    Bad("phenopacket: a file over 50 MB", "phenopacket", "build_cohort",
        pp_row(r"b.json: the phenopacket is 50,000,001 bytes, more than the 50,000,000 read at most",
               special={"b.json": lambda path: _sparse(path, 50_000_001)})),
    Bad("manifest: a note over 100,000 characters", "manifest", "build_cohort",
        rd_manifest_row(r"row 4 \(case_id 'p2'\): the note has 100,001 characters, more than the 100,000",
                        {"note": "x" * 100_001})),
    # Degenerate data.
    Bad("manifest: a note of zero-width spaces, BOM and soft hyphen only", "manifest", "build_cohort",
        rd_manifest_row(r"row 4 \(case_id 'p2'\): empty note \(only whitespace or invisible characters",
                        {"note": "\u200b\ufeff\u00ad\u200b"})),
    Bad("manifest: a note of no-break, ideographic spaces and a word joiner only", "manifest", "build_cohort",
        rd_manifest_row(r"row 4 \(case_id 'p2'\): empty note", {"note": "\u00a0\u3000\u2060\u2028"})),
    Bad("manifest: a column twice", "manifest", "build_cohort",
        rd_manifest_row(r"manifest.csv: the manifest has column 'note' 2 times; each column must appear once",
                        raw=b"case_id,note,image_path,disease_id,note\np0,a,face.png,OMIM:100001,b\n")),
    Bad("tissue manifest: a column twice", "manifest", "build_cohort",
        tissue_row(r"manifest.csv: the manifest has column 'tissue' 2 times", raw=b"image_path,tissue,tissue\n"
                   b"p0.png,Lung,Skin\n")),
    Bad("panel: a column twice", "panel", "build_cohort",
        pp_row(r"panel.tsv: the panel has column 'name' 2 times", panel="disease_id\tname\tname\nOMIM:100001\tA\tB\n")),
    Bad("manifest: no training case (every case given test)", "manifest", "build_cohort",
        rd_manifest_row(r"the manifest cases: no training case among the 6 kept \(\{'test': 6\}\)",
                        rows=lambda: [dict(r, split="test") for r in rd_rows()])),
    Bad("phenopacket: every case excluded", "phenopacket", "build_cohort",
        pp_row(r"'cohort.phenopacket.path': .*phenopackets: no case kept \(2 read, 2 excluded: "
               r"\{'no_diagnosis': 1, 'unknown_hpo_id': 1\}\)",
               {"a.json": json.dumps({"id": "pa", "subject": {"id": "s"}, "metaData": {},
                                      "phenotypicFeatures": [{"type": {"id": "HP:0000001", "label": "All"}}]}),
                "b.json": packet("pb").replace("HP:0000001", "HP:9999999")})),
    Bad("ranking: a case whose labels all tie", "ranking", "import_rankings",
        ranking_row(r"external.parquet: case 'c1' gives all its 3 labels the same score \(0.5\), a ranking that "
                    "prefers none", lambda: ranks(*FULL, [0.5, 0.5, 0.5, 0.8, 0.3, 0.2]))),
    Bad("ranking: the cohort's cases.parquet truncated (an intermediate)", "ranking", "import_rankings",
        ranking_row(r"cohort/cases.parquet: not a readable Parquet file, truncated or corrupt", with_score(0, 0.95),
                    damage=lambda paths: _truncate(paths["cases"]))),
]


def _mk(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _save_patch(path: Path) -> None:
    Image.new("RGB", (32, 32), (200, 100, 150)).save(_mk(path.parent) / path.name)


# ---------------------------------------------------------------- accepted by design

@dataclass(frozen=True)
class Accepted:
    name: str
    reason: str
    make: Callable[[Path], Callable[[], object]]


def _absolute_allowed(wd: Path):
    outside = outside_file(wd, "p1.png")
    Image.new("RGB", (32, 32)).save(outside)
    return tissue_build(wd, tissue_manifest(wd, {"image_path": str(outside)}), allow_absolute=True)


def _symlink_inside(wd: Path):
    outside = outside_file(wd, "linked.png")
    path = rd_manifest(wd, change={"image_path": "linked.png"})
    (path.parent / "linked.png").symlink_to(outside)
    return rd_build(wd, "manifest", path=str(path))


def _double_dot_inside(wd: Path):
    path = rd_manifest(wd, change={"image_path": "sub/../face.png"})
    (path.parent / "sub").mkdir()
    return rd_build(wd, "manifest", path=str(path))


ACCEPTED = [
    Accepted("absolute image path with cohort.allow_absolute_paths: true",
             "the user allowed it by name; images are read, and copies are still written inside the run",
             _absolute_allowed),
    Accepted("a symbolic link inside the manifest's folder that points elsewhere",
             "the user made the link (data on another disk); the check is lexical, reads follow the link",
             _symlink_inside),
    Accepted("an image path with '..' that stays inside the folder ('sub/../face.png')",
             "it names a file inside the folder", _double_dot_inside),
]
# Refused later than start-up although the input is given then, and why (docs/usage.md lists them too):
LATER = {
    "k + q above the diseases of a folder of phenopackets when no panel file is given":
        "the panel is the cases' diseases, known once every JSON file is read: build_preferences names "
        "'preferences.k', 'preferences.q'",
    "a YAML syntax error in a file given to `snakemake --configfile`":
        "Snakemake parses it before the workflow loads and names no line; `python -m mint.core.config FILE` does",
}


# ---------------------------------------------------------------- the tests


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.fixture
def work(tmp_path, monkeypatch):
    """`work/` (the working directory, with the tiny recipes) beside an empty `outside/`."""
    wd, outside = tmp_path / "work", tmp_path / "outside"
    wd.mkdir()
    outside.mkdir()
    shutil.copytree(REPO / "config/rare_disease/recipes/tiny", wd / "config/rare_disease/recipes/tiny")
    monkeypatch.chdir(wd)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return wd


def test_the_matrix_is_big_and_distinct():
    assert len(BAD) >= 40
    assert len({b.name for b in BAD}) == len(BAD)
    assert {b.kind for b in BAD} >= {"config", "recipe", "manifest", "image", "phenopacket", "ranking", "panel"}


@pytest.mark.parametrize("bad", BAD, ids=[b.name for b in BAD])
def test_a_bad_input_is_refused_named_and_leaves_nothing(work, bad):
    run, pattern = bad.make(work)
    before = files_under(work.parent)
    with pytest.raises(MintError, match=pattern):
        run()
    assert files_under(work.parent) == before  # no output, no temporary file, nothing outside


@pytest.mark.parametrize("ok", ACCEPTED, ids=[a.name for a in ACCEPTED])
def test_accepted_by_design(work, ok):
    ok.make(work)()
    written = files_under(work / "results")
    assert "cohort/cases.parquet" in written
    assert not [f for f in files_under(work.parent / "outside") if f not in ("outside.png", "p1.png", "linked.png")]


def test_an_escaping_id_writes_nothing_outside(work):
    """The attack of the issue: a case id that climbs out of the run's folder, in both applications."""
    for make in (rd_manifest_row("cannot name a file", {"case_id": "../../../outside/pwned"}),
                 tissue_row("cannot name a file", {"case_id": "../../../outside/pwned"})):
        run, pattern = make(work)
        with pytest.raises(MintError, match=pattern):
            run()
    assert not any((work.parent / "outside").iterdir())
    assert not [p for p in work.rglob(".*")]  # no temporary folder left either


def test_the_docs_count_the_matrix():
    """docs/usage.md's "What is checked" states the numbers this module holds."""
    text = " ".join((REPO / "docs/usage.md").read_text().split())
    start = sum(b.stage == START_UP for b in BAD)
    assert f"{len(BAD)} bad inputs" in text
    assert f"{start} refused at start-up" in text
    assert f"{len(BAD) - start} refused by the step that reads them" in text
    assert f"{len(ACCEPTED)} accepted by design" in text


def test_k_plus_q_above_a_panel_known_late_is_refused_by_preferences():
    """LATER's first row: without a panel file the panel is the cases' diseases; preferences name the keys."""
    from mint.core.preferences import pick_lists

    assert "preferences.k" in LATER[next(iter(LATER))]
    with pytest.raises(MintError, match=r"2 candidates are too few for k=3 \+ q=3 .*'preferences.k', 'preferences.q'"):
        pick_lists(["d1", "d2"], "d1", 3, 3, "bottom", False)


def _dry_run_refuses(folder: Path, config_text: str) -> str:
    """`snakemake -n` in `folder` with `config_text` as `c.yaml`: it fails and creates no results; its output."""
    cfg = folder / "c.yaml"
    cfg.write_text(config_text)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
                          "--directory", str(folder), "--configfile", str(cfg)],
                         capture_output=True, text=True, env=env, cwd=folder, timeout=300)
    assert res.returncode != 0
    assert not (folder / "results").exists()
    return res.stdout + res.stderr


@pytest.mark.slow
def test_a_dry_run_refuses_k_plus_q_above_the_panel(tmp_path):
    """End to end: `snakemake -n` stops at start-up, naming the keys, and creates nothing."""
    message = _dry_run_refuses(tmp_path, "cohort:\n  simulated:\n    n_diseases: 4\n")
    assert "'preferences.k' + 'preferences.q' = 3 + 3 = 6, more than the 4" in message


@pytest.mark.slow
def test_a_dry_run_refuses_a_float_seed_naming_the_file_that_set_it(tmp_path):
    """End to end: `snakemake -n` stops at start-up on `seed: 7.0`, naming the key and the --configfile."""
    message = _dry_run_refuses(tmp_path, "seed: 7.0\n")
    assert f"config key 'seed' (set in {tmp_path / 'c.yaml'}): 7.0 is not of type 'integer'" in message


class _Payload:
    """Stands for any pickled object: loading it could run code."""


def test_a_teacher_checkpoint_that_needs_pickle_is_refused(tmp_path):
    """Both teachers load with `load_checkpoint` (weights_only=True): arrays and tensors load, objects do not."""
    import torch

    from mint.core.io import load_checkpoint

    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "labels": ["a"], "statistics": {"mean": np.ones(3, np.float32)}},
               good)
    assert load_checkpoint(good)["statistics"]["mean"].tolist() == [1.0, 1.0, 1.0]
    torch.save({"state_dict": {}, "extra": _Payload()}, bad)
    with pytest.raises(MintError, match=r"bad.pt: not a checkpoint that loads with weights_only=True"):
        load_checkpoint(bad)
