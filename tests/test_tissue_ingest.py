"""Tissue ingestion: the tissue table, the simulated H&E patches, nucleus features from masks, and the
PanNuke and manifest readers with their errors, on arrays and files each test makes.

    .venv/bin/python -m pytest -q tests/test_tissue_ingest.py
"""

import numpy as np
import polars as pl
import pytest
from PIL import Image

from mint.apps.tissue.patches import (
    FEATURE_NAMES,
    PHRASES,
    PROFILES,
    TYPE_WORDS,
    nucleus_features,
    render_patch,
    simulate_patches,
)
from mint.apps.tissue.readers import (
    load_image,
    load_mask,
    read_manifest,
    read_manifest_cases,
    read_pannuke_fold,
    read_pannuke_folds,
)
from mint.apps.tissue.tissues import NUCLEUS_TYPES, TISSUE_IDS, TISSUES, labels_frame, resolve_tissue
from mint.core.io import MintError

F = {name: i for i, name in enumerate(FEATURE_NAMES)}

# ------------------------------------------------------------------ tissues


def test_the_nineteen_pannuke_tissues_and_five_types():
    assert [t.name for t in TISSUES] == [
        "Adrenal gland", "Bile duct", "Bladder", "Breast", "Cervix", "Colon", "Esophagus", "Head & Neck", "Kidney",
        "Liver", "Lung", "Ovarian", "Pancreatic", "Prostate", "Skin", "Stomach", "Testis", "Thyroid", "Uterus"]
    assert NUCLEUS_TYPES == ("neoplastic", "inflammatory", "connective", "dead", "epithelial")
    assert set(PROFILES) == set(TISSUE_IDS)
    assert labels_frame()["label_id"].to_list() == list(TISSUE_IDS)


@pytest.mark.parametrize("label, expected", [
    ("Adrenal_gland", "adrenal_gland"), ("Bile-duct", "bile_duct"), ("HeadNeck", "head_neck"),
    ("Head & Neck", "head_neck"), ("head_neck", "head_neck"), ("  colon ", "colon"), ("gastric", "stomach"),
    ("uterine cervix", "cervix"), ("Uterus", "uterus"), ("Spleen", None), ("", None), (None, None)])
def test_resolve_tissue_reads_ids_names_and_pannuke_spellings(label, expected):
    assert resolve_tissue(label) == expected


def test_every_id_name_and_synonym_resolves_to_its_own_tissue():
    for t in TISSUES:
        assert {resolve_tissue(x) for x in (t.id, t.name, t.name.upper(), *t.synonyms)} == {t.id}


# ------------------------------------------------------------------ simulated patches


def test_render_patch_is_seeded():
    a = render_patch("colon", np.random.default_rng(7))
    b = render_patch("colon", np.random.default_rng(7))
    c = render_patch("colon", np.random.default_rng(8))
    for x, y in zip(a[:3], b[:3]):
        assert x.tobytes() == y.tobytes() and x.dtype == y.dtype
    assert a[3] == b[3]
    assert a[0].tobytes() != c[0].tobytes()


def test_an_unknown_tissue_is_named():
    with pytest.raises(MintError, match="unknown tissue 'Spleen'"):
        render_patch("Spleen", np.random.default_rng(0))


def test_simulate_patches_depends_only_on_seed_tissue_and_index():
    alone = next(simulate_patches(1, seed=3, tissues=["liver"]))
    among = [p for p in simulate_patches(2, seed=3, tissues=["colon", "liver"]) if p.tissue_id == "liver"][0]
    assert alone.case_id == among.case_id == "sim-liver-00000"
    assert alone.image.tobytes() == among.image.tobytes()


@pytest.mark.parametrize("size", [64, 96])
def test_every_tissue_renders_valid_masks(size):
    for p in simulate_patches(1, seed=0, size=size):
        assert p.image.shape == (size, size, 3) and p.image.dtype == np.uint8
        assert p.instance.shape == p.types.shape == (size, size)
        assert p.instance.dtype == np.int32 and p.types.dtype == np.uint8
        assert ((p.instance > 0) == (p.types > 0)).all(), p.tissue_id
        ids = np.unique(p.instance[p.instance > 0])
        assert ids.tolist() == list(range(1, ids.size + 1)), p.tissue_id  # numbered 1..n, none lost
        for i in ids:  # one type per nucleus
            assert np.unique(p.types[p.instance == i]).size == 1
        assert p.types.max() <= len(NUCLEUS_TYPES)
        name = next(t.name for t in TISSUES if t.id == p.tissue_id)
        assert name.lower() in p.caption and PHRASES[PROFILES[p.tissue_id].arrangement] in p.caption


