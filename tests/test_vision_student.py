"""The vision student: the tiny LLaVA built offline, its loading, and training it with images in SFT, DPO and ORPO.

    .venv/bin/python -m pytest -q tests/test_vision_student.py
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image

from mint.core.io import MintError
from mint.core.students.vision import (
    IMAGE,
    build_chat_tokenizer,
    build_tiny_llava,
    encode_prompts,
    load_vision_student,
    lora_target_modules,
    save_vision_student,
)
from mint.core.train import freeze_parameters
from mint.core.trainers import trainer_classes, vision_trainer_classes

SYSTEM = "You name the shapes in pictures."
QUESTION = "Which shapes does this picture show? List 2, most likely first."
SHAPES = ["Circle", "Square", "Triangle", "Star", "Ring", "Cross"]
CORPUS = [f"{SYSTEM} {QUESTION}"] + [f"1. {a}\n2. {b}" for a in SHAPES for b in SHAPES if a != b]


def picture(seed: int, size: int = 80) -> Image.Image:
    """A random RGB picture, larger than the student's 64 px (the processor resizes and crops it)."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def ask(text: str = QUESTION) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def answer(names: list[str]) -> list[dict]:
    return [{"role": "assistant", "content": "\n".join(f"{i}. {n}" for i, n in enumerate(names, 1))}]


def preference_rows(seeds: list[int]) -> list[dict]:
    """TRL's conversational vision preference format: string contents, the image in `images`."""
    return [{"images": [picture(s)], "prompt": ask(f"{QUESTION} ({s})"),
             "chosen": answer(SHAPES[s % 3: s % 3 + 2]), "rejected": answer(SHAPES[3 + s % 3:][:2])} for s in seeds]


def sft_rows(seeds: list[int]) -> list[dict]:
    return [{"images": r["images"], "prompt": r["prompt"], "completion": r["chosen"]} for r in preference_rows(seeds)]


@pytest.fixture(scope="module")
def student():
    """(model, processor): the tiny LLaVA, never saved (no `_name_or_path` to reload a reference from)."""
    torch.set_num_threads(1)
    return build_tiny_llava(CORPUS, image_size=64, patch=16, vocab_size=400, seed=0)


# --------------------------------------------------------------------------- the tiny LLaVA


def test_chat_template_renders_string_and_part_contents_alike(student):
    _, processor = student
    as_string = processor.apply_chat_template(ask(), add_generation_prompt=True, tokenize=False)
    as_parts = processor.apply_chat_template(
        [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
         {"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
        add_generation_prompt=True, tokenize=False)
    assert as_string == as_parts
    with_image = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}], tokenize=False)
    assert f"<|end_header_id|>\n\n{IMAGE}{QUESTION}<|eot_id|>" in with_image
    assert with_image.startswith(processor.tokenizer.bos_token)


