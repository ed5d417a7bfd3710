"""The rare-disease question and answer header (the paper's), and how disease names are matched.

    python -c "from mint.apps.rare_disease.prompts import normalise; print(normalise('OMIM:163950 Noonan-Syndrome, 1'))"
"""

from __future__ import annotations

import re

from mint.core.app import Prompt
from mint.core.evaluate import fold, words

HEADER = "POTENTIAL_DISEASES:"

DEFAULT_SYSTEM = (
    "You are a genetic counselor. From a clinical note you name the rare genetic diseases "
    "that best explain the patient's findings."
)
DEFAULT_USER = (
    "{note}\n\nList exactly {k} rare genetic diseases that could explain these findings, most likely "
    "first, as a numbered list under the header " + HEADER
)
PROMPT = Prompt(system=DEFAULT_SYSTEM, user=DEFAULT_USER, header=HEADER)

# An OMIM number written with the name: "#163950", "%163950", "OMIM:163950", "OMIM #163950".
_OMIM_TAGGED = re.compile(r"(?:\bomim\s*:?\s*[#%*+^]?|[#%*+^])\s*\d{6}\b")
# A bare six-digit number opening the name ("163950 Noonan syndrome"); no disease name starts so.
_OMIM_LEADING = re.compile(r"^\s*\d{6}\b")


def normalise(name: str) -> str:
    """Lower-case `name`, drop accents and OMIM numbers, turn punctuation into single spaces."""
    return words(_OMIM_LEADING.sub(" ", _OMIM_TAGGED.sub(" ", fold(name))))
