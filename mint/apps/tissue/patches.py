"""Simulated H&E patches of the 19 PanNuke tissues, each with its nucleus masks and a caption.

A patch covers PanNuke's field, 64 x 64 µm (256 px at 0.25 µm/px, 40x), at `size` pixels a side
(64 by default: 1 µm/px). Its colour follows the Beer-Lambert stain model: each pixel's optical
density is haematoxylin (nuclei, blue-purple) plus eosin (stroma and cytoplasm, pink) along
Macenko's reference stain vectors, with per-patch stain strength, stain hue, blur and noise.

Every tissue has a `Profile`: an arrangement (glands, follicles, tubules, alveoli, stratified
epithelium, cords, solid sheet, stroma), its mix of the five nucleus types, how many nuclei a field
holds, how large and elongated its epithelial and neoplastic nuclei are, how pink its stroma is and
how wide its lumens are. Tissues of one arrangement share colours and differ mostly in the type mix
and nucleus sizes, which are hard to see at 64 px (a neoplastic nucleus is an epithelial one drawn
a little larger and paler; an inflammatory one a dead one a little larger): the image alone leaves
them ambiguous, while the masks (`nucleus_features`) separate more of them. The type of every drawn
nucleus comes from the tissue's mix, so type shares over many patches match the profile.

`nucleus_features` reads only masks, so PanNuke's masks give the same features as simulated ones.

    python -c "import numpy as np; from mint.apps.tissue.patches import render_patch; \
print(render_patch('colon', np.random.default_rng(0))[3])"
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image

from mint.apps.tissue.tissues import N_TYPES, NUCLEUS_TYPES, TISSUE_IDS, Tissue, tissue
from mint.core.io import MintError

FIELD_UM = 64.0  # side of a PanNuke patch in µm: 256 px x 0.25 µm/px
DEFAULT_SIZE = 64  # pixels a side: 1 µm/px

# Optical density per unit stain, RGB order: Macenko et al. (2009)'s reference H&E vectors.
HAEMATOXYLIN = np.array([0.5626, 0.7201, 0.4062])
EOSIN = np.array([0.2159, 0.8012, 0.5581])
GLASS_OD = 0.04  # unstained slide: nearly white

NEO, INF, CON, DEAD, EPI = range(N_TYPES)
LINING_TYPES = (NEO, EPI)  # nuclei that line glands and make up sheets; the others lie in the stroma


@dataclass(frozen=True)
class Look:
    """How a nucleus type looks, whatever the tissue."""

    radius: float  # µm, geometric mean of the semi-axes
    aspect: float  # major / minor axis
    stain: float  # haematoxylin OD at the centre
    texture: float  # relative sd of chromatin speckle
    pleomorphism: float  # sd of log radius between nuclei


LOOKS = {
    NEO: Look(radius=4.3, aspect=1.3, stain=1.00, texture=0.25, pleomorphism=0.20),
    INF: Look(radius=2.7, aspect=1.05, stain=1.55, texture=0.08, pleomorphism=0.08),
    CON: Look(radius=3.0, aspect=2.8, stain=1.25, texture=0.10, pleomorphism=0.12),
    DEAD: Look(radius=2.2, aspect=1.15, stain=1.75, texture=0.05, pleomorphism=0.15),
    EPI: Look(radius=4.0, aspect=1.3, stain=1.08, texture=0.18, pleomorphism=0.10),
}


@dataclass(frozen=True)
class Profile:
    """What a field of one tissue holds; `render_patch` varies every number from patch to patch."""

    arrangement: str  # a key of ARRANGEMENTS
    mix: tuple[float, float, float, float, float]  # expected share of each nucleus type, NUCLEUS_TYPES order
    count: float  # mean nuclei per 64 x 64 µm field
    size: float = 1.0  # radius factor of neoplastic and epithelial nuclei
    aspect: float = 1.0  # elongation factor of neoplastic and epithelial nuclei
    eosin: float = 0.55  # eosin OD of stroma and cytoplasm
    lumen: float = 0.0  # mean lumen radius, µm (glands, follicles, tubules, alveoli)
    layers: int = 1  # rings of nuclei around a lumen


# Groups that share an arrangement and colours differ mostly in type mix and nucleus size.
PROFILES: dict[str, Profile] = {
    "colon": Profile("glands", (0.35, 0.15, 0.15, 0.02, 0.33), 38, aspect=1.35, lumen=9),
    "stomach": Profile("glands", (0.10, 0.26, 0.18, 0.03, 0.43), 38, size=0.95, aspect=1.3, lumen=8),
    "prostate": Profile("glands", (0.48, 0.05, 0.14, 0.01, 0.32), 36, size=0.95, aspect=1.1, lumen=10),
    "pancreatic": Profile("glands", (0.42, 0.05, 0.22, 0.05, 0.26), 40, eosin=0.6, lumen=6),
    "bile_duct": Profile("glands", (0.26, 0.18, 0.36, 0.02, 0.18), 32, aspect=1.2, lumen=8),
    "uterus": Profile("glands", (0.28, 0.10, 0.46, 0.02, 0.14), 36, aspect=1.3, eosin=0.5, lumen=7),
    "thyroid": Profile("follicles", (0.25, 0.06, 0.10, 0.01, 0.58), 34, size=0.9, eosin=0.6, lumen=8),
    "kidney": Profile("tubules", (0.30, 0.08, 0.12, 0.03, 0.47), 36, eosin=0.7, lumen=4),
    "testis": Profile("tubules", (0.45, 0.05, 0.15, 0.05, 0.30), 50, lumen=5, layers=3),
    "lung": Profile("alveoli", (0.35, 0.28, 0.22, 0.03, 0.12), 26, eosin=0.45, lumen=14),
    "skin": Profile("stratified", (0.18, 0.10, 0.26, 0.02, 0.44), 40, eosin=0.6),
    "esophagus": Profile("stratified", (0.30, 0.06, 0.14, 0.03, 0.47), 44, eosin=0.6),
    "cervix": Profile("stratified", (0.30, 0.25, 0.14, 0.04, 0.27), 42, eosin=0.6),
    "head_neck": Profile("stratified", (0.56, 0.11, 0.13, 0.04, 0.16), 42, size=1.15, eosin=0.6),
    "bladder": Profile("stratified", (0.55, 0.10, 0.20, 0.02, 0.13), 44, size=1.1, eosin=0.6),
    "breast": Profile("sheet", (0.60, 0.12, 0.18, 0.02, 0.08), 42, size=1.2, eosin=0.5),
    "liver": Profile("cords", (0.45, 0.10, 0.08, 0.04, 0.33), 28, size=1.25, eosin=0.75),
    "adrenal_gland": Profile("cords", (0.42, 0.06, 0.16, 0.02, 0.34), 30, size=1.1, eosin=0.4),
    "ovarian": Profile("stroma", (0.40, 0.05, 0.48, 0.02, 0.05), 40, eosin=0.55),
}

PHRASES = {
    "glands": "glands lined by nuclei around open lumens in stroma",
    "follicles": "follicles filled with pink colloid",
    "tubules": "tubules cut across, rings of nuclei around small lumens",
    "alveoli": "thin alveolar walls around empty air spaces",
    "stratified": "a stratified epithelium above stroma",
    "cords": "cords of cells between pale sinusoids",
    "sheet": "a solid sheet of cells",
    "stroma": "fibrous stroma with streaming spindle cells",
}
TYPE_WORDS = {NEO: "neoplastic", INF: "inflammatory", CON: "connective tissue", DEAD: "dead", EPI: "epithelial"}


@dataclass
class Layout:
    """An arrangement drawn on the pixel grid: eosin map, slots for lining nuclei, where the others may go."""

    eosin: np.ndarray  # (size, size) eosin OD
    slots: np.ndarray  # (M, 4): y µm, x µm, angle rad, aspect factor; places for lining nuclei
    free: np.ndarray  # (size, size) bool: stroma, where the other nuclei go
    flow: float  # angle (rad) connective nuclei follow


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean unit-sd noise varying over about size/cells pixels (bilinear upsampling of a coarse grid)."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    up = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BILINEAR))
    return (up - up.mean()) / (up.std() + 1e-6)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in µm: (y, x), each (size, 1) / (1, size)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) * (FIELD_UM / size)
    return c[:, None], c[None, :]


def _ring_slots(cy: float, cx: float, radius: float, spacing: float, rng: np.random.Generator) -> list[tuple]:
    n = max(3, int(2 * math.pi * radius / spacing))
    start = rng.uniform(0, 2 * math.pi)
    out = []
    for k in range(n):
        a = start + 2 * math.pi * k / n
        out.append((cy + radius * math.sin(a), cx + radius * math.cos(a), a, 1.0))
    return out


def _hex_slots(spacing: float, rng: np.random.Generator, angle: float = 0.0) -> np.ndarray:
    """A jittered hexagonal lattice over the field (rotated by `angle`), one slot per cell."""
    row = spacing * math.sqrt(3) / 2
    half = FIELD_UM * 0.75
    ks = np.arange(-int(half / row) - 1, int(half / row) + 2)
    js = np.arange(-int(half / spacing) - 1, int(half / spacing) + 2)
    kk, jj = np.meshgrid(ks, js, indexing="ij")
    v = kk * row
    u = jj * spacing + (kk % 2) * spacing / 2
    u = u + rng.uniform(0, spacing)
    v = v + rng.uniform(0, row)
    c, s = math.cos(angle), math.sin(angle)
    y = FIELD_UM / 2 + u * s + v * c
    x = FIELD_UM / 2 + u * c - v * s
    y = y.ravel() + rng.normal(0, 0.12 * spacing, y.size)
    x = x.ravel() + rng.normal(0, 0.12 * spacing, x.size)
    keep = (y >= 0) & (y < FIELD_UM) & (x >= 0) & (x < FIELD_UM)
    n = int(keep.sum())
    return np.stack([y[keep], x[keep], np.full(n, angle), np.ones(n)], axis=1)


def _lumens(rng, p: Profile, size: int, n_range: tuple[int, int], spread: float, wall: float, fill: float,
            ring: bool = True) -> Layout:
    """Round lumens (glands, follicles, tubules, alveoli): lumen of OD `fill` x eosin, a wall of cytoplasm,
    rings of slots at the base of the wall, stroma elsewhere."""
    y, x = _grid(size)
    radius = LOOKS[EPI].radius * p.size
    n = int(rng.integers(n_range[0], n_range[1] + 1))
    lumen = np.zeros((size, size), bool)
    epithelium = np.zeros((size, size), bool)
    slots: list[tuple] = []
    centres: list[tuple[float, float, float]] = []
    for _ in range(n):
        r = p.lumen * float(rng.lognormal(0, 0.2))
        for _try in range(10):  # keep lumens apart so walls stay visible
            cy, cx = rng.uniform(-spread, FIELD_UM + spread, 2)
            if all(math.hypot(cy - a, cx - b) > (r + q) * 0.9 + wall for a, b, q in centres):
                break
        centres.append((cy, cx, r))
        d = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
        lumen |= d < r
        epithelium |= d < r + wall
        if ring:
            for layer in range(p.layers):
                slots += _ring_slots(cy, cx, r + radius * (1.1 + 2.1 * layer), 2 * radius * 1.15, rng)
    epithelium &= ~lumen
    e = p.eosin * (1 + 0.15 * _smooth_noise(rng, size, 6))
    e = np.where(epithelium, p.eosin * 1.15, e)
    e = np.where(lumen, fill * p.eosin, e)
    arr = np.array(slots, dtype=np.float64).reshape(-1, 4)
    inside = (arr[:, 0] >= 0) & (arr[:, 0] < FIELD_UM) & (arr[:, 1] >= 0) & (arr[:, 1] < FIELD_UM)
    arr = arr[inside]
    scale = size / FIELD_UM
    iy, ix = (arr[:, 0] * scale).astype(int), (arr[:, 1] * scale).astype(int)
    arr = arr[~lumen[iy, ix]]  # a slot of one gland that falls in another's lumen
    return Layout(e.astype(np.float32), arr, ~lumen & ~epithelium, float(rng.uniform(0, math.pi)))


def _glands(rng, p, size):
    return _lumens(rng, p, size, (1, 3), 6.0, wall=2.6 * LOOKS[EPI].radius * p.size, fill=0.08)


def _follicles(rng, p, size):
    return _lumens(rng, p, size, (3, 6), 4.0, wall=1.8 * LOOKS[EPI].radius * p.size, fill=1.35)


def _tubules(rng, p, size):
    wall = (1.1 + 2.1 * p.layers) * LOOKS[EPI].radius * p.size
    return _lumens(rng, p, size, (2, 5) if p.layers == 1 else (1, 2), 6.0, wall=wall, fill=0.15)


def _alveoli(rng, p, size):
    layout = _lumens(rng, p, size, (3, 5), 8.0, wall=1.5, fill=0.03, ring=True)
    keep = rng.random(len(layout.slots)) < 0.5  # flat, sparse pneumocytes
    layout.slots = layout.slots[keep]
    return layout


def _stratified(rng, p, size):
    """Epithelium on one side of a basal line, stroma on the other; nuclei flatten away from the base."""
    y, x = _grid(size)
    angle = float(rng.uniform(0, 2 * math.pi))
    offset = float(rng.uniform(-0.35, 0.1)) * FIELD_UM
    ny, nx = math.sin(angle), math.cos(angle)
    depth = (y - FIELD_UM / 2) * ny + (x - FIELD_UM / 2) * nx - offset  # µm above the basal line
    epithelium = depth > 0
    e = p.eosin * (1 + 0.15 * _smooth_noise(rng, size, 6))
    e = np.where(epithelium, p.eosin * (1.1 + 0.004 * depth), e)
    slots = _hex_slots(2 * LOOKS[EPI].radius * p.size * 1.2, rng, angle + math.pi / 2)
    d = (slots[:, 0] - FIELD_UM / 2) * ny + (slots[:, 1] - FIELD_UM / 2) * nx - offset
    slots = slots[d > 1.0]
    slots[:, 3] = 1 + np.clip(d[d > 1.0] / 35.0, 0, 1.0)
    return Layout(e.astype(np.float32), slots, ~epithelium, angle + math.pi / 2)


def _cords(rng, p, size):
    """Parallel cords about two cells wide, separated by pale sinusoids."""
    y, x = _grid(size)
    angle = float(rng.uniform(0, math.pi))
    spacing = 2 * LOOKS[EPI].radius * p.size * 1.25
    period = 2.3 * spacing
    shift = float(rng.uniform(0, period))
    sinusoid = np.mod(y * math.cos(angle) - x * math.sin(angle) + shift, period) < 0.22 * period
    e = p.eosin * (1 + 0.2 * _smooth_noise(rng, size, 10))
    e = np.where(sinusoid, 0.2 * p.eosin, e)
    slots = _hex_slots(spacing, rng, angle)
    across = np.mod(slots[:, 0] * math.cos(angle) - slots[:, 1] * math.sin(angle) + shift, period)
    slots = slots[across > 0.3 * period]
    return Layout(e.astype(np.float32), slots, sinusoid, angle)


def _sheet(rng, p, size):
    e = p.eosin * (1 + 0.12 * _smooth_noise(rng, size, 8))
    slots = _hex_slots(2 * LOOKS[EPI].radius * p.size * 1.2, rng, float(rng.uniform(0, math.pi)))
    slots[:, 2] = rng.uniform(0, math.pi, len(slots))
    return Layout(e.astype(np.float32), slots, np.zeros((size, size), bool), float(rng.uniform(0, math.pi)))


def _stroma(rng, p, size):
    e = p.eosin * (1 + 0.2 * _smooth_noise(rng, size, 8))
    return Layout(e.astype(np.float32), np.zeros((0, 4)), np.ones((size, size), bool),
                  float(rng.uniform(0, math.pi)))


ARRANGEMENTS = {"glands": _glands, "follicles": _follicles, "tubules": _tubules, "alveoli": _alveoli,
                "stratified": _stratified, "cords": _cords, "sheet": _sheet, "stroma": _stroma}


def _place(rng: np.random.Generator, types: np.ndarray, layout: Layout, size: int) -> np.ndarray:
    """(n, 5) rows of type, y µm, x µm, angle, aspect factor: lining types fill the slots first, the others
    go to free stroma (where there is none, to the remaining slots), each kept clear of earlier nuclei."""
    slots = layout.slots[rng.permutation(len(layout.slots))]
    lining = np.isin(types, LINING_TYPES)
    first = types[lining][: len(slots)]
    rest = np.concatenate([types[lining][len(slots):], types[~lining]]).astype(np.int64)
    used = len(first)
    free_y, free_x = np.nonzero(layout.free)
    has_free = free_y.size > 0.05 * size * size
    if not has_free:  # a solid sheet: the stroma cells take the remaining slots
        extra = min(len(rest), len(slots) - used)
        first = np.concatenate([first, rest[:extra]])
        rest = rest[extra:]
        used += extra
    rows = np.zeros((len(first) + len(rest), 5))
    rows[: used, 0] = first
    rows[: used, 1:3] = slots[:used, :2]
    rows[: used, 3] = slots[:used, 2] + rng.normal(0, 0.15, used)
    rows[: used, 4] = slots[:used, 3]
    m, tries = len(rest), 12
    if m:
        um_per_px = FIELD_UM / size
        if has_free:
            pick = rng.integers(free_y.size, size=(m, tries))
            cand = np.stack([(free_y[pick] + rng.random((m, tries))) * um_per_px,
                             (free_x[pick] + rng.random((m, tries))) * um_per_px], axis=-1)
        else:
            cand = rng.uniform(0, FIELD_UM, (m, tries, 2))
        if rng.random() < 0.5:  # inflammatory cells gather in a lymphoid aggregate in about half the fields
            clustered = (rest == INF)[:, None] & (rng.random((m, tries)) < 0.7)
            near = rng.uniform(0, FIELD_UM, 2) + rng.normal(0, 7.0, (m, tries, 2))
            cand = np.where(clustered[..., None], near, cand)
        inside = ((cand >= 0) & (cand < FIELD_UM)).all(axis=-1)
        gaps = np.array([LOOKS[k].radius for k in range(N_TYPES)])[rest] * 1.6
        for i in range(m):
            ok = inside[i].copy()
            if used:
                d = np.hypot(cand[i, :, None, 0] - rows[None, :used, 1], cand[i, :, None, 1] - rows[None, :used, 2])
                ok &= d.min(axis=1) > gaps[i]
            j = int(np.argmax(ok)) if ok.any() else int(np.argmax(inside[i]))
            rows[used, 1:3] = cand[i, j] if inside[i, j] else rng.uniform(0, FIELD_UM, 2)
            rows[used, 0] = rest[i]
            used += 1
        con = rest == CON
        rows[-m:, 3] = np.where(con, layout.flow + rng.normal(0, 0.3, m), rng.uniform(0, math.pi, m))
        rows[-m:, 4] = 1.0
    return rows


_RADIUS = np.array([LOOKS[k].radius for k in range(N_TYPES)])
_ASPECT = np.array([LOOKS[k].aspect for k in range(N_TYPES)])
_STAIN = np.array([LOOKS[k].stain for k in range(N_TYPES)])
_TEXTURE = np.array([LOOKS[k].texture for k in range(N_TYPES)])
_PLEOMORPHISM = np.array([LOOKS[k].pleomorphism for k in range(N_TYPES)])


def _draw(rng, rows: np.ndarray, p: Profile, size: int, texture: np.ndarray):
    """Rasterise the nuclei as ellipses, all at once. Where nuclei overlap the earlier one keeps the pixel;
    a nucleus left with under half its pixels is dropped from image and masks alike."""
    inst = np.zeros((size, size), np.int32)
    typ = np.zeros((size, size), np.uint8)
    stain = np.zeros(size * size, np.float32)
    n = len(rows)
    if n == 0:
        return inst, typ, stain.reshape(size, size)
    scale = size / FIELD_UM
    t = rows[:, 0].astype(np.int64)
    lining = np.isin(t, LINING_TYPES)
    r = _RADIUS[t] * np.where(lining, p.size, 1.0) * rng.lognormal(0, _PLEOMORPHISM[t])
    aspect = _ASPECT[t] * np.where(lining, p.aspect, 1.0) * rows[:, 4] * rng.lognormal(0, 0.08, n)
    a = np.maximum(r * np.sqrt(aspect) * scale, 0.5)  # semi-axes, px
    b = np.maximum(r / np.sqrt(aspect) * scale, 0.5)
    py, px = rows[:, 1] * scale, rows[:, 2] * scale
    reach = int(math.ceil(a.max())) + 1
    offs = np.arange(-reach, reach + 1)
    iy = np.floor(py).astype(np.int64)[:, None] + offs  # (n, W) pixel rows of each nucleus's window
    ix = np.floor(px).astype(np.int64)[:, None] + offs
    dy = (iy + 0.5 - py[:, None])[:, :, None]
    dx = (ix + 0.5 - px[:, None])[:, None, :]
    c, s = np.cos(rows[:, 3])[:, None, None], np.sin(rows[:, 3])[:, None, None]
    u = (dx * c + dy * s) / a[:, None, None]
    v = (dy * c - dx * s) / b[:, None, None]
    rr = u * u + v * v
    valid = ((iy >= 0) & (iy < size))[:, :, None] & ((ix >= 0) & (ix < size))[:, None, :]
    inside = (rr <= 1.0) & valid
    k, wy, wx = np.nonzero(inside)  # k ascends: earlier nuclei first
    pix = iy[k, wy] * size + ix[k, wx]
    rr = rr[k, wy, wx]
    keep = np.ones(n, bool)
    for _pass in range(2):  # drop the mostly hidden nuclei, then give their pixels back
        sel = keep[k]
        kk, pp = k[sel], pix[sel]
        order = np.argsort(pp, kind="stable")
        sp = pp[order]
        win = np.ones(sp.size, bool)
        win[1:] = sp[1:] != sp[:-1]
        won = np.bincount(kk[order][win], minlength=n)
        keep &= won >= np.maximum(1, 0.5 * np.bincount(k, minlength=n))
    winners = np.flatnonzero(sel)[order][win]
    winners = winners[keep[k[winners]]]
    new_id = np.cumsum(keep).astype(np.int32)
    kw, pw = k[winners], pix[winners]
    inst.ravel()[pw] = new_id[kw]
    typ.ravel()[pw] = (t[kw] + 1).astype(np.uint8)
    strength = _STAIN[t] * rng.lognormal(0, 0.08, n)
    # darker rim (nuclear membrane), chromatin speckle
    stain[pw] = strength[kw] * (0.8 + 0.35 * rr[winners]) * (1 + _TEXTURE[t][kw] * texture.ravel()[pw])
    return inst, typ, stain.reshape(size, size)


def _blur(od: np.ndarray, weight: float) -> np.ndarray:
    """3x3 binomial blur mixed in with `weight` (focus varies between patches)."""
    pad = np.pad(od, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = (pad[:-2] + 2 * pad[1:-1] + pad[2:]) / 4
    both = (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4
    return (1 - weight) * od + weight * both


def _stain_vector(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    v = np.clip(base + rng.normal(0, 0.04, 3), 0.01, None)
    return v / np.linalg.norm(v)


def caption(tissue_name: str, arrangement: str | None, type_counts: Sequence[int]) -> str:
    """What a patch shows, in one sentence: the tissue, its arrangement (None: not known, as for a real
    patch) and its main nucleus types."""
    counts = np.asarray(type_counts)
    total = int(counts.sum())
    shows = f" showing {PHRASES[arrangement]}" if arrangement else ""
    if total == 0:
        return f"H&E patch of {tissue_name.lower()} tissue{shows}, without nuclei."
    main = [int(t) for t in np.argsort(-counts, kind="stable")[:2] if counts[t] >= max(1, 0.15 * total)]
    density = "sparse" if total < 20 else "moderately dense" if total < 40 else "densely packed"
    kinds = " and ".join(TYPE_WORDS[t] for t in main)
    return f"H&E patch of {tissue_name.lower()} tissue{shows}, with {density} {kinds} nuclei."


def render_patch(tissue_label: str | Tissue, rng: np.random.Generator, size: int = DEFAULT_SIZE
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """One simulated H&E patch of a tissue: (RGB uint8 (size, size, 3), instance mask int32 (size, size),
    type mask uint8 (0 background, 1-5 NUCLEUS_TYPES), caption). Same rng state, same bytes."""
    if size < 16:
        raise MintError(f"patch size {size} px is too small; use at least 16 (64 µm field)")
    t = tissue(tissue_label)
    p = PROFILES[t.id]
    layout = ARRANGEMENTS[p.arrangement](rng, p, size)
    mix = rng.dirichlet(np.asarray(p.mix) * 60.0)  # per-field variation of the type shares
    n = int(rng.poisson(p.count * rng.lognormal(0, 0.2)))
    types = rng.choice(N_TYPES, size=n, p=mix)
    rows = _place(rng, types, layout, size)
    texture = _smooth_noise(rng, size, max(4, size // 3))
    inst, typ, h_map = _draw(rng, rows, p, size, texture)
    # per-patch staining: each stain's strength and hue; a nucleus holds half the eosin of what surrounds it
    h_vec, e_vec = _stain_vector(rng, HAEMATOXYLIN), _stain_vector(rng, EOSIN)
    h_amount, e_amount = rng.lognormal(0, 0.18), rng.lognormal(0, 0.22)
    e_map = layout.eosin * np.where(inst > 0, 0.5, 1.0)
    od = (GLASS_OD + h_amount * h_map[..., None] * h_vec + e_amount * e_map[..., None] * e_vec).astype(np.float32)
    od = _blur(od, float(rng.uniform(0.2, 0.9)))
    rgb = 255.0 * np.exp(-od) + rng.normal(0, 3.0, od.shape)
    image = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    _, first = np.unique(inst[inst > 0], return_index=True)  # one pixel of each nucleus
    type_counts = np.bincount(typ[inst > 0][first].astype(np.int64) - 1, minlength=N_TYPES)
    return image, inst, typ, caption(t.name, p.arrangement, type_counts)


class Patch(NamedTuple):
    """One simulated patch: `render_patch`'s four outputs with the case id and tissue id."""

    case_id: str
    tissue_id: str
    image: np.ndarray
    instance: np.ndarray
    types: np.ndarray
    caption: str


