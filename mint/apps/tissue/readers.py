"""Real sources of tissue patches: PanNuke's fold arrays, and a folder of images with a manifest.

Both check everything they can before anything is written downstream, and raise `MintError` naming
the file, the index or row, and what was expected. They return cases (`case_id`, `label_id` = a
tissue id of `tissues.TISSUES`) and the means to load each patch and its nucleus masks as
(instance int32, type uint8) arrays, type values 0 (background) and 1-5 (`NUCLEUS_TYPES`).

PanNuke (https://warwick.ac.uk/fac/cross_fac/tia/data/pannuke) ships each fold as `images.npy`
(N, 256, 256, 3; float64 0-255), `masks.npy` (N, 256, 256, 6; channels 0-4 the instance maps of the
five nucleus types, 5 background) and `types.npy` (N tissue names), either side by side or in the
release's own layout (`images/fold1/images.npy`, `images/fold1/types.npy`, `masks/fold1/masks.npy`).
The arrays are memory-mapped: a fold of 2,600 patches (4 GB of images) is not read until a patch is.

A manifest (CSV, TSV or Parquet) has columns `image_path` and `tissue` (a tissue id, name, synonym
or PanNuke spelling), and optionally `mask_path`, `case_id`, `split` (train, validation or test; empty:
the seeded split decides) and `group` (the unit a given split keeps on one side, e.g. the slide).
Paths are relative to the manifest's folder (or `root`); images of any mode `mint.core.images` reads
(16-bit, float, palette, alpha, CMYK, EXIF-rotated) are converted to 8-bit RGB by its rules. A mask
is a `.npy` of shape (H, W) (instance ids, types unknown), (H, W, 2) (instance, type) or (H, W, 6)
(PanNuke's channels).

    python -c "from mint.apps.tissue.readers import read_manifest; print(read_manifest('patches/manifest.csv'))"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from mint.apps.tissue.tissues import BACKGROUND_CHANNEL, N_TYPES, TISSUES, resolve_tissue
from mint.core.cohort import SPLITS, given_split
from mint.core.images import open_image, read_image
from mint.core.io import MintError, read_user_table, require_regular_file
from mint.core.paths import check_name, resolve_inside

PANNUKE_FILES = ("images.npy", "masks.npy", "types.npy")
MANIFEST_NAMES = ("manifest.csv", "manifest.tsv", "manifest.parquet")
MANIFEST_COLUMNS = ("image_path", "tissue")
_ACCEPTED = f"a tissue id or name, one of {[t.name for t in TISSUES]}"


# ------------------------------------------------------------------ masks


def channels_to_masks(channels: np.ndarray, where: str = "mask") -> tuple[np.ndarray, np.ndarray]:
    """(instance int32, type uint8) from PanNuke-style (H, W, 6) channels: a nucleus is a (channel, id) pair,
    numbered 1.. in channel order; where channels overlap, the later channel's nucleus keeps the pixel."""
    ch = np.asarray(channels)
    if ch.ndim != 3 or ch.shape[2] != BACKGROUND_CHANNEL + 1:
        raise MintError(f"{where}: expected (H, W, {BACKGROUND_CHANNEL + 1}) nucleus channels, got shape {ch.shape}")
    _check_ids(ch[..., :N_TYPES], where)
    inst = np.zeros(ch.shape[:2], np.int32)
    typ = np.zeros(ch.shape[:2], np.uint8)
    offset = 0
    for c in range(N_TYPES):
        layer = ch[..., c]
        nz = layer > 0
        if not nz.any():
            continue
        ids, inv = np.unique(layer[nz], return_inverse=True)
        inst[nz] = offset + 1 + inv.astype(np.int32)
        typ[nz] = c + 1
        offset += ids.size
    return inst, typ


def _check_ids(values: np.ndarray, where: str) -> None:
    """Instance ids: finite, whole, not negative (PanNuke stores them as float64)."""
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
        raise MintError(f"{where}: nucleus masks must be numeric, got dtype {values.dtype}")
    if np.issubdtype(values.dtype, np.floating):
        if not np.isfinite(values).all():
            raise MintError(f"{where}: nucleus masks hold NaN or infinite values")
        if (values != np.round(values)).any():
            raise MintError(f"{where}: nucleus instance ids must be whole numbers")
    if values.size and values.min() < 0:
        raise MintError(f"{where}: nucleus instance ids must not be negative (found {values.min()})")


