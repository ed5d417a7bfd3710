"""Reading an input image: the one loader every step that opens a user's image goes through.

Faces, tissue patches, a user's own images: each arrives in whatever mode its camera, scanner or export
tool wrote, and a plain `PIL.Image.convert("RGB")` clips a 16-bit image at 255 (a microscope's 16-bit
greyscale PNG came out 99.5 % white). `open_image` converts every mode a user can hand in to 8-bit
"RGB" or "L" by a stated rule, refuses what it cannot convert, and refuses before decoding an image
larger than `MAX_PIXELS` or a path that is not a regular file, each with a `MintError` naming the file.

Conversion to 8 bits a channel (docs/inputs.md, "Images", says the same for users):

- "L", "RGB" (8 bits): kept as they are, byte for byte (a transparent colour key is ignored).
- "1" (1 bit): 0 and 255.
- "I;16", "I;16B", "I;16L", "I;16N" (16-bit grey), and "I" (32-bit integer) whose values lie in 0-65535:
  the nearest 8-bit level of v * 255 / 65535, i.e. (v + 128) // 257 in integers (no ties occur), so
  0, 257, 32896, 65535 give 0, 1, 128, 255. An "I" image with a value outside 0-65535 is refused.
- "F" (32-bit float, as float TIFFs open): values in [0, 1] give floor(v * 255 + 0.5). NaN, an infinity
  or a value outside [0, 1] is refused: a per-image min-max stretch would give each image its own
  contrast, and any other fixed range would be a guess.
- 16-bit colour (RGB or RGBA PNG/TIFF): Pillow opens them as 8-bit "RGB"/"RGBA" and keeps each sample's
  high byte, floor(v / 256), at most one level from the grey rule's rounding. Float colour TIFFs
  Pillow cannot open, and they are refused as unreadable.
- Alpha ("RGBA", "LA", "PA", "RGBa", and "P" with a transparent palette entry): composited on
  white, c' = (c * a + 255 * (255 - a) + 127) // 255, as transformers' `convert_to_rgb` does and as a
  viewer shows it; fully transparent pixels become white, opaque ones keep their colour.
- "P" (palette) without transparency, "RGBX", "CMYK", "YCbCr": Pillow's conversion to RGB
  (CMYK by (255 - c)(255 - k) / 255, no colour profile applied).
- Any other mode (e.g. "LAB", a CIELab TIFF) is refused, naming the file and its mode.

The 8-bit grey or colour image is then turned into the mode asked for by Pillow (grey to RGB repeats the
grey; RGB to "L" is ITU-R 601-2 luma), so 8-bit "RGB" and "L" files give exactly what
`Image.open(path).convert(mode)` gave before. An EXIF orientation tag is applied first
(`ImageOps.exif_transpose`), so a phone's portrait JPEG is read upright. A multi-frame file (GIF, TIFF)
gives its first frame.

    python -m mint.core.images scan.tif --mode L    # the file's mode and size, and the 8-bit result's range
"""

from __future__ import annotations

import argparse
import io
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps

from mint.core.io import MintError, require_regular_file

# At most 2**26 pixels (8192 x 8192; a 64-megapixel photo) are decoded: 192 MiB as 8-bit RGB, and
# 256 MiB for each int32 or float32 copy a 16-bit or float image takes while it is converted. It is
# below Pillow's own limit (Image.MAX_IMAGE_PIXELS, 89,478,485 by default), so this one governs;
# Pillow's warning and error (above 1x and 2x its limit) are refused too.
MAX_PIXELS = 2**26

_GREY16 = ("I;16", "I;16B", "I;16L", "I;16N")
_WITH_ALPHA = ("RGBA", "RGBa", "LA", "PA")
_TO_RGB = ("RGBX", "CMYK", "YCbCr")
ACCEPTED_MODES = ("1", "L", "RGB", "P", *_WITH_ALPHA, *_TO_RGB, *_GREY16, "I", "F")


def require_image_file(path: Path, what: str = "image") -> None:
    """MintError naming `path` if it is missing or not a regular file (`mint.core.io.require_regular_file`):
    a FIFO or a device would block or stream without end when read, so it is refused before it is opened."""
    if not path.exists():
        raise MintError(f"{what} not found: {path}")
    require_regular_file(path, what)