def simulate_patches(n_per_tissue: int, *, seed: int, size: int = DEFAULT_SIZE,
                     tissues: Sequence[str] = TISSUE_IDS) -> Iterator[Patch]:
    """`n_per_tissue` patches of each tissue. Patch i of a tissue depends only on (seed, tissue, i), so
    adding tissues or patches leaves the others as they were."""
    for t in tissues:
        tid = tissue(t).id
        for i in range(n_per_tissue):
            rng = np.random.default_rng([seed, TISSUE_IDS.index(tid), i])
            yield Patch(f"sim-{tid}-{i:05d}", tid, *render_patch(tid, rng, size))


# ------------------------------------------------------------------ nucleus features from masks

FEATURE_NAMES: tuple[str, ...] = (
    *(f"density_{t}" for t in NUCLEUS_TYPES),  # nuclei of the type per 1000 µm²
    "density_all",  # all nuclei, typed or not, per 1000 µm²
    *(f"area_{t}" for t in NUCLEUS_TYPES),  # mean area of the type's nuclei, µm² (0 if none)
    "area_all",  # mean nucleus area, µm²
    "elongation",  # mean 1 - minor/major axis (second moments): 0 round, towards 1 spindle
    "coverage",  # fraction of the patch inside nuclei
)


def type_counts(instance_mask: np.ndarray, type_mask: np.ndarray) -> np.ndarray:
    """Nuclei of each of the 5 types in a patch (a nucleus's type: its pixels' most common non-zero type)."""
    inst, typ = np.asarray(instance_mask), np.asarray(type_mask)
    counts = np.zeros(N_TYPES, np.int64)
    for nucleus in np.unique(inst[inst > 0]):
        t = np.bincount(typ[inst == nucleus].astype(np.int64), minlength=N_TYPES + 1)[1:]
        if t.any():
            counts[int(t.argmax())] += 1
    return counts


