"""The tissue question (the image alone) and answer header, and how tissue names are matched.

    python -c "from mint.apps.tissue.prompts import PROMPT; print(PROMPT.user.format(k=5))"
"""

from __future__ import annotations

from mint.core.app import Prompt
from mint.core.evaluate import normalize_name

HEADER = "POTENTIAL_TISSUES:"
DEFAULT_SYSTEM = "You are a pathologist. From an H&E image of a nucleus-level patch you name the tissue it comes from."
DEFAULT_USER = (
    "Which tissue is this patch from? List exactly {k} tissue types, most likely first, as a numbered list "
    "under the header " + HEADER
)
PROMPT = Prompt(system=DEFAULT_SYSTEM, user=DEFAULT_USER, header=HEADER)


def normalise(name: str) -> str:
    """Tissue names compared without case, accents, punctuation or '&' ('Head & Neck' = 'head and neck')."""
    return normalize_name(name.replace("&", " and "))