def test_nuclei_are_darker_than_the_stroma_around_them():
    image, inst, _, _ = render_patch("ovarian", np.random.default_rng(1))
    grey = image.astype(float).mean(axis=2)
    assert grey[inst > 0].mean() < grey[inst == 0].mean() - 30


@pytest.mark.parametrize("tissue_id", ["colon", "ovarian", "lung", "head_neck"])
def test_type_shares_over_many_patches_match_the_profile(tissue_id):
    counts = np.zeros(len(NUCLEUS_TYPES))
    patches = list(simulate_patches(60, seed=11, tissues=[tissue_id]))
    for p in patches:
        fg = p.instance > 0
        _, first = np.unique(p.instance[fg], return_index=True)
        counts += np.bincount(p.types[fg][first].astype(int) - 1, minlength=len(NUCLEUS_TYPES))
    profile = PROFILES[tissue_id]
    np.testing.assert_allclose(counts / counts.sum(), profile.mix, atol=0.06)
    assert abs(counts.sum() / len(patches) - profile.count) < 0.2 * profile.count


def test_caption_names_the_most_common_drawn_type():
    for p in simulate_patches(2, seed=5, tissues=["ovarian", "stomach", "breast"]):
        fg = p.instance > 0
        _, first = np.unique(p.instance[fg], return_index=True)
        main = int(np.bincount(p.types[fg][first].astype(int) - 1, minlength=5).argmax())
        assert TYPE_WORDS[main] in p.caption


# ------------------------------------------------------------------ nucleus features


def hand_drawn_masks():
    """64 x 64 px (1 µm/px): two 4x4 neoplastic squares, one 2x8 connective bar, one untyped 3x3 blob."""
    inst = np.zeros((64, 64), np.int32)
    typ = np.zeros((64, 64), np.uint8)
    inst[2:6, 2:6], typ[2:6, 2:6] = 1, 1
    inst[20:24, 30:34], typ[20:24, 30:34] = 7, 1  # ids need not be consecutive
    inst[40:42, 10:18], typ[40:42, 10:18] = 3, 3
    inst[50:53, 50:53] = 4
    return inst, typ


def test_nucleus_features_of_a_hand_drawn_mask():
    f = nucleus_features(*hand_drawn_masks())
    field = 64 * 64 / 1000  # thousand µm²
    assert f[F["density_neoplastic"]] == pytest.approx(2 / field)
    assert f[F["density_connective"]] == pytest.approx(1 / field)
    assert f[F["density_inflammatory"]] == f[F["density_dead"]] == f[F["density_epithelial"]] == 0
    assert f[F["density_all"]] == pytest.approx(4 / field)  # the untyped blob counts here only
    assert f[F["area_neoplastic"]] == pytest.approx(16)
    assert f[F["area_connective"]] == pytest.approx(16)
    assert f[F["area_all"]] == pytest.approx((16 + 16 + 16 + 9) / 4)
    # squares are round (0); the 8x2 bar: sd ratio sqrt((4/12) / (64/12)) = 1/4, so 0.75
    assert f[F["elongation"]] == pytest.approx(0.75 / 4, abs=1e-6)
    assert f[F["coverage"]] == pytest.approx(57 / 4096)


def test_nucleus_features_do_not_depend_on_resolution():
    """The same field at 256 px (PanNuke's 0.25 µm/px) gives the same densities and areas as at 64 px."""
    inst, typ = hand_drawn_masks()
    big = nucleus_features(np.kron(inst, np.ones((4, 4), np.int32)), np.kron(typ, np.ones((4, 4), np.uint8)))
    np.testing.assert_allclose(big, nucleus_features(inst, typ), rtol=0.02, atol=0.01)


def test_nucleus_features_of_an_empty_mask_are_zero_and_a_shape_mismatch_is_an_error():
    assert not nucleus_features(np.zeros((8, 8), np.int32), np.zeros((8, 8), np.uint8)).any()
    with pytest.raises(MintError, match=r"\(8, 8\) and \(8, 9\)"):
        nucleus_features(np.zeros((8, 8)), np.zeros((8, 9)))


# ------------------------------------------------------------------ PanNuke folds


