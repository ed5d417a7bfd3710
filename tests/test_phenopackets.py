"""The phenopacket importer, on fictional cases in phenopacket-store's layout (tests/fictional_phenopackets.py,
written to a scratch folder); the tests marked slow also read the HPO release or the real store from ../shared
(skipped where it is absent)."""

import json
import logging

import numpy as np
import polars as pl
import pytest

from mint.apps.rare_disease.cohort import read_panel, split_phenopackets
from mint.apps.rare_disease.knowledge import knowledge_files, load_knowledge
from mint.apps.rare_disease.notes import demographic_phrase, write_case_note
from mint.apps.rare_disease.phenopackets import (
    RAW_COLUMNS,
    main,
    read_flat,
    read_phenopacket_json,
    split_by_publication,
    to_cases,
)
from mint.core.io import MintError
from tests.factories import make_cases

# Cohorts whose phenopacket-store folder is named by an older gene symbol than the variants carry.
OLD_SYMBOL_COHORTS = {"HNRPA2B1": "HNRNPA2B1", "MTTV": "MT-TV"}
NO_DISEASES = pl.DataFrame(schema={"disease_id": pl.String, "name": pl.String})
LOGGER = "mint.apps.rare_disease.phenopackets"


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
def knowledge(store):
    """(panel ids, known HPO ids, HPO names) as `to_cases` takes them, from the folder's extract of the release."""
    terms = pl.read_csv(store / "hpo_terms.tsv", separator="\t")
    names = dict(zip(terms["hpo_id"].to_list(), terms["name"].to_list()))
    panel = read_panel(store / "diseases.tsv", NO_DISEASES)["disease_id"].to_list()
    return panel, list(names), names


# ---------------------------------------------------------------- reading


def _same_raw_rows(from_json, flat):
    assert from_json.columns == list(RAW_COLUMNS) == flat.columns
    rows = flat.filter(pl.col("case_id").is_in(from_json["case_id"].to_list())).sort("case_id")
    assert rows["case_id"].to_list() == from_json["case_id"].to_list()
    for column in ("pmid", "sex", "age", "disease_ids", "disease_labels", "genes", "observed_labels"):
        assert from_json[column].to_list() == rows[column].to_list(), column
    for column in ("observed_hpo", "excluded_hpo"):
        assert [set(x) for x in from_json[column]] == [set(x) for x in rows[column]], column
    # `cohort` is not inside a phenopacket (the store names it by the file's folder); the importer
    # takes the case's single gene symbol, which is the flat file's value for these cases.
    assert from_json["cohort"].to_list() == rows["cohort"].to_list()


def test_json_and_flat_give_the_same_cases(from_json, flat):
    # The five files differ in what they carry: no publication, no age, a gene-level
    # interpretation, a diagnosis given only in the interpretation, excluded findings.
    assert from_json.height == 5
    _same_raw_rows(from_json, flat)
    unpublished = from_json.filter(pl.col("case_id") == "Unpublished_Apert_1").to_dicts()[0]
    assert unpublished["pmid"] is None and unpublished["age"] is None and unpublished["genes"] == ["FGFR2"]


@pytest.mark.slow
def test_real_store_json_examples_match_its_flat_file(shared_phenopacket_store):
    folder = shared_phenopacket_store / "json-examples"
    if not folder.is_dir():
        pytest.skip(f"no json-examples folder in {shared_phenopacket_store}")
    from_json = read_phenopacket_json(folder).sort("case_id")
    assert from_json.height == len(list(folder.glob("*.json")))
    _same_raw_rows(from_json, read_flat(shared_phenopacket_store / "cases.parquet"))


@pytest.mark.slow
def test_cohort_is_the_gene_except_folders_named_by_an_old_symbol(shared_phenopacket_store):
    flat = read_flat(shared_phenopacket_store / "cases.parquet")
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
    good = (store / "json-examples" / "PMID_99000001_Patient_1.json").read_text()
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
    assert a_out["case_id"].to_list() == ["PMID_99000004_Case_2"] and a.height == 4
    # The packet labels HP:0001642 'Pulmonary valve stenosis'; the note uses the release's name.
    note = a.filter(pl.col("case_id") == "PMID_99000001_Patient_1")["note"].item()
    assert note == (
        "A 4-year-old boy was referred to the genetics clinic with short stature, cryptorchidism, pulmonic stenosis"
        " and low-set ears. No hypertrophic cardiomyopathy."
    )


# ---------------------------------------------------------------- exclusions


def _one_row(flat, case_id="PMID_99000001_Patient_2", **change):
    row = flat.filter(pl.col("case_id") == case_id).to_dicts()[0]
    return pl.DataFrame([{**row, "case_id": "MADE_UP_1", **change}], schema=flat.schema)


