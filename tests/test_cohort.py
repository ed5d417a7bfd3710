"""The rare-disease cohort step: simulated, manifest and phenopacket sources, and the tables it writes."""

import json

import polars as pl
import pytest
from PIL import Image

from mint.apps.rare_disease.cohort import build_cohort, read_panel
from mint.apps.rare_disease.knowledge import knowledge_files
from mint.core.cohort import assign_split, given_split, load_cases, load_labels, split_cases
from mint.core.config import validate_config
from mint.core.io import MintError, read_parquet
from mint.core.report import _cohort_facts
from mint.core.schemas import EXCLUDED
from tests.factories import make_cases

TABLES = ("cases", "candidates", "vocabulary", "excluded")


def build(config, knowledge_dir, out):
    """Run the cohort step into `out` (its four tables and images/), as the workflow calls it."""
    build_cohort(knowledge_files(knowledge_dir), **{f"{t}_path": out / f"{t}.parquet" for t in TABLES},
                 images_dir=out / "images", cohort=config["cohort"], seed=config["seed"])
    return out


def load(out):
    """(cases, candidates, vocabulary, excluded) of a cohort folder."""
    return (load_cases(out / "cases.parquet"), load_labels(out / "candidates.parquet"),
            load_labels(out / "vocabulary.parquet"), read_parquet(out / "excluded.parquet", EXCLUDED))


def sim_config(**sim):
    # k + q = 4 fit the 4 diseases (validate_config checks the panel holds them).
    return validate_config({"cohort": {"simulated": {"n_diseases": 4, "cases_per_disease": 10, **sim}},
                            "preferences": {"k": 2, "q": 2}})


@pytest.fixture(scope="module")
def cohort_dir(knowledge_dir, tmp_path_factory):
    return build(sim_config(), knowledge_dir, tmp_path_factory.mktemp("cohort"))


@pytest.mark.slow
def test_simulated_cohort_shape(cohort_dir):
    cases, candidates, vocabulary, excluded = load(cohort_dir)
    assert candidates.height == 4 and cases.height == 40 and excluded.height == 0
    assert cases["case_id"].n_unique() == 40
    assert set(cases["label_id"]) == set(candidates["label_id"])
    assert set(candidates["label_id"]) < set(vocabulary["label_id"])  # the whole release, around the panel
    assert set(cases["source"]) == {"simulated"} and cases["group"].is_null().all()
    assert all(n.strip() for n in cases["note"])
    for path in cases["image_path"]:
        assert Image.open(path).size == (64, 64)
    # Every disease is on every side of the split (stratified).
    per = cases.group_by("label_id").agg(pl.col("split").n_unique())
    assert per["split"].min() == 3


@pytest.mark.slow
def test_note_states_only_what_the_patient_has(cohort_dir, knowledge_dir):
    cases = load_cases(cohort_dir / "cases.parquet")
    terms = pl.read_parquet(knowledge_files(knowledge_dir)["terms"])
    names = dict(zip(terms["hpo_id"], terms["name"]))
    for row in cases.head(10).iter_rows(named=True):
        assert set(row["note_hpo_ids"]) <= set(row["hpo_ids"])
        for hpo in row["note_hpo_ids"]:
            assert names[hpo][1:].lower() in row["note"].lower()


@pytest.mark.slow
def test_notes_omit_facial_findings_when_asked(knowledge_dir, tmp_path):
    cases = load_cases(build(sim_config(note_facial_share=0.0, cases_per_disease=5), knowledge_dir, tmp_path)
                       / "cases.parquet")
    facial = set(pl.read_parquet(knowledge_files(knowledge_dir)["terms"]).filter("is_facial")["hpo_id"])
    stated = {t for ids in cases["note_hpo_ids"] for t in ids}
    present = {t for ids in cases["hpo_ids"] for t in ids}
    # Facial findings are in the photo (hpo_ids) but never in a note.
    assert present & facial
    assert not stated & facial


@pytest.mark.slow
def test_same_seed_same_cohort(knowledge_dir, tmp_path, cohort_dir):
    again, first = load(build(sim_config(), knowledge_dir, tmp_path)), load(cohort_dir)
    assert again[0].drop("image_path").equals(first[0].drop("image_path"))  # paths name the output folder
    assert all(a.equals(b) for a, b in zip(again[1:], first[1:]))
    for a, b in zip(again[0]["image_path"], first[0]["image_path"]):
        assert open(a, "rb").read() == open(b, "rb").read()