def write_fold(folder, types=("Adrenal_gland", "Bile-duct", "HeadNeck"), nested=False, n=None):
    """A PanNuke-like fold of 256 px float64 images; image 0 has neoplastic nucleus 5 (a 10x10 square) and
    epithelial nucleus 5 (4x6): the same id in two channels is two nuclei."""
    n = len(types) if n is None else n
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (n, 256, 256, 3))
    masks = np.zeros((n, 256, 256, 6))
    masks[0, 10:20, 10:20, 0] = 5
    masks[0, 100:104, 50:56, 4] = 5
    masks[..., 5] = (masks[..., :5].sum(-1) == 0)
    img_dir = folder / "images" / "fold1" if nested else folder
    mask_dir = folder / "masks" / "fold1" if nested else folder
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    np.save(img_dir / "images.npy", images)
    np.save(mask_dir / "masks.npy", masks)
    np.save(img_dir / "types.npy", np.array(types))
    return images


@pytest.mark.parametrize("nested", [False, True])
def test_a_pannuke_fold_reads_back(tmp_path, nested):
    folder = tmp_path / "Fold 1"
    images = write_fold(folder, nested=nested)
    fold = read_pannuke_fold(folder)
    assert fold.cases["label_id"].to_list() == ["adrenal_gland", "bile_duct", "head_neck"]
    assert fold.cases["case_id"].to_list() == ["fold1-00000", "fold1-00001", "fold1-00002"]
    assert isinstance(fold.images, np.memmap) and isinstance(fold.channels, np.memmap)
    image = fold.image(1)
    assert image.dtype == np.uint8 and (image == np.rint(images[1])).all()
    inst, typ = fold.masks(0)
    assert np.unique(inst).tolist() == [0, 1, 2]
    assert (typ[inst == 1] == 1).all() and (inst == 1).sum() == 100  # neoplastic: channel 0
    assert (typ[inst == 2] == 5).all() and (inst == 2).sum() == 24  # epithelial: channel 4
    f = nucleus_features(inst, typ)
    assert f[F["area_neoplastic"]] == pytest.approx(100 * 0.25**2)  # 256 px field: 0.25 µm/px
    assert f[F["area_epithelial"]] == pytest.approx(24 * 0.25**2)
    assert not fold.masks(1)[0].any()
    fold.check_values()


def test_pannuke_folds_by_split(tmp_path):
    write_fold(tmp_path / "Fold 1", nested=True)
    images = write_fold(tmp_path / "fold3", types=("Skin", "Lung"))
    write_fold(tmp_path / "fold2", types=("Liver",))
    cases, load = read_pannuke_folds(tmp_path, {"train": [1], "validation": [], "test": [3]})
    assert cases.rows() == [
        ("fold1-00000", "fold1", "adrenal_gland", "train"), ("fold1-00001", "fold1", "bile_duct", "train"),
        ("fold1-00002", "fold1", "head_neck", "train"), ("fold3-00000", "fold3", "skin", "test"),
        ("fold3-00001", "fold3", "lung", "test")]
    image, inst, typ = load(4)
    assert (image == np.rint(images[1])).all() and not inst.any() and not typ.any()
    assert np.unique(load(0)[1]).tolist() == [0, 1, 2]
    with pytest.raises(MintError, match=r"fold 3 is in both 'train' and 'test'"):
        read_pannuke_folds(tmp_path, {"train": [1, 3], "test": [3]})
    with pytest.raises(MintError, match=r"expected one folder for PanNuke fold 4"):
        read_pannuke_folds(tmp_path, {"train": [4]})
    with pytest.raises(MintError, match=r"'dev' is not a split"):
        read_pannuke_folds(tmp_path, {"dev": [1]})


def test_pannuke_unknown_tissue_names_the_index(tmp_path):
    write_fold(tmp_path, types=("Colon", "Spleen", "Skin"))
    with pytest.raises(MintError, match=r"types\.npy index 1: unknown tissue 'Spleen'"):
        read_pannuke_fold(tmp_path)


def test_pannuke_masks_that_do_not_match_the_images(tmp_path):
    write_fold(tmp_path)
    np.save(tmp_path / "masks.npy", np.zeros((3, 128, 128, 6)))
    with pytest.raises(MintError, match=r"masks\.npy: expected shape \(3, 256, 256, 6\)"):
        read_pannuke_fold(tmp_path)


def test_pannuke_types_of_another_length(tmp_path):
    write_fold(tmp_path, types=("Colon", "Skin"), n=3)
    with pytest.raises(MintError, match=r"types\.npy: expected 3 tissue names"):
        read_pannuke_fold(tmp_path)


