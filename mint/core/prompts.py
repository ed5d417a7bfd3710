"""The question the student is asked and the shape of its answer: one place for both directions.

`build_prompt` makes the chat messages (system + user) for one case's input (`CasePrompts`: for every case
of a step, each cut to the student's context where it would not fit), `format_answer`
writes a numbered list under the application's header (the paper's `POTENTIAL_DISEASES:` in the
rare-disease application), `parse_answer` reads one back from free text. The wording comes from
the application (`Application.prompt`), with the config's `prompt.system` / `prompt.user` over it.

    python -c "from mint.core.prompts import *; print(format_answer(['Noonan syndrome 1', 'Cohen syndrome'], 'A:'))"
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from mint.core.io import MintError

Message = dict[str, str]
log = logging.getLogger(__name__)


def build_prompt(
    prompt: Mapping[str, str], k: int, text: str | None = None, text_field: str | None = None,
    context: str | None = None,
) -> list[Message]:
    """System and user messages asking for exactly `k` labels; `context` (e.g. retrieval) comes first.

    `prompt` has `system` and `user`; the user template is filled with `k` and, for a text
    student, the case's input `text` under the name `text_field` (the cases column, e.g. `note`).
    """
    fields = {"k": k, **({text_field: text} if text_field else {})}
    try:
        user = prompt["user"].format(**fields)
    except KeyError as err:
        raise MintError(f"prompt template names {err} but only {sorted(fields)} are filled in "
                         "(config key 'prompt.user')") from err
    if context:
        user = f"{context}\n\n{user}"
    return [{"role": "system", "content": prompt["system"]}, {"role": "user", "content": user}]


@dataclass
class CasePrompts:
    """The prompts of a step's cases, each built from its case's text (`build(i, text)`; text None: none),
    where the text can be cut to fit the student's context (`fit`). Iterating gives the built prompts.

    A prompt longer than the student reads keeps its text's first tokens, and the template's every other
    part whole (the system turn, the question after the text, the generation prompt): what the cases'
    notes state first (demographics, the first findings) is what the student reads. `truncated` lists the
    cases `fit` cut (their `case_ids`), which the step records in its output's provenance.
    """

    texts: list[str | None]
    build: Callable[[int, str | None], list[Message]]
    case_ids: list[str]
    truncated: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self) -> Iterator[list[Message]]:
        return (self.build(i, text) for i, text in enumerate(self.texts))

    def fit(self, processing, budget: int | None) -> list[list[Message]]:
        """The prompts, each of at most `budget` tokens as `processing` (a tokenizer, or a processor with
        one) renders them for generation; None: as built. A text is cut to its first tokens (decoded back to
        text), as few cut as bring its prompt within `budget`; MintError naming the case when even the
        prompt without its text is longer."""
        self.truncated = []
        prompts = list(self)
        if budget is None or all(t is None for t in self.texts):
            return prompts
        tokenizer = getattr(processing, "tokenizer", processing)

        def lengths(messages: Sequence[list[Message]]) -> list[int]:
            rendered = [processing.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                        for m in messages]
            return [len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]]

        for i, n in enumerate(lengths(prompts)):
            if n <= budget:
                continue
            ids = tokenizer(self.texts[i] or "", add_special_tokens=False)["input_ids"]
            keep = len(ids) - (n - budget)
            while n > budget:
                if keep < 1:
                    raise MintError(f"case {self.case_ids[i]!r}: its prompt without its text is longer than the "
                                    f"{budget} tokens the student reads at most here (its context less the "
                                    "answer's room); shorten the prompt (config key 'prompt')")
                text = tokenizer.decode(ids[:keep]).rstrip("\ufffd")  # not half a character at the cut
                prompts[i] = self.build(i, text)
                n = lengths([prompts[i]])[0]
                keep -= n - budget  # still over: cut as many more tokens
            self.truncated.append(self.case_ids[i])
        if self.truncated:
            log.warning("%d of %d prompts cut to the student's %d tokens (their text's first tokens kept): %s%s",
                        len(self.truncated), len(prompts), budget, self.truncated[:5],
                        " ..." if len(self.truncated) > 5 else "")
        return prompts


def format_answer(names: Sequence[str], header: str) -> str:
    return "\n".join([header, *(f"{i}. {name}" for i, name in enumerate(names, start=1))])


def first_item(name: str, header: str, k: int) -> tuple[str, str]:
    """An answer that names `name` first, cut where the name begins: (the start every answer shares, the rest).

    The start is the header and the item's number (`HEADER\n1.`); the rest is the space and the name,
    with the line break that follows it when the answer lists more names (k > 1), so that a name which
    begins a longer one (`Syndrome A` of `Syndrome A2`) does not get the longer one's probability too.
    The cut falls before the space: byte-level BPE tokenizers (Llama 3's among them) join a space to
    the word after it, so the start tokenizes the same alone and followed by any name.
    """
    mark = "\x00"  # stands for a name in `format_answer`'s layout
    answer = format_answer([mark] * min(k, 2), header)
    at = answer.index(mark)
    head = answer[:at].rstrip(" ")
    after = answer[at + 1:]
    return head, answer[len(head):at] + name + (after[:after.index("\n") + 1] if "\n" in after else "")


def assistant(content: str) -> list[Message]:
    return [{"role": "assistant", "content": content}]


_ITEM = re.compile(r"^\s*(\d{1,3})\s*[.)]\s*(.+?)\s*$")


def parse_answer(text: str, header: str) -> tuple[list[str], bool]:
    """Names of the numbered list in `text`, in order, and whether the answer kept the format.

    The format is kept when the header is there and the items are numbered 1, 2, 3, ... without
    gaps. Items are read even when the header is missing, so a sloppy but useful answer still counts.
    """
    lines = text.splitlines()
    has_header = any(line.strip().upper().startswith(header.upper()) for line in lines)
    names: list[str] = []
    numbers: list[int] = []
    for line in lines:
        m = _ITEM.match(line)
        if m and m.group(2).strip():
            numbers.append(int(m.group(1)))
            names.append(m.group(2).strip())
    ok = has_header and bool(names) and numbers == list(range(1, len(numbers) + 1))
    return names, ok
