"""Rare genetic disease from a clinical note: the first MINT application.

A teacher that sees a patient's note and facial photo ranks the candidate diseases; the student
reads the note only. This package holds everything that knows about diseases: the HPO knowledge
tables, simulated/manifest/phenopacket cohorts, notes and faces, the note+photo teacher, the
Phenomizer and retrieval baselines, the builtin text student, the prompt and the report sections.
Its hooks (the functions of the config and the report that `APPLICATION` names) are in `hooks.py`; its
rules are `rules/apps/rare_disease.smk`.

    snakemake --cores 2 --configfile config/rare_disease/default.yaml
"""

from pathlib import Path

from mint.apps.rare_disease.cohort import CASE_FIELDS
from mint.apps.rare_disease.hooks import (
    check_config,
    check_inputs,
    input_files,
    score_files,
    select_teacher,
    summary_sections,
)
from mint.apps.rare_disease.prompts import PROMPT, normalise
from mint.core.app import Application, package_file
from mint.core.config import load_yaml

APPLICATION = Application(
    name="rare_disease",
    label_noun="disease",
    labels_noun="diseases",
    rules=Path(__file__).resolve().parents[3] / "rules" / "apps" / "rare_disease.smk",
    config_schema=load_yaml(package_file(__name__, "schema.yaml")),
    case_fields=CASE_FIELDS,
    teacher=select_teacher,  # config teacher.knowledge: the note+photo network alone, or fused with HPO knowledge
    # In the report's order: the knowledge-aware teacher's modalities (hooks.KNOWLEDGE_MODALITIES) first.
    modality_labels={"note_photo_knowledge": "note+photo+knowledge", "note_photo": "note+photo",
                     "note_knowledge": "note+knowledge", "photo_knowledge": "photo+knowledge", "note": "note only",
                     "photo": "photo only", "knowledge": "knowledge only"},
    prompt=PROMPT,
    student_kind="text",
    student_text="note",
    student_input="the note",
    builtin_student=package_file(__name__, "student_tiny.yaml"),
    vocabulary=True,
    normalise=normalise,
    rankers=("phenomizer", "knn"),
    extra_runs=r"rag_base|seed\d+/rag_sft",
    score_files=score_files,  # config baselines: the rankers' and retrieval-augmented runs' score files
    rows={"phenomizer": "Phenomizer (HPO similarity)", "knn": "retrieval (nearest patients)",
          "rag_base": "RAG, base model", "rag_sft": "RAG, SFT"},
    row_order=("phenomizer", "knn", "base", "rag_base", "sft", "rag_sft", "dpo", "orpo"),
    summary_sections=summary_sections,
    check_config=check_config,
    check_inputs=check_inputs,
    input_files=input_files,  # the files its steps read by a config path, for their fingerprints
)