def test_pannuke_truncated_array_names_the_file(tmp_path):
    write_fold(tmp_path)
    data = (tmp_path / "images.npy").read_bytes()
    (tmp_path / "images.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(MintError, match=r"images\.npy: not a readable \.npy array"):
        read_pannuke_fold(tmp_path)


def test_pannuke_pickled_types_are_refused(tmp_path):
    write_fold(tmp_path)
    np.save(tmp_path / "types.npy", np.array(["Colon", "Skin", "Liver"], dtype=object), allow_pickle=True)
    with pytest.raises(MintError, match=r"types\.npy: holds Python objects"):
        read_pannuke_fold(tmp_path)


def test_pannuke_empty_folder_and_missing_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MintError, match=r"empty: the folder is empty"):
        read_pannuke_fold(tmp_path / "empty")
    write_fold(tmp_path / "fold")
    (tmp_path / "fold" / "masks.npy").unlink()
    with pytest.raises(MintError, match=r"no masks\.npy"):
        read_pannuke_fold(tmp_path / "fold")


def test_pannuke_bad_values_name_the_index(tmp_path):
    images = write_fold(tmp_path)
    images[2, 0, 0, 0] = 300.0
    np.save(tmp_path / "images.npy", images)
    masks = np.load(tmp_path / "masks.npy")
    masks[1, 5, 5, 2] = 1.5
    np.save(tmp_path / "masks.npy", masks)
    fold = read_pannuke_fold(tmp_path)
    with pytest.raises(MintError, match=r"images\.npy index 2: image values must lie in 0-255"):
        fold.image(2)
    with pytest.raises(MintError, match=r"masks\.npy index 1: nucleus instance ids must be whole"):
        fold.masks(1)
    with pytest.raises(MintError, match=r"index 1"):
        fold.check_values()


# ------------------------------------------------------------------ manifests