def test_each_image_becomes_one_placeholder_per_patch(student):
    model, processor = student
    enc = encode_prompts(processor, [ask(), ask("Shapes?")], [[picture(1)], [picture(2)]])
    assert enc["pixel_values"].shape == (2, 3, 64, 64)
    per_row = (enc["input_ids"] == model.config.image_token_id).sum(dim=1)
    assert per_row.tolist() == [(64 // 16) ** 2] * 2  # 4 x 4 patches; CLIP's class token is dropped
    assert model.config.image_token_id == processor.tokenizer.convert_tokens_to_ids(IMAGE)


@pytest.mark.parametrize("which", ["student", "mllama_student"])
def test_changing_only_the_image_changes_the_logits(which, request):
    model, processor = request.getfixturevalue(which)
    same_text = encode_prompts(processor, [ask(), ask()], [[picture(1)], [picture(2)]])
    assert torch.equal(same_text["input_ids"][0], same_text["input_ids"][1])
    with torch.no_grad():
        logits = model(**same_text).logits
    assert (logits[0] - logits[1]).abs().max() > 1e-3
    again = encode_prompts(processor, [ask()], [[picture(1)]])
    with torch.no_grad():
        assert torch.allclose(model(**again).logits[0], logits[0], atol=1e-5)
    generated = model.generate(**same_text, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > same_text["input_ids"].shape[1]


def test_tiny_llava_rejects_sizes_it_cannot_use():
    with pytest.raises(MintError, match="image_size 60 px must be a positive multiple of patch 16"):
        build_tiny_llava(CORPUS, image_size=60, patch=16)
    with pytest.raises(MintError, match=r"unknown text key\(s\) \['hidden'\]"):
        build_tiny_llava(CORPUS, text={"hidden": 64})


def test_round_trip_generates_the_same_tokens(student, tmp_path):
    model, processor = student
    out = save_vision_student(model, processor, tmp_path / "student")
    loaded, loaded_processor = load_vision_student(str(out))
    assert type(loaded).__name__ == "LlavaForConditionalGeneration"
    prompts, images = [ask(), ask("Shapes?")], [[picture(3)], [picture(4)]]
    enc = encode_prompts(processor, prompts, images)
    enc_loaded = encode_prompts(loaded_processor, prompts, images)
    assert torch.equal(enc["input_ids"], enc_loaded["input_ids"])
    assert torch.equal(enc["pixel_values"], enc_loaded["pixel_values"])
    kwargs = {"max_new_tokens": 8, "do_sample": False}
    model.eval()
    assert torch.equal(model.generate(**enc, **kwargs), loaded.generate(**enc_loaded, **kwargs))


def test_the_saved_student_records_its_kind_and_loads_and_answers_by_it(student, tmp_path):
    """save_vision_student writes {"kind": "vision"}: training and prediction read the kind from the folder."""
    import json

    from mint.core.predict import answer_prompts
    from mint.core.students.kind import STUDENT_FILE, student_kind
    from mint.core.students.load import load_trained

    model, processor = student
    out = save_vision_student(model, processor, tmp_path / "student")
    assert json.loads((out / STUDENT_FILE).read_text()) == {"kind": "vision"}
    assert student_kind(out) == "vision"
    loaded, _ = load_trained(out)  # no kind given: the folder's
    assert type(loaded).__name__ == "LlavaForConditionalGeneration"
    with pytest.raises(MintError, match="is a vision student.*declares a text student"):
        load_trained(out, kind="text")
    with pytest.raises(MintError, match="is a vision student, but the step gives it no image"):
        answer_prompts(str(out), [ask()], batch_size=1, max_new_tokens=2, threads=1, seed=0)
    picture(5).save(tmp_path / "p.png")
    answers = answer_prompts(str(out), [ask()], batch_size=1, max_new_tokens=2, threads=1, seed=0,
                             images=[str(tmp_path / "p.png")])
    assert len(answers) == 1


def test_load_names_a_missing_folder(tmp_path):
    missing = tmp_path / "no" / "such" / "student"
    with pytest.raises(MintError, match=str(missing)):
        load_vision_student(str(missing))


def test_load_names_an_unreachable_hub_id(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, at import
    with pytest.raises(MintError, match="mint-test/no-such-vision-model.*no hub access"):
        load_vision_student("mint-test/no-such-vision-model")


def test_load_refuses_a_text_only_student(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_chat_tokenizer(CORPUS, 400, 128)
    LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 vocab_size=len(tokenizer))).save_pretrained(tmp_path / "text")
    tokenizer.save_pretrained(tmp_path / "text")
    with pytest.raises(MintError, match="text.*takes no images"):
        load_vision_student(str(tmp_path / "text"))


def test_lora_targets_are_language_model_vision_mlps_and_projector(student):
    from peft import LoraConfig, get_peft_model

    model, _ = student
    targets = lora_target_modules(model)
    assert not [t for t in targets if "lm_head" in t or "self_attn" in t and "vision_tower" in t]
    n_layers = model.config.text_config.num_hidden_layers
    assert len([t for t in targets if ".language_model." in t]) == 7 * n_layers  # q, k, v, o, gate, up, down
    assert len([t for t in targets if ".vision_tower." in t]) == 2 * model.config.vision_config.num_hidden_layers
    assert [t for t in targets if "multi_modal_projector" in t] == ["model.multi_modal_projector.linear_1",
                                                                     "model.multi_modal_projector.linear_2"]
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, lora_alpha=4, target_modules=targets))
    adapted = {n.split(".lora_A")[0].removeprefix("base_model.model.") for n, _ in peft_model.named_parameters()
               if ".lora_A." in n}
    assert adapted == set(targets)


@pytest.fixture(scope="module")
def mllama_student():
    """(model, processor): a tiny Mllama, the architecture of the paper's Llama-3.2-11B-Vision: the image
    enters the language model through cross-attention layers, split into tiles (here 4 tiles of 28 px)."""
    from transformers import (
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaImageProcessor,
        MllamaProcessor,
        MllamaTextConfig,
        MllamaVisionConfig,
    )

    tokenizer = build_chat_tokenizer(CORPUS, 400, 256)
    processor = MllamaProcessor(image_processor=MllamaImageProcessor(size={"height": 28, "width": 28},
                                                                     max_image_tiles=4),
                                tokenizer=tokenizer, chat_template=tokenizer.chat_template)
    vision = MllamaVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1,
                                attention_heads=4, image_size=28, patch_size=14, vision_output_dim=64,
                                intermediate_layers_indices=[0])
    text = MllamaTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, vocab_size=len(tokenizer), cross_attention_layers=[1],
                            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = MllamaForConditionalGeneration(MllamaConfig(vision_config=vision, text_config=text,
                                                        image_token_index=processor.image_token_id))
    # Fresh cross-attention gates are 0 (tanh(0) = 0: the image is ignored); a trained model's are not.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                p.fill_(1.0)
    return model, processor


