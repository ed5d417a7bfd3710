"""Vision students: a vision LLM (image + text in, text out) by hub id or folder, and a tiny one made offline.

Real runs load an instruct vision LLM (e.g. `meta-llama/Llama-3.2-11B-Vision-Instruct`) with
`load_vision_student`. Where nothing can be downloaded, `build_tiny_llava` makes a stand-in from
configs: a small CLIP vision tower joined to a small Llama through transformers' LLaVA classes,
a byte-level BPE tokenizer with an `<image>` token and the builtin students' one chat template
(`mint.core.students.text.CHAT_TEMPLATE`, which renders an image part as `<image>`), and the LLaVA
processor that turns each `<image>` into one placeholder per image patch.

    python -c "from mint.core.students.vision import build_tiny_llava; print(build_tiny_llava(['a cell'])[0])"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mint.core.io import MintError, atomic_dir
from mint.core.models import HUB_ID, unloadable_folder
from mint.core.students.kind import write_student_record
from mint.core.students.text import CHAT_TEMPLATE, IMAGE, llama_config
from mint.core.tokenizer import SPECIAL_TOKENS as TEXT_SPECIAL_TOKENS
from mint.core.tokenizer import train_chat_tokenizer

# The text student's special tokens and the image token: one whole token, never learnt from text.
SPECIAL_TOKENS = (*TEXT_SPECIAL_TOKENS, IMAGE)

# The tiny student's sizes (~1.2M parameters with a 3,000-token vocabulary at 64 px, patch 16).
TINY_VISION: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}
TINY_TEXT: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
}
# CLIP's own pixel statistics (openai/clip-vit-*), which every CLIP image processor uses.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_chat_tokenizer(texts: Iterable[str], vocab_size: int = 3000, max_length: int = 512):
    """Byte-level BPE of at most `vocab_size` tokens (special tokens included) with `CHAT_TEMPLATE`.

    The special tokens (`SPECIAL_TOKENS`, `<image>` among them) are whole tokens, never learnt from
    `texts`. A few hundred template sentences give fewer merges than `vocab_size` allows: the
    vocabulary is then smaller (BPE stops when nothing is left to merge).
    """
    return train_chat_tokenizer(texts, vocab_size, special_tokens=SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE,
                                max_length=max_length, extra_special_tokens={"image_token": IMAGE})


def _sizes(given: Mapping[str, Any] | None, default: Mapping[str, Any], what: str) -> dict[str, Any]:
    unknown = sorted(set(given or {}) - set(default))
    if unknown:
        raise MintError(f"tiny vision student: unknown {what} key(s) {unknown}; expected some of {sorted(default)}")
    return {**default, **(given or {})}


def build_tiny_llava(
    tokenizer_texts: Iterable[str],
    image_size: int = 64,
    patch: int = 16,
    *,
    vocab_size: int = 3000,
    text: Mapping[str, Any] | None = None,
    vision: Mapping[str, Any] | None = None,
    seed: int = 0,
):
    """(model, processor): a freshly initialised `LlavaForConditionalGeneration` and its `LlavaProcessor`.

    The tokenizer is trained on `tokenizer_texts` (`build_chat_tokenizer`); `text` and `vision`
    override sizes of `TINY_TEXT` (a `LlamaConfig`) and `TINY_VISION` (a `CLIPVisionConfig`).
    Images are resized and centre-cropped to `image_size` px and cut into `patch` px patches:
    (image_size / patch)² image features, one `<image>` placeholder each. The vision tower's
    `post_layernorm` is never used (LLaVA reads the layer outputs before it), so training leaves it
    unchanged.
    """
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    if image_size <= 0 or patch <= 0 or image_size % patch:
        raise MintError(f"tiny vision student: image_size {image_size} px must be a positive multiple of "
                        f"patch {patch} px")
    text_sizes = _sizes(text, TINY_TEXT, "text")
    vision_sizes = _sizes(vision, TINY_VISION, "vision")
    tokenizer = build_chat_tokenizer(tokenizer_texts, vocab_size, int(text_sizes["max_position_embeddings"]))
    n_features = (image_size // patch) ** 2
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision_sizes, image_size=image_size, patch_size=patch),
        text_config=llama_config(tokenizer, text_sizes),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
        image_seq_length=n_features,
        # "default" drops CLIP's class token: one feature per patch. LLaVA reads the second-to-last
        # layer by default; a 2-layer tower would then train one layer for nothing, so read the last.
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    for key in ("pad_token_id", "eos_token_id", "bos_token_id"):
        setattr(model.generation_config, key, getattr(tokenizer, key))
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    # The processor writes (image_size / patch)² + num_additional_image_tokens - 1 placeholders
    # with the "default" strategy: 1 stands for CLIP's class token, which "default" then drops.
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


def lora_target_modules(model) -> list[str]:
    """Names of the linear layers LoRA adapts in a vision LLM: the language model's (attention, cross-attention
    and MLP projections; not the LM head), the vision encoder's MLPs and the image projector.

    These are the paper's targets for Llama-3.2-11B-Vision (`model.language_model.*_proj`,
    `model.vision_model.*.mlp.fc1/fc2`, `model.multi_modal_projector`); LLaVA's are found the same way
    (`vision_tower`, `multi_modal_projector.linear_1/2`). Pass them as peft's `target_modules`.
    """
    from torch import nn

    found = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        parts = name.split(".")
        if ("language_model" in parts or "multi_modal_projector" in parts
                or ({"vision_tower", "vision_model"} & set(parts) and "mlp" in parts)):
            found.append(name)
    if not any("language_model" in n.split(".") for n in found):
        raise MintError(f"{type(model).__name__}: no linear layer under a 'language_model' module; expected a "
                        "vision LLM in transformers' layout (model.language_model, model.vision_*, "
                        "model.multi_modal_projector)")
    return found


def save_vision_student(model, processor, out_dir: str | Path) -> Path:
    """Model, processor and the student's kind ('vision', `mint.core.students.kind`) in Hugging Face layout,
    written atomically; `load_vision_student` reads it back."""
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        write_student_record(tmp, "vision")
    return Path(out_dir)


def load_vision_student(name_or_path: str, dtype: str = "float32"):
    """(model, processor) of a vision LLM from a local folder (a `ModelRef.source`: a hub id's cache snapshot
    is one) from its files alone, or from a Hugging Face hub id (cache / HF_HOME).

    The tokenizer's pad token falls back to its EOS token; padding side is left to the caller.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, ProcessorMixin

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, str(dtype), None)
    if not isinstance(torch_dtype, (torch.dtype, str)):
        raise MintError(f"vision student dtype {dtype!r}: expected float32, bfloat16, float16 or auto")
    local = Path(name_or_path).is_dir()
    if not local and not HUB_ID.match(str(name_or_path)):
        raise MintError(f"vision student {name_or_path!r}: no such folder, and not a hub id (expected 'org/name')")
    try:
        processor = AutoProcessor.from_pretrained(str(name_or_path), local_files_only=local)
        if isinstance(processor, ProcessorMixin):
            model = AutoModelForImageTextToText.from_pretrained(str(name_or_path), dtype=torch_dtype,
                                                                local_files_only=local)
    except (OSError, ValueError) as err:
        if local:
            holds = "a Hugging Face vision LLM folder (model + processor)"
            raise MintError(f"vision student {unloadable_folder(Path(name_or_path), holds)}: {err}") from err
        raise MintError(
            f"vision student {name_or_path!r}: no local folder of that name, and the hub id could not be found "
            "in the Hugging Face cache; this machine has no hub access. Download it elsewhere "
            f"(`hf download {name_or_path} --local-dir DIR`) and point the config at DIR."
        ) from err
    if not isinstance(processor, ProcessorMixin):
        raise MintError(f"vision student {name_or_path!r}: its processor is a {type(processor).__name__}, which "
                        "takes no images; expected a vision LLM (a model with an image processor)")
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return model, processor


