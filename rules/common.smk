# Config validation, the application, and every computed input, as named functions so that rules
# stay declarative. Everything a step reads is an input or a param: a config change reruns
# exactly the steps whose params hold it (tests/test_rerun.py checks this key by key).
import json
import os
import shlex
import sys
from pathlib import Path

from mint.core.app import builtin_student_threads as builtin_student_threads_of
from mint.core.app import load_application, selected_teacher
from mint.core.config import check_inputs, load_yaml, validate_config
from mint.core.report import PANEL_SUFFIX
from mint.core.trl_compat import METHODS

# PyTorch threads that spin while they wait slowed training ~20-fold when two jobs shared the
# 2 cores here (400 vs 9k tokens/s); passive waiting lets parallel jobs share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Shell rules run `accelerate` and `python -m mint...`: those of the Python that runs Snakemake
# (a rule's conda env, when used, goes first on PATH once activated).
_bin, _path = str(Path(sys.executable).parent), os.environ.get("PATH", "")
if _path.split(os.pathsep)[0] != _bin:
    os.environ.update(PATH=os.pathsep.join([_bin, _path]))

# Validate as soon as the config loads: an invalid key fails here, naming the key; then the files the
# config names (recipes, student base, the cohort's inputs and its panel against k + q), before any step.
_validated = validate_config(config, source="workflow config")
config.clear()
config.update(_validated)
check_inputs(config, source="workflow config")

APP = load_application(config["application"])
# The teacher the config selects (the application's, one of its choices, or external rankings).
TEACHER_CHOICE = selected_teacher(APP, config)

# What an application's rules write for the core (see mint.core.app.Application).
COHORT = "results/cohort"
CASES = f"{COHORT}/cases.parquet"
CANDIDATES = f"{COHORT}/candidates.parquet"
VOCABULARY = f"{COHORT}/vocabulary.parquet"
EXCLUDED = f"{COHORT}/excluded.parquet"
TEACHER_RANKINGS = "results/rankings/teacher.parquet"
STUDENT_BASE = "results/student/base"


def cohort_files(wildcards=None):
    return {"cases": CASES, "candidates": CANDIDATES}


def vocabulary_file(wildcards=None):
    """The names answers are matched against: the application's vocabulary, or the candidates."""
    return VOCABULARY if APP.vocabulary else CANDIDATES


def external_rankings():
    return config["teacher"]["rankings"] is not None


def modalities():
    """The modalities the teacher's rankings hold: one teacher row of the report each."""
    return list(TEACHER_CHOICE.modalities)


def pair_modality():
    """The modality whose ranking makes the preference pairs."""
    return TEACHER_CHOICE.pair_modality


def prompt():
    """The student's prompt: the application's, with the config's `prompt` keys over it (JSON)."""
    return json.dumps(APP.prompt.resolved(config["prompt"]), sort_keys=True)


def student_base():
    """The base student: the application's builtin model built here, or a Hugging Face id / local folder."""
    base = config["student"]["base"]
    return STUDENT_BASE if base == "builtin" else base


def student_base_files():
    """Files the base student is made of, so that rebuilding it reruns what depends on it."""
    base = student_base()
    return [base] if base == STUDENT_BASE or Path(base).exists() else []


def builtin_student_settings():
    """The user's settings for the application's builtin student (merged over its packaged ones), if any."""
    return [config["student"]["builtin"]] if config["student"]["builtin"] else []


def builtin_student_threads():
    """The threads build_student reserves: those its pre-training uses (`train.threads` of its settings)."""
    return builtin_student_threads_of(APP, config["student"]["builtin"])


def methods():
    return config["training"]["methods"]


def seeds():
    """Training seeds: each trained method is trained, answered and scored once per seed."""
    return config["training"]["seeds"] or [config["seed"]]


def trained(method, seed):
    return f"results/train/seed{seed}/{method}"


def recipe(wildcards):
    return f"{config['training']['recipes']}/{wildcards.method}.yaml"