def test_the_unchanged_row_is_kept(flat, knowledge):
    cases, excluded = to_cases(_one_row(flat), *knowledge)
    assert cases["case_id"].to_list() == ["MADE_UP_1"] and excluded.height == 0


@pytest.mark.parametrize(
    "change, reason, detail",
    [
        ({"observed_hpo": [], "observed_labels": []}, "no_observed_term", "no observed phenotypic feature"),
        ({"excluded_hpo": ["HP:0001639", "HP:9999999"]}, "unknown_hpo_id", "HP:9999999"),
        ({"observed_hpo": ["HP:0004322", "HP:9999998"]}, "unknown_hpo_id", "HP:9999998"),
        ({"disease_ids": ["OMIM:999999"]}, "disease_not_in_panel", "OMIM:999999"),
        ({"disease_ids": ["OMIM:163950", "OMIM:101200"]}, "several_diagnoses", "OMIM:163950, OMIM:101200"),
        ({"disease_ids": []}, "no_diagnosis", "no disease and no interpretation's diagnosis"),
    ],
)
def test_every_exclusion_is_tabled_and_logged_without_patient_text(flat, knowledge, caplog, change, reason, detail):
    raw = pl.concat([flat, _one_row(flat, **change)])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        cases, excluded = to_cases(raw, *knowledge)
    assert "MADE_UP_1" not in cases["case_id"].to_list()
    assert cases.height + excluded.height == raw.height
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
    assert "hp:0004322" not in text and "referred" not in text


def test_the_store_layout_exclusions(flat, knowledge):
    _, excluded = to_cases(flat, *knowledge)
    assert dict(zip(excluded["case_id"], excluded["reason"])) == {
        "PMID_99000004_Case_2": "unknown_hpo_id",
        "PMID_99000005_Patient_B": "no_observed_term",
        "PMID_99000007_Proband": "several_diagnoses",
        "PMID_99000008_Patient_1": "disease_not_in_panel",
    }


def test_case_without_publication_is_its_own_group(flat, knowledge):
    cases, _ = to_cases(flat, *knowledge)
    group = dict(zip(cases["case_id"], cases["publication"]))
    assert group["Unpublished_Apert_1"] == "case:Unpublished_Apert_1"
    assert group["PMID_99000002_Proband"] == "PMID:99000002"


# ---------------------------------------------------------------- split


@pytest.fixture(scope="module")
def many_cases():
    """~6,300 cases in 600 publications of 1-20 cases each, and 30 cases without one."""
    sizes = np.random.default_rng(0).integers(1, 21, 600)
    publications = [f"PMID:{i}" for i, n in enumerate(sizes) for _ in range(n)] + [None] * 30
    return make_cases(["OMIM:1"] * len(publications), publication=publications)


def _check_split(split, cases, tolerance):
    assert split.height == cases.height
    groups = split["publication"].fill_null(pl.lit("case:") + split["case_id"])
    assert split.group_by(groups).agg(pl.col("split").n_unique())["split"].max() == 1
    shares = dict(split["split"].value_counts(normalize=True).iter_rows())
    for side, target in {"train": 0.65, "validation": 0.15, "test": 0.2}.items():
        assert abs(shares[side] - target) < tolerance, (side, shares)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_keeps_publications_apart_near_the_shares(many_cases, seed):
    split = split_by_publication(many_cases, 0.15, 0.2, seed)
    _check_split(split, many_cases, 0.01)
    # Cases without a publication are each their own group, not one block on one side.
    assert split.filter(pl.col("publication").is_null())["split"].n_unique() > 1


def test_split_is_seeded(many_cases):
    one = split_by_publication(many_cases, 0.15, 0.15, seed=7)
    assert one.equals(split_by_publication(many_cases, 0.15, 0.15, seed=7))
    assert not one.equals(split_by_publication(many_cases, 0.15, 0.15, seed=8))
    with pytest.raises(MintError, match="validation=0.6, test=0.5"):
        split_by_publication(many_cases, 0.6, 0.5, seed=7)


# ---------------------------------------------------------------- a split the user gives

MARFAN_PAPER = {"PMID_99000003_II_1", "PMID_99000003_II_2", "PMID_99000003_III_1", "PMID_99000003_III_2"}


def test_a_flat_files_split_column_is_kept_and_checked(store, tmp_path):
    raw = pl.read_parquet(store / "cases.parquet")
    given = raw.with_columns(split=pl.when(pl.col("case_id").is_in(list(MARFAN_PAPER))).then(pl.lit("test")))
    path = tmp_path / "given.parquet"
    given.write_parquet(path)
    flat = read_flat(path)
    assert flat.columns == [*RAW_COLUMNS, "split"]
    assert set(flat.filter(pl.col("split") == "test")["case_id"]) == MARFAN_PAPER
    row = raw["case_id"].to_list().index("PMID_99000002_Proband") + 1
    given.with_columns(split=pl.when(pl.col("case_id") == "PMID_99000002_Proband").then(pl.lit("holdout"))
                       .otherwise("split")).write_parquet(path)
    with pytest.raises(MintError, match=rf"given.parquet row {row} \(case_id 'PMID_99000002_Proband'\): column "
                                        r"'split' must be one of .*'holdout'"):
        read_flat(path)