def test_split_is_seeded_and_stratified():
    cases = make_cases(["a"] * 20 + ["b"] * 20)
    one = assign_split(cases, 0.1, 0.3, seed=1)
    assert one.equals(assign_split(cases, 0.1, 0.3, seed=1))
    assert not one.equals(assign_split(cases, 0.1, 0.3, seed=2))
    counts = one.group_by("label_id", "split").len().sort("label_id", "split")
    assert counts.filter(pl.col("split") == "test")["len"].to_list() == [6, 6]
    assert counts.filter(pl.col("split") == "validation")["len"].to_list() == [2, 2]


# ---------------------------------------------------------------- a split the user gives


def grouped_cases():
    """40 cases of two labels in 10 groups of 4 (g0 ... g9), split column not given."""
    return make_cases(["a", "b"] * 20, group=[f"g{i // 4}" for i in range(40)]).drop("split")


def sides(cases, side="test"):
    return set(cases.filter(pl.col("split") == side)["case_id"])


def test_nothing_given_is_the_seeded_split():
    """The default (no column, empty lists) is exactly the seeded split, each case's source 'seeded'."""
    cases = grouped_cases()
    split = split_cases(cases, 0.1, 0.3, seed=4)
    assert split.drop("split_source").equals(assign_split(cases, 0.1, 0.3, seed=4))
    assert set(split["split_source"]) == {"seeded"}


def test_cases_named_test_are_test_on_every_seed():
    """Named cases and groups are test whatever the seed; with `test: 0` the test set is exactly them, so
    runs with other seeds are evaluated on identical cases (while their other cases split differently)."""
    cases = grouped_cases()
    named = {"c1", "c2", "c3", "c4"} | {f"c{i}" for i in range(29, 33)}  # group g0 by ids, g7 by name
    runs = {seed: split_cases(cases, 0.2, 0, seed, test_cases=["c1", "c2", "c3", "c4"], test_groups=["g7"])
            for seed in (1, 2)}
    assert sides(runs[1]) == sides(runs[2]) == named
    assert sides(runs[1], "validation") != sides(runs[2], "validation")  # the seed still splits the rest
    assert set(runs[1].filter(pl.col("case_id").is_in(named))["split_source"]) == {"config"}
    # With a test share the seeded split adds test cases among the others; the named ones stay test.
    for seed in (1, 2):
        split = split_cases(cases, 0.1, 0.3, seed, test_cases=["c1", "c2", "c3", "c4"], test_groups=["g7"])
        assert named < sides(split)
    assert sides(split_cases(cases, 0.1, 0.3, 1, test_cases=["c1"])) != sides(split_cases(cases, 0.1, 0.3, 2,
                                                                                            test_cases=["c1"]))


def test_a_named_case_takes_its_group_along():
    """Naming one case of a group puts the group's other cases on its side: no group on two sides."""
    split = split_cases(grouped_cases(), 0.1, 0, seed=1, test_cases=["c6"])  # c6 is in g1 (c5 ... c8)
    assert sides(split) == {"c5", "c6", "c7", "c8"}
    assert dict(split.select("case_id", "split_source").iter_rows())["c5"] == "group"


def test_a_split_column_beats_the_seeded_split():
    """Given cells are used as is on every seed; empty ones get the seeded split among the rest."""
    cases = grouped_cases().with_columns(group=None)
    given = {"c1": "train", "c2": "validation", "c3": "test", "c10": "test"}
    cases = cases.with_columns(split=pl.col("case_id").replace_strict(given, default=None))
    for seed in (1, 2, 3):
        split = split_cases(cases, 0.1, 0.3, seed)
        got = dict(split.select("case_id", "split").iter_rows())
        assert {c: got[c] for c in given} == given
        source = dict(split.select("case_id", "split_source").iter_rows())
        assert {c for c, s in source.items() if s == "column"} == set(given)
        assert split["split"].null_count() == 0 and split["case_id"].equals(cases["case_id"])  # order kept
    assert (split_cases(cases, 0.1, 0.3, 1)["split"].to_list() != split_cases(cases, 0.1, 0.3, 2)["split"].to_list())


