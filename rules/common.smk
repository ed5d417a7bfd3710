# Config validation, the application, and every computed input, as named functions so that rules
# stay declarative. Each rule takes its params from STEP.params (mint.core.steps), each setting by
# name, plus one `settings` param that holds them all as canonical JSON, so that Snakemake's params
# trigger (an unnamed set of values) sees a swap or a collision too. Models enter by their resolved
# revision, files the steps read by path by their digests (tests/test_reruns.py: every key, swap and collision).
import json
import os
import shlex
import sys
from pathlib import Path

from mint.core.app import load_application, selected_teacher
from mint.core.config import builtin_student_threads as builtin_student_threads_of
from mint.core.config import check_inputs, load_yaml, resolve_paths, training_seeds, validate_config
from mint.core.fingerprint import fingerprint_files
from mint.core.io import apply_output_mode
from mint.core.models import resolve_encoder, resolve_model
from mint.core.report import PANEL_SUFFIX
from mint.core.steps import ENV_EXPECTED, StepSettings, canonical, shell_step
from mint.core.trainers import METHODS

# PyTorch threads that spin while they wait slowed training ~20-fold when two jobs shared the
# 2 cores here (400 vs 9k tokens/s); passive waiting lets parallel jobs share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Shell rules run `accelerate` and `python -m mint...`: those of the Python that runs Snakemake
# (a rule's conda env, when used, goes first on PATH once activated).
_bin, _path = str(Path(sys.executable).parent), os.environ.get("PATH", "")
if _path.split(os.pathsep)[0] != _bin:
    os.environ.update(PATH=os.pathsep.join([_bin, _path]))

# What the run writes holds patient data: its owner's alone, whatever the umask, from before the config
# is read (an error that names a case reaches Snakemake's own log, which it opens before this file).
# Every job inherits the mode (privacy.shared_group opens it to the group, below; docs/privacy.md).
SNAKEMAKE_OWN = [".snakemake", ".snakemake/log", *sorted(Path(".snakemake/log").glob("*"))]
apply_output_mode(existing=SNAKEMAKE_OWN)


def restrict_snakemake_records():
    """Snakemake gives its metadata and incomplete-job records 0660 whatever the umask (so that a group may
    share a working directory; snakemake/persistence/file.py): at the end of each run, the output mode."""
    apply_output_mode(existing=[p for d in ("metadata", "incomplete") for p in Path(".snakemake", d).rglob("*")])


onsuccess:
    restrict_snakemake_records()


onerror:
    restrict_snakemake_records()


def config_origins():
    """(mapping, name) of each source of the config, lowest precedence first: the Snakefile's
    `configfile:` (when present), each --configfile (its path), then --config values ('--config')."""
    cli = [Path(f) for f in workflow.overwrite_configfiles]
    own = [Path(f) for f in workflow.configfiles if Path(f).absolute() not in cli]
    files = [(load_yaml(f), str(f)) for f in own + cli]
    return files + [(dict(workflow.config_settings.config or {}), "--config")]


def config_sources(origins):
    """(mapping, folder) of each of `origins`: the folder its paths resolve against (--config: the working
    directory)."""
    return [(m, Path.cwd() if name == "--config" else Path(name).absolute().parent) for m, name in origins]


# Validate as soon as the config loads: an invalid key fails here, naming the key. Paths resolve
# against the config file that names them (defaults: this workflow's folder). Then the files the
# config names (recipes, student base, the cohort's inputs and its panel against k + q), before any step.
# An invalid value's error names the file (or --config) that set it.
_origins = config_origins()
_validated = validate_config(config, source="workflow config", origins=_origins)
_validated = resolve_paths(_validated, config_sources(_origins), default_base=workflow.basedir, workdir=Path.cwd())
config.clear()
config.update(_validated)
check_inputs(config, source="workflow config")
apply_output_mode(config["privacy"]["shared_group"], existing=SNAKEMAKE_OWN)
STEP = StepSettings(config)

APP = load_application(config["application"])
# What the application's steps read by path from the config, listed once (~2 s per 100,000 rows).
INPUT_FILES = APP.input_files(config) if APP.input_files is not None else {}
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

# The student model, resolved once: a hub id to its snapshot in the local cache (student.revision pins
# one), a folder to a digest of its config and weight index; its identity is what the cache key holds.
STUDENT = resolve_model(
    config["student"]["base"], config["student"]["revision"], key="student.base", source="workflow config"
)


def cfg(key):
    """The config value of a dotted key, as a named setting of the rule that asks for it."""
    return STEP.key(key)


def file_setting(key, path):
    """A file or folder a step reads by path, as a setting whose identity is its digest (a file the
    config names is also the rule's input where Snakemake should order or track it)."""
    return STEP.setting(key, path, identity=fingerprint_files([path]))


