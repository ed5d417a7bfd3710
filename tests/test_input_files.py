"""The files a step reads by a config path (`Application.input_files`) and their fingerprints
(`mint.core.fingerprint`): each application lists exactly the files its cohort step opens, and the
fingerprint moves with every edit of one of them and with nothing else.

    .venv/bin/python -m pytest -q tests/test_input_files.py
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from mint.apps.tissue.cohort import build_cohort as build_tissue_cohort
from mint.core.app import load_application
from mint.core.config import validate_config
from mint.core.fingerprint import fingerprint_files
from mint.core.io import MintError
from mint.core.paths import resolve_inside
from tests.test_tissue_ingest import write_fold, write_patches

RARE = load_application("rare_disease")
TISSUE = load_application("tissue")
DISEASE = "OMIM:163950"  # any id for the hook, which reads paths, not diseases

# ------------------------------------------------------------------ which files a step opens

_opened: list[str] | None = None
_hooked = False


def _record_open(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, os.PathLike)):
        _opened.append(os.fspath(args[0]))


@contextmanager
def opened_files(folder: Path):
    """The real paths of the files below `folder` that Python opens inside the block (audit event `open`:
    builtins.open, os.open, and the libraries that use them: PIL, numpy, shutil). A table polars reads in
    its own code (a Parquet file) opens no Python file and is not seen."""
    global _opened, _hooked
    if not _hooked:  # an audit hook cannot be removed: one for the session, idle outside this block
        sys.addaudithook(_record_open)
        _hooked = True
    seen: set[str] = set()
    _opened = []
    try:
        yield seen
    finally:
        root = os.path.realpath(folder) + os.sep
        seen.update(p for p in map(os.path.realpath, _opened) if p.startswith(root) and os.path.isfile(p))
        _opened = None


def real(paths) -> set[str]:
    return {os.path.realpath(p) for p in paths}


def listed(app, config) -> set[str]:
    return real(f for files in app.input_files(config).values() for f in files)


def fingerprints(app, config, **kwargs) -> dict[str, str]:
    """Each key's fingerprint, as the rules take them."""
    return {key: fingerprint_files(files, key=key, **kwargs) for key, files in app.input_files(config).items()}


