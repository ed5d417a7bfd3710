"""A toy application, the smallest complete one: shapes named from a one-line description.

It proves the core's seam, and is the example to copy when writing an application
(docs/architecture.md, Writing an application): a few labels, made-up inputs, an external rankings
file as the teacher, its own rules file (`rules.smk`) and config key, a text student made by the
core's builtin text student from its own corpus (`student.py`), and nothing of the rare-disease
application. It needs no hook (`hooks.py` in mint/apps/<name>/ holds a larger application's).
Selected with `application: examples.toy_app` (the repository root on PYTHONPATH); run by
tests/test_toy_app.py.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

from mint.core import schemas
from mint.core.app import Application, Prompt, Teacher
from mint.core.io import write_parquet

SHAPES = {"S1": "circle", "S2": "square", "S3": "triangle", "S4": "hexagon", "S5": "star", "S6": "oval"}
# What the toy knows of each shape: its student's corpus (examples/toy_app/student.py) and the cases' descriptions.
FEATURES = {"S1": "a round outline and no corners", "S2": "four equal sides", "S3": "three corners",
            "S4": "six sides", "S5": "five points", "S6": "an egg outline"}
CASE_FIELDS = (pa.field("description", pa.string()),)


def build_cohort(cases_csv: str | Path, cases_path: str | Path, candidates_path: str | Path,
                 excluded_path: str | Path) -> None:
    """The toy cohort step: a CSV of case_id, label_id, split, description; the six shapes as candidates."""
    cases = pl.read_csv(cases_csv).with_columns(source=pl.lit("toy"), group=pl.lit(None, pl.String))
    candidates = pl.DataFrame({"label_id": list(SHAPES), "name": list(SHAPES.values()),
                               "synonyms": [[] for _ in SHAPES]}, schema={"label_id": pl.String, "name": pl.String,
                                                                          "synonyms": pl.List(pl.String)})
    write_parquet(cases, cases_path, schemas.cases_schema(CASE_FIELDS))
    write_parquet(candidates, candidates_path, schemas.LABELS)
    write_parquet(pl.DataFrame(schema={f.name: pl.String for f in schemas.EXCLUDED}), excluded_path, schemas.EXCLUDED)


APPLICATION = Application(
    name="toy",
    label_noun="shape",
    labels_noun="shapes",
    rules=Path(__file__).with_name("rules.smk"),
    config_schema={"properties": {"toy": {"type": "object", "additionalProperties": False, "default": {},
                                          "properties": {"cases": {"type": "string", "default": "toy.csv"}}}}},
    case_fields=CASE_FIELDS,
    # Its one teacher, which no rule of its own trains: a config names its rankings (teacher.rankings).
    teacher=Teacher(("drawing",), "drawing"),
    modality_labels={"drawing": "drawing"},
    prompt=Prompt(system="You name shapes.", user="{description}\n\nName {k} shapes, most likely first, under the "
                  "header SHAPES:", header="SHAPES:"),
    student_kind="text",
    student_text="description",
    student_input="the description",
)
