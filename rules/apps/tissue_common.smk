# The tissue application's paths and settings (rules/apps/tissue.smk uses them).
from mint.apps.tissue.hooks import check_clip_source

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


def teacher_model():
    """config teacher.model: trained (here), clip (a CLIP checkpoint) or external (teacher.rankings)."""
    return config["teacher"]["model"]


def clip_files():
    """The CLIP checkpoint's folder when it is one (its identity, a digest of its config and weight
    index, is the ranking's setting too); a hub id: nothing (its resolved revision is)."""
    model = config["teacher"]["clip"]["model"]
    return [model] if Path(model).is_dir() else []


# A CLIP source resolves (or fails, naming the key) as the workflow starts, not hours into a run:
# a hub id to its snapshot in the local cache (teacher.clip.revision pins one).
CLIP = (
    check_clip_source(
        config["teacher"]["clip"]["model"], config["teacher"]["clip"]["revision"], source="workflow config"
    )
    if teacher_model() == "clip"
    else None
)