def test_lora_targets_of_the_papers_architecture(mllama_student):
    """Llama-3.2-Vision (Mllama) in transformers 5: cross-attention layers in the language model, a vision
    encoder with a local and a global transformer, a single linear projector."""
    model, _ = mllama_student
    targets = lora_target_modules(model)
    assert "model.multi_modal_projector" in targets
    assert "model.language_model.layers.1.cross_attn.q_proj" in targets
    assert "model.vision_model.global_transformer.layers.0.mlp.fc2" in targets
    assert not [t for t in targets if "lm_head" in t or ".vision_model." in t and ".mlp." not in t]


def test_lora_targets_refuse_a_model_without_a_language_model():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    tower = CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, image_size=32, patch_size=16))
    with pytest.raises(MintError, match="CLIPVisionModel: no linear layer under a 'language_model'"):
        lora_target_modules(tower)


# --------------------------------------------------------------------------- ORPO on DPOTrainer's data path


def tiny_text_model(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True))


def config_args(**extra) -> dict:
    return {"output_dir": extra.pop("output_dir"), "report_to": [], "use_cpu": True, "bf16": False,
            "gradient_checkpointing": False, "seed": 0, **extra}


@pytest.mark.parametrize("completion_only_nll", [False, True], ids=["nll-full", "nll-completion"])
def test_vision_orpo_loss_equals_trl_orpo_on_text(completion_only_nll, tmp_path):
    """Same text rows, same tiny Llama: VisionORPOTrainer's loss is TRL ORPOTrainer's (with MINT's
    completion-only NLL where asked), which validates the loss that the image path then uses.

    The data must tokenize alike in both: ORPOTrainer appends an EOS to each answer unless it already
    ends in one, DPOTrainer never does for chats. Here the template ends each turn with the EOS token
    (<|eot_id|>), so the sequences are the same; the test checks that first.
    """
    tokenizer = build_chat_tokenizer(CORPUS, 400, 256)
    model = tiny_text_model(tokenizer)
    rows = [{k: v for k, v in r.items() if k != "images"} for r in preference_rows([0, 1, 2])]
    dataset = Dataset.from_list(rows)
    args = config_args(output_dir=str(tmp_path), beta=0.1, max_length=256, per_device_train_batch_size=3)

    orpo_config, orpo_cls = trainer_classes("orpo", completion_only_nll=completion_only_nll)
    vision_config, vision_cls = vision_trainer_classes("orpo", completion_only_nll=completion_only_nll)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = orpo_cls(model=copy.deepcopy(model), args=orpo_config(**args), train_dataset=dataset,
                             processing_class=tokenizer)
        ours = vision_cls(model=copy.deepcopy(model), args=vision_config(**args), train_dataset=dataset,
                          processing_class=tokenizer)
    ref_batch = reference._prepare_inputs(reference.data_collator([reference.train_dataset[i] for i in range(3)]))
    our_batch = ours._prepare_inputs(ours.data_collator([ours.train_dataset[i] for i in range(3)]))

    ours_ids = our_batch["input_ids"][our_batch["attention_mask"].bool()]
    ref_ids = torch.cat([ref_batch[f"{half}_input_ids"][ref_batch[f"{half}_attention_mask"].bool()]
                         for half in ("chosen", "rejected")])
    assert torch.equal(ours_ids, ref_ids), "the two trainers tokenized the rows differently"
    ref_labelled = (ref_batch["chosen_labels"] != -100).sum() + (ref_batch["rejected_labels"] != -100).sum()
    assert our_batch["completion_mask"].sum() == ref_labelled

    with torch.no_grad():
        ref_loss = reference.compute_loss(reference.model, ref_batch).item()
        our_loss = ours.compute_loss(ours.model, our_batch).item()
    print(f"ORPO loss ({'completion' if completion_only_nll else 'full'} NLL): TRL ORPOTrainer {ref_loss:.7f}, "
          f"VisionORPOTrainer {our_loss:.7f}, difference {abs(ref_loss - our_loss):.1e} "
          f"({type(reference).__name__} vs {type(ours).__name__}; {ref_loss!r} vs {our_loss!r})")
    assert our_loss == pytest.approx(ref_loss, abs=1e-5)
    logged = ours._metrics["train"]
    assert logged["nll_loss"] and logged["log_odds_ratio"]