def test_named_publications_and_cases_are_test_on_every_seed(flat, knowledge):
    """`test_publications` and `test_cases` (with `test: 0`) give the same test cases on every seed."""
    cases, excluded = to_cases(flat, *knowledge)
    split = {"validation": 0.3, "test": 0, "test_cases": ["Unpublished_Apert_1"],
             "test_publications": ["PMID:99000003"]}
    runs = [split_phenopackets(cases, flat, excluded, split, seed) for seed in range(4)]
    for run in runs:
        assert set(run.filter(pl.col("split") == "test")["case_id"]) == MARFAN_PAPER | {"Unpublished_Apert_1"}
        assert run.group_by("publication").agg(pl.col("split").n_unique())["split"].max() == 1
    assert len({tuple(run["split"]) for run in runs}) > 1  # the seed splits the other publications


def test_a_flat_split_column_beats_the_publication_split(flat, knowledge):
    """A case given train takes its publication to train; given cells hold on every seed."""
    given = flat.with_columns(split=pl.col("case_id").replace_strict(
        {"PMID_99000001_Patient_1": "train", "PMID_99000002_Proband": "test"}, default=None))
    cases, excluded = to_cases(given, *knowledge)
    split = {"validation": 0.2, "test": 0.3}
    for seed in range(4):
        run = split_phenopackets(cases, given, excluded, split, seed)
        of = {c: (s, src) for c, s, src in run.select("case_id", "split", "split_source").iter_rows()}
        assert of["PMID_99000001_Patient_1"] == ("train", "column")
        assert of["PMID_99000001_Patient_3"] == ("train", "group")
        assert of["PMID_99000002_Sibling"] == ("test", "group")
        assert {src for s, src in of.values()} <= {"column", "group", "seeded"}


@pytest.mark.parametrize("named, message", [
    ({"test_cases": ["PMID_99000004_Case_2"]},
     r"'cohort.split.test_cases': case 'PMID_99000004_Case_2' is excluded from the cohort \(unknown_hpo_id"),
    ({"test_cases": ["Nobody_1"]}, r"'cohort.split.test_cases': case id\(s\) \['Nobody_1'\] not among the kept"),
    ({"test_publications": ["PMID:12345"]},
     r"'cohort.split.test_publications': publication\(s\) \['PMID:12345'\] not among the kept phenopacket cases"),
])
def test_an_unknown_or_excluded_test_case_is_an_error(flat, knowledge, named, message):
    cases, excluded = to_cases(flat, *knowledge)
    with pytest.raises(MintError, match=message):
        split_phenopackets(cases, flat, excluded, {"validation": 0.2, "test": 0.3, **named}, 1)


@pytest.mark.slow
def test_whole_store_splits_near_the_shares(shared_phenopacket_store, knowledge_dir):
    """The store's real publication sizes (the largest 157 of 6,336 cases) still land within a point."""
    diseases, _, terms = load_knowledge(*knowledge_files(knowledge_dir).values())
    names = dict(zip(terms["hpo_id"].to_list(), terms["name"].to_list()))
    panel = read_panel(shared_phenopacket_store / "diseases.tsv", diseases)["disease_id"].to_list()
    logging.getLogger(LOGGER).setLevel(logging.ERROR)  # ~160 expected exclusions
    try:
        cases, _ = to_cases(read_flat(shared_phenopacket_store / "cases.parquet"), panel, names, names)
    finally:
        logging.getLogger(LOGGER).setLevel(logging.NOTSET)
    assert cases.height > 6000
    for seed in range(4):
        _check_split(split_by_publication(cases, 0.15, 0.2, seed), cases, 0.01)


# ---------------------------------------------------------------- step


@pytest.mark.slow
def test_command_prints_a_summary(store, knowledge_dir, capsys):
    main([str(store / "cases.parquet"), str(knowledge_dir), "--panel", str(store / "diseases.tsv"), "--seed", "3"])
    summary = json.loads(capsys.readouterr().out)
    # Against the real HPO release, only the made-up HPO id is unknown.
    assert summary["excluded"] == {"no_diagnosis": 0, "several_diagnoses": 1, "disease_not_in_panel": 1,
                                   "unknown_hpo_id": 1, "no_observed_term": 1}
    assert summary["raw_cases"] == 20 and summary["cases"] == 16
    assert summary["diseases"] == 5 and summary["publications"] == 7
    assert sum(summary["split"].values()) == summary["cases"]
