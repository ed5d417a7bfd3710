"""The one image loader (mint.core.images): every mode a user hands in comes out as the stated 8-bit
pixels, through both applications' loaders (faces: `load_face`; tissue patches: `load_image`,
`check_image`, the manifest's loader), and what cannot be read is refused naming the file.

    .venv/bin/python -m pytest -q tests/test_images.py
"""

from __future__ import annotations

import os
import re
import struct
import zlib

import numpy as np
import polars as pl
import pytest
from PIL import Image

from mint.apps.rare_disease.face import load_face
from mint.apps.tissue.readers import check_image, load_image, read_manifest_cases
from mint.core.images import MAX_PIXELS, dataset_images, open_image, read_image
from mint.core.io import MintError

SIXTEEN = [0, 257, 32896, 65535]  # 0, 1, 128 and 255 times 257
EIGHT = [0, 1, 128, 255]


def grey16(path, mode: str = "I;16"):
    """A 4x4 16-bit grey image whose every row is SIXTEEN."""
    im = Image.new(mode, (4, 4))
    for x, v in enumerate(SIXTEEN):
        for y in range(4):
            im.putpixel((x, y), v)
    im.save(path)
    return path


def png_header(path, width: int, height: int):
    """A valid PNG that claims `width` x `height` 8-bit grey pixels and holds almost none: a bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return path


# ---------------------------------------------------------------- 16-bit grey, in both applications


@pytest.mark.parametrize("name, mode", [("g.png", "I;16"), ("g.tif", "I;16"), ("gb.tif", "I;16B")])
def test_16_bit_grey_is_scaled_not_clipped(tmp_path, name, mode):
    path = grey16(tmp_path / name, mode)
    with Image.open(path) as im:
        assert im.mode == mode
        assert (np.asarray(im.convert("L")) == 255).mean() > 0.7  # what Pillow alone does: clip
    assert (read_image(path, "L") == EIGHT).all()
    assert (np.round(load_face(path, size=4) * 255) == EIGHT).all()  # rare disease: the face loader
    patch = load_image(path)  # tissue: the patch loader, grey repeated in R, G and B
    assert patch.shape == (4, 4, 3) and (patch == np.array(EIGHT)[None, :, None]).all()
    assert check_image(path) == (4, 4)


def test_a_16_bit_patch_reaches_the_tissue_cohort_as_8_bit(tmp_path):
    grey16(tmp_path / "p0.png")
    pl.DataFrame({"image_path": ["p0.png"], "tissue": ["Colon"]}).write_csv(tmp_path / "manifest.csv")
    _, load = read_manifest_cases(tmp_path / "manifest.csv")
    image, _, _ = load(0)
    assert (image[..., 0] == EIGHT).all()


def test_every_16_bit_value_goes_to_the_nearest_8_bit_level(tmp_path):
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    Image.fromarray(values).save(tmp_path / "all.png")
    expected = np.floor(values.astype(np.float64) * 255 / 65535 + 0.5)  # no value falls on a tie
    assert (read_image(tmp_path / "all.png", "L") == expected).all()


def test_32_bit_integers_in_16_bit_range_are_scaled_and_others_refused(tmp_path):
    Image.fromarray(np.array([SIXTEEN], np.int32), "I").save(tmp_path / "i.tif")
    assert (read_image(tmp_path / "i.tif", "L") == EIGHT).all()
    Image.fromarray(np.array([[0, 70000]], np.int32), "I").save(tmp_path / "big.tif")
    with pytest.raises(MintError, match=r"big.tif: mode I image with values 0 to 70000; .* 0-65535"):
        read_image(tmp_path / "big.tif")


# ---------------------------------------------------------------- the other modes


def test_an_exif_rotated_jpeg_is_read_upright(tmp_path):
    im = Image.new("RGB", (40, 20), "white")
    im.paste((0, 0, 0), (0, 0, 20, 20))  # left half black, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the left half ends on top
    im.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = read_image(tmp_path / "phone.jpg")
    assert upright.shape == (40, 20, 3)
    assert upright[:20].mean() < 10 and upright[20:].mean() > 245
    assert check_image(tmp_path / "phone.jpg") == (20, 40)
    face = load_face(tmp_path / "phone.jpg", size=20)  # resized from 20x40, still dark on top
    assert face[:8].mean() < 0.1 and face[12:].mean() > 0.9


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([200, 10, 30, 0, 0, 255] + [0] * 762)
    p.putpixel((1, 0), 1)
    p.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").tolist() == [[[200, 10, 30], [0, 0, 255]]]
    assert (read_image(tmp_path / "p.png", "L") == np.asarray(Image.open(tmp_path / "p.png").convert("L"))).all()
    p.save(tmp_path / "pt.png", transparency=1)  # palette entry 1 transparent: white
    assert read_image(tmp_path / "pt.png").tolist() == [[[200, 10, 30], [255, 255, 255]]]


def test_alpha_is_composited_on_white(tmp_path):
    im = Image.new("RGBA", (3, 1))
    for x, alpha in enumerate([0, 128, 255]):
        im.putpixel((x, 0), (10, 20, 30, alpha))
    im.save(tmp_path / "rgba.png")
    # (c * a + 255 * (255 - a) + 127) // 255: for a = 128, 10 -> 132, 20 -> 137, 30 -> 142
    assert read_image(tmp_path / "rgba.png").tolist() == [[[255, 255, 255], [132, 137, 142], [10, 20, 30]]]
    Image.new("LA", (1, 1), (100, 0)).save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png", "L").tolist() == [[255]]
    assert read_image(tmp_path / "la.png").tolist() == [[[255, 255, 255]]]


def test_cmyk_ycbcr_1_bit_and_float(tmp_path):
    Image.new("CMYK", (1, 1), (100, 50, 0, 30)).save(tmp_path / "c.tif")
    assert read_image(tmp_path / "c.tif").tolist() == [[[137, 181, 225]]]  # (255 - c)(255 - k) / 255
    ycc = Image.new("RGB", (8, 8), (40, 120, 200)).convert("YCbCr")
    assert np.abs(read_image_of(ycc, tmp_path / "y.jpg").astype(int) - [40, 120, 200]).max() <= 3
    one = Image.new("1", (2, 1))
    one.putpixel((1, 0), 1)
    one.save(tmp_path / "one.png")
    assert read_image(tmp_path / "one.png", "L").tolist() == [[0, 255]]
    Image.fromarray(np.array([[0, 0.2, 0.5, 1]], np.float32)).save(tmp_path / "f.tif")
    assert read_image(tmp_path / "f.tif", "L").tolist() == [[0, 51, 128, 255]]  # floor(v * 255 + 0.5)


def read_image_of(im: Image.Image, path) -> np.ndarray:
    im.save(path, quality=100)
    with Image.open(path) as opened:
        assert opened.mode in ("RGB", "YCbCr")
    return read_image(path)


@pytest.mark.parametrize("values, pattern", [
    ([[0, np.nan]], r"mode F \(float\) image holds NaN or infinite values"),
    ([[0, np.inf]], r"mode F \(float\) image holds NaN or infinite values"),
    ([[-0.5, 4095.0]], r"mode F \(float\) image with values -0.5 to 4095; float images must lie in \[0, 1\]"),
])
def test_float_outside_0_1_is_refused(tmp_path, values, pattern):
    Image.fromarray(np.array(values, np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(MintError, match=re.escape(str(tmp_path / "f.tif")) + ": " + pattern):
        read_image(tmp_path / "f.tif")


def test_an_unconverted_mode_is_refused_naming_it(tmp_path):
    Image.new("LAB", (2, 2)).save(tmp_path / "lab.tif")
    with pytest.raises(MintError, match=r"lab.tif: images of mode 'LAB' are not read; accepted modes: 1, L, RGB"):
        load_face(tmp_path / "lab.tif")


# ---------------------------------------------------------------- 8-bit: exactly as before


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_8_bit_images_are_unchanged(tmp_path, mode):
    rng = np.random.default_rng(0)
    shape = (9, 7, 3) if mode == "RGB" else (9, 7)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as im:
        rgb, grey = np.asarray(im.convert("RGB")), np.asarray(im.convert("L"))
    assert (read_image(tmp_path / "x.png", "RGB") == rgb).all()
    assert (load_image(tmp_path / "x.png") == rgb).all()
    assert (read_image(tmp_path / "x.png", "L") == grey).all()
    face = np.asarray(Image.fromarray(grey).resize((5, 5), Image.Resampling.LANCZOS), np.float32) / 255.0
    assert (load_face(tmp_path / "x.png", size=5) == face).all()  # the face loader's resize, as before


# ---------------------------------------------------------------- refused before decoding


def test_not_a_regular_file_is_refused_before_it_is_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")  # opening it would wait for a writer forever
    with pytest.raises(MintError, match=r"pipe.png: the face image is a FIFO \(named pipe\), not a regular file"):
        load_face(tmp_path / "pipe.png")
    with pytest.raises(MintError, match=r"pipe.png: the image is a FIFO"):
        check_image(tmp_path / "pipe.png")
    with pytest.raises(MintError, match=r"the image is a folder, not a regular file"):
        open_image(tmp_path)
    with pytest.raises(MintError, match=r"face image not found: .*gone.png"):
        load_face(tmp_path / "gone.png")


@pytest.mark.parametrize("side, pattern", [
    (8200, rf"8200x8200 px is 67240000 pixels, more than the {MAX_PIXELS} MINT decodes"),  # ours
    (10_000, rf"possible decompression bomb \(Image size \(100000000 pixels\) exceeds limit .*\); MINT decodes "
             rf"images of at most {MAX_PIXELS} pixels"),  # Pillow's warning, above its limit
    (20_000, r"possible decompression bomb \(Image size \(400000000 pixels\) exceeds limit"),  # Pillow's error
])
def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, side, pattern):
    path = png_header(tmp_path / "bomb.png", side, side)
    with pytest.raises(MintError, match=re.escape(str(path)) + ": .*" + pattern):
        read_image(path)
    with pytest.raises(MintError, match="bomb.png"):
        dataset_images([[str(path)]])


def test_a_truncated_16_bit_image_is_refused(tmp_path):
    values = np.random.default_rng(1).integers(0, 65536, (64, 64), dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MintError, match=r"t.png: not a readable image"):
        load_image(tmp_path / "t.png")


# ---------------------------------------------------------------- students' training rows


def test_dataset_images_keep_8_bit_paths_and_convert_the_rest(tmp_path):
    from datasets import Dataset, Sequence
    from datasets import Image as ImageFeature

    Image.new("L", (4, 4), 90).save(tmp_path / "plain.png")
    grey16(tmp_path / "deep.png")
    plain, deep = str(tmp_path / "plain.png"), str(tmp_path / "deep.png")
    values = dataset_images([[plain], [deep], [plain]])
    assert values[0] == values[2] == [{"bytes": None, "path": plain}]  # stored as a plain path column is
    assert values[1][0]["path"] is None
    rows = Dataset.from_list([{"images": v} for v in values]).cast_column("images", Sequence(ImageFeature()))
    decoded = np.asarray(rows[1]["images"][0].convert("RGB"))
    assert (decoded == read_image(deep)).all() and (decoded[..., 0] == EIGHT).all()


def test_a_vision_students_training_rows_read_16_bit_images_scaled(tmp_path):
    """mint.core.train.load_dataset: the rows a vision student trains on decode to `open_image`'s pixels."""
    from mint.core import schemas
    from mint.core.io import write_parquet
    from mint.core.train import load_dataset

    Image.new("RGB", (4, 4), (9, 99, 199)).save(tmp_path / "plain.png")
    grey16(tmp_path / "deep.png")
    message = [{"role": "user", "content": "Which?"}]
    rows = pl.DataFrame({"case_id": ["a", "b"], "prompt": [message] * 2, "completion": [message] * 2,
                         "target_ids": [["x"]] * 2, "target": ["truth"] * 2, "k": [1, 1], "seed": [0, 0],
                         "images": [[str(tmp_path / "plain.png")], [str(tmp_path / "deep.png")]]})
    write_parquet(rows, tmp_path / "sft.parquet", schemas.SFT_VISION)
    dataset, case_ids = load_dataset("sft", tmp_path / "sft.parquet", "vision")
    assert case_ids == ["a", "b"]
    assert (np.asarray(dataset[0]["images"][0]) == [9, 99, 199]).all()
    assert (np.asarray(dataset[1]["images"][0].convert("L")) == EIGHT).all()