@pytest.mark.parametrize("kwargs, message", [
    ({"test_cases": ["c1", "nobody"]}, r"config key 'cohort.split.test_cases': case id\(s\) \['nobody'\] not among"),
    ({"test_groups": ["g99"]}, r"config key 'cohort.split.test_groups': group\(s\) \['g99'\] not among"),
    ({"test_cases": ["c2"]}, r"case 'c2' has split 'train' in column 'split' but config key .* names it test"),
    ({"test": 0}, r"no test case: config key 'cohort.split.test' is 0"),
])
def test_a_given_split_that_cannot_hold_is_an_error(kwargs, message):
    cases = grouped_cases().with_columns(split=pl.when(pl.col("case_id") == "c2").then(pl.lit("train")))
    shares = {"validation": 0.1, "test": kwargs.pop("test", 0.3)}
    with pytest.raises(MintError, match=message):
        split_cases(cases, shares["validation"], shares["test"], 1, **kwargs)


def test_a_group_given_two_sides_needs_its_other_cases_given_too():
    cases = grouped_cases().with_columns(
        split=pl.col("case_id").replace_strict({"c1": "train", "c2": "test"}, default=None))
    with pytest.raises(MintError, match=r"group 'g0' has cases given \['test', 'train'\] and cases with no split"):
        split_cases(cases, 0.1, 0.3, 1)


def test_a_bad_split_cell_names_the_row():
    assert given_split("  test ", "m.csv row 2") == "test" and given_split("", "m.csv row 2") is None
    with pytest.raises(MintError, match=r"m.csv row 5 \(case_id 'p3'\): column 'split' must be one of .*'dev'"):
        given_split("dev", "m.csv row 5 (case_id 'p3')")


# ---------------------------------------------------------------- manifest input and bad input


def write_manifest(tmp_path, rows, columns=("case_id", "note", "image_path", "disease_id")):
    img = tmp_path / "face.png"
    Image.new("L", (64, 64), 200).save(img)
    df = pl.DataFrame([{c: r.get(c, "") for c in columns} for r in rows])
    path = tmp_path / "manifest.csv"
    df.write_csv(path)
    return path


GOOD = {"case_id": "p1", "note": "A 3-year-old boy with seizures.", "image_path": "face.png", "disease_id": None}


def manifest_config(path):
    return validate_config({"cohort": {"source": "manifest", "manifest": {"path": str(path)}}})


def _good(knowledge_dir):
    diseases = pl.read_parquet(knowledge_files(knowledge_dir)["diseases"])["disease_id"].head(2).to_list()
    return [dict(GOOD, case_id=f"p{i}", disease_id=diseases[i % 2]) for i in range(12)]