def input_settings():
    """The files the application's steps read by path from its config keys (its `input_files` hook:
    a manifest, the images it lists, a panel, ...), each key's files as one setting: their count,
    identified by their fingerprint (`mint.core.fingerprint`). A group of more than 1,000 files (images)
    is fingerprinted by size and modification time, so that start-up reads none of them."""
    return {
        f"files_{key.replace('.', '_')}": STEP.setting(
            f"{key}[files]",
            len(paths),
            identity=fingerprint_files(paths, key=key, content_limit=0 if len(paths) > 1000 else 1 << 20),
        )
        for key, paths in INPUT_FILES.items()
    }


def model_setting(key, ref):
    """A model a step loads (its `source`: a folder, or 'builtin'), identified by its resolved revision."""
    return STEP.setting(key, ref.source, identity=ref.identity)


def teacher_training(keys):
    """The `teacher` keys that the application's teacher training reads (`keys`), as one setting."""
    return STEP.group("teacher", keys)


def encoder_setting():
    """The application's sentence encoder (teacher.encoder), by its package version or folder digest."""
    return model_setting(
        "teacher.encoder",
        resolve_encoder(config["teacher"]["encoder"], key="teacher.encoder", source="workflow config"),
    )


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
    return STEP.setting("prompt", json.dumps(APP.prompt.resolved(config["prompt"]), sort_keys=True))


def student_base():
    """The base student: the application's builtin model built here, or a local folder (a hub id's
    snapshot folder in the Hugging Face cache)."""
    return STUDENT_BASE if STUDENT.source == "builtin" else STUDENT.source


def student_model():
    """The base student as a setting: its identity is the resolved revision (or 'builtin': the folder
    build_student writes, whose provenance carries the settings it was built with)."""
    return STEP.setting("student.base", student_base(), identity=STUDENT.identity)


def student_base_files():
    """The builtin student's folder (rebuilding it reruns what depends on it); a local or cached model
    enters through its identity (student_model) instead: its folders can hold many GB."""
    return [STUDENT_BASE] if STUDENT.source == "builtin" else []


def builtin_student_settings():
    """The user's settings for the application's builtin student (merged over its packaged ones), if any."""
    return [config["student"]["builtin"]] if config["student"]["builtin"] else []


def builtin_student_params(**named):
    """build_student's settings: the file of the user's settings for it, by its digest (none: the
    application's packaged settings, which are code), and the application's own (`named`: e.g. the
    answer length and prompt its corpus is written with)."""
    settings = config["student"]["builtin"]
    return STEP.params(builtin=file_setting("student.builtin", settings) if settings else None, **named)


def builtin_student_threads():
    """The threads build_student reserves: those its pre-training uses (`train.threads` of its settings)."""
    return builtin_student_threads_of(APP, config["student"]["builtin"])


def max_k():
    """The largest k the report asks for (evaluation.ks): how far a ranker's lists are scored."""
    return STEP.setting("evaluation.ks[max]", max(config["evaluation"]["ks"]))


def methods():
    return config["training"]["methods"]


def seeds():
    """Training seeds: each trained method is trained, answered and scored once per seed."""
    return training_seeds(config)


def trained(method, seed):
    return f"results/train/seed{seed}/{method}"


def recipe(wildcards):
    return f"{config['training']['recipes']}/{wildcards.method}.yaml"


# Each trained method's recipe by its digest, and the accelerate config the steps launch with.
RECIPES = {
    m: file_setting(f"training.recipes[{m}]", f"{config['training']['recipes']}/{m}.yaml")
    for m in config["training"]["methods"]
}
ACCELERATE = file_setting("training.accelerate", config["training"]["accelerate"])


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


def predict_model(wildcards):
    """The model a run answers with: the base student (by its identity), or a trained folder (an input)."""
    return student_model() if wildcards.run == "base" else trained_folder(wildcards.run)


def trained_folder(run):
    return f"results/train/{run}"


def panel_ranking_params(split, top, model):
    """The params of a student's ranking of the labels (workflow_scripts/rank_student.py): the cases of
    `split` (a setting, or a fixed value), each student's best `top` labels (None: every candidate)."""
    return STEP.params(
        model=model,
        prompt=prompt(),
        text_field=APP.student_text,
        image_field=APP.student_image,
        kind=APP.student_kind,
        k=cfg("preferences.k"),
        batch_size=cfg("evaluation.panel_batch_size"),
        top=top,
        eval_threads=cfg("evaluation.threads"),
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
    """The trained folder a run answers with, or the builtin base student's folder (none for a local or
    cached model: see student_base_files)."""
    return student_base_files() if wildcards.run == "base" else [trained_folder(wildcards.run)]


def application_scores():
    """Score files of the application's own rows (its baselines): its `score_files` hook, or none."""
    return list(APP.score_files(config)) if APP.score_files is not None else []


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
