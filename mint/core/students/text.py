"""The builtin text student of any application: a tiny Llama that stands in for a real LLM offline.

Real runs load an instruct model (`student.base: meta-llama/Llama-3.2-3B-Instruct`) through
`mint.core.models.load_student`. Where nothing can be downloaded, an application's builtin student is
built here (`build_text_student`): a byte-level BPE tokenizer with Llama 3's chat template, a
`LlamaForCausalLM` of the sizes its settings give, and a couple of CPU minutes of causal-LM
pre-training on a corpus that the application hands in: its knowledge, never cases. The corpus is an
iterable of documents, each a chat (a list of {role, content} messages, rendered with `CHAT_TEMPLATE`)
or a plain text. Its chats answer in the workflow's format: the prompt's header over a numbered list of
`preferences.k` labels, which the application writes with the resolved prompt and k it is given.

    python -c "from mint.core.students.text import render_chat; print(render_chat([{'role': 'user', 'content': 'Hi'}]))"
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mint.core.io import MintError, atomic_dir, provenance, write_json, write_provenance
from mint.core.prompts import build_prompt
from mint.core.students.kind import write_student_record
from mint.core.tokenizer import BOS, END_HEADER, EOT, SPECIAL_TOKENS, START_HEADER, train_chat_tokenizer

# The token an image part of a message renders as; a vision student's tokenizer has it as a special token.
IMAGE = "<image>"

# Llama 3's chat template, trimmed to what MINT uses (no tools, no date preamble): the one template of
# every builtin student, text and vision. A message's content is a string, or a list of parts as TRL's
# vision collators write them: {"type": "image"} renders `IMAGE`, {"type": "text", "text": ...} its
# text. The `{% generation %}` block marks assistant tokens, so TRL's `assistant_only_loss` works with it.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['content'] is string %}"
    "{%- set text = message['content'] %}"
    "{%- else %}"
    "{%- set ns = namespace(text='') %}"
    "{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' %}{%- set ns.text = ns.text + '" + IMAGE + "' %}"
    "{%- elif part['type'] == 'text' %}{%- set ns.text = ns.text + part['text'] %}{%- endif %}"
    "{%- endfor %}"
    "{%- set text = ns.text %}"
    "{%- endif %}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- text | trim + '<|eot_id|>' }}{%- endgeneration %}"
    "{%- else %}"
    "{{- text | trim + '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

# A corpus document: a chat's messages, or a plain text (each becomes BOS + text + EOT in pre-training).
Document = str | Sequence[Mapping[str, Any]]

MODEL_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "max_position_embeddings", "tie_word_embeddings")
TRAIN_KEYS = ("steps", "batch_size", "lr", "warmup_ratio", "weight_decay", "max_length", "seed", "threads",
              "log_every")


# --------------------------------------------------------------------------- tokenizer


def _content(content: str | Sequence[Mapping[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(IMAGE if part["type"] == "image" else part["text"] if part["type"] == "text" else ""
                   for part in content)


def render_chat(messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False) -> str:
    """`CHAT_TEMPLATE` in Python, so that a corpus can be rendered before any tokenizer exists."""
    parts = [BOS]
    for m in messages:
        parts.append(f"{START_HEADER}{m['role']}{END_HEADER}\n\n{_content(m['content']).strip()}{EOT}")
    if add_generation_prompt:
        parts.append(f"{START_HEADER}assistant{END_HEADER}\n\n")
    return "".join(parts)


def render_document(document: Document) -> str:
    """A corpus document as the text pre-training reads: a chat rendered with `CHAT_TEMPLATE`, a plain text as is."""
    return document if isinstance(document, str) else render_chat(document)


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int = 512):
    """Byte-level BPE of `vocab_size` tokens (special tokens included) with Llama 3's chat format."""
    return train_chat_tokenizer(texts, vocab_size, special_tokens=SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE,
                                max_length=max_length)


# --------------------------------------------------------------------------- model


