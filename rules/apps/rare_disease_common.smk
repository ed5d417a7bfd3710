# The rare-disease application's paths and computed inputs (rules/apps/rare_disease.smk uses them).
from mint.apps.rare_disease.hooks import uses_knowledge

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


def rag_model(wildcards):
    """The model a retrieval-augmented run answers with: the base student, or the SFT student of its seed."""
    return student_model() if wildcards.run == "rag_base" else trained("sft", run_seed(wildcards))


def rag_model_files(wildcards):
    if wildcards.run == "rag_base":
        return student_base_files()
    return [trained("sft", run_seed(wildcards))]
