# The tissue application's paths and settings (rules/apps/tissue.smk uses them).
TEACHER = "results/teacher"
NUCLEI = f"{COHORT}/nuclei.parquet"
TEXT_EMBEDDINGS = f"{TEACHER}/text_embeddings.parquet"
TEACHER_MODEL = f"{TEACHER}/model.pt"
# The `teacher` keys that training reads (the encoder and prompt are embed_texts'; clip replaces it).
TEACHER_TRAINING = (
    "image_size",
    "hidden",
    "joint",
    "epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "modality_dropout",
    "supervised_weight",
    "threads",
    "cross_fit",
)
