"""A note longer than the student's context is cut where the student answers or ranks: its first tokens kept, the
rest of the prompt whole, the cut counted in the output's provenance; the model never sees more than its context.

    .venv/bin/python -m pytest -q tests/test_note_length.py
"""

from __future__ import annotations

import json

import polars as pl
import pytest
import torch

from mint.apps.rare_disease.prompts import PROMPT
from mint.core.io import MintError, sidecar_path
from mint.core.panel import rank_panel
from mint.core.predict import context_length, fit_prompts, generate_answers, predict
from mint.core.prompts import CasePrompts, build_prompt, format_answer
from mint.core.students.text import build_tiny_llama, render_chat, train_tokenizer
from tests.factories import make_cases, make_labels, write_cohort

CONTEXT = 256  # the tiny student's max_position_embeddings
TINY_MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": CONTEXT, "tie_word_embeddings": True}
SHORT = "A 4-year-old girl. Findings: seizures, short stature, hypotonia and a cleft palate."
# About 200,000 characters: some 50,000 tokens of this tokenizer, 200 times the context.
LONG = "A 30-year-old man. Findings: " + "low-set ears, micrognathia, long philtrum, " * 4_700
NAMES = ["Cohen syndrome", "Noonan syndrome 1", "Marfan"]


def build(note: str | None) -> list[dict]:
    return build_prompt(PROMPT.resolved(None), 3, note, "note")


@pytest.fixture(scope="module")
def student():
    texts = [render_chat(build(n), True) for n in (SHORT, LONG[:2000])] + [format_answer(NAMES, PROMPT.header)]
    tokenizer = train_tokenizer(texts * 4, 400)
    return build_tiny_llama(tokenizer, TINY_MODEL, seed=0), tokenizer


def n_tokens(tokenizer, prompt) -> int:
    text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_a_note_far_longer_than_the_context_is_cut_to_it_and_counted(student):
    model, tokenizer = student
    assert context_length(model, tokenizer) == CONTEXT
    assert n_tokens(tokenizer, build(LONG)) > 100 * CONTEXT
    prompts = CasePrompts([SHORT, LONG], lambda _, note: build(note), ["c1", "c2"])
    room = 12  # the answer's new tokens
    fitted = fit_prompts(prompts, model, tokenizer, room)
    assert prompts.truncated == ["c2"]
    assert fitted[0] == build(SHORT)  # a prompt that fits is the one built
    assert CONTEXT - room - 8 <= n_tokens(tokenizer, fitted[1]) <= CONTEXT - room  # filled, not overfilled
    user = fitted[1][1]["content"]
    assert user.startswith(LONG[:100])  # the note's first words ...
    assert user.endswith(build(SHORT)[1]["content"][len(SHORT):])  # ... and the question after it, whole
    assert fitted[1][0] == build(LONG)[0]  # the system turn untouched

    positions = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: positions.append(
        int(kwargs["position_ids"].max()) if kwargs.get("position_ids") is not None
        else kwargs["input_ids"].shape[1] - 1), with_kwargs=True)
    try:
        answers = generate_answers(model, tokenizer, fitted, batch_size=2, max_new_tokens=room)
    finally:
        hook.remove()
    assert len(answers) == 2 and max(positions) < CONTEXT  # the model never reads past its context


def test_prompts_that_fit_are_left_as_built(student):
    model, tokenizer = student
    prompts = CasePrompts([SHORT, None], lambda _, note: build(note or "Hypotonia."), ["c1", "c2"])
    assert fit_prompts(prompts, model, tokenizer, 12) == [build(SHORT), build("Hypotonia.")]
    assert prompts.truncated == []
    assert fit_prompts([build(LONG)], model, tokenizer, 12) == [build(LONG)]  # a plain list: as given


def test_a_prompt_too_long_without_its_note_is_refused_naming_the_case(student):
    _, tokenizer = student
    prompts = CasePrompts([SHORT, LONG], lambda _, note: build(note), ["c1", "c2"])
    with pytest.raises(MintError, match=r"case 'c1': its prompt without its text is longer than the 10 tokens"):
        prompts.fit(tokenizer, 10)


@pytest.fixture()
def saved(student, tmp_path):
    """The tiny student in a folder, and a cohort of three test cases, the second with the long note."""
    model, tokenizer = student
    model.save_pretrained(tmp_path / "student")
    tokenizer.save_pretrained(tmp_path / "student")
    cases = make_cases(["L0", "L1", "L2"], "test", note=[SHORT, LONG, "Hypotonia."])
    return tmp_path / "student", write_cohort(tmp_path, cases, make_labels(["L0", "L1", "L2"], NAMES))


def test_answering_and_ranking_record_how_many_prompts_were_cut(saved, tmp_path):
    model_dir, files = saved
    torch.manual_seed(0)
    out = tmp_path / "predictions.parquet"
    predict(str(model_dir), files["cases"], out, method="orpo", prompt=PROMPT.resolved(None), text_field="note",
            k=3, max_new_tokens=8, kind="text")
    assert json.loads(sidecar_path(out).read_text())["truncated_prompts"] == 1
    ranked = tmp_path / "panel.parquet"
    rank_panel(str(model_dir), files["cases"], files["candidates"], ranked, prompt=PROMPT.resolved(None),
               text_field="note", k=3, batch_size=3, kind="text")
    assert json.loads(sidecar_path(ranked).read_text())["truncated_prompts"] == 1


def test_the_report_states_the_prompts_cut(tmp_path):
    """The count travels from the predictions' provenance through the scores' to the report's summary."""
    from mint.core import schemas
    from mint.core.app import load_application
    from mint.core.io import provenance, write_parquet
    from mint.core.report import make_report, recorded_cuts

    scores = pl.DataFrame({"case_id": ["c1", "c2"], "method": ["orpo"] * 2, "label_id": ["A", "B"],
                           "predicted_ids": [["A"], ["A"]], "rank": [1, None], "n_predicted": [1, 1],
                           "n_hallucinated": [0, 0], "format_ok": [True, True], "seed": [1, 1]})
    paths = [tmp_path / "cut.parquet", tmp_path / "whole.parquet"]
    write_parquet(scores, paths[0], schemas.CASE_SCORES, provenance({}, truncated_prompts=2))
    write_parquet(scores.with_columns(method=pl.lit("sft")), paths[1], schemas.CASE_SCORES,
                  provenance({}, truncated_prompts=0))
    assert recorded_cuts(paths[0]) == {"truncated_prompts": 2}
    out = tmp_path / "report"
    out.mkdir()
    make_report(paths, [], out, app=load_application("rare_disease"), k=3, ks=[1, 3], n_boot=20, seed=0)
    assert json.loads((out / "metrics.json").read_text())["truncated_prompts"] == {"orpo": 2}
    assert "Prompts cut to the student's context, the case text's first tokens kept" in (out / "summary.md").read_text()
    assert "MINT (ORPO): 2." in (out / "summary.md").read_text()
