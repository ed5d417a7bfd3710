"""Rare genetic disease from a clinical note: the first MINT application.

A teacher that sees a patient's note and facial photo ranks the candidate diseases; the student
reads the note only. This package holds everything that knows about diseases: the HPO knowledge
tables, simulated/manifest/phenopacket cohorts, notes and faces, the note+photo teacher, the
Phenomizer and retrieval baselines, the builtin text student, the prompt and the report sections.
Its rules are `rules/apps/rare_disease.smk`.

    snakemake --cores 2 --configfile config/config.yaml
"""

from pathlib import Path

from mint.apps.rare_disease.cohort import CASE_FIELDS, input_files
from mint.apps.rare_disease.prompts import PROMPT, normalise
from mint.apps.rare_disease.report import (
    KNOWLEDGE_MODALITIES,
    TEACHER_METRICS,
    check_config,
    check_inputs,
    select_teacher,
    summary_sections,
)
from mint.core.app import Application, package_file
from mint.core.config import load_yaml

APPLICATION = Application(
    name="rare_disease",
    label_noun="disease",
    labels_noun="diseases",
    rules=Path(__file__).resolve().parents[3] / "rules" / "apps" / "rare_disease.smk",
    config_schema=load_yaml(package_file(__name__, "schema.yaml")),
    case_fields=CASE_FIELDS,
    teacher_modalities=KNOWLEDGE_MODALITIES,  # teacher.knowledge: false drops the fused ones (select_teacher)
    pair_modality="note_photo_knowledge",
    modality_labels={"note_photo": "note+photo", "note": "note only", "photo": "photo only",
                     "note_photo_knowledge": "note+photo+knowledge", "note_knowledge": "note+knowledge",
                     "photo_knowledge": "photo+knowledge", "knowledge": "knowledge only"},
    prompt=PROMPT,
    student_kind="text",
    student_text="note",
    student_input="the note",
    builtin_student=package_file(__name__, "student_tiny.yaml"),
    vocabulary=True,
    teacher_metrics=TEACHER_METRICS,
    normalise=normalise,
    rankers=("phenomizer", "knn"),
    extra_runs=r"rag_base|seed\d+/rag_sft",
    rows={"phenomizer": "Phenomizer (HPO similarity)", "knn": "retrieval (nearest patients)",
          "rag_base": "RAG, base model", "rag_sft": "RAG, SFT"},
    row_order=("phenomizer", "knn", "base", "rag_base", "sft", "rag_sft", "dpo", "orpo"),
    summary_sections=summary_sections,
    check_config=check_config,
    check_inputs=check_inputs,
    input_files=input_files,  # the files its steps read by a config path, for their fingerprints
    select_teacher=select_teacher,  # config teacher.knowledge: the network alone, or fused with HPO knowledge
)
