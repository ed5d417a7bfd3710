"""Vision students on TRL: ORPO on DPOTrainer's image path (`VisionORPOTrainer`, TRL's ORPOTrainer takes
text only), and the collator fix that makes a cross-attention mask (Mllama) span the whole sequence.
`mint.core.trainers.registry.vision_trainer_classes` hands out these trainers by method.

    .venv/bin/python -m pytest -q tests/test_vision_student.py
"""

from __future__ import annotations

from mint.core.trainers.surface import check_once


def _cross_attention_spans(image_positions: list[int], length: int) -> list[tuple[int, int]]:
    """[start, end) of the tokens that attend to each image, as transformers' Mllama processor sets them
    (`get_cross_attention_token_mask`): from the image's token to the next image token, and consecutive
    image tokens, as well as the last image, to the end of the sequence."""
    if not image_positions:
        return []
    spans = [[a, b] for a, b in zip(image_positions[:-1], image_positions[1:])] + [[image_positions[-1], length]]
    end = length
    for span in reversed(spans):
        if span[0] == span[1] - 1:
            span[1] = end
        end = span[1]
    return [(a, b) for a, b in spans]


class CrossAttentionMaskToFullLength:
    """Wraps a TRL vision collator so that a `cross_attention_mask` covers the whole sequence.

    Models that attend to the image through cross-attention (Mllama: Llama-3.2-Vision) take a mask
    of shape (batch, tokens, images, tiles). TRL 1.16's vision collators build it for the prompt
    alone, then append the completion and shift rows left, so the mask is too short and misaligned
    ("The size of tensor a (38) must match the size of tensor b (29)"). It is rebuilt here from the
    final token ids; batches without one pass unchanged.
    """

    def __init__(self, collator, image_token_id: int):
        self.collator = collator
        self.image_token_id = image_token_id

    def __call__(self, examples):
        batch = self.collator(examples)
        mask = batch.get("cross_attention_mask")
        if mask is None:
            return batch
        input_ids = batch["input_ids"]
        tiles = mask.amax(dim=1)  # (batch, images, tiles): the tiles each image has
        full = mask.new_zeros((input_ids.shape[0], input_ids.shape[1], *tiles.shape[1:]))
        for row, ids in enumerate(input_ids.tolist()):
            positions = [i for i, token in enumerate(ids) if token == self.image_token_id]
            for image, (start, end) in enumerate(_cross_attention_spans(positions, len(ids))):
                full[row, start:end, image] = tiles[row, image]
        batch["cross_attention_mask"] = full
        return batch


