"""The one module that imports TRL: trainers move between TRL releases (ORPO now lives in
`trl.experimental.orpo`), so every other module asks here for a method's config and trainer.

    python -c "from mint.trl_compat import trainer_classes; print(trainer_classes('orpo'))"
"""

from __future__ import annotations

import warnings


def trainer_classes(method: str) -> tuple[type, type]:
    """(ConfigClass, TrainerClass) of a training method; pinned: trl==1.16.0."""
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        return SFTConfig, SFTTrainer
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer
    if method == "orpo":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TRL warns that experimental APIs may change: we pin the version
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer
        return ORPOConfig, ORPOTrainer
    raise ValueError(f"unknown training method {method!r}; expected one of {METHODS}")


METHODS = ("sft", "dpo", "orpo")
