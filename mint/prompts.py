"""The question the student is asked and the shape of its answer: one place for both directions.

`build_prompt` makes the chat messages (system + user) for a note, `format_answer` writes a
numbered list under the `POTENTIAL_DISEASES:` header as the paper does, `parse_answer` reads
one back from free text.

    python -c "from mint.prompts import *; print(format_answer(['Noonan syndrome 1', 'Cohen syndrome']))"
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

HEADER = "POTENTIAL_DISEASES:"

DEFAULT_SYSTEM = (
    "You are a genetic counselor. From a clinical note you name the rare genetic diseases "
    "that best explain the patient's findings."
)
DEFAULT_USER = (
    "{note}\n\nList exactly {k} rare genetic diseases that could explain these findings, most likely "
    "first, as a numbered list under the header " + HEADER
)

Message = dict[str, str]


def build_prompt(
    note: str, k: int, prompt_cfg: Mapping[str, Any] | None = None, context: str | None = None
) -> list[Message]:
    """System and user messages asking for exactly `k` diseases for `note`; `context` (RAG) comes first."""
    prompt_cfg = prompt_cfg or {}
    system = prompt_cfg.get("system") or DEFAULT_SYSTEM
    user = (prompt_cfg.get("user") or DEFAULT_USER).format(note=note, k=k)
    if context:
        user = f"{context}\n\n{user}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def format_answer(names: Sequence[str]) -> str:
    return "\n".join([HEADER, *(f"{i}. {name}" for i, name in enumerate(names, start=1))])


def assistant(content: str) -> list[Message]:
    return [{"role": "assistant", "content": content}]


_ITEM = re.compile(r"^\s*(\d{1,3})\s*[.)]\s*(.+?)\s*$")


def parse_answer(text: str) -> tuple[list[str], bool]:
    """Names of the numbered list in `text`, in order, and whether the answer kept the format.

    The format is kept when the header is there and the items are numbered 1, 2, 3, ... without
    gaps. Items are read even when the header is missing, so a sloppy but useful answer still counts.
    """
    lines = text.splitlines()
    has_header = any(line.strip().upper().startswith(HEADER) for line in lines)
    names: list[str] = []
    numbers: list[int] = []
    for line in lines:
        m = _ITEM.match(line)
        if m and m.group(2).strip():
            numbers.append(int(m.group(1)))
            names.append(m.group(2).strip())
    ok = has_header and bool(names) and numbers == list(range(1, len(numbers) + 1))
    return names, ok