class FullCrossAttentionMask:
    """Trainer mixin: the vision collator's cross-attention mask (if the model has one) spans the sequence."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        image_token_id = getattr(self.processing_class, "image_token_id", None)
        if image_token_id is not None and not isinstance(self.data_collator, CrossAttentionMaskToFullLength):
            self.data_collator = CrossAttentionMaskToFullLength(self.data_collator, image_token_id)


def _log1mexp(x):
    """log(1 - exp(x)) for x < 0, without cancellation (the branch at -ln 2 is TRL ORPOTrainer's)."""
    import torch

    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def vision_orpo_trainer(completion_only_nll: bool) -> type:
    """ORPO (Hong et al. 2024) on DPOTrainer's data path, which takes images: no reference model.

    TRL 1.16's ORPOTrainer has no image path (it tokenizes text only), and DPOTrainer's loss types
    have no ORPO entry; DPOTrainer's collators do carry the images (repeated for the chosen and the
    rejected half), so only the loss is replaced. Per pair, with P the per-token AVERAGE
    probability of a completion given the prompt (and image):

        log_odds = (log P_chosen - log P_rejected) - (log(1 - P_chosen) - log(1 - P_rejected))
        loss = NLL(chosen) - beta * mean(logsigmoid(log_odds))

    NLL is the token mean over the chosen rows: over the answer only (MINT's `nll: completion`),
    or, as ORPOTrainer, over prompt and answer (`nll: full`), where image placeholders and padding
    are left out (with text-only rows this is exactly ORPOTrainer's NLL).
    """
    import torch
    import torch.nn.functional as F
    import trl.trainer.dpo_trainer as dpo_module
    from accelerate.utils import is_peft_model
    from trl import DPOTrainer

    class VisionORPOTrainer(FullCrossAttentionMask, DPOTrainer):
        nll_completion_only = completion_only_nll
        _tag_names = ["trl", "orpo"]
        _name = "ORPO"
        _paper = {"title": "ORPO: Monolithic Preference Optimization without Reference Model", "id": "2403.07691"}

        def __init__(self, model, ref_model=None, *args, **kwargs):
            check_once("vision_orpo")  # were DPOTrainer._compute_loss renamed, this would train DPO's loss
            if ref_model is not None:
                raise ValueError("ORPO has no reference model: leave ref_model unset")
            had_ref_adapter = is_peft_model(model) and "ref" in model.peft_config
            # DPOTrainer.__init__ loads the policy when given a name, then (full fine-tuning, no
            # ref_model) a reference copy from the policy's `_name_or_path`: a model built in memory
            # has none to load from, and ORPO needs none. Only that second load is skipped.
            load = dpo_module.create_model_from_path
            policy_load = iter([isinstance(model, str)])

            def load_policy_only(*load_args, **load_kwargs):
                return load(*load_args, **load_kwargs) if next(policy_load, False) else None

            dpo_module.create_model_from_path = load_policy_only
            try:
                super().__init__(model, None, *args, **kwargs)
            finally:
                dpo_module.create_model_from_path = load
            # A PEFT model handed in already wrapped gets a frozen "ref" copy of its adapter from DPOTrainer.
            if is_peft_model(self.model) and "ref" in self.model.peft_config and not had_ref_adapter:
                self.model.delete_adapter("ref")

        def _compute_loss(self, model, inputs, return_outputs):
            mode = "train" if self.model.training else "eval"
            model_kwargs = {k: v for k, v in inputs.items()
                            if k not in ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")}
            model_kwargs["use_cache"] = False
            if self.aux_loss_enabled:
                model_kwargs["output_router_logits"] = True
            input_ids, completion_mask = inputs["input_ids"], inputs["completion_mask"]
            if self.nll_completion_only:
                labels = input_ids.masked_fill(completion_mask == 0, -100)
            else:
                labels = input_ids.masked_fill(inputs["attention_mask"] == 0, -100)
                image_token = getattr(self.accelerator.unwrap_model(model).config, "image_token_id", None)
                if image_token is not None:
                    labels = labels.masked_fill(input_ids == image_token, -100)
            # The fused head scores the labelled positions only (0 elsewhere): (2 * batch, seq - 1).
            outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
            seq_len = completion_mask.size(1) - 1
            # Prompt-learning PEFT prepends virtual tokens to the outputs; keep the positions of the real tokens
            per_token_logps = outputs.log_probs[:, -seq_len:].float()
            in_completion = completion_mask[:, 1:].bool()
            avg_logps = (per_token_logps * in_completion).sum(1) / in_completion.sum(1).clamp(min=1)
            chosen_logps, rejected_logps = avg_logps.chunk(2, dim=0)  # the batch is [chosen..., rejected...]
            log_odds = (chosen_logps - rejected_logps) - (_log1mexp(chosen_logps) - _log1mexp(rejected_logps))
            ratio = F.logsigmoid(log_odds)
            chosen_token_logps = per_token_logps.chunk(2, dim=0)[0]
            chosen_labelled = (labels[:, 1:] != -100).chunk(2, dim=0)[0]
            nll = -chosen_token_logps[chosen_labelled].mean()
            loss = nll - self.beta * ratio.mean()
            if self.aux_loss_enabled:
                loss = loss + self.router_aux_loss_coef * outputs.aux_loss

            gather = self.accelerator.gather_for_metrics
            chosen_rewards = self.beta * chosen_logps.detach()
            rejected_rewards = self.beta * rejected_logps.detach()
            metrics = {
                "rewards/chosen": gather(chosen_rewards).mean(),
                "rewards/rejected": gather(rejected_rewards).mean(),
                "rewards/accuracies": gather((chosen_rewards > rejected_rewards).float()).mean(),
                "rewards/margins": gather(chosen_rewards - rejected_rewards).mean(),
                "logps/chosen": gather(chosen_logps.detach()).mean(),
                "logps/rejected": gather(rejected_logps.detach()).mean(),
                "nll_loss": gather(nll.detach()).mean(),
                "log_odds_ratio": gather(ratio.detach()).mean(),
                "log_odds_chosen": gather(log_odds.detach()).mean(),
            }
            for key, value in metrics.items():
                self._metrics[mode][key].append(value.item())
            if mode == "train":
                self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            if return_outputs:  # for `compute_metrics`: the fused head builds no logits, so run the model again
                with torch.no_grad():
                    outputs = model(**model_kwargs)
                return loss, outputs
            return loss

    return VisionORPOTrainer
