"""The phenopacket importer on real phenopacket-store cases (read by path, never copied here)."""

import json
import logging

import polars as pl
import pytest

from mint.apps.rare_disease.cohort import read_panel
from mint.core.io import MintError
from mint.apps.rare_disease.knowledge import load_knowledge
from mint.apps.rare_disease.phenopackets import (
    RAW_COLUMNS,
    demographic_phrase,
    main,
    read_flat,
    read_phenopacket_json,
    split_by_publication,
    to_cases,
    write_case_note,
)

# Cohorts whose phenopacket-store folder is named by an older gene symbol than the variants carry.
OLD_SYMBOL_COHORTS = {"HNRPA2B1": "HNRNPA2B1", "MTTV": "MT-TV"}


@pytest.fixture(scope="module")
def store(phenopacket_store):
    return phenopacket_store


@pytest.fixture(scope="module")
def flat(store):
    return read_flat(store / "cases.parquet")


@pytest.fixture(scope="module")
def from_json(store):
    return read_phenopacket_json(store / "json-examples").sort("case_id")


@pytest.fixture(scope="module")
def knowledge(knowledge_dir, store):
    diseases, _, terms = load_knowledge(knowledge_dir)
    names = dict(zip(terms["hpo_id"].to_list(), terms["name"].to_list()))
    panel = read_panel(store / "diseases.tsv", diseases)["disease_id"].to_list()
    return panel, terms["hpo_id"].to_list(), names


# ---------------------------------------------------------------- reading


def test_json_and_flat_give_the_same_cases(from_json, flat):
    assert from_json.columns == list(RAW_COLUMNS) == flat.columns
    assert from_json.height == 24
    rows = flat.filter(pl.col("case_id").is_in(from_json["case_id"].to_list())).sort("case_id")
    assert rows["case_id"].to_list() == from_json["case_id"].to_list()
    for column in ("pmid", "sex", "age", "disease_ids", "disease_labels", "genes", "observed_labels"):
        assert from_json[column].to_list() == rows[column].to_list(), column
    for column in ("observed_hpo", "excluded_hpo"):
        assert [set(x) for x in from_json[column]] == [set(x) for x in rows[column]], column
    # `cohort` is not inside a phenopacket (the store names it by the file's folder); the importer
    # takes the case's single gene symbol, which is the flat file's value for these 24 cases.
    assert from_json["cohort"].to_list() == rows["cohort"].to_list()


def test_cohort_is_the_gene_except_folders_named_by_an_old_symbol(flat):
    differ = flat.filter(pl.col("cohort") != pl.col("genes").list.first())
    assert dict(zip(differ["cohort"], differ["genes"].list.first())) == OLD_SYMBOL_COHORTS


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not a GA4GH Phenopacket v2 JSON file"),
        ('{"id": "p1", "colour": "blue"}', "not a GA4GH Phenopacket v2 JSON file.*colour"),
        ("{}", "not a GA4GH Phenopacket v2 JSON file: no 'id'"),
        ("[1, 2]", "not a GA4GH Phenopacket v2 JSON file"),
    ],
)
def test_bad_phenopacket_file_is_named(tmp_path, store, text, message):
    good = (store / "json-examples" / "PMID_15761194_II_2.json").read_text()
    (tmp_path / "a_good.json").write_text(good)
    (tmp_path / "b_bad.json").write_text(text)
    with pytest.raises(MintError, match=rf"b_bad\.json: {message}"):
        read_phenopacket_json(tmp_path)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(MintError, match="no \\*.json phenopacket files"):
        read_phenopacket_json(tmp_path)
    with pytest.raises(MintError, match="phenopacket folder not found"):
        read_phenopacket_json(tmp_path / "nowhere")


def test_flat_file_missing_columns_is_named(tmp_path, flat):
    path = tmp_path / "cases.parquet"
    flat.head(3).drop("observed_hpo", "pmid").write_parquet(path)
    with pytest.raises(MintError, match=r"cases\.parquet: missing columns \['pmid', 'observed_hpo'\]"):
        read_flat(path)


# ---------------------------------------------------------------- notes


@pytest.mark.parametrize(
    "sex, age, phrase",
    [
        ("FEMALE", "P6Y3M", "A 6-year-old girl"),
        ("MALE", "P9M", "A 9-month-old boy"),
        ("MALE", "P1Y", "A 12-month-old boy"),
        ("MALE", "P2W", "A 2-week-old boy"),
        ("FEMALE", "P10D", "A 1-week-old girl"),
        ("MALE", "P3D", "A 3-day-old boy"),
        ("FEMALE", "P0D", "A newborn girl"),
        ("FEMALE", "P8Y", "An 8-year-old girl"),
        ("MALE", "P11Y2M", "An 11-year-old boy"),
        ("MALE", "P18M", "An 18-month-old boy"),
        ("UNKNOWN_SEX", "P4Y", "A 4-year-old child"),
        ("FEMALE", "P35Y", "An adult woman"),
        ("MALE", "P18Y", "An adult man"),
        ("UNKNOWN_SEX", "P72Y", "An adult patient"),
        ("MALE", None, "A male patient"),
        ("UNKNOWN_SEX", None, "A patient"),
        (None, None, "A patient"),
        ("FEMALE", "not a duration", "A female patient"),
    ],
)
def test_demographic_phrase(sex, age, phrase):
    assert demographic_phrase(sex, age) == phrase


