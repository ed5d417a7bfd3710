"""Fast tests of the builtin text student: the core's tokenizer, chat template, tiny Llama, pre-training and
loading (mint.core.students), and the rare-disease application's corpus and build.

    .venv/bin/python -m pytest -q tests/test_student.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from mint.apps.rare_disease import schemas as knowledge_schemas
from mint.apps.rare_disease import student as student_module
from mint.apps.rare_disease.knowledge import knowledge_files
from mint.apps.rare_disease.prompts import HEADER, PROMPT
from mint.apps.rare_disease.student import (
    DEFAULT_TINY,
    DEFAULT_TINY_PATH,
    build_builtin_student,
    knowledge_corpus,
    main,
)
from mint.core import schemas
from mint.core.io import MintError, write_parquet
from mint.core.models import load_student
from mint.core.prompts import assistant, build_prompt, format_answer, parse_answer
from mint.core.students.kind import STUDENT_FILE, read_student_record, student_kind, write_student_record
from mint.core.students.load import load_trained
from mint.core.students.text import (
    CHAT_TEMPLATE,
    IMAGE,
    TRAIN_KEYS,
    build_tiny_llama,
    pretrain,
    render_chat,
    render_document,
    train_tokenizer,
)
from mint.core.tokenizer import BOS, EOT, PAD, SPECIAL_TOKENS
from tests.factories import make_labels

TINY_MODEL = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}
TINY_CFG = {
    "vocab_size": 400,
    "model": TINY_MODEL,
    "corpus": {"n_docs": 60, "n_distractors": 2},
    "train": {"steps": 4, "batch_size": 2, "max_length": 64, "threads": 1, "log_every": 2},
}

DISEASE_NAMES = ["Alpha syndrome", "Beta dysplasia, type 2", "Gamma-Delta syndrome", "Epsilon disease 4",
                 "Zeta syndrome", "Eta-Theta anomaly", "Iota deficiency", "Kappa syndrome 1"]
TERM_NAMES = ["Hypertelorism", "Long philtrum", "Thin upper lip vermilion", "Low-set ears", "Micrognathia",
              "Downslanted palpebral fissures", "Seizure", "Intellectual disability", "Short stature",
              "Hypotonia", "Scoliosis", "Cleft palate"]


def ask(note: str, k: int = 3) -> list[dict]:
    """The rare-disease question about `note`, as the workflow asks it."""
    return build_prompt(PROMPT.resolved(None), k, note, "note")


def answer(names: list[str]) -> str:
    return format_answer(names, HEADER)


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory):
    """Eight fake diseases, twelve findings, each disease annotated with six of them."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("knowledge")
    ids = [f"OMIM:{100000 + i}" for i in range(len(DISEASE_NAMES))]
    hpo = [f"HP:{i:07d}" for i in range(1, len(TERM_NAMES) + 1)]
    diseases = pl.DataFrame({"disease_id": ids, "name": DISEASE_NAMES,
                             "synonyms": [[] for _ in ids]}, schema_overrides={"synonyms": pl.List(pl.String)})
    rows = [(i, h, float(rng.choice([0.17, 0.545, 0.895, 1.0])))
            for i in ids for h in rng.choice(hpo, size=6, replace=False)]
    annotations = pl.DataFrame(rows, schema=["disease_id", "hpo_id", "frequency"], orient="row")
    terms = pl.DataFrame({"hpo_id": hpo, "name": TERM_NAMES, "parents": [[] for _ in hpo],
                          "is_facial": [i < 6 for i in range(len(hpo))]},
                         schema_overrides={"parents": pl.List(pl.String)})
    files = knowledge_files(d)
    write_parquet(diseases, files["diseases"], knowledge_schemas.DISEASES)
    write_parquet(annotations, files["annotations"], knowledge_schemas.ANNOTATIONS)
    write_parquet(terms, files["terms"], knowledge_schemas.TERMS)
    return d, diseases, annotations, terms


@pytest.fixture(scope="module")
def panel(knowledge):
    """The candidates: the first four diseases, as LABELS rows."""
    first = knowledge[1].head(4)
    return make_labels(first["disease_id"].to_list(), first["name"].to_list())


@pytest.fixture(scope="module")
def corpus(knowledge, panel):
    _, diseases, annotations, terms = knowledge
    return knowledge_corpus(diseases, annotations, terms, panel["label_id"].to_list(), k=3, n_docs=80,
                            rng=np.random.default_rng(0), n_distractors=2)


