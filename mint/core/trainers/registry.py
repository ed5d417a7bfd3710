"""A training method's TRL config class and trainer class. TRL moves trainers between releases (ORPO now
lives in `trl.experimental.orpo`), so every other module asks here; with `fast_forward.py` and `vision.py`
beside it, this package is the only code that imports TRL (tests/test_architecture.py checks that), and
`surface.py` lists every TRL name it relies on.

    python -c "from mint.core.trainers import trainer_classes; print(trainer_classes('orpo'))"
"""

from __future__ import annotations

import warnings

from mint.core.trainers.fast_forward import answer_only_sft, completion_only_orpo, shared_prefix_dpo
from mint.core.trainers.vision import FullCrossAttentionMask, vision_orpo_trainer

# Methods trained on the teacher's preference pairs (all but SFT); each has a recipe <method>.yaml.
PREFERENCE_METHODS = ("dpo", "orpo", "cpo", "simpo", "kto")
METHODS = ("sft", *PREFERENCE_METHODS)
# Methods that train a vision LLM on rows with images (TRL's `images` column).
VISION_METHODS = ("sft", "dpo", "orpo")


def trainer_classes(method: str, completion_only_nll: bool = True) -> tuple[type, type]:
    """(ConfigClass, TrainerClass) of a training method; pinned: trl==1.16.0."""
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        return SFTConfig, answer_only_sft(SFTTrainer)
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, shared_prefix_dpo(DPOTrainer)
    if method == "orpo":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TRL warns that experimental APIs may change: we pin the version
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer
        return ORPOConfig, (completion_only_orpo(ORPOTrainer) if completion_only_nll else ORPOTrainer)
    if method in ("cpo", "simpo"):  # SimPO is CPO's trainer with loss_type "simpo" (set in its recipe)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from trl.experimental.cpo import CPOConfig, CPOTrainer
        return CPOConfig, CPOTrainer
    if method == "kto":  # unpairs the (chosen, rejected) pairs itself: chosen = desirable, rejected = not
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    raise ValueError(f"unknown training method {method!r}; expected one of {METHODS}")


_VISION_TRAINERS: dict[tuple[str, bool], type] = {}


def vision_trainer_classes(method: str, completion_only_nll: bool = True) -> tuple[type, type]:
    """(ConfigClass, TrainerClass) of a training method for a vision LLM and rows with images; pinned: trl==1.16.0.

    Pass the model's processor as `processing_class`; rows carry `images` (a list of PIL images)
    and conversational `prompt` with `completion` (SFT) or `chosen`/`rejected` (DPO, ORPO).
    SFT and DPO are TRL's trainers, ORPO is `VisionORPOTrainer` with DPOConfig (`beta` is ORPO's
    lambda; `completion_only_nll` as in `trainer_classes`); each rebuilds a cross-attention mask
    to the full sequence (`CrossAttentionMaskToFullLength`).
    """
    if method not in VISION_METHODS:
        raise ValueError(f"training method {method!r} has no image path in TRL 1.16; expected one of {VISION_METHODS}")
    key = (method, completion_only_nll if method == "orpo" else True)
    if key not in _VISION_TRAINERS:  # one class per variant, so isinstance checks work
        if method == "orpo":
            _VISION_TRAINERS[key] = vision_orpo_trainer(completion_only_nll)
        else:
            base = trainer_classes(method)[1]
            # The workflow's forward pass takes text batches only: for image rows TRL's way is the way, no fallback.
            _VISION_TRAINERS[key] = type(f"Vision{base.__name__}", (FullCrossAttentionMask, base),
                                         {"fast_forward_offered": False})
    if method == "orpo":
        from trl import DPOConfig

        return DPOConfig, _VISION_TRAINERS[key]
    return trainer_classes(method)[0], _VISION_TRAINERS[key]