def encode_prompts(processor, prompts: Sequence[Sequence[Mapping[str, Any]]], images: Sequence[Sequence[Any]],
                   answer: str = ""):
    """Model inputs for generation: each chat (ending in a user turn) rendered with the generation prompt,
    its images in `images` (one list per chat, in the order of their image parts), left-padded.

    A chat whose contents are plain strings gets its images before the first user text, as TRL's
    collators put them in training. `answer`: text the assistant's turn already begins with.
    """
    texts = render_prompts(processor, prompts, images, answer)
    # One list per chat: LLaVA's processor flattens them, Mllama's needs them per chat.
    nested = [list(pictures) for pictures in images] if any(images) else None
    return processor(images=nested, text=texts, padding=True, padding_side="left",
                     add_special_tokens=False, return_tensors="pt")


def render_prompts(processor, prompts: Sequence[Sequence[Mapping[str, Any]]], images: Sequence[Sequence[Any]],
                   answer: str = "") -> list[str]:
    """The texts `encode_prompts` encodes: each chat with its image parts and the generation prompt, then `answer`."""
    if len(prompts) != len(images):
        raise MintError(f"{len(prompts)} prompts but {len(images)} image lists; expected one list per prompt")
    texts = []
    for messages, pictures in zip(prompts, images):
        messages = [dict(m) for m in messages]
        has_parts = any(not isinstance(m["content"], str) for m in messages)
        if not has_parts and pictures:
            first_user = next((m for m in messages if m["role"] == "user"), None)
            if first_user is None:
                raise MintError("a prompt with images has no user message to put them in")
            first_user["content"] = [*({"type": "image"} for _ in pictures),
                                     {"type": "text", "text": first_user["content"]}]
        texts.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + answer)
    return texts
