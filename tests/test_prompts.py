from mint.core.prompts import HEADER, build_prompt, format_answer, parse_answer


def test_answer_roundtrip():
    names = ["Noonan syndrome 1", "Cohen syndrome", "Kabuki syndrome 1"]
    text = format_answer(names)
    assert text.startswith(HEADER)
    assert parse_answer(text) == (names, True)


def test_format_broken_without_header_or_with_gaps():
    assert parse_answer("1. A\n2. B") == (["A", "B"], False)
    assert parse_answer(f"{HEADER}\n1. A\n3. B")[1] is False
    assert parse_answer("I think it is Noonan syndrome.") == ([], False)


def test_prompt_asks_for_k_and_holds_the_note():
    msgs = build_prompt("A 3-year-old boy with seizures.", 7)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "seizures" in msgs[1]["content"] and "exactly 7" in msgs[1]["content"]
    custom = build_prompt("note", 2, {"system": "S", "user": "{note} / {k}"})
    assert custom[0]["content"] == "S" and custom[1]["content"] == "note / 2"
