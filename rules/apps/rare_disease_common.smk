# The rare-disease application's paths and computed inputs (rules/apps/rare_disease.smk uses them).
from mint.apps.rare_disease.report import uses_knowledge

KNOWLEDGE = "results/knowledge"
TEACHER = "results/teacher"
EMBEDDINGS = f"{TEACHER}/note_embeddings.parquet"
TEACHER_MODEL = f"{TEACHER}/model.pt"
# The knowledge-aware teacher's fitted fusion (config teacher.knowledge).
FUSION = f"{TEACHER}/fusion.json"
# The `teacher` keys that training reads (the encoder is embed_notes'; rankings replace the teacher).
TEACHER_TRAINING = (
    "hidden",
    "epochs",
    "batch_size",
    "learning_rate",
    "modality_dropout",
    "threads",
    "cross_fit",
    "image_size",
)


def knowledge_files(wildcards=None):
    return {name: f"{KNOWLEDGE}/{name}.parquet" for name in ("diseases", "annotations", "terms")}


def baseline_methods():
    """Rows of the comparison beyond teacher and students, in config order."""
    b = config["baselines"]
    return (["phenomizer"] if b["phenomizer"] else []) + (["knn"] if b["knn"] else []) + [f"rag_{s}" for s in b["rag"]]


def application_scores():
    rankers = [f"results/scores/{b}.parquet" for b in baseline_methods() if not b.startswith("rag_")]
    rag = [f"results/scores/seed{s}/rag_sft.parquet" for s in seeds() if "sft" in config["baselines"]["rag"]]
    rag += ["results/scores/rag_base.parquet"] if "base" in config["baselines"]["rag"] else []
    return rankers + rag


def rag_model(wildcards):
    """The model a retrieval-augmented run answers with: the base student, or the SFT student of its seed."""
    return student_model() if wildcards.run == "rag_base" else trained("sft", run_seed(wildcards))


def rag_model_files(wildcards):
    if wildcards.run == "rag_base":
        return student_base_files()
    return [trained("sft", run_seed(wildcards))]