def test_vision_trainer_classes_name_the_methods_without_images():
    with pytest.raises(ValueError, match="'kto' has no image path.*'sft', 'dpo', 'orpo'"):
        vision_trainer_classes("kto")
    assert vision_trainer_classes("orpo")[1] is vision_trainer_classes("orpo")[1]  # one class per NLL variant


# --------------------------------------------------------------------------- images reach every trainer


def perturbed(model, scale: float = 0.05):
    """A copy of `model` with noise on every weight: DPO's reference. With the policy itself as reference the
    first DPO loss is log 2 whatever the images (chosen and rejected log-ratios are both 0)."""
    ref = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return ref


def make_trainer(method: str, student, rows: list[dict], out, **extra):
    """`method` is sft, dpo, orpo (NLL over the answer) or orpo-full-nll (NLL over prompt and answer too)."""
    model, processor = student
    config_cls, trainer_cls = vision_trainer_classes(method.split("-")[0], completion_only_nll=method == "orpo")
    args = config_cls(**config_args(output_dir=str(out), max_length=None, per_device_train_batch_size=2,
                                    learning_rate=1e-3, lr_scheduler_type="constant", logging_steps=1,
                                    save_strategy="no", **extra))
    kwargs = {"ref_model": perturbed(model)} if method == "dpo" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return trainer_cls(model=copy.deepcopy(model), args=args, train_dataset=Dataset.from_list(rows),
                           processing_class=processor, **kwargs)


def batch_loss(trainer, rows: list[dict]) -> float:
    batch = trainer._prepare_inputs(trainer.data_collator(copy.deepcopy(rows)))
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, batch).item()


@pytest.mark.parametrize("method", ["sft", "dpo", "orpo", "orpo-full-nll"])
def test_changing_only_the_images_changes_the_training_loss(method, student, tmp_path):
    rows = (sft_rows if method == "sft" else preference_rows)([0, 1])
    trainer = make_trainer(method, student, rows, tmp_path)
    other = [{**r, "images": [picture(100 + i)]} for i, r in enumerate(rows)]
    batch = trainer.data_collator(copy.deepcopy(rows))
    other_batch = trainer.data_collator(copy.deepcopy(other))
    assert torch.equal(batch["input_ids"], other_batch["input_ids"])
    assert not torch.equal(batch["pixel_values"], other_batch["pixel_values"])
    loss, other_loss = batch_loss(trainer, rows), batch_loss(trainer, other)
    assert loss != pytest.approx(other_loss, abs=1e-6)
    assert batch_loss(trainer, rows) == pytest.approx(loss, abs=1e-6)  # the same images give the same loss


# The tiny LLaVA never uses its vision tower's final layer norm (LLaVA reads the layer outputs before it).
UNUSED = ("model.vision_tower.post_layernorm.weight", "model.vision_tower.post_layernorm.bias")


@pytest.mark.parametrize("method", ["sft", "dpo", "orpo", "orpo-full-nll"])
def test_two_steps_with_images_change_every_trainable_tensor(method, student, tmp_path):
    rows = (sft_rows if method == "sft" else preference_rows)([0, 1, 2, 3])
    trainer = make_trainer(method, student, rows, tmp_path, max_steps=2)
    if method.startswith("orpo"):
        assert trainer.ref_model is None  # ORPO has no reference, and none was loaded
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert set(UNUSED) <= set(before)
    trainer.train()
    after = dict(trainer.model.named_parameters())
    unchanged = sorted(n for n, t in before.items() if torch.equal(t, after[n]))
    assert unchanged == sorted(UNUSED)
    assert all(torch.isfinite(p).all() for p in after.values())
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_frozen_vision_tower_stays_as_it_was_and_the_rest_trains(student, tmp_path):
    """The tissue recipes' `freeze: ['^model\\.vision_tower\\.']`: SFT then changes the projector and the
    language model, never the tower (which the images still pass through)."""
    rows = sft_rows([0, 1, 2, 3])
    trainer = make_trainer("sft", student, rows, tmp_path, max_steps=2)
    assert freeze_parameters(trainer.model, [r"^model\.vision_tower\."]) > 0
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    changed = {n for n, t in before.items() if not torch.equal(t, after[n])}
    tower = {n for n in before if n.startswith("model.vision_tower.")}
    assert tower and not changed & tower
    assert changed == set(before) - tower


