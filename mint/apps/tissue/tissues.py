"""The tissue application's label set and nucleus types, as PanNuke defines them.

Tissue ids are slugs of the names (`head_neck` for "Head & Neck"): stable, readable in every table,
and free of spaces and `&`. `resolve_tissue` maps an id, a name or one of PanNuke's own spellings
(`Adrenal_gland`, `Bile-duct`, `HeadNeck`) to the id, case- and punctuation-insensitively.

Nucleus types follow PanNuke's `masks.npy` (N, 256, 256, 6): channels 0-4 are the instance maps of
the five types below, in this order, and channel 5 is background. A type mask, here and in
`patches` and `readers`, holds 0 for background and `channel + 1` (1-5) for a nucleus of that type.

    python -c "from mint.apps.tissue.tissues import resolve_tissue; print(resolve_tissue('HeadNeck'))"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from mint.core.io import MintError


@dataclass(frozen=True)
class Tissue:
    id: str  # stable slug, the label_id of every table
    name: str  # PanNuke's name, as a student should answer it
    synonyms: tuple[str, ...] = ()  # other names a student or a manifest may use


TISSUES: tuple[Tissue, ...] = (
    Tissue("adrenal_gland", "Adrenal gland", ("adrenal",)),
    Tissue("bile_duct", "Bile duct", ("biliary", "cholangio")),
    Tissue("bladder", "Bladder", ("urinary bladder", "urothelium")),
    Tissue("breast", "Breast", ("mammary",)),
    Tissue("cervix", "Cervix", ("uterine cervix",)),
    Tissue("colon", "Colon", ("colorectal", "large intestine")),
    Tissue("esophagus", "Esophagus", ("oesophagus",)),
    Tissue("head_neck", "Head & Neck", ("head and neck",)),
    Tissue("kidney", "Kidney", ("renal",)),
    Tissue("liver", "Liver", ("hepatic",)),
    Tissue("lung", "Lung", ("pulmonary",)),
    Tissue("ovarian", "Ovarian", ("ovary",)),
    Tissue("pancreatic", "Pancreatic", ("pancreas",)),
    Tissue("prostate", "Prostate", ()),
    Tissue("skin", "Skin", ("cutaneous",)),
    Tissue("stomach", "Stomach", ("gastric",)),
    Tissue("testis", "Testis", ("testicular",)),
    Tissue("thyroid", "Thyroid", ()),
    Tissue("uterus", "Uterus", ("uterine", "endometrium")),
)
TISSUE_IDS: tuple[str, ...] = tuple(t.id for t in TISSUES)
BY_ID: dict[str, Tissue] = {t.id: t for t in TISSUES}

# PanNuke's types.npy spellings that differ from the names once case and punctuation are ignored.
PANNUKE_SPELLINGS = {"HeadNeck": "head_neck", "Adrenal_gland": "adrenal_gland", "Bile-duct": "bile_duct"}

NUCLEUS_TYPES: tuple[str, ...] = ("neoplastic", "inflammatory", "connective", "dead", "epithelial")
BACKGROUND_CHANNEL = 5  # masks.npy channel 5: background
N_TYPES = len(NUCLEUS_TYPES)


def _key(label: str) -> str:
    """Lower case, letters and digits only: 'Head & Neck', 'HeadNeck' and 'head_neck' all give 'headneck'."""
    return re.sub(r"[^0-9a-z]", "", label.lower().replace("&", "").replace(" and ", ""))


_LOOKUP: dict[str, str] = {}
for _t in TISSUES:
    for _label in (_t.id, _t.name, *_t.synonyms):
        _LOOKUP[_key(_label)] = _t.id
for _spelling, _id in PANNUKE_SPELLINGS.items():
    _LOOKUP[_key(_spelling)] = _id


def resolve_tissue(label: object) -> str | None:
    """The tissue id for an id, a name, a synonym or a PanNuke spelling; None if it names no tissue."""
    if not isinstance(label, str) or not label.strip():
        return None
    return _LOOKUP.get(_key(label))


def tissue(label: str | Tissue) -> Tissue:
    """The Tissue for a label `resolve_tissue` knows; MintError naming the label and the tissues otherwise."""
    if isinstance(label, Tissue):
        return label
    found = resolve_tissue(label)
    if found is None:
        raise MintError(f"unknown tissue {label!r}; expected one of {[t.name for t in TISSUES]}")
    return BY_ID[found]


def labels_frame() -> pl.DataFrame:
    """The 19 tissues as a LABELS table (label_id, name, synonyms): candidates and vocabulary alike."""
    return pl.DataFrame(
        {"label_id": list(TISSUE_IDS), "name": [t.name for t in TISSUES],
         "synonyms": [list(t.synonyms) for t in TISSUES]},
        schema={"label_id": pl.String, "name": pl.String, "synonyms": pl.List(pl.String)},
    )