def test_note_states_observed_then_excluded_findings():
    note = write_case_note("FEMALE", "P6Y3M", ["Seizure", "EEG abnormality", "Short stature"], ["Microcephaly"])
    assert note == (
        "A 6-year-old girl was referred to the genetics clinic with seizure, EEG abnormality and short stature."
        " No microcephaly."
    )
    assert write_case_note(None, None, ["Seizure"], []) == "A patient was referred to the genetics clinic with seizure."


def test_both_inputs_give_the_same_notes(from_json, flat, knowledge):
    rows = flat.filter(pl.col("case_id").is_in(from_json["case_id"].to_list())).sort("case_id")
    a, a_out = to_cases(from_json, *knowledge)
    b, b_out = to_cases(rows, *knowledge)
    assert a.equals(b) and a_out.equals(b_out)
    assert a.height + a_out.height == 24
    note = a.filter(pl.col("case_id") == "PMID_15761194_II_2")["note"].item()
    assert note == (
        "An adult man was referred to the genetics clinic with shortened QT interval, palpitations and presyncope."
        " No paroxysmal atrial fibrillation, mildly reduced left ventricular ejection fraction"
        " and sudden cardiac death."
    )


# ---------------------------------------------------------------- exclusions


def _one_row(flat, case_id="PMID_15761194_III_1", **change):
    row = flat.filter(pl.col("case_id") == case_id).to_dicts()[0]
    return pl.DataFrame([{**row, "case_id": "MADE_UP_1", **change}], schema=flat.schema)


@pytest.mark.parametrize(
    "change, reason, detail",
    [
        ({"observed_hpo": [], "observed_labels": []}, "no_observed_term", "no observed phenotypic feature"),
        ({"excluded_hpo": ["HP:0004757", "HP:9999999"]}, "unknown_hpo_id", "HP:9999999"),
        ({"observed_hpo": ["HP:0012232", "HP:9999998"]}, "unknown_hpo_id", "HP:9999998"),
        ({"disease_ids": ["OMIM:999999"]}, "disease_not_in_panel", "OMIM:999999"),
        ({"disease_ids": ["OMIM:609622", "OMIM:101200"]}, "several_diagnoses", "OMIM:609622, OMIM:101200"),
        ({"disease_ids": []}, "several_diagnoses", "no diagnosis"),
    ],
)
def test_every_exclusion_is_tabled_and_logged_without_patient_text(flat, knowledge, caplog, change, reason, detail):
    raw = pl.concat([flat.head(200), _one_row(flat, **change)])
    with caplog.at_level(logging.WARNING, logger="mint.apps.rare_disease.phenopackets"):
        cases, excluded = to_cases(raw, *knowledge)
    assert "MADE_UP_1" not in cases["case_id"].to_list()
    assert cases.height + excluded.height == 201
    row = excluded.filter(pl.col("case_id") == "MADE_UP_1").to_dicts()
    assert row == [{"case_id": "MADE_UP_1", "disease_id": row[0]["disease_id"], "reason": reason, "detail": detail}]
    lines = [r.getMessage() for r in caplog.records if "'MADE_UP_1'" in r.getMessage()]
    assert len(lines) == 1 and reason in lines[0]
    # No finding of any patient reaches the log, only the unknown ids themselves.
    names = knowledge[2]
    labels = {names[t].lower() for ids in raw["observed_hpo"] for t in ids if t in names}
    labels |= {lab.lower() for labs in raw["observed_labels"] for lab in labs}
    text = "\n".join(r.getMessage() for r in caplog.records).lower()
    assert not [lab for lab in labels if lab in text]
    assert "hp:0012232" not in text and "referred" not in text


def test_case_without_publication_is_its_own_group(flat, knowledge):
    cases, _ = to_cases(_one_row(flat, pmid=None), *knowledge)
    assert cases["publication"].to_list() == ["case:MADE_UP_1"]


# ---------------------------------------------------------------- split


@pytest.fixture(scope="module")
def all_cases(flat, knowledge):
    logging.getLogger("mint.apps.rare_disease.phenopackets").setLevel(logging.ERROR)  # ~160 expected exclusions
    try:
        cases, _ = to_cases(flat, *knowledge)
    finally:
        logging.getLogger("mint.apps.rare_disease.phenopackets").setLevel(logging.NOTSET)
    return cases


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_keeps_publications_apart_near_the_shares(all_cases, seed):
    split = split_by_publication(all_cases, 0.15, 0.2, seed)
    assert split.height == all_cases.height > 6000
    assert split.group_by("publication").agg(pl.col("split").n_unique())["split"].max() == 1
    shares = dict(split["split"].value_counts(normalize=True).iter_rows())
    for side, target in {"train": 0.65, "validation": 0.15, "test": 0.2}.items():
        assert abs(shares[side] - target) < 0.01, (side, shares)


def test_split_is_seeded(all_cases):
    one = split_by_publication(all_cases, 0.15, 0.15, seed=7)
    assert one.equals(split_by_publication(all_cases, 0.15, 0.15, seed=7))
    assert not one.equals(split_by_publication(all_cases, 0.15, 0.15, seed=8))
    with pytest.raises(MintError, match="validation=0.6, test=0.5"):
        split_by_publication(all_cases, 0.6, 0.5, seed=7)


# ---------------------------------------------------------------- step


def test_command_prints_a_summary(store, knowledge_dir, capsys):
    main([str(store / "json-examples"), str(knowledge_dir), "--panel", str(store / "diseases.tsv"), "--seed", "3"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["raw_cases"] == 24 == summary["cases"] + sum(summary["excluded"].values())
    assert sum(summary["split"].values()) == summary["cases"]
