"""The one module that imports TRL: trainers move between TRL releases (ORPO now lives in
`trl.experimental.orpo`), so every other module asks here for a method's config and trainer.

    python -c "from mint.core.trl_compat import trainer_classes; print(trainer_classes('orpo'))"
"""

from __future__ import annotations

import warnings


def _completion_only_orpo(orpo_trainer: type) -> type:
    """ORPO whose NLL term covers the answer only.

    TRL's ORPOTrainer computes the NLL of a decoder-only model "over the full prompt and
    response", which here means learning to write the clinical notes: for the builtin tiny
    student that is most of its capacity, and it is not what MINT asks (the prompt is the
    question, the teacher's list the answer). The odds-ratio term is unchanged.
    """
    import torch
    from torch import nn

    class CompletionOnlyORPOTrainer(orpo_trainer):
        def concatenated_forward(self, model, batch):
            out = list(super().concatenated_forward(model, batch))
            chosen_logits = out[2]  # (batch, seq - 1, vocab): already shifted for a decoder-only model
            labels = batch["chosen_labels"][:, 1:].to(chosen_logits.device)  # prompt and padding are -100
            labels = labels[:, : chosen_logits.shape[1]]
            logits = chosen_logits[:, : labels.shape[1]]
            if self.is_encoder_decoder:
                return tuple(out)
            out[4] = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), torch.as_tensor(labels).reshape(-1), ignore_index=-100
            )
            return tuple(out)

    return CompletionOnlyORPOTrainer


def trainer_classes(method: str, completion_only_nll: bool = True) -> tuple[type, type]:
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
        return ORPOConfig, (_completion_only_orpo(ORPOTrainer) if completion_only_nll else ORPOTrainer)
    if method in ("cpo", "simpo"):  # SimPO is CPO's trainer with loss_type "simpo" (set in its recipe)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from trl.experimental.cpo import CPOConfig, CPOTrainer
        return CPOConfig, CPOTrainer
    if method == "kto":  # unpairs the (chosen, rejected) pairs itself: chosen = desirable, rejected = not
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    raise ValueError(f"unknown training method {method!r}; expected one of {METHODS}")


# Methods trained on the teacher's preference pairs (all but SFT); each has a recipe <method>.yaml.
PREFERENCE_METHODS = ("dpo", "orpo", "cpo", "simpo", "kto")
METHODS = ("sft", *PREFERENCE_METHODS)
