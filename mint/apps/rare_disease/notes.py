"""How the rare-disease application writes a clinical note: demographics, findings, exclusions.

One place for the phrases that simulated and phenopacket patients share, so that both kinds of
note read alike to the student.

    python -c "from mint.apps.rare_disease.notes import *; print(write_note('A 6-year-old girl', ['ptosis']))"
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_DURATION = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?")
ADULT_YEARS = 18


def parse_duration(value: str | None) -> tuple[int, int, int, int] | None:
    """ISO 8601 age 'P6Y3M' -> (years, months, weeks, days); None when absent or not of that form."""
    if not value or not (m := _DURATION.fullmatch(value.strip())) or value.strip() == "P":
        return None
    return tuple(int(g) if g else 0 for g in m.groups())  # type: ignore[return-value]


def _article(phrase: str) -> str:
    # 'an' before a vowel sound: 'adult', 'eight', 'eleven', 'eighteen', 'eighty'.
    vowel = phrase[:1] in "aeiou8" or re.match(r"(11|18)\D", phrase) is not None
    return f"{'An' if vowel else 'A'} {phrase}"


def demographic_phrase(sex: str | None, age: str | None) -> str:
    """'A 6-year-old girl', 'A 9-month-old boy', 'An adult woman', 'A male patient', 'A patient'."""
    parts = parse_duration(age)
    male, female = sex == "MALE", sex == "FEMALE"
    if parts is None:
        return _article("male patient" if male else "female patient" if female else "patient")
    years, months, weeks, days = parts
    months_total = years * 12 + months
    if years >= ADULT_YEARS:
        return _article("adult " + ("man" if male else "woman" if female else "patient"))
    if months_total >= 24:
        age_words = f"{months_total // 12}-year-old"
    elif months_total >= 1:
        age_words = f"{months_total}-month-old"
    elif weeks or days >= 7:
        age_words = f"{weeks + days // 7}-week-old"
    elif days:
        age_words = f"{days}-day-old"
    else:  # P0D: at birth
        age_words = "newborn"
    return _article(f"{age_words} {'boy' if male else 'girl' if female else 'child'}")


def demographic_line(rng: np.random.Generator) -> str:
    """'A 6-year-old girl' / 'A 9-month-old boy': ages 1 month to 17 years, the dysmorphology clinic's range."""
    boy = rng.random() < 0.5
    months = int(rng.integers(1, 18 * 12))
    age = f"{months}-month-old" if months < 24 else f"{months // 12}-year-old"
    return _article(f"{age} {'boy' if boy else 'girl'}")


def join_phrases(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def term_label(name: str) -> str:
    # HPO labels are capitalised ('Global developmental delay'); lower-case unless an acronym leads.
    return name if name[:2].isupper() else name[:1].lower() + name[1:]


def write_note(demo: str, labels: Sequence[str]) -> str:
    if not labels:
        return f"{demo} was referred to the genetics clinic. The examination was unremarkable."
    findings = join_phrases(labels)
    return f"{demo} was referred to the genetics clinic with {findings}."


def write_case_note(sex: str | None, age: str | None, observed: Sequence[str], excluded: Sequence[str]) -> str:
    """The referral note: demographics, the observed findings, then the findings ruled out."""
    note = write_note(demographic_phrase(sex, age), [term_label(n) for n in observed])
    if excluded:
        note += f" No {join_phrases([term_label(n) for n in excluded])}."
    return note