def mask_shape_ok(shape: tuple[int, ...]) -> bool:
    """A mask layout this module reads: (H, W), (H, W, 2) or (H, W, 6)."""
    return len(shape) == 2 or (len(shape) == 3 and shape[2] in (2, BACKGROUND_CHANNEL + 1))


def load_mask(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(instance int32, type uint8) from a mask `.npy` (layouts in the module docstring); MintError naming
    the file if it is missing, corrupt, of another layout or holds invalid ids or types."""
    arr = _load_npy(Path(path), mmap=False)
    where = str(path)
    if not mask_shape_ok(arr.shape):
        raise MintError(f"{where}: mask must have shape (H, W), (H, W, 2) or (H, W, 6); got {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == BACKGROUND_CHANNEL + 1:
        return channels_to_masks(arr, where)
    inst = arr if arr.ndim == 2 else arr[..., 0]
    _check_ids(inst, where)
    if inst.max(initial=0) > np.iinfo(np.int32).max:
        raise MintError(f"{where}: instance ids exceed int32")
    inst = inst.astype(np.int32)
    if arr.ndim == 2:
        return inst, np.zeros(inst.shape, np.uint8)
    typ = arr[..., 1]
    _check_ids(typ, where)
    if typ.max(initial=0) > N_TYPES:
        raise MintError(f"{where}: type values must be 0 (background) to {N_TYPES}; found {typ.max()}")
    if ((typ > 0) & (inst == 0)).any():
        raise MintError(f"{where}: type mask marks pixels that belong to no nucleus instance")
    return inst, typ.astype(np.uint8)


# ------------------------------------------------------------------ images


def check_image(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file (upright) after verifying, fully decoding and converting it as
    `load_image` does; MintError naming the file if it is missing, not a regular file, too large, not an
    image, truncated, corrupt or of a mode that is not read (mint.core.images)."""
    return open_image(path, "RGB").size


def load_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3), converted from its mode by `mint.core.images.open_image`
    (16-bit scaled, not clipped); MintError naming the file if it cannot be read."""
    return read_image(path, "RGB")


# ------------------------------------------------------------------ PanNuke


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    if not path.exists():
        raise MintError(f"file not found: {path}")
    require_regular_file(path, ".npy array")  # no size limit: PanNuke's arrays are memory-mapped
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise MintError(f"{path}: holds Python objects (a pickle), which are not read; save it as a plain "
                            f"array, e.g. np.save(path, array.astype(str))") from err
        raise MintError(f"{path}: not a readable .npy array, corrupt or truncated ({err})") from err
    except (OSError, EOFError) as err:
        raise MintError(f"{path}: not a readable .npy array, corrupt or truncated ({err})") from err


def _find(folder: Path, name: str) -> Path:
    """`folder/name`, or the one file of that name below it (PanNuke's images/fold1/... layout)."""
    direct = folder / name
    if direct.is_file():
        return direct
    found = sorted(folder.rglob(name))
    if len(found) == 1:
        return found[0]
    if not found:
        raise MintError(f"PanNuke fold {folder}: no {name} in it or below it; a fold needs {list(PANNUKE_FILES)}")
    raise MintError(f"PanNuke fold {folder}: several {name} below it ({[str(p) for p in found]}); "
                    f"point at one fold's folder")


@dataclass
class PannukeFold:
    """One PanNuke fold: `cases` (case_id, label_id, index), and each patch's image and masks on demand."""

    folder: Path
    images_path: Path
    masks_path: Path
    types_path: Path
    cases: pl.DataFrame
    images: np.ndarray  # (N, H, W, 3) memory-mapped, as stored
    channels: np.ndarray  # (N, H, W, 6) memory-mapped, as stored

    def __len__(self) -> int:
        return self.cases.height

    def image(self, index: int) -> np.ndarray:
        """Patch `index` as RGB uint8 (H, W, 3); MintError naming the file and index if values are not 0-255."""
        arr = np.asarray(self.images[index])
        if arr.dtype == np.uint8:
            return arr.copy()
        where = f"{self.images_path} index {index}"
        if not np.isfinite(arr).all():
            raise MintError(f"{where}: image holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 255:
            raise MintError(f"{where}: image values must lie in 0-255, found {lo:g} to {hi:g}")
        if np.issubdtype(arr.dtype, np.floating) and 0 < hi <= 1.0:
            raise MintError(f"{where}: image values lie in 0-1; PanNuke stores 0-255 (multiply by 255)")
        return np.rint(arr).astype(np.uint8)

    def masks(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Patch `index`'s (instance int32, type uint8) masks from its six channels."""
        return channels_to_masks(np.asarray(self.channels[index]), f"{self.masks_path} index {index}")

    def check_values(self, chunk: int = 64) -> None:
        """Read every image and mask once (in chunks of `chunk` patches) and raise at the first bad one."""
        for start in range(0, len(self), chunk):
            for i in range(start, min(start + chunk, len(self))):
                self.image(i)
                self.masks(i)


def _fold_name(folder: Path) -> str:
    return re.sub(r"[^0-9a-z]+", "", folder.name.lower()) or "fold"


def read_pannuke_fold(folder: str | Path, fold: str | None = None) -> PannukeFold:
    """A PanNuke fold, its shapes, dtypes and tissue names checked; case ids are `<fold>-<index>` with `fold`
    defaulting to the folder's name in lower case without spaces (`Fold 1` gives `fold1-00000`, ...)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MintError(f"PanNuke fold folder not found: {folder}")
    if not any(folder.iterdir()):
        raise MintError(f"PanNuke fold {folder}: the folder is empty; a fold needs {list(PANNUKE_FILES)}")
    images_path, masks_path, types_path = (_find(folder, name) for name in PANNUKE_FILES)
    images = _load_npy(images_path, mmap=True)
    masks = _load_npy(masks_path, mmap=True)
    types = _load_npy(types_path, mmap=False)
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[0] == 0:
        raise MintError(f"{images_path}: expected shape (N, H, W, 3) with N > 0, got {images.shape}")
    if not (images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)):
        raise MintError(f"{images_path}: expected uint8 or float values 0-255, got dtype {images.dtype}")
    n, h, w = images.shape[:3]
    if masks.shape != (n, h, w, BACKGROUND_CHANNEL + 1):
        raise MintError(f"{masks_path}: expected shape {(n, h, w, BACKGROUND_CHANNEL + 1)} to match "
                        f"{images_path.name} {images.shape}, got {masks.shape}")
    if types.shape != (n,):
        raise MintError(f"{types_path}: expected {n} tissue names (one per image of {images_path.name}), "
                        f"got shape {types.shape}")
    if types.dtype.kind == "S":
        types = np.char.decode(types, "utf-8")
    labels = []
    for i, value in enumerate(types.tolist()):
        tid = resolve_tissue(value)
        if tid is None:
            raise MintError(f"{types_path} index {i}: unknown tissue {value!r}; expected {_ACCEPTED}")
        labels.append(tid)
    name = fold or _fold_name(folder)
    cases = pl.DataFrame({"case_id": [f"{name}-{i:05d}" for i in range(n)], "label_id": labels,
                          "index": list(range(n))}, schema={"case_id": pl.String, "label_id": pl.String,
                                                            "index": pl.Int64})
    return PannukeFold(folder, images_path, masks_path, types_path, cases, images, masks)


def _split_of_folds(folds: Mapping[str, Sequence[int]]) -> dict[int, str]:
    """Fold number -> split, from config `cohort.pannuke.folds` ({split: [fold numbers]}), checked."""
    split_of: dict[int, str] = {}
    for split, numbers in folds.items():
        if split not in SPLITS:
            raise MintError(f"config key 'cohort.pannuke.folds': {split!r} is not a split; use {SPLITS}")
        for k in numbers:
            if k in split_of:
                raise MintError(f"config key 'cohort.pannuke.folds': fold {k} is in both {split_of[k]!r} and "
                                f"{split!r}")
            split_of[k] = split
    if not split_of:
        raise MintError("config key 'cohort.pannuke.folds': names no fold")
    return split_of


def _fold_folders(root: Path, numbers: Iterable[int]) -> dict[int, Path]:
    """Fold number -> its folder below `root` (`Fold 1`, `fold1`, ...); MintError unless exactly one matches."""
    if not root.is_dir():
        raise MintError(f"config key 'cohort.pannuke.path': folder not found: {root}")
    children = [p for p in root.iterdir() if p.is_dir()]
    folders = {}
    for k in numbers:
        found = [p for p in children if _fold_name(p) == f"fold{k}"]
        if len(found) != 1:
            raise MintError(f"{root}: expected one folder for PanNuke fold {k} (e.g. 'Fold {k}' or 'fold{k}'), "
                            f"found {[p.name for p in found] or 'none'} among {sorted(p.name for p in children)}")
        folders[k] = found[0]
    return folders


def pannuke_files(path: str | Path, folds: Mapping[str, Sequence[int]]) -> list[Path]:
    """The arrays `read_pannuke_folds(path, folds)` reads: each named fold's images, masks and types `.npy`."""
    folders = _fold_folders(Path(path), _split_of_folds(folds))
    return [_find(folder, name) for folder in folders.values() for name in PANNUKE_FILES]


Loader = Callable[[int], tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]


def read_pannuke_folds(path: str | Path, folds: Mapping[str, Sequence[int]]) -> tuple[pl.DataFrame, Loader]:
    """The folds `folds` names ({split: [fold numbers]}) from the folder `path` that holds PanNuke's fold
    folders (`Fold 1`, `fold2`, ...), every fold checked before any patch is read.

    Returns the cases (case_id, group = the fold, label_id, split) and `load(i)`: case i's (image, instance,
    type) arrays. Errors name the config key `cohort.pannuke.folds` or the fold's file.
    """
    root = Path(path)
    split_of = _split_of_folds(folds)
    parts, loaders = [], []
    for k, folder in _fold_folders(root, split_of).items():
        split = split_of[k]
        fold = read_pannuke_fold(folder, f"fold{k}")
        parts.append(fold.cases.select("case_id", pl.lit(f"fold{k}").alias("group"), "label_id",
                                       pl.lit(split).alias("split")))
        loaders += [(fold, i) for i in range(len(fold))]

    def load(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        fold, index = loaders[i]
        return (fold.image(index), *fold.masks(index))

    return pl.concat(parts), load


# ------------------------------------------------------------------ manifest


def _manifest_file(path: Path) -> Path:
    if path.is_dir():
        entries = sorted(p.name for p in path.iterdir())
        if not entries:
            raise MintError(f"{path}: the folder is empty; expected a manifest ({' or '.join(MANIFEST_NAMES)}) "
                            f"and the images it lists")
        found = [path / n for n in MANIFEST_NAMES if (path / n).exists()]
        if len(found) != 1:
            raise MintError(f"{path}: expected exactly one of {list(MANIFEST_NAMES)} in the folder, found "
                            f"{[p.name for p in found] or 'none'} among {len(entries)} entries")
        return found[0]
    if not path.exists():
        raise MintError(f"manifest not found: {path}")
    return path  # read_user_table refuses what is not a regular file (a FIFO, a device)


def _manifest_table(path: str | Path, root: str | Path | None) -> tuple[Path, pl.DataFrame, Path]:
    """(manifest file, its rows as strings, the folder its paths start from), columns and root checked."""
    path = _manifest_file(Path(path))
    df = read_user_table(path, "manifest", text_suffixes=(".csv", ".tsv"),
                         expected=f"a header with {list(MANIFEST_COLUMNS)} and one row per patch")
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise MintError(f"{path}: manifest is missing column(s) {missing}; it needs {list(MANIFEST_COLUMNS)} "
                        f"(optional: mask_path, case_id, split, group); has {df.columns}")
    if df.height == 0:
        raise MintError(f"{path}: the manifest has no rows; expected one row per patch")
    base = Path(root) if root is not None else path.parent
    if not base.is_dir():
        raise MintError(f"image root not found: {base}")
    return path, df, base


def _row_location(path: Path, i: int) -> str:
    """How errors name the manifest's row `i` (from 0): a text file's line (1 is the header), a Parquet row."""
    return f"{path} line {i + 2}" if path.suffix.lower() != ".parquet" else f"{path} row {i + 1}"


def _row_file(row: Mapping[str, str | None], column: str, base: Path, where: str, allow_absolute: bool) -> Path | None:
    """The file a row's `column` cell names, relative to `base` (None where the cell is empty); MintError
    naming `where` if it leaves `base`."""
    rel = (row.get(column) or "").strip()
    if not rel:
        return None
    return resolve_inside(rel, base, f"{where}: {column}", allow_absolute=allow_absolute)


def manifest_files(path: str | Path, root: str | Path | None = None,
                   allow_absolute: bool = False) -> tuple[Path, list[Path]]:
    """The files `read_manifest` reads: the manifest (a folder's one `manifest.*`), and each row's image and
    mask in row order, resolved as it resolves them (not opened here)."""
    path, df, base = _manifest_table(path, root)
    columns = [c for c in ("image_path", "mask_path") if c in df.columns]
    files = []
    for i, row in enumerate(df.select(columns).iter_rows(named=True)):
        files += [f for c in columns if (f := _row_file(row, c, base, _row_location(path, i), allow_absolute))]
    return path, files


def read_manifest(path: str | Path, root: str | Path | None = None, allow_absolute: bool = False) -> pl.DataFrame:
    """The patches a manifest lists, every row checked: tissue known, case id unique, image readable and of
    the one size all patches share, mask (if any) a readable `.npy` of the image's height and width.

    `path` is the manifest file or a folder holding one `manifest.{csv,tsv,parquet}`. Returns case_id,
    source ('manifest'), group, label_id, split, image_path and mask_path (absolute paths; null where
    absent), in the manifest's order. A missing case_id is the image path without its suffix, its folders
    joined by '_' ('slide1/p0.png' gives 'slide1_p0'). A case id names the copy of its patch, so it must be a
    safe file name (`mint.core.paths.SAFE_NAME_RULE`); image and mask paths must lie inside `root`, or be
    absolute where `allow_absolute` (config key `cohort.allow_absolute_paths`).
    """
    path, df, base = _manifest_table(path, root)
    rows = []
    seen: dict[str, str] = {}
    size: tuple[tuple[int, int], str] | None = None
    for i, row in enumerate(df.iter_rows(named=True)):
        loc = _row_location(path, i)
        image_rel = (row.get("image_path") or "").strip()
        if not image_rel:
            raise MintError(f"{loc}: empty image_path")
        given = (row.get("case_id") or "").strip()
        case_id = given or "_".join(Path(image_rel).with_suffix("").parts)
        check_name(case_id, loc if given else f"{loc}: the case_id made from image_path {image_rel!r}")
        where = f"{loc} (case_id {case_id!r})"
        if case_id in seen:
            raise MintError(f"{where}: duplicate case_id (first at {seen[case_id]})")
        seen[case_id] = loc
        label = resolve_tissue(row.get("tissue"))
        if label is None:
            raise MintError(f"{where}: unknown tissue {row.get('tissue')!r}; expected {_ACCEPTED}")
        split = given_split(row.get("split"), where)
        image_path = _row_file(row, "image_path", base, where, allow_absolute)
        try:
            dims = check_image(image_path)
        except MintError as err:
            raise MintError(f"{where}: {err}") from err
        if size is None:
            size = (dims, where)
        elif dims != size[0]:
            raise MintError(f"{where}: image {image_path} is {dims[0]}x{dims[1]} px; all patches must share one "
                            f"size, and {size[1]} is {size[0][0]}x{size[0][1]}")
        mask_path = _row_file(row, "mask_path", base, where, allow_absolute)
        if mask_path is not None:
            try:
                shape = _load_npy(mask_path, mmap=True).shape
            except MintError as err:
                raise MintError(f"{where}: {err}") from err
            if not mask_shape_ok(shape) or shape[:2] != (dims[1], dims[0]):
                raise MintError(f"{where}: mask {mask_path} has shape {shape}; expected ({dims[1]}, {dims[0]}) "
                                f"to match image {image_path} ({dims[0]}x{dims[1]} px), optionally with 2 or 6 "
                                f"channels")
        rows.append({"case_id": case_id, "source": "manifest", "group": (row.get("group") or "").strip() or None,
                     "label_id": label, "split": split, "image_path": str(image_path.resolve()),
                     "mask_path": str(mask_path.resolve()) if mask_path else None})
    return pl.DataFrame(rows, schema={c: pl.String for c in rows[0]})


def read_manifest_cases(path: str | Path, root: str | Path | None = None,
                        allow_absolute: bool = False) -> tuple[pl.DataFrame, Loader]:
    """`read_manifest`'s cases (case_id, group, label_id, split) and `load(i)`: case i's (image, instance,
    type) arrays, the masks None where the row gives no mask_path."""
    cases = read_manifest(path, root, allow_absolute)
    images, masks = cases["image_path"].to_list(), cases["mask_path"].to_list()

    def load(i: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        image = load_image(images[i])
        if masks[i] is None:
            return image, None, None
        return (image, *load_mask(masks[i]))

    return cases.select("case_id", "group", "label_id", "split"), load