def later(path: Path, seconds: float = 2.0) -> None:
    """Move `path`'s modification time on, as an edit some time after the last run leaves it."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + int(seconds * 1e9)))


# ------------------------------------------------------------------ fingerprint_files


def test_a_fingerprint_is_16_hex_and_does_not_depend_on_the_order_given(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.bin"
    a.write_text("one")
    b.write_bytes(b"two")
    fp = fingerprint_files([a, b])
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fingerprint_files([str(b), str(a)]) == fp
    assert fingerprint_files([a]) != fp


def test_a_small_file_is_read_so_an_edit_that_keeps_size_and_time_is_seen(tmp_path):
    f = tmp_path / "mask.npy"
    f.write_bytes(b"abcd")
    st = f.stat()
    before = fingerprint_files([f])
    f.write_bytes(b"abce")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint_files([f]) != before
    f.write_bytes(b"abcd")
    later(f)  # touched, same bytes: nothing to rerun
    assert fingerprint_files([f]) == before


def test_a_large_file_is_never_read_and_its_size_and_time_count(tmp_path):
    big = tmp_path / "images.npy"
    big.write_bytes(b"x" * 100)
    with opened_files(tmp_path) as seen:
        before = fingerprint_files([big], content_limit=10)
    assert not seen
    later(big)
    moved = fingerprint_files([big], content_limit=10)
    assert moved != before
    # The price of never reading it: new bytes of the same size under the old time go unseen.
    st = big.stat()
    big.write_bytes(b"y" * 100)
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint_files([big], content_limit=10) == moved
    big.write_bytes(b"y" * 101)
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint_files([big], content_limit=10) != moved


def test_a_table_is_read_whatever_its_size(tmp_path):
    table = tmp_path / "manifest.csv"
    table.write_text("case_id,image_path\np1,a.png\n")
    before = fingerprint_files([table], content_limit=0)
    later(table)
    assert fingerprint_files([table], content_limit=0) == before
    table.write_text("case_id,image_path\np1,b.png\n")
    assert fingerprint_files([table], content_limit=0) != before


def test_a_folder_is_every_file_below_it(tmp_path):
    folder = tmp_path / "packets"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.json").write_text("{}")
    (folder / "sub" / "b.json").write_text("{}")
    before = fingerprint_files([folder])
    assert before == fingerprint_files([folder / "a.json", folder / "sub" / "b.json"])
    (folder / "sub" / "c.json").write_text("{}")
    assert fingerprint_files([folder]) != before
    (folder / "sub" / "c.json").unlink()
    (folder / "sub" / "b.json").rename(folder / "sub" / "d.json")  # the same bytes under another name
    assert fingerprint_files([folder]) != before


def test_a_missing_file_names_the_file_and_the_key(tmp_path):
    with pytest.raises(MintError, match=r"config key 'cohort.manifest.images': file not found: .*gone\.png"):
        fingerprint_files([tmp_path / "gone.png"], key="cohort.manifest.images")


def test_a_path_relative_to_the_working_directory_cannot_climb_out_of_it():
    """`resolve_inside` on strings (fast enough for a 100,000-row manifest at every start) keeps `..` out,
    also for a manifest in the working directory, whose folder is '.'."""
    assert resolve_inside("photos/p0.png", ".", "m.csv row 2") == Path("photos/p0.png")
    assert resolve_inside("sub/../p0.png", "data", "m.csv row 2") == Path("data/sub/../p0.png")
    for rel, base in (("../x.png", "."), ("sub/../../x.png", ""), ("..", "."), ("../data2/x.png", "data"),
                      (".", "data")):
        with pytest.raises(MintError, match=r"m.csv row 2: path .* is not inside the folder"):
            resolve_inside(rel, base, "m.csv row 2")


# ------------------------------------------------------------------ rare disease


def write_rd_manifest(folder: Path, n: int = 4, diseases=(DISEASE,), image_root: Path | None = None) -> Path:
    """A rare-disease manifest of `n` cases, each with its own photo (in `image_root`, default beside it)."""
    root = image_root or folder
    folder.mkdir(parents=True, exist_ok=True)
    (root / "photos").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        Image.new("L", (64, 64), 40 + 10 * i).save(root / "photos" / f"p{i}.png")
        rows.append({"case_id": f"p{i}", "note": f"A {i + 2}-year-old with seizures.",
                     "image_path": f"photos/p{i}.png", "disease_id": diseases[i % len(diseases)]})
    path = folder / "manifest.csv"
    pl.DataFrame(rows).write_csv(path)
    return path


def rd_manifest_config(path: Path, image_root: Path | None = None) -> dict:
    manifest = {"path": str(path), **({"image_root": str(image_root)} if image_root else {})}
    return validate_config({"cohort": {"source": "manifest", "manifest": manifest}})


def rd_phenopacket_config(path: Path, panel: Path | None) -> dict:
    return validate_config({"cohort": {"source": "phenopacket", "split": {"validation": 0.2, "test": 0.3},
                                       "phenopacket": {"path": str(path), "panel": str(panel) if panel else None}}})


def test_a_simulated_cohort_reads_no_file_by_a_config_path():
    assert RARE.input_files(validate_config({})) == {}
    assert TISSUE.input_files(validate_config({"application": "tissue"})) == {}


def test_a_rare_disease_manifest_lists_itself_and_each_row_s_photo(tmp_path):
    path = write_rd_manifest(tmp_path)
    files = RARE.input_files(rd_manifest_config(path))
    assert files == {"cohort.manifest.path": [path],
                     "cohort.manifest.images": [tmp_path / "photos" / f"p{i}.png" for i in range(4)]}
    # With an image root, relative paths start there, as the cohort step resolves them.
    elsewhere = tmp_path / "store"
    path = write_rd_manifest(tmp_path / "lists", image_root=elsewhere)
    files = RARE.input_files(rd_manifest_config(path, image_root=elsewhere))
    assert files["cohort.manifest.images"] == [elsewhere / "photos" / f"p{i}.png" for i in range(4)]


def test_a_rare_disease_manifest_row_that_leaves_its_folder_is_named(tmp_path):
    path = write_rd_manifest(tmp_path)
    pl.read_csv(path).with_columns(image_path=pl.Series(["photos/p0.png", "../x.png", "a.png", "b.png"])).write_csv(
        path)
    with pytest.raises(MintError, match=r"manifest.csv row 3 \(case_id 'p1'\): image_path: path '../x.png' is not "
                                        r"inside"):
        RARE.input_files(rd_manifest_config(path))


@pytest.mark.parametrize("content_limit", [1 << 20, 0])
def test_rare_disease_manifest_fingerprints_follow_each_edit(tmp_path, content_limit):
    path = write_rd_manifest(tmp_path)
    config = rd_manifest_config(path)
    before = fingerprints(RARE, config, content_limit=content_limit)
    # An unrelated file beside them changes nothing.
    (tmp_path / "notes.txt").write_text("a lab's own notes")
    (tmp_path / "photos" / "unused.png").write_bytes(b"not listed")
    assert fingerprints(RARE, config, content_limit=content_limit) == before
    # A photo replaced (new bytes, same name): its group moves, the manifest's does not.
    Image.new("L", (64, 64), 250).save(tmp_path / "photos" / "p2.png")
    later(tmp_path / "photos" / "p2.png")
    after = fingerprints(RARE, config, content_limit=content_limit)
    assert after["cohort.manifest.images"] != before["cohort.manifest.images"]
    assert after["cohort.manifest.path"] == before["cohort.manifest.path"]
    # A row added: both move.
    Image.new("L", (64, 64), 10).save(tmp_path / "photos" / "p9.png")
    table = pl.read_csv(path)
    pl.concat([table, table.head(1).with_columns(case_id=pl.lit("p9"), image_path=pl.lit("photos/p9.png"))]
              ).write_csv(path)
    added = fingerprints(RARE, config, content_limit=content_limit)
    assert all(added[k] != after[k] for k in after)


def copy_json_folder(phenopacket_store: Path, folder: Path) -> Path:
    shutil.copytree(phenopacket_store / "json-examples", folder)
    return folder


def test_a_phenopacket_folder_lists_its_json_files_and_the_panel(phenopacket_store, tmp_path):
    folder = copy_json_folder(phenopacket_store, tmp_path / "packets")
    panel = phenopacket_store / "diseases.tsv"
    (folder / "README.md").write_text("where these came from")
    files = RARE.input_files(rd_phenopacket_config(folder, panel))
    assert files == {"cohort.phenopacket.path": sorted(folder.glob("*.json")), "cohort.phenopacket.panel": [panel]}
    flat = phenopacket_store / "cases.parquet"
    assert RARE.input_files(rd_phenopacket_config(flat, None)) == {"cohort.phenopacket.path": [flat]}


def test_phenopacket_folder_fingerprints_follow_each_edit(phenopacket_store, tmp_path):
    folder = copy_json_folder(phenopacket_store, tmp_path / "packets")
    panel = tmp_path / "diseases.tsv"
    shutil.copyfile(phenopacket_store / "diseases.tsv", panel)
    config = rd_phenopacket_config(folder, panel)
    before = fingerprints(RARE, config)
    (folder / "README.md").write_text("not a phenopacket: the step does not read it")
    (tmp_path / "other.tsv").write_text("disease_id\tname\n")
    assert fingerprints(RARE, config) == before
    packet = sorted(folder.glob("*.json"))[0]
    text = packet.read_text()
    packet.write_text(text.replace("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"))  # same size
    assert packet.read_text() != text
    edited = fingerprints(RARE, config)
    assert edited["cohort.phenopacket.path"] != before["cohort.phenopacket.path"]
    assert edited["cohort.phenopacket.panel"] == before["cohort.phenopacket.panel"]
    shutil.copyfile(packet, folder / "another.json")
    assert fingerprints(RARE, config)["cohort.phenopacket.path"] != edited["cohort.phenopacket.path"]
    panel.write_text(panel.read_text() + "OMIM:100100\tAnother disease\n")
    assert fingerprints(RARE, config)["cohort.phenopacket.panel"] != before["cohort.phenopacket.panel"]


def test_a_flat_phenopacket_file_fingerprint_follows_a_row_added(phenopacket_store, tmp_path):
    flat = tmp_path / "cases.parquet"
    table = pl.read_parquet(phenopacket_store / "cases.parquet")
    table.write_parquet(flat)
    config = rd_phenopacket_config(flat, None)
    before = fingerprints(RARE, config)
    (tmp_path / "cases.parquet.bak").write_bytes(flat.read_bytes())
    assert fingerprints(RARE, config) == before
    pl.concat([table, table.head(1).with_columns(case_id=pl.lit("Another_1"))]).write_parquet(flat)
    assert fingerprints(RARE, config) != before


# ------------------------------------------------------------------ rare disease: what the step opens


def build_rd(config, knowledge_dir, out):
    from tests.test_cohort import build

    out.mkdir(parents=True, exist_ok=True)
    return build(config, knowledge_dir, out)


@pytest.mark.slow
def test_the_rare_disease_manifest_step_opens_exactly_the_listed_files(knowledge_dir, tmp_path):
    from mint.apps.rare_disease.knowledge import knowledge_files

    diseases = pl.read_parquet(knowledge_files(knowledge_dir)["diseases"])["disease_id"].head(2).to_list()
    data = tmp_path / "data"
    path = write_rd_manifest(data, n=12, diseases=diseases)
    (data / "photos" / "unused.png").write_bytes(b"beside them")
    config = rd_manifest_config(path)
    with opened_files(data) as seen:
        build_rd(config, knowledge_dir, tmp_path / "out")
    assert seen == listed(RARE, config) and len(seen) == 13


@pytest.mark.slow
def test_the_phenopacket_step_opens_exactly_the_listed_files(phenopacket_store, knowledge_dir, tmp_path):
    data = tmp_path / "data"
    folder = copy_json_folder(phenopacket_store, data / "packets")
    (folder / "README.md").write_text("beside them")
    panel = data / "diseases.tsv"
    shutil.copyfile(phenopacket_store / "diseases.tsv", panel)
    config = rd_phenopacket_config(folder, panel)
    with opened_files(data) as seen:
        build_rd(config, knowledge_dir, tmp_path / "json")
    assert seen == listed(RARE, config)
    # The flat file: polars reads the Parquet in its own code (no Python open), so only the panel is seen.
    flat = data / "cases.parquet"
    shutil.copyfile(phenopacket_store / "cases.parquet", flat)
    config = rd_phenopacket_config(flat, panel)
    with opened_files(data) as seen:
        build_rd(config, knowledge_dir, tmp_path / "flat")
    assert seen == listed(RARE, config) - real([flat]) and real([flat]) <= listed(RARE, config)


# ------------------------------------------------------------------ tissue


def tissue_config(cohort: dict) -> dict:
    return validate_config({"application": "tissue", "cohort": cohort})


def build_tissue(config, out: Path) -> None:
    build_tissue_cohort(**{f"{t}_path": out / f"{t}.parquet" for t in ("cases", "candidates", "excluded", "nuclei")},
                        images_dir=out / "images", cohort=config["cohort"], seed=config["seed"])


@pytest.mark.parametrize("as_folder", [False, True])
def test_the_tissue_manifest_step_opens_exactly_the_listed_files(tmp_path, as_folder):
    data = tmp_path / "data"
    manifest = write_patches(data, tissues=("Colon", "liver", "HeadNeck", "Skin"))
    table = pl.read_csv(manifest).with_columns(mask_path=pl.Series(["p0_mask.npy", None, "p2_mask.npy", None]))
    table.write_csv(manifest)
    (data / "p1_mask.npy").write_bytes(b"a mask no row names")
    config = tissue_config({"source": "manifest", "manifest": {"path": str(data if as_folder else manifest)}})
    files = TISSUE.input_files(config)
    assert files == {"cohort.manifest.path": [manifest],
                     "cohort.manifest.images": [data / "p0.png", data / "p0_mask.npy", data / "p1.png",
                                                data / "p2.png", data / "p2_mask.npy", data / "p3.png"]}
    with opened_files(data) as seen:
        build_tissue(config, tmp_path / "out")
    assert seen == listed(TISSUE, config)


def test_tissue_manifest_fingerprints_follow_each_edit(tmp_path):
    manifest = write_patches(tmp_path, tissues=("Colon", "liver"))
    config = tissue_config({"source": "manifest", "manifest": {"path": str(manifest)}})
    before = fingerprints(TISSUE, config)
    (tmp_path / "README.md").write_text("unrelated")
    assert fingerprints(TISSUE, config) == before
    mask = np.load(tmp_path / "p1_mask.npy")
    mask[0, 0] = [99, 1]
    np.save(tmp_path / "p1_mask.npy", mask)
    edited = fingerprints(TISSUE, config)
    assert edited["cohort.manifest.images"] != before["cohort.manifest.images"]
    assert edited["cohort.manifest.path"] == before["cohort.manifest.path"]
    shutil.copyfile(tmp_path / "p0.png", tmp_path / "p9.png")
    pl.concat([pl.read_csv(manifest), pl.DataFrame({"image_path": ["p9.png"], "tissue": ["skin"],
                                                    "mask_path": [None]})]).write_csv(manifest)
    added = fingerprints(TISSUE, config)
    assert all(added[k] != edited[k] for k in edited)


def pannuke_root(folder: Path) -> Path:
    """Folds 1 (in the release's nested layout), 2 and 3 of small arrays."""
    write_fold(folder / "Fold 1", nested=True)
    write_fold(folder / "fold2", types=("Liver",))
    write_fold(folder / "fold3", types=("Skin", "Lung"))
    return folder


def test_pannuke_lists_the_arrays_of_the_named_folds_only(tmp_path):
    root = pannuke_root(tmp_path / "pannuke")
    config = tissue_config({"source": "pannuke", "pannuke": {"path": str(root), "folds": {"train": [1], "test": [3]}}})
    assert TISSUE.input_files(config) == {"cohort.pannuke.path": [
        root / "Fold 1" / "images" / "fold1" / "images.npy", root / "Fold 1" / "masks" / "fold1" / "masks.npy",
        root / "Fold 1" / "images" / "fold1" / "types.npy",
        root / "fold3" / "images.npy", root / "fold3" / "masks.npy", root / "fold3" / "types.npy"]}
    with opened_files(root) as seen:
        build_tissue(config, tmp_path / "out")
    assert seen == listed(TISSUE, config)


def test_pannuke_fingerprints_follow_the_named_folds(tmp_path):
    root = pannuke_root(tmp_path / "pannuke")
    config = tissue_config({"source": "pannuke", "pannuke": {"path": str(root), "folds": {"train": [1], "test": [3]}}})
    # The arrays are ~3 MB a fold: images and masks by size and time, types.npy (small) by content.
    before = fingerprints(TISSUE, config)
    write_fold(root / "fold2", types=("Colon",))  # a fold no split names
    (root / "fold3" / "notes.txt").write_text("unrelated")
    assert fingerprints(TISSUE, config) == before
    np.save(root / "fold3" / "types.npy", np.array(["Skin", "Colon"]))
    assert fingerprints(TISSUE, config) != before
    edited = fingerprints(TISSUE, config)
    images = root / "Fold 1" / "images" / "fold1" / "images.npy"
    np.save(images, np.load(images)[::-1])
    later(images)
    assert fingerprints(TISSUE, config) != edited


def test_every_path_key_of_each_schema_is_listed_or_covered():
    """Each application's config keys of `format: path` are keys of its hook, or name a folder whose files
    another key lists (exempt below)."""
    exempt = {"rare_disease": {"cohort.manifest.image_root": "its photos are cohort.manifest.images"}}
    hooked = {"rare_disease": {"cohort.manifest.path", "cohort.manifest.images", "cohort.phenopacket.path",
                               "cohort.phenopacket.panel"},
              "tissue": {"cohort.manifest.path", "cohort.manifest.images", "cohort.pannuke.path"}}

    def path_keys(schema, prefix=""):
        for name, sub in (schema.get("properties") or {}).items():
            if sub.get("format") == "path":
                yield prefix + name
            yield from path_keys(sub, f"{prefix}{name}.")

    for app in (RARE, TISSUE):
        keys = set(path_keys(app.config_schema))
        assert keys <= hooked[app.name] | set(exempt.get(app.name, {})), app.name