def nucleus_features(instance_mask: np.ndarray, type_mask: np.ndarray, um_per_px: float | None = None
                     ) -> np.ndarray:
    """Fixed-length float32 vector (FEATURE_NAMES) of a patch's nuclei, from its masks alone.

    `um_per_px` defaults to a patch spanning PanNuke's 64 µm field (0.25 at 256 px, 1.0 at 64 px). A
    nucleus's type is its pixels' most common non-zero type; one without any is counted in
    `density_all` only.
    """
    inst = np.asarray(instance_mask)
    typ = np.asarray(type_mask)
    if inst.ndim != 2 or inst.shape != typ.shape:
        raise MintError(f"nucleus masks must be two (H, W) arrays of one shape; got {inst.shape} and {typ.shape}")
    h, w = inst.shape
    um = FIELD_UM / math.sqrt(h * w) if um_per_px is None else float(um_per_px)
    px_area = um * um
    field = h * w * px_area / 1000.0  # thousand µm²
    out = np.zeros(len(FEATURE_NAMES), np.float32)
    fg = inst > 0
    if not fg.any():
        return out
    ids, inv = np.unique(inst[fg], return_inverse=True)
    n = ids.size
    ys, xs = np.nonzero(fg)
    area = np.bincount(inv, minlength=n).astype(np.float64)
    my = np.bincount(inv, ys, n) / area
    mx = np.bincount(inv, xs, n) / area
    # second moments, plus 1/12 for each pixel's own extent so that a single pixel counts as round
    vyy = np.bincount(inv, ys * ys.astype(np.float64), n) / area - my * my + 1 / 12
    vxx = np.bincount(inv, xs * xs.astype(np.float64), n) / area - mx * mx + 1 / 12
    vxy = np.bincount(inv, ys * xs.astype(np.float64), n) / area - my * mx
    half = (vyy + vxx) / 2
    root = np.sqrt(np.maximum(half * half - (vyy * vxx - vxy * vxy), 0))
    major, minor = half + root, np.maximum(half - root, 0)
    elongation = 1 - np.sqrt(minor / major)
    t = np.clip(typ[fg].astype(np.int64), 0, N_TYPES)
    votes = np.bincount(inv * (N_TYPES + 1) + t, minlength=n * (N_TYPES + 1)).reshape(n, N_TYPES + 1)
    kind = np.where(votes[:, 1:].max(axis=1) > 0, votes[:, 1:].argmax(axis=1) + 1, 0)
    for k in range(N_TYPES):
        sel = kind == k + 1
        out[k] = sel.sum() / field
        out[N_TYPES + 1 + k] = area[sel].mean() * px_area if sel.any() else 0.0
    out[N_TYPES] = n / field
    out[2 * N_TYPES + 1] = area.mean() * px_area
    out[2 * N_TYPES + 2] = elongation.mean()
    out[2 * N_TYPES + 3] = fg.mean()
    return out
