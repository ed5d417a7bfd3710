"""Everything that touches TRL: a method's config and trainer classes (`registry`), the workflow's own
forward passes for ORPO, DPO and SFT (`fast_forward`), the vision trainers (`vision`), and the list of
TRL names they rely on, checked when a trainer is made (`surface`). No other module imports TRL.

    .venv/bin/python -m pytest -q tests/test_trl_surface.py tests/test_fast_forward.py
"""

from mint.core.trainers.fast_forward import fast_forward_outcome, fell_back, shared_prefix_rows
from mint.core.trainers.registry import (
    METHODS,
    PREFERENCE_METHODS,
    VISION_METHODS,
    trainer_classes,
    vision_trainer_classes,
)
from mint.core.trainers.surface import TRLChanged, check_trl_surface
from mint.core.trainers.vision import CrossAttentionMaskToFullLength

__all__ = [
    "METHODS",
    "PREFERENCE_METHODS",
    "VISION_METHODS",
    "CrossAttentionMaskToFullLength",
    "TRLChanged",
    "check_trl_surface",
    "fast_forward_outcome",
    "fell_back",
    "shared_prefix_rows",
    "trainer_classes",
    "vision_trainer_classes",
]