def train_data(wildcards):
    """SFT's targets, or the pairs: the teacher's, or with `preferences.student_errors` those of the seed
    (rejected: its SFT student's own mistakes, rules/core/preferences.smk)."""
    if wildcards.method == "sft":
        return "results/preferences/sft.parquet"
    if config["preferences"]["student_errors"]:
        return f"results/preferences/seed{wildcards.seed}/preferences.parquet"
    return "results/preferences/preferences.parquet"


def train_init(wildcards):
    """The SFT model of the same seed for recipes that start there (DPO, as in the paper), else nothing."""
    init = (load_yaml(recipe(wildcards)) or {}).get("init", "base")
    return [trained("sft", wildcards.seed)] if init == "sft" else []


def init_option(wildcards, input):
    """`--init <SFT folder>` for mint.core.train when the method starts from SFT, else nothing."""
    init = first_or_none(input.init)
    return f"--init {shlex.quote(init)}" if init else ""


def first_or_none(files):
    """The one file of a named input that may be empty (a str, or a list of 0 or 1)."""
    if isinstance(files, str):
        return files
    return files[0] if len(files) else None


def predict_model(wildcards, input):
    return first_or_none(input.model) or student_base()


def panel_ranking_params(split, top):
    """The params of a student's ranking of the labels (workflow_scripts/rank_student.py): the cases of
    `split`, each student's best `top` labels (None: every candidate)."""
    return dict(
        model=predict_model,
        prompt=lambda wildcards: prompt(),  # a function: the template's {braces} are not wildcards
        text_field=APP.student_text,
        image_field=APP.student_image,
        k=config["preferences"]["k"],
        batch_size=config["evaluation"]["panel_batch_size"],
        top=top,
        eval_threads=config["evaluation"]["threads"],
        split=split,
    )


# A run is what one prediction/score file holds: the base model, or a trained method of one seed;
# an application may answer more runs of its own (e.g. retrieval-augmented prompts).
TRAINED_RUN = r"seed\d+/(" + "|".join(METHODS) + ")"
PREDICT_RUN = f"base|{TRAINED_RUN}"
SCORE_RUN = "|".join([PREDICT_RUN, *([APP.extra_runs] if APP.extra_runs else [])])


def run_method(wildcards):
    """'orpo' of 'seed3/orpo': the value of the predictions' method column."""
    return wildcards.run.split("/")[-1]


def seed_of(run):
    """The training seed of a run ('seed3/orpo' -> 3), None for the base model and retrieval rows."""
    head = run.split("/")[0]
    return int(head.removeprefix("seed")) if head.startswith("seed") else None


def run_seed(wildcards):
    return seed_of(wildcards.run)


def predict_model_files(wildcards):
    return student_base_files() if wildcards.run == "base" else [f"results/train/{wildcards.run}"]


def application_scores():
    """Score files of the application's own rows (its baselines); its rules file may redefine this."""
    return []


def student_runs():
    """The base model and each trained method of each seed: the runs a student answers (and ranks)."""
    return ["base", *(f"seed{s}/{m}" for s in seeds() for m in methods())]


def panel_scores():
    """Score files of the students' full-panel rankings (config `evaluation.panel_ranking`; the seeds of
    `evaluation.panel_seeds`, null: all), or none."""
    if not config["evaluation"]["panel_ranking"]:
        return []
    chosen = config["evaluation"]["panel_seeds"]
    return [
        f"results/scores/panel/{run}.parquet"
        for run in student_runs()
        if chosen is None or run == "base" or seed_of(run) in chosen
    ]


def score_files():
    teacher = [f"results/scores/teacher_{m}.parquet" for m in modalities()]
    students = [f"results/scores/{run}.parquet" for run in student_runs()]
    return teacher + application_scores() + students + panel_scores()


def train_dirs():
    return [trained(m, s) for s in seeds() for m in methods()]


def teacher_metrics():
    return [TEACHER_CHOICE.metrics] if TEACHER_CHOICE.metrics else []


REPORT_FILES = ("summary.md", "metrics.csv", "accuracy.png", "training.png", "per_label.png", "confusion.png")


def report_files():
    return [f"results/report/{name}" for name in REPORT_FILES]