def test_a_freeze_pattern_that_matches_nothing_is_named(student):
    with pytest.raises(MintError, match="vision_towr"):
        freeze_parameters(copy.deepcopy(student[0]), ["vision_towr"], "sft.yaml")


def test_vision_orpo_with_lora_keeps_no_reference_adapter(student, tmp_path):
    """DPOTrainer copies an adapter that comes already wrapped into a frozen 'ref' adapter; ORPO needs none."""
    from peft import LoraConfig, get_peft_model

    model, processor = student
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, lora_alpha=4,
                                                                 target_modules=lora_target_modules(model)))
    config_cls, trainer_cls = vision_trainer_classes("orpo")
    args = config_cls(**config_args(output_dir=str(tmp_path), max_length=None, per_device_train_batch_size=2,
                                    learning_rate=1e-2, max_steps=2, save_strategy="no"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trainer_cls(model=peft_model, args=args, train_dataset=Dataset.from_list(preference_rows([0, 1])),
                              processing_class=processor)
    assert list(trainer.model.peft_config) == ["default"]
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert before and all(".lora_" in n for n in before)
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert [n for n, t in before.items() if torch.equal(t, after[n])] == []


# --------------------------------------------------------------------------- the paper's architecture (Mllama)


def test_cross_attention_mask_is_rebuilt_as_the_processor_builds_it(mllama_student):
    """Rebuilt from the token ids alone, the mask equals the processor's for prompts with one image, two
    images apart and two images together (each image attends from its token to the next image's, or to the end)."""
    from mint.core.trainers import CrossAttentionMaskToFullLength

    _, processor = mllama_student
    texts = [f"{IMAGE}One picture.", f"{IMAGE}First, then {IMAGE}second.", f"{IMAGE}{IMAGE}Two together."]
    images = [[picture(1)], [picture(2), picture(3, size=30)], [picture(4), picture(5)]]
    enc = processor(images=images, text=texts, padding=True, padding_side="left", return_tensors="pt")
    expected = enc["cross_attention_mask"].clone()
    assert expected.sum() > 0
    rebuilt = CrossAttentionMaskToFullLength(lambda examples: examples, processor.image_token_id)(enc)
    assert torch.equal(rebuilt["cross_attention_mask"], expected)


@pytest.mark.parametrize("method", ["sft", "dpo", "orpo"])
def test_papers_architecture_trains_with_images_and_lora(method, mllama_student, tmp_path):
    """The paper's set-up in miniature: LoRA on the language model, the vision MLPs and the projector.
    Without the rebuilt cross-attention mask, TRL's collators crash here (mask shorter than the sequence)."""
    from peft import LoraConfig, get_peft_model

    model, processor = mllama_student
    rows = (sft_rows if method == "sft" else preference_rows)([0, 1, 2, 3])
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, lora_alpha=4,
                                                                 target_modules=lora_target_modules(model)))
    config_cls, trainer_cls = vision_trainer_classes(method)
    args = config_cls(**config_args(output_dir=str(tmp_path), max_length=None, per_device_train_batch_size=2,
                                    learning_rate=1e-2, max_steps=2, save_strategy="no"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trainer_cls(model=peft_model, args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=processor)
    batch = trainer.data_collator(copy.deepcopy(rows[:2]))
    assert batch["cross_attention_mask"].shape[:2] == batch["input_ids"].shape
    if method != "dpo":  # DPO's first loss is log 2 whatever the images (the reference is the base model)
        other = [{**r, "images": [picture(100 + i)]} for i, r in enumerate(rows[:2])]
        assert batch_loss(trainer, rows[:2]) != pytest.approx(batch_loss(trainer, other), abs=1e-6)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert before and all(".lora_" in n for n in before)
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert [n for n, t in before.items() if torch.equal(t, after[n])] == []