def _require(cfg: Mapping[str, Any], keys: Sequence[str], what: str) -> None:
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise MintError(f"{what}: missing keys {missing}; expected {list(keys)}")


def llama_config(tokenizer, sizes: Mapping[str, Any], **extra: Any):
    """A `LlamaConfig` of `sizes` for `tokenizer` (its vocabulary and special tokens): the language model of
    both builtin students."""
    from transformers import LlamaConfig

    return LlamaConfig(**sizes, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, rms_norm_eps=1e-5,
                       **extra)


def build_tiny_llama(tokenizer, model_cfg: Mapping[str, Any], seed: int = 0):
    """A freshly initialised `LlamaForCausalLM` of the size `model_cfg` gives, for `tokenizer`."""
    import torch
    from transformers import LlamaForCausalLM

    _require(model_cfg, MODEL_KEYS, "student model config")
    config = llama_config(tokenizer, {k: model_cfg[k] for k in MODEL_KEYS}, rope_theta=10000.0)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


# --------------------------------------------------------------------------- pre-training


def _token_stream(tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """All documents as one token stream (each starts with BOS, ends with EOT) and their offsets."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    docs = []
    for doc in ids:
        if not doc or doc[0] != bos:
            doc = [bos, *doc]
        if doc[-1] != eos:
            doc = [*doc, eos]
        docs.append(doc)
    lengths = np.array([len(d) for d in docs])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.fromiter((t for d in docs for t in d), dtype=np.int64, count=int(lengths.sum())), starts


def pretrain(model, tokenizer, texts: Sequence[str], train_cfg: Mapping[str, Any], log_path: str | Path | None
             ) -> dict[str, Any]:
    """Causal-LM training on `texts`, packed: each row is `max_length` tokens from a document start on.

    AdamW, linear warm-up over `warmup_ratio` of the steps then cosine decay to 0, gradients
    clipped at norm 1. Every `log_every` steps a JSON line {step, loss, lr, tokens_per_s, seconds}
    goes to `log_path`. Returns steps, first/final loss, tokens seen, tokens/s and seconds.
    `train_cfg` holds every key of `TRAIN_KEYS` (an application's packaged settings give them).
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    _require(train_cfg, TRAIN_KEYS, "student pre-training config ('train')")
    cfg = train_cfg
    torch.set_num_threads(int(cfg["threads"]))
    torch.manual_seed(int(cfg["seed"]))
    rng = np.random.default_rng(int(cfg["seed"]))
    steps, batch_size, length = int(cfg["steps"]), int(cfg["batch_size"]), int(cfg["max_length"])

    stream, starts = _token_stream(tokenizer, texts)
    corpus_tokens = len(stream)
    if len(stream) < length + 1:  # tiny corpora: repeat until one row fits
        reps = math.ceil((length + 1) / len(stream))
        starts = np.concatenate([starts + i * len(stream) for i in range(reps)])
        stream = np.tile(stream, reps)
    starts = starts[starts + length + 1 <= len(stream)]
    # Rows start at document starts so that, as at inference, a chat begins at position 0.
    data = torch.from_numpy(stream)
    offsets = torch.arange(length + 1)

    # Weight decay on matrices only, not on norms (nanoGPT's split).
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": float(cfg["weight_decay"])}, {"params": no_decay, "weight_decay": 0.0}],
        lr=float(cfg["lr"]),
        betas=(0.9, 0.95),
    )
    sched = get_cosine_schedule_with_warmup(opt, int(round(float(cfg["warmup_ratio"]) * steps)), steps)

    log = open(log_path, "w") if log_path else None
    model.train()
    first_loss, window, logged = None, [], []
    t0 = t_log = time.perf_counter()
    tokens_since = 0
    try:
        bar = tqdm(range(1, steps + 1), desc="pretrain", mininterval=2.0)
        for step in bar:
            rows = torch.from_numpy(rng.choice(starts, size=batch_size))[:, None] + offsets
            batch = data[rows]
            out = model(input_ids=batch[:, :-1], labels=batch[:, :-1])
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss = out.loss.item()
            first_loss = loss if first_loss is None else first_loss
            window.append(loss)
            tokens_since += batch_size * length
            if step % int(cfg["log_every"]) == 0 or step == steps:
                now = time.perf_counter()
                record = {
                    "step": step,
                    "loss": round(float(np.mean(window)), 4),
                    "lr": sched.get_last_lr()[0],
                    "tokens_per_s": round(tokens_since / (now - t_log), 1),
                    "seconds": round(now - t0, 2),
                }
                logged.append(record)
                if log:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                bar.set_postfix(loss=record["loss"], tok_s=record["tokens_per_s"])
                window, tokens_since, t_log = [], 0, now
    finally:
        if log:
            log.close()
    seconds = time.perf_counter() - t0
    model.eval()
    return {
        "steps": steps,
        "first_loss": round(first_loss, 4) if first_loss is not None else None,
        "final_loss": logged[-1]["loss"] if logged else None,
        "tokens_seen": steps * batch_size * length,
        "corpus_tokens": corpus_tokens,
        "epochs": round(steps * batch_size * length / corpus_tokens, 2),
        "tokens_per_s": round(steps * batch_size * length / seconds, 1),
        "seconds": round(seconds, 1),
    }


# --------------------------------------------------------------------------- builtin student


def build_text_student(
    corpus: Iterable[Document],
    settings: Mapping[str, Any],
    out_dir: str | Path,
    *,
    prompt: Mapping[str, str],
    k: int,
    text_field: str,
    example: str,
    log_path: str | Path | None = None,
) -> dict[str, Any]:
    """Corpus -> tokenizer -> tiny Llama -> pre-training; saved in Hugging Face layout in `out_dir`.

    `settings`: the application's builtin student settings, with `vocab_size`, `model` (`MODEL_KEYS`)
    and `train` (`TRAIN_KEYS`); other keys are the application's own (how it writes its corpus) and
    only enter the provenance. `prompt` (the resolved prompt: system, user, header) and `k`
    (`preferences.k`) are the workflow's question: it enters the vocabulary, asked about one `example`
    input (the value of the cases column `text_field`), though never the training text, so that the
    student meets it first in fine-tuning, as a real LLM does. The folder holds the model, the
    tokenizer, the student's kind (`mint.core.students.kind`), `metrics.json` and `provenance.json`.
    """
    import torch

    _require(settings, ("vocab_size", "model", "train"), "builtin student settings")
    _require(settings["model"], MODEL_KEYS, "builtin student settings, key 'model'")
    _require(settings["train"], TRAIN_KEYS, "builtin student settings, key 'train'")
    train_cfg = settings["train"]
    torch.set_num_threads(int(train_cfg["threads"]))
    seed = int(train_cfg["seed"])
    t0 = time.perf_counter()
    texts = [render_document(d) for d in corpus]
    if not texts:
        raise MintError("builtin student: the application's corpus is empty; expected chats or texts to pre-train on")
    question = render_chat(build_prompt(prompt, k, example, text_field), add_generation_prompt=True)
    max_length = int(settings["model"]["max_position_embeddings"])
    tokenizer = train_tokenizer([*texts, prompt["system"], prompt["user"], question], int(settings["vocab_size"]),
                                max_length)
    model = build_tiny_llama(tokenizer, settings["model"], seed=seed)
    metrics = pretrain(model, tokenizer, texts, train_cfg, log_path)
    metrics.update(
        n_parameters=sum(p.numel() for p in model.parameters()),
        n_docs=len(texts),
        vocab_size=len(tokenizer),
        total_seconds=round(time.perf_counter() - t0, 1),
    )
    built_with = {"settings": dict(settings), "k": k, "prompt": dict(prompt)}
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_student_record(tmp, "text")
        write_json(metrics, tmp / "metrics.json")
        write_provenance(tmp, provenance(built_with, seed=seed, step="build_builtin_student"))
    return metrics