@pytest.fixture(scope="module")
def texts(corpus):
    """The corpus as pre-training reads it: chats rendered with the chat template, descriptions as they are."""
    return [render_document(d) for d in corpus]


@pytest.fixture(scope="module")
def tokenizer(texts):
    return train_tokenizer(texts, 400)


@pytest.fixture(scope="module")
def builtin(knowledge, panel, tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "builtin"
    log = out.parent / "pretrain.jsonl"
    metrics = build_builtin_student(knowledge_files(knowledge[0]), panel, TINY_CFG, out, log, k=3,
                                    prompt=PROMPT.resolved(None))
    return out, log, metrics


def test_tokenizer_round_trips_text_and_special_tokens(tokenizer):
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (BOS, EOT, PAD)
    assert len(tokenizer) == 400
    for text in ["Alpha syndrome is a rare genetic disease.", "Héllo\n\n  wörld 1234 ✓",
                 f"{BOS}x{EOT}", render_chat(ask("A 4-year-old boy. Findings: Hypertelorism."), True)]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    for special in SPECIAL_TOKENS:
        assert len(tokenizer(special, add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer("Alpha")["input_ids"][0] == tokenizer.bos_token_id  # like Llama 3


def test_chat_template_prompt_is_prefix_of_prompt_plus_completion(tokenizer):
    prompt = ask("A 4-year-old boy. Findings: Hypertelorism, Long philtrum.")
    completion = assistant(answer(["Alpha syndrome", "Zeta syndrome", "Kappa syndrome 1"]))
    p_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True)["input_ids"]
    full_ids = tokenizer.apply_chat_template(prompt + completion)["input_ids"]
    assert full_ids[: len(p_ids)] == p_ids
    assert full_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.apply_chat_template(prompt + completion, tokenize=False) == render_chat(prompt + completion)
    rendered = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert rendered == render_chat(prompt, add_generation_prompt=True)


def test_chat_template_works_with_trl_preference_and_assistant_masks(tokenizer):
    from trl.data_utils import apply_chat_template

    prompt = ask("Findings: Seizure.")
    example = {"prompt": prompt, "chosen": assistant(answer(["Alpha syndrome"])),
               "rejected": assistant(answer(["Zeta syndrome"]))}
    out = apply_chat_template(example, tokenizer)
    assert out["prompt"] == render_chat(prompt, add_generation_prompt=True)
    assert out["chosen"] == answer(["Alpha syndrome"]) + EOT
    masked = tokenizer.apply_chat_template(prompt + example["chosen"], return_assistant_tokens_mask=True,
                                           return_dict=True)
    kept = [t for t, m in zip(masked["input_ids"], masked["assistant_masks"]) if m]
    assert tokenizer.decode(kept) == out["chosen"]


@pytest.mark.parametrize("tied", [True, False])
def test_build_tiny_llama_parameter_count_matches_config(tokenizer, tied):
    cfg = {**TINY_MODEL, "tie_word_embeddings": tied}
    model = build_tiny_llama(tokenizer, cfg)
    h, inter, n_layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    kv = h // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter + 2 * h  # q, o; k, v; gate, up, down; two RMSNorms
    expected = len(tokenizer) * h * (1 if tied else 2) + n_layers * per_layer + h
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id


def test_build_tiny_llama_names_missing_key(tokenizer):
    with pytest.raises(MintError, match="hidden_size"):
        build_tiny_llama(tokenizer, {k: v for k, v in TINY_MODEL.items() if k != "hidden_size"})


def test_packaged_tiny_defaults_build_a_model_that_takes_their_rows(tokenizer):
    """student_tiny.yaml ships in the package and its sizes agree: a pre-training row fits the model."""
    assert DEFAULT_TINY_PATH.is_file()
    assert DEFAULT_TINY_PATH.parent == Path(student_module.__file__).parent
    model = build_tiny_llama(tokenizer, DEFAULT_TINY["model"])
    row = torch.full((1, int(DEFAULT_TINY["train"]["max_length"])), tokenizer.bos_token_id)
    with torch.no_grad():
        logits = model(input_ids=row).logits
    assert logits.shape == (1, row.shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


def test_knowledge_corpus_has_descriptions_and_answer_format(corpus, texts, panel, knowledge):
    names = set(knowledge[1]["name"].to_list())
    chats = [d for d in corpus if not isinstance(d, str)]
    descriptions = [d for d in corpus if isinstance(d, str)]
    assert chats and descriptions
    assert all(" is a rare genetic disease." in d for d in descriptions)
    for chat, text in zip(chats, [t for t, d in zip(texts, corpus) if not isinstance(d, str)]):
        assert [m["role"] for m in chat] == ["system", "user", "assistant"]
        assert chat[0]["content"] == PROMPT.system
        got, ok = parse_answer(chat[-1]["content"], HEADER)
        assert ok and len(got) == 3 and set(got) <= names
        assert text.startswith(BOS) and text.endswith(chat[-1]["content"] + EOT)
    mentioned = {n for n in names if any(n in d for d in texts)}
    assert set(panel["name"].to_list()) <= mentioned
    assert len(mentioned) > panel.height  # distractors too
    # Not the workflow's question: the student meets that first in fine-tuning.
    assert not any("could explain these findings" in d for d in texts)


def test_the_corpus_answers_with_the_given_k_under_the_resolved_prompt(knowledge, panel):
    """The answer length is preferences.k and the system message and header the resolved prompt's: given, not
    the student settings' own."""
    _, diseases, annotations, terms = knowledge
    prompt = {"system": "You name diseases.", "user": "{note} ({k})", "header": "DIAGNOSES:"}
    corpus = knowledge_corpus(diseases, annotations, terms, panel["label_id"].to_list(), k=2, n_docs=40,
                              rng=np.random.default_rng(0), n_distractors=2, prompt=prompt)
    chats = [d for d in corpus if not isinstance(d, str)]
    assert chats and all(c[0]["content"] == "You name diseases." for c in chats)
    for chat in chats:
        got, ok = parse_answer(chat[-1]["content"], "DIAGNOSES:")
        assert ok and len(got) == 2
        assert "DIAGNOSES:" in chat[1]["content"] and "exactly 2 " in chat[1]["content"]


def test_a_settings_file_that_still_gives_corpus_k_is_refused(knowledge, panel, tmp_path):
    cfg = {**TINY_CFG, "corpus": {**TINY_CFG["corpus"], "k": 3}}
    with pytest.raises(MintError, match=r"'corpus\.k'.*preferences\.k"):
        build_builtin_student(knowledge_files(knowledge[0]), panel, cfg, tmp_path / "out", k=3,
                              prompt=PROMPT.resolved(None))
    assert not (tmp_path / "out").exists()


def test_knowledge_corpus_names_unknown_panel_disease(knowledge):
    _, diseases, annotations, terms = knowledge
    with pytest.raises(MintError, match="OMIM:999999"):
        knowledge_corpus(diseases, annotations, terms, ["OMIM:999999"], 3, 5, np.random.default_rng(0))


def test_pretrain_reduces_loss_and_changes_every_parameter(tokenizer, tmp_path):
    model = build_tiny_llama(tokenizer, TINY_MODEL)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    texts = ["Alpha syndrome is a rare genetic disease. Common findings include Hypertelorism."] * 20
    log = tmp_path / "loss.jsonl"
    metrics = pretrain(model, tokenizer, texts,
                       {**DEFAULT_TINY["train"], "steps": 30, "batch_size": 4, "max_length": 32, "lr": 1e-2,
                        "threads": 1, "log_every": 10}, log)
    assert metrics["final_loss"] < metrics["first_loss"]
    assert metrics["steps"] == 30 and metrics["tokens_per_s"] > 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30]
    assert {"step", "loss", "tokens_per_s"} <= set(records[0])
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged


def test_pretrain_names_a_missing_setting(tokenizer):
    model = build_tiny_llama(tokenizer, TINY_MODEL)
    with pytest.raises(MintError, match="'warmup_ratio'"):
        pretrain(model, tokenizer, ["x"], {k: v for k, v in DEFAULT_TINY["train"].items() if k != "warmup_ratio"},
                 None)
    assert set(DEFAULT_TINY["train"]) == set(TRAIN_KEYS)  # the packaged settings give every key


def test_build_builtin_student_round_trips_and_generates(builtin):
    out, log, metrics = builtin
    assert json.loads((out / "metrics.json").read_text()) == metrics
    built_with = json.loads((out / "provenance.json").read_text())
    assert built_with["step"] == "build_builtin_student"
    assert log.read_text().count("\n") == 2
    model, tokenizer = load_student(str(out))
    assert tokenizer.eos_token == EOT and tokenizer.chat_template
    tokenizer.padding_side = "left"
    prompts = [ask("A 4-year-old boy. Findings: Hypertelorism."), ask("Seizure.")]
    enc = tokenizer.apply_chat_template(prompts, add_generation_prompt=True, padding=True, return_tensors="pt")
    gen = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert gen.shape[0] == 2 and gen.shape[1] > enc["input_ids"].shape[1]


def test_main_builds_from_yaml(knowledge, panel, tmp_path):
    import yaml

    candidates = tmp_path / "candidates.parquet"
    write_parquet(panel, candidates, schemas.LABELS)
    cfg = tmp_path / "builtin.yaml"
    cfg.write_text(yaml.safe_dump({**TINY_CFG, "train": {**TINY_CFG["train"], "steps": 2}}))
    metrics = main([str(knowledge[0]), str(candidates), str(tmp_path / "out"), "--k", "3", "--config", str(cfg)])
    assert metrics["steps"] == 2
    assert (tmp_path / "out" / "config.json").exists()


def test_load_student_names_missing_local_folder(tmp_path):
    missing = tmp_path / "no" / "such" / "student"
    with pytest.raises(MintError, match=str(missing)):
        load_student(str(missing))


def test_load_student_names_unreachable_hub_id(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, at import
    with pytest.raises(MintError, match="mint-test/no-such-model.*no hub access"):
        load_student("mint-test/no-such-model")


def test_header_is_what_the_corpus_teaches(texts):
    """The answers are scored under the application's header: the corpus must teach that one."""
    from mint.apps.rare_disease import APPLICATION

    assert any(f"\n\n{APPLICATION.prompt.header}\n1. " in d for d in texts)


def test_one_chat_template_for_text_and_vision_students(tokenizer):
    """The text and the vision student share `CHAT_TEMPLATE`; it renders an image part as the image token."""
    from mint.core.students import vision

    assert vision.CHAT_TEMPLATE is CHAT_TEMPLATE and tokenizer.chat_template == CHAT_TEMPLATE
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which shape?"}]},
            {"role": "assistant", "content": "1. Circle"}]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False)
    assert rendered == render_chat(chat)
    assert f"{IMAGE}Which shape?{EOT}" in rendered


def test_the_builtin_student_records_its_kind_and_loads_by_it(builtin):
    out, _, _ = builtin
    assert json.loads((out / STUDENT_FILE).read_text()) == {"kind": "text"}
    assert student_kind(out) == student_kind(out, "text") == "text"
    model, tokenizer = load_trained(out)  # the folder says what it is: no kind to give
    assert model.config.model_type == "llama" and tokenizer.eos_token == EOT
    with pytest.raises(MintError, match="is a text student.*declares a vision student"):
        load_trained(out, kind="vision")


def test_a_folder_without_a_record_takes_the_declared_kind(tmp_path):
    """A hub model's folder records no kind: the application's declared kind, which a caller must give."""
    (tmp_path / "hub").mkdir()
    assert read_student_record(tmp_path / "hub") is None
    assert student_kind(tmp_path / "hub", "vision") == "vision"
    with pytest.raises(MintError, match="records no kind.*Application.student_kind"):
        student_kind(tmp_path / "hub")
    with pytest.raises(MintError, match="records no kind"):
        student_kind("org/name")


def test_a_trained_record_keeps_its_kind_and_an_old_text_record_reads_as_text(tmp_path):
    write_student_record(tmp_path, "vision", method="orpo", base="base", init=None, adapter=False)
    assert json.loads((tmp_path / STUDENT_FILE).read_text()) == {"kind": "vision", "method": "orpo", "base": "base",
                                                                "init": None, "adapter": False}
    assert student_kind(tmp_path, "vision") == "vision"
    # Trained text students' records from before kinds were recorded for text.
    (tmp_path / STUDENT_FILE).write_text(json.dumps({"method": "sft", "base": "b", "init": None, "adapter": False}))
    assert student_kind(tmp_path) == "text"
    with pytest.raises(MintError, match="student kind 'audio': expected one of"):
        write_student_record(tmp_path, "audio")


def test_predict_refuses_images_for_a_text_student(builtin, tmp_path):
    from mint.core.predict import answer_prompts

    out, _, _ = builtin
    with pytest.raises(MintError, match="is a text student, but the step gives it images"):
        answer_prompts(str(out), [ask("Seizure.")], batch_size=1, max_new_tokens=2, threads=1, seed=0,
                       images=[str(tmp_path / "x.png")])