@pytest.mark.slow
def test_manifest_cohort(knowledge_dir, tmp_path):
    rows = _good(knowledge_dir)
    path = write_manifest(tmp_path, rows)
    out = build(manifest_config(path), knowledge_dir, tmp_path / "out")
    cases, candidates, _, _ = load(out)
    assert cases.height == 12 and candidates.height == 2
    assert dict(zip(cases["case_id"], cases["label_id"])) == {r["case_id"]: r["disease_id"] for r in rows}
    assert set(cases["source"]) == {"manifest"}
    # The photos are copied in, named by case.
    assert cases["image_path"].to_list() == [str(out / "images" / f"{c}.png") for c in cases["case_id"]]
    assert all((out / "images" / f"{c}.png").exists() for c in cases["case_id"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, message",
    [
        ({"note": "  "}, r"row 4 \(case_id 'p2'\): empty note"),
        ({"disease_id": "OMIM:000000"}, r"row 4 \(case_id 'p2'\): unknown disease id 'OMIM:000000'"),
        ({"image_path": "missing.png"}, r"row 4 \(case_id 'p2'\): face image not found: .*missing.png"),
        ({"image_path": "corrupt.png"}, r"row 4 \(case_id 'p2'\): .*corrupt.png: not a readable image"),
    ],
)
def test_bad_manifest_row_is_named_and_nothing_is_written(knowledge_dir, tmp_path, change, message):
    rows = _good(knowledge_dir)
    rows[2] = dict(rows[2], **change)
    path = write_manifest(tmp_path, rows)
    (tmp_path / "corrupt.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MintError, match=message):
        build(manifest_config(path), knowledge_dir, out)
    assert not any(out.iterdir())


@pytest.mark.slow
def test_manifest_missing_column_is_named(knowledge_dir, tmp_path):
    path = write_manifest(tmp_path, _good(knowledge_dir), columns=("case_id", "note", "disease_id"))
    with pytest.raises(MintError, match=r"missing column\(s\) \['image_path'\]"):
        build(manifest_config(path), knowledge_dir, tmp_path)


# ---------------------------------------------------------------- phenopacket source


def pp_config(path, panel, **pp):
    return validate_config({"cohort": {"source": "phenopacket", "split": {"validation": 0.2, "test": 0.3},
                                       "phenopacket": {"path": str(path), "panel": str(panel), **pp}}})


@pytest.mark.slow
def test_phenopacket_cohort_with_exclusions(phenopacket_store, knowledge_dir, tmp_path, caplog):
    config = pp_config(phenopacket_store / "cases.parquet", phenopacket_store / "diseases.tsv",
                       simulated_per_disease=1, max_observed=4)
    with caplog.at_level("WARNING"):
        out = build(config, knowledge_dir, tmp_path)
    cases, candidates, vocabulary, excluded = load(out)
    expected = {
        "PMID_99000004_Case_2": ("unknown_hpo_id", "OMIM:147920"),
        "PMID_99000005_Patient_B": ("no_observed_term", "OMIM:122470"),
        "PMID_99000007_Proband": ("several_diagnoses", None),
        "PMID_99000008_Patient_1": ("disease_not_in_panel", "OMIM:609620"),
    }
    assert {c: (r, d) for c, r, d in excluded.select("case_id", "reason", "label_id").iter_rows()} == expected
    # ... and the report counts them by reason.
    facts = _cohort_facts(cases, candidates, out / "excluded.parquet")
    assert facts["excluded"] == {"disease_not_in_panel": 1, "no_observed_term": 1, "several_diagnoses": 1,
                                 "unknown_hpo_id": 1}
    for case_id in expected:  # each exclusion is said, naming the case
        assert any(case_id in r.getMessage() for r in caplog.records)

    real = cases.filter(pl.col("source") == "phenopacket")
    assert real.height == 20 - len(expected)
    assert candidates.height == 6  # the panel, including a disease without cases
    # One simulated training case per panel disease.
    simulated = cases.filter(pl.col("source") == "simulated")
    assert simulated["split"].unique().to_list() == ["train"]
    assert sorted(simulated["label_id"]) == sorted(candidates["label_id"])
    # The panel's own spelling of a name joins the release's as a synonym.
    kabuki = vocabulary.filter(pl.col("label_id") == "OMIM:147920").to_dicts()[0]
    assert kabuki["name"] == "Kabuki Syndrome 1" and "Kabuki syndrome 1" in kabuki["synonyms"]
    # No publication on two sides; a case without one is its own group.
    assert real.group_by("group").agg(pl.col("split").n_unique())["split"].max() == 1
    assert real.filter(pl.col("case_id") == "Unpublished_Apert_1")["group"].item() == "case:Unpublished_Apert_1"
    # Notes state at most max_observed findings, the phenopacket's first ones; the photos exist.
    assert real["note_hpo_ids"].list.len().max() == 4
    six = real.filter(pl.col("case_id") == "PMID_99000003_II_1")["note_hpo_ids"].item().to_list()
    assert six == ["HP:0002616", "HP:0001519", "HP:0001166", "HP:0001083"]
    for path in real["image_path"]:
        assert Image.open(path).size == (64, 64)


@pytest.mark.slow
def test_a_named_test_set_is_the_same_on_two_seeds(phenopacket_store, knowledge_dir, tmp_path):
    """The cohort step with `test_publications` and `test_cases` (`test: 0`): identical test cases on two
    seeds, simulated training cases still train, each case's split source in cases.parquet, the counts in
    its provenance and in the report's facts."""
    tests = {}
    for seed in (1, 2):
        config = pp_config(phenopacket_store / "cases.parquet", phenopacket_store / "diseases.tsv",
                           simulated_per_disease=1)
        config["cohort"]["split"].update(test=0, test_cases=["PMID_99000001_Patient_2"],
                                         test_publications=["PMID:99000003"])
        out = build({**config, "seed": seed}, knowledge_dir, tmp_path / str(seed))
        cases, candidates, _, _ = load(out)
        tests[seed] = set(cases.filter(pl.col("split") == "test")["case_id"])
        assert set(cases.filter(pl.col("source") == "simulated")["split_source"]) == {"always_train"}
        assert set(cases.filter(pl.col("source") == "simulated")["split"]) == {"train"}
        facts = _cohort_facts(cases, candidates, out / "excluded.parquet")
        prov = json.loads((out / "cases.parquet.provenance.json").read_text())
        assert prov["split_source"] == dict(cases.group_by("split_source").len().iter_rows())
        assert facts["split_sources"]["config/test"] == 5
    assert tests[1] == tests[2] == {"PMID_99000001_Patient_1", "PMID_99000001_Patient_2", "PMID_99000001_Patient_3",
                                    "PMID_99000003_II_1", "PMID_99000003_II_2", "PMID_99000003_III_1",
                                    "PMID_99000003_III_2"}


@pytest.mark.slow
def test_a_manifest_split_column_and_test_cases(knowledge_dir, tmp_path):
    """A manifest's split cells and `test_cases` hold; the other cases are split by the seed."""
    rows = _good(knowledge_dir)
    rows[0]["split"], rows[1]["split"] = "test", "validation"
    path = write_manifest(tmp_path, rows, columns=("case_id", "note", "image_path", "disease_id", "split"))
    config = manifest_config(path)
    config["cohort"]["split"]["test_cases"] = ["p5"]
    cases, _, _, _ = load(build(config, knowledge_dir, tmp_path / "out"))
    of = {c: (s, src) for c, s, src in cases.select("case_id", "split", "split_source").iter_rows()}
    assert of["p0"] == ("test", "column") and of["p1"] == ("validation", "column") and of["p5"] == ("test", "config")
    assert {src for c, (s, src) in of.items() if c not in ("p0", "p1", "p5")} == {"seeded"}
    config["cohort"]["split"]["test_cases"] = ["p5", "p99"]
    with pytest.raises(MintError, match=r"'cohort.split.test_cases': case id\(s\) \['p99'\] not among the manifest"):
        build(config, knowledge_dir, tmp_path / "again")


@pytest.mark.slow
def test_phenopacket_json_and_flat_give_the_same_cohort(phenopacket_store, knowledge_dir, tmp_path):
    flat_slice = tmp_path / "slice.parquet"
    json_ids = sorted(p.stem for p in (phenopacket_store / "json-examples").glob("*.json"))
    pl.read_parquet(phenopacket_store / "cases.parquet").filter(pl.col("case_id").is_in(json_ids)).write_parquet(
        flat_slice)
    built = {}
    for name, path in (("json", phenopacket_store / "json-examples"), ("flat", flat_slice)):
        out = build(pp_config(path, phenopacket_store / "diseases.tsv"), knowledge_dir, tmp_path / name)
        cases, _, _, excluded = load(out)
        built[name] = cases.drop("image_path"), excluded
    assert built["json"][0].height == len(json_ids) - 1  # one case has a made-up HPO id
    assert built["json"][1]["case_id"].to_list() == ["PMID_99000004_Case_2"]
    assert built["json"][0].equals(built["flat"][0]) and built["json"][1].equals(built["flat"][1])


def test_panel_file_errors_name_the_file(tmp_path):
    diseases = pl.DataFrame({"disease_id": ["OMIM:163950"], "name": ["Noonan syndrome 1"]})
    panel = tmp_path / "panel.tsv"
    panel.write_text("id\tlabel\nOMIM:1\tx\n")
    with pytest.raises(MintError, match="panel.tsv: panel is missing column"):
        read_panel(panel, diseases)
    panel.write_text("disease_id\tlabel\nOMIM:163950\tNoonan\nOMIM:163950\tNoonan\n")
    with pytest.raises(MintError, match="listed twice"):
        read_panel(panel, diseases)
    panel.write_text("disease_id\tlabel\nOMIM:000001\t \n")
    with pytest.raises(MintError, match=r"panel.tsv: no name for disease\(s\) \['OMIM:000001'\]"):
        read_panel(panel, diseases)
    # A blank name is the release's name of the disease.
    panel.write_text("disease_id\tlabel\nOMIM:163950\t\n")
    assert read_panel(panel, diseases).to_dicts() == [{"disease_id": "OMIM:163950", "name": "Noonan syndrome 1"}]
