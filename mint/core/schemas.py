"""Arrow schemas of the tables every application shares, defined once.

The core speaks of cases, labels and inputs, never of a domain: a case has a true `label_id`
among the application's candidates, a split, a source and a group (the unit a split keeps on one
side, such as a publication); an application adds its own columns (a note, an image path, ...)
through `cases_schema`. Each step writes through `mint.core.io.write_parquet(df, path, SCHEMA)`,
which casts to these types, and reads through `read_parquet(path, SCHEMA)`, which checks columns.

    python -c "import mint.core.schemas as s; print(s.PREFERENCES)"
"""

from collections.abc import Iterable

import pyarrow as pa

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
STRINGS = pa.list_(pa.string())

# Cohort: one row per case, whatever the application and source. Applications append columns.
CASE_FIELDS = (
    pa.field("case_id", pa.string()),
    pa.field("source", pa.string()),  # where the case came from (simulated, manifest, ...)
    pa.field("group", pa.string()),  # the unit a split keeps on one side (e.g. a publication); or null
    pa.field("label_id", pa.string()),  # the true label
    pa.field("split", pa.string()),  # train | validation | test
)
CASES = pa.schema(CASE_FIELDS)
# Optional, after the core columns: where the case's split came from (`mint.core.cohort.SPLIT_SOURCES`).
SPLIT_SOURCE = pa.field("split_source", pa.string())


def cases_schema(extra: Iterable[pa.Field] = ()) -> pa.Schema:
    """CASES with an application's own columns after the core ones."""
    return pa.schema([*CASE_FIELDS, *extra])


# The labels a student may name: the candidates it chooses from (what the teacher ranks), and
# the vocabulary names are matched against (the candidates, or a larger ontology around them).
LABELS = pa.schema([("label_id", pa.string()), ("name", pa.string()), ("synonyms", STRINGS)])
# Input cases the cohort leaves out, each with the reason (reported, never silently dropped).
EXCLUDED = pa.schema(
    [
        ("case_id", pa.string()),
        ("label_id", pa.string()),
        ("reason", pa.string()),  # the application's reason code
        ("detail", pa.string()),
    ]
)

# Teacher output: the score of every candidate label for every case, per input modality.
RANKINGS = pa.schema(
    [
        ("case_id", pa.string()),
        ("modality", pa.string()),  # the application's modality names, or `external`
        ("label_id", pa.string()),
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

# A vision student's rows carry their images too (TRL's vision format): paths relative to the
# working directory, loaded when the trainer reads the row.
IMAGES = pa.field("images", STRINGS)
PREFERENCES_VISION = PREFERENCES.append(IMAGES)
SFT_VISION = SFT.append(IMAGES)

# Student answers on the test cases and their per-case scores.
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
        ("label_id", pa.string()),  # the true label
        ("predicted_ids", STRINGS),  # matched ids, null where a name matched no label
        ("rank", pa.int32()),  # rank of the true label in the answer, null if absent
        ("n_predicted", pa.int32()),
        ("n_hallucinated", pa.int32()),
        ("format_ok", pa.bool_()),
        ("seed", pa.int64()),  # training seed of a trained student; null for methods without one
    ]
)
