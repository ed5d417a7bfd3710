import pytest

from mint.apps.rare_disease.prompts import DEFAULT_USER, HEADER, PROMPT
from mint.core.io import MintError
from mint.core.prompts import build_prompt, format_answer, parse_answer


def test_answer_roundtrip():
    names = ["Noonan syndrome 1", "Cohen syndrome", "Kabuki syndrome 1"]
    text = format_answer(names, HEADER)
    assert text.splitlines() == [HEADER, "1. Noonan syndrome 1", "2. Cohen syndrome", "3. Kabuki syndrome 1"]
    assert parse_answer(text, HEADER) == (names, True)


def test_format_broken_without_header_or_with_gaps():
    assert parse_answer("1. A\n2. B", HEADER) == (["A", "B"], False)
    assert parse_answer(f"{HEADER}\n1. A\n3. B", HEADER)[1] is False
    assert parse_answer("I think it is Noonan syndrome.", HEADER) == ([], False)


def test_the_header_is_the_applications():
    text = format_answer(["A", "B"], "TISSUES:")
    assert parse_answer(text, "TISSUES:") == (["A", "B"], True)
    assert parse_answer(text, HEADER) == (["A", "B"], False)  # another application's header


def test_prompt_asks_for_k_and_holds_the_note():
    msgs = build_prompt(PROMPT.resolved(None), 7, "A 3-year-old boy with seizures.", "note")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "seizures" in msgs[1]["content"] and "exactly 7" in msgs[1]["content"]
    custom = build_prompt({"system": "S", "user": "{text} / {k}"}, 2, "an image caption", "text")
    assert custom[1]["content"] == "an image caption / 2"


def test_config_overrides_fall_back_to_the_applications_prompt():
    resolved = PROMPT.resolved({"system": "You are a dysmorphologist.", "user": None})
    assert resolved["system"] == "You are a dysmorphologist." and resolved["user"] == DEFAULT_USER
    assert resolved["header"] == HEADER


def test_template_field_not_filled_is_named():
    with pytest.raises(MintError, match=r"'note'.*prompt\.user"):
        build_prompt(PROMPT.resolved(None), 3, "a caption", "text")