def open_image(path: str | os.PathLike, mode: str = "RGB", *, what: str = "image",
               max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image at `path`, verified, decoded to the last pixel, upright and converted to 8-bit `mode`
    ("RGB" or "L") by the rules of this module's docstring; MintError naming the file (and `what` it
    is, e.g. "face image") if it is missing, not a regular file, larger than `max_pixels`, unreadable,
    truncated or of a mode that cannot be converted."""
    if mode not in ("RGB", "L"):
        raise ValueError(f"open_image: mode must be 'RGB' or 'L', not {mode!r}")
    path = Path(path)
    require_image_file(path, what)
    with _reading(path):
        with open(path, "rb") as fp:
            with Image.open(fp) as im:
                _check_pixels(im, path, max_pixels)
                im.verify()  # structure and checksums (PNG CRCs), before decoding
            fp.seek(0)
            with Image.open(fp) as im:
                im.load()  # every pixel, so a truncated file fails here and not in training
                image = _eight_bit(ImageOps.exif_transpose(im), path)
    return image if image.mode == mode else image.convert(mode)


def read_image(path: str | os.PathLike, mode: str = "RGB", *, what: str = "image",
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """`open_image` as a uint8 array: (H, W, 3) for "RGB", (H, W) for "L"."""
    return np.asarray(open_image(path, mode, what=what, max_pixels=max_pixels))


def dataset_images(paths: Sequence[Sequence[str]]) -> list[list[dict]]:
    """A `datasets.Image` column's values for rows of image paths: {"path": p, "bytes": None} where
    decoding the file as it is gives `open_image(p, "RGB")`'s pixels (8-bit "RGB", or "L" that the
    processor's RGB conversion repeats; upright, no transparency: stored exactly as a plain path column
    is), else the converted pixels as PNG bytes.
    Each distinct file is read once, with `open_image`'s checks."""
    values: dict[str, dict] = {}
    for p in {p for row in paths for p in row}:
        path = Path(p)
        require_image_file(path)
        with _reading(path), open(path, "rb") as fp, Image.open(fp) as im:
            _check_pixels(im, path, MAX_PIXELS)
            as_is = (im.mode in ("RGB", "L") and "transparency" not in im.info
                     and im.getexif().get(ExifTags.Base.Orientation, 1) == 1)
        if as_is:
            values[p] = {"bytes": None, "path": p}
        else:
            buffer = io.BytesIO()
            open_image(path, "RGB").save(buffer, format="PNG")
            values[p] = {"bytes": buffer.getvalue(), "path": None}
    return [[values[p] for p in row] for row in paths]


# ---------------------------------------------------------------- the rules


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turns what Pillow raises while reading `path` (unreadable, truncated, a decompression bomb by its
    own limit, its warning included) into a MintError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except MintError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise MintError(f"{path}: refused as a possible decompression bomb ({err}); MINT decodes images of "
                        f"at most {MAX_PIXELS} pixels") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise MintError(f"{path}: not a readable image ({err})") from err


def _check_pixels(im: Image.Image, path: Path, max_pixels: int) -> None:
    width, height = im.size
    if width * height > max_pixels:
        raise MintError(f"{path}: {width}x{height} px is {width * height} pixels, more than the {max_pixels} "
                        f"MINT decodes (mint.core.images.MAX_PIXELS; a larger image may be a decompression "
                        f"bomb); downscale it")


def _eight_bit(im: Image.Image, path: Path) -> Image.Image:
    """`im` as 8-bit "L" or "RGB" (grey stays grey) by the module's rules; MintError for other modes."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode == "P":
        return _on_white(im.convert("RGBA")) if "transparency" in im.info else im.convert("RGB")
    if mode == "LA":
        return _on_white(im)
    if mode in _WITH_ALPHA:
        return _on_white(im.convert("RGBA"))
    if mode in _TO_RGB:
        return im.convert("RGB")
    if mode in _GREY16 or mode == "I":
        values = np.asarray(im).astype(np.int32)  # 0-65535 and (v + 128) fit
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > 65535:
            raise MintError(f"{path}: mode {mode} image with values {low} to {high}; integer images must lie "
                            f"in 0-65535 (16 bits) to be scaled to 8 bits")
        return Image.fromarray(((values + 128) // 257).astype(np.uint8), "L")
    if mode == "F":
        values = np.asarray(im, dtype=np.float32)
        if not np.isfinite(values).all():
            raise MintError(f"{path}: mode F (float) image holds NaN or infinite values")
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low < 0 or high > 1:
            raise MintError(f"{path}: mode F (float) image with values {low:g} to {high:g}; float images must "
                            f"lie in [0, 1] (save other ranges as 8- or 16-bit integers)")
        return Image.fromarray(np.floor(values * 255 + 0.5).astype(np.uint8), "L")
    raise MintError(f"{path}: images of mode {mode!r} are not read; accepted modes: {', '.join(ACCEPTED_MODES)}")


def _on_white(im: Image.Image) -> Image.Image:
    """An "RGBA" or "LA" image composited on white, rounded to nearest: (c * a + 255 * (255 - a) + 127) // 255."""
    values = np.asarray(im).astype(np.uint32)
    colour, alpha = values[..., :-1], values[..., -1:]
    out = (colour * alpha + 255 * (255 - alpha) + 127) // 255
    return Image.fromarray(out.astype(np.uint8).squeeze(-1) if im.mode == "LA" else out.astype(np.uint8),
                           "L" if im.mode == "LA" else "RGB")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Read an image as MINT does; print its mode, size and result.")
    parser.add_argument("paths", nargs="+", help="image files")
    parser.add_argument("--mode", choices=["RGB", "L"], default="RGB", help="mode to convert to")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    for path in args.paths:
        image = read_image(path, args.mode)  # checks the file before Pillow opens it below
        with Image.open(path) as im:
            given = f"{im.mode} {im.size[0]}x{im.size[1]}"
        print(f"{path}: {given} -> {args.mode} {image.shape}, values {image.min()} to {image.max()}")


if __name__ == "__main__":
    main()
