"""Tissue type from nucleus images: the second MINT application (PanNuke's 19 tissues).

A teacher that sees an H&E patch and its nucleus information (types, sizes and density from the
nucleus masks) ranks the 19 tissues; the student, a vision LLM, sees the image only. This package
holds what knows about tissues: the tissues and nucleus types, simulated patches with masks and
captions, PanNuke and manifest readers, the image+nuclei teacher (or, by config `teacher.model`, a
CLIP checkpoint such as PLIP, or external rankings), the builtin vision student and the prompt. Its
hooks (the functions of the config that `APPLICATION` names) are in `hooks.py`; its rules are
`rules/apps/tissue.smk`.

    snakemake --cores 2 --configfile config/tissue/default.yaml
"""

from pathlib import Path

from mint.apps.tissue.cohort import CASE_FIELDS
from mint.apps.tissue.hooks import check_config, check_inputs, input_files, select_teacher
from mint.apps.tissue.prompts import PROMPT, normalise
from mint.core.app import Application, package_file
from mint.core.config import load_yaml

APPLICATION = Application(
    name="tissue",
    label_noun="tissue",
    labels_noun="tissues",
    rules=Path(__file__).resolve().parents[3] / "rules" / "apps" / "tissue.smk",
    config_schema=load_yaml(package_file(__name__, "schema.yaml")),
    case_fields=CASE_FIELDS,
    teacher=select_teacher,  # config teacher.model: trained (image+nuclei) or clip (image); external: the core's
    modality_labels={"image_nuclei": "image+nuclei", "image": "image only"},
    prompt=PROMPT,
    student_kind="vision",
    student_image="image_path",
    student_input="the image",
    builtin_student=package_file(__name__, "student_tiny.yaml"),
    normalise=normalise,
    check_config=check_config,
    check_inputs=check_inputs,
    input_files=input_files,  # the files its steps read by a config path, for their fingerprints
)