def write_patches(folder, tissues=("Colon", "liver", "HeadNeck"), size=64, masks=True):
    """Rendered patches as PNG (and (H, W, 2) mask .npy) files with a manifest.csv listing them."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, label in enumerate(tissues):
        image, inst, typ, _ = render_patch(resolve_tissue(label), np.random.default_rng(i), size)
        Image.fromarray(image).save(folder / f"p{i}.png")
        row = {"image_path": f"p{i}.png", "tissue": label}
        if masks:
            np.save(folder / f"p{i}_mask.npy", np.stack([inst, typ.astype(np.int32)], axis=-1))
            row["mask_path"] = f"p{i}_mask.npy"
        rows.append(row)
    pl.DataFrame(rows).write_csv(folder / "manifest.csv")
    return folder / "manifest.csv"


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "folder"])
def test_a_manifest_reads_back(tmp_path, fmt):
    path = write_patches(tmp_path / "patches")
    table = pl.read_csv(path).with_columns(split=pl.Series(["train", "validation", "test"]))
    if fmt == "tsv":
        path = path.with_suffix(".tsv")
        table.write_csv(path, separator="\t")
    elif fmt == "parquet":
        path = path.with_suffix(".parquet")
        table.write_parquet(path)
    elif fmt == "folder":
        table.write_csv(path)
        path = path.parent
    else:
        table.write_csv(path)
    cases = read_manifest(path)
    assert cases["label_id"].to_list() == ["colon", "liver", "head_neck"]
    assert cases["case_id"].to_list() == ["p0", "p1", "p2"]
    assert cases["split"].to_list() == ["train", "validation", "test"]
    assert set(cases["source"]) == {"manifest"}
    image, inst, typ, _ = render_patch("liver", np.random.default_rng(1), 64)
    assert (load_image(cases["image_path"][1]) == image).all()
    got_inst, got_typ = load_mask(cases["mask_path"][1])
    assert (got_inst == inst).all() and (got_typ == typ).all()


def test_manifest_cases_load_images_and_masks(tmp_path):
    write_patches(tmp_path, tissues=("Colon", "Skin"))
    pl.read_csv(tmp_path / "manifest.csv").with_columns(mask_path=pl.Series(["p0_mask.npy", None])).write_csv(
        tmp_path / "manifest.csv")
    cases, load = read_manifest_cases(tmp_path / "manifest.csv")
    assert cases.columns == ["case_id", "group", "label_id", "split"]
    image, inst, typ = load(0)
    expected = render_patch("colon", np.random.default_rng(0), 64)
    assert (image == expected[0]).all() and (inst == expected[1]).all() and (typ == expected[2]).all()
    assert load(1)[1:] == (None, None)


def test_a_manifest_with_an_image_root_and_no_masks(tmp_path):
    write_patches(tmp_path / "images", masks=False)
    manifest = tmp_path / "lists" / "m.csv"
    manifest.parent.mkdir()
    pl.DataFrame({"image_path": ["p0.png"], "tissue": ["colon"], "case_id": ["slide7"]}).write_csv(manifest)
    cases = read_manifest(manifest, root=tmp_path / "images")
    assert cases["case_id"].to_list() == ["slide7"] and cases["mask_path"].to_list() == [None]


def test_pannuke_channel_masks_load_from_a_manifest(tmp_path):
    write_patches(tmp_path, tissues=("Colon",), masks=False)
    channels = np.zeros((64, 64, 6))
    channels[1:4, 1:4, 1] = 9  # one inflammatory nucleus
    np.save(tmp_path / "m.npy", channels)
    pl.DataFrame({"image_path": ["p0.png"], "tissue": ["Colon"], "mask_path": ["m.npy"]}).write_csv(
        tmp_path / "manifest.csv")
    inst, typ = load_mask(read_manifest(tmp_path / "manifest.csv")["mask_path"][0])
    assert (inst > 0).sum() == 9 and set(typ[inst > 0]) == {2}


def break_manifest(folder, how):
    """Spoil the second patch (line 3 of manifest.csv) in one way; return the text the error must contain."""
    manifest = folder / "manifest.csv"
    table = pl.read_csv(manifest)
    if how == "corrupt":
        (folder / "p1.png").write_bytes(b"not a png at all" * 20)
        return r"line 3 \(case_id 'p1'\): .*p1.png: not a readable image"
    if how == "truncated":
        data = (folder / "p1.png").read_bytes()
        (folder / "p1.png").write_bytes(data[: len(data) * 2 // 3])
        return "line 3 .*p1.png: not a readable image"
    if how == "missing image":
        (folder / "p1.png").unlink()
        return "line 3 .*image not found: .*p1.png"
    if how == "wrong size":
        Image.new("RGB", (48, 48), "pink").save(folder / "p1.png")
        return r"line 3 .*p1.png is 48x48 px; all patches must share one size, and .* line 2 \(case_id 'p0'\) is 64x64"
    if how == "mask mismatch":
        np.save(folder / "p1_mask.npy", np.zeros((32, 64, 2), np.int32))
        return r"line 3 .*p1_mask.npy has shape \(32, 64, 2\); expected \(64, 64\)"
    if how == "corrupt mask":
        (folder / "p1_mask.npy").write_bytes(b"\x93NUMPY garbage")
        return "line 3 .*p1_mask.npy: not a readable .npy array"
    if how == "empty file":
        manifest.write_text("")
        return "manifest.csv: the manifest is empty"
    table = {"unknown tissue": table.with_columns(tissue=pl.Series(["Colon", "Spleen", "Skin"])),
             "duplicate case": table.with_columns(case_id=pl.Series(["a", "b", "b"])),
             "bad split": table.with_columns(split=pl.Series(["train", "dev", "test"])),
             "missing column": table.drop("tissue"), "no rows": table.head(0)}[how]
    table.write_csv(manifest)
    return {"unknown tissue": "line 3 .*unknown tissue 'Spleen'",
            "duplicate case": r"line 4 \(case_id 'b'\): duplicate case_id \(first at .*line 3\)",
            "bad split": "line 3 .*'split' must be one of",
            "missing column": r"missing column\(s\) \['tissue'\]",
            "no rows": "the manifest has no rows"}[how]


BREAKS = ["corrupt", "truncated", "missing image", "wrong size", "mask mismatch", "corrupt mask", "unknown tissue",
          "duplicate case", "bad split", "missing column", "no rows", "empty file"]


@pytest.mark.parametrize("how", BREAKS)
def test_each_bad_manifest_input_names_the_file_and_row(tmp_path, how):
    write_patches(tmp_path)
    expected = break_manifest(tmp_path, how)
    with pytest.raises(MintError, match=expected) as err:
        read_manifest(tmp_path / "manifest.csv")
    assert "manifest.csv" in str(err.value)


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(MintError, match="the folder is empty"):
        read_manifest(tmp_path)
    (tmp_path / "p0.png").write_bytes(b"")
    with pytest.raises(MintError, match=r"expected exactly one of \['manifest.csv'"):
        read_manifest(tmp_path)


def test_real_histology_reads_through_the_manifest(tmp_path):
    """scikit-image's immunohistochemistry() (colonic glands, DAB and haematoxylin) as a one-patch manifest."""
    skdata = pytest.importorskip("skimage.data")
    ihc = skdata.immunohistochemistry()
    Image.fromarray(ihc).save(tmp_path / "ihc.png")
    pl.DataFrame({"image_path": ["ihc.png"], "tissue": ["Colon"]}).write_csv(tmp_path / "manifest.csv")
    cases = read_manifest(tmp_path)
    assert cases["label_id"].to_list() == ["colon"]
    image = load_image(cases["image_path"][0])
    assert image.shape == ihc.shape and (image == ihc).all()
