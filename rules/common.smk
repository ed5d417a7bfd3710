# Config validation and every computed input, as named functions so that rules stay declarative.
import json
import os
import shlex
import sys
from pathlib import Path

from mint.config import load_yaml, validate_config
from mint.trl_compat import METHODS

# PyTorch threads that spin while they wait slowed training ~20-fold when two jobs shared the
# 2 cores here (400 vs 9k tokens/s); passive waiting lets parallel jobs share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Shell rules run `accelerate` and `python -m mint...`: those of the Python that runs Snakemake
# (a rule's conda env, when used, goes first on PATH once activated).
_bin, _path = str(Path(sys.executable).parent), os.environ.get("PATH", "")
if _path.split(os.pathsep)[0] != _bin:
    os.environ.update(PATH=os.pathsep.join([_bin, _path]))

# Validate as soon as the config loads: an invalid key fails here, naming the key.
_validated = validate_config(config, source="workflow config")
config.clear()
config.update(_validated)

KNOWLEDGE = "results/knowledge"
COHORT = "results/cohort"
TEACHER = "results/teacher"
STUDENT_BASE = "results/student/base"


def knowledge_files(wildcards=None):
    return {name: f"{KNOWLEDGE}/{name}.parquet" for name in ("diseases", "annotations", "terms")}


def cohort_files(wildcards=None):
    return {"cases": f"{COHORT}/cases.parquet", "panel": f"{COHORT}/panel.parquet"}


def excluded_file():
    return f"{COHORT}/excluded.parquet"


def parent(name, io="input"):
    """A param that is the folder of a named input/output file (steps read sibling tables)."""
    return lambda wildcards, input, output: str(Path(getattr(input if io == "input" else output, name)).parent)


def external_rankings():
    return config["teacher"]["rankings"] is not None


def teacher_modalities():
    return ["external"] if external_rankings() else ["note_photo", "note"]


def student_base():
    """The base student: the tiny model built here, or a Hugging Face id / local folder."""
    base = config["student"]["base"]
    return STUDENT_BASE if base == "builtin" else base


def student_base_files():
    """Files the base student is made of, so that rebuilding it reruns what depends on it."""
    base = student_base()
    return [base] if base == STUDENT_BASE or Path(base).exists() else []


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
    name = "sft" if wildcards.method == "sft" else "preferences"
    return f"results/preferences/{name}.parquet"


def train_init(wildcards):
    """The SFT model of the same seed for recipes that start there (DPO, as in the paper), else nothing."""
    init = (load_yaml(recipe(wildcards)) or {}).get("init", "base")
    return [trained("sft", wildcards.seed)] if init == "sft" else []


def init_option(wildcards, input):
    """`--init <SFT folder>` for mint.train when the method starts from SFT, else nothing."""
    init = first_or_none(input.init)
    return f"--init {shlex.quote(init)}" if init else ""


def first_or_none(files):
    """The one file of a named input that may be empty (a str, or a list of 0 or 1)."""
    if isinstance(files, str):
        return files
    return files[0] if len(files) else None


def predict_model(wildcards, input):
    return first_or_none(input.model) or student_base()


def predict_settings():
    """The config that mint.predict reads, as JSON (a param: changing it reruns prediction)."""
    keys = ("seed", "evaluation", "prompt", "preferences")
    return json.dumps({k: config[k] for k in keys}, sort_keys=True)


# A run is what one prediction/score file holds: the base model, or a trained method of one seed.
TRAINED_RUN = r"seed\d+/(" + "|".join(METHODS) + ")"
RAG_RUN = r"rag_base|seed\d+/rag_sft"
PREDICT_RUN = f"base|{TRAINED_RUN}"
SCORE_RUN = f"base|{TRAINED_RUN}|{RAG_RUN}"


def run_method(wildcards):
    """'orpo' of 'seed3/orpo': the value of the predictions' method column."""
    return wildcards.run.split("/")[-1]


def run_seed(wildcards):
    """The training seed of a run ('seed3/orpo' -> 3), None for the base model and retrieval rows."""
    head = wildcards.run.split("/")[0]
    return int(head.removeprefix("seed")) if head.startswith("seed") else None


def predict_model_files(wildcards):
    return student_base_files() if wildcards.run == "base" else [f"results/train/{wildcards.run}"]


def rag_model_files(wildcards):
    if wildcards.run == "rag_base":
        return student_base_files()
    return [trained("sft", run_seed(wildcards))]


def baseline_methods():
    """Rows of the comparison beyond teacher and students, in config order."""
    b = config["baselines"]
    return (["phenomizer"] if b["phenomizer"] else []) + (["knn"] if b["knn"] else []) + [f"rag_{s}" for s in b["rag"]]


def score_files():
    teacher = [f"results/scores/teacher_{m}.parquet" for m in teacher_modalities()]
    rankers = [f"results/scores/{b}.parquet" for b in baseline_methods() if not b.startswith("rag_")]
    rag = [f"results/scores/seed{s}/rag_sft.parquet" for s in seeds() if "sft" in config["baselines"]["rag"]]
    rag += ["results/scores/rag_base.parquet"] if "base" in config["baselines"]["rag"] else []
    students = [f"results/scores/seed{s}/{m}.parquet" for s in seeds() for m in methods()]
    return teacher + rankers + ["results/scores/base.parquet"] + rag + students


def train_dirs():
    return [trained(m, s) for s in seeds() for m in methods()]


def report_files():
    return [f"results/report/{name}" for name in ("summary.md", "metrics.csv", "accuracy.png", "training.png", "per_disease.png")]
