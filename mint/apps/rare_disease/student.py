"""The rare-disease application's builtin text student: a tiny Llama that stands in for a real LLM offline.

Real runs load an instruct model (`student.base: meta-llama/Llama-3.2-3B-Instruct`) through
`mint.core.models.load_student`. Where nothing can be downloaded, the default student is built here:
a byte-level BPE tokenizer with a Llama-3-style chat template, a tiny `LlamaForCausalLM`, and a
couple of CPU minutes of causal-LM pre-training on a *knowledge corpus* — what a real LLM would
have read about these diseases (descriptions of their findings, and question/answer chats in the
numbered-list answer format of the application's prompt), never patient cases. Afterwards the student knows
the disease names and the answer format, so that fine-tuning on cases has something to improve.

    python -m mint.apps.rare_disease.student results/knowledge results/cohort/candidates.parquet results/student/base \
        --config config/student/benchmark.yaml --log logs/build_student/pretrain_loss.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mint.apps.rare_disease.knowledge import knowledge_files, load_knowledge
from mint.apps.rare_disease.notes import join_phrases
from mint.apps.rare_disease.prompts import DEFAULT_SYSTEM, DEFAULT_USER, HEADER, PROMPT
from mint.core import schemas
from mint.core.app import package_file
from mint.core.config import deep_update, load_yaml
from mint.core.io import MintError, atomic_dir, provenance, read_parquet, require_columns, write_json, write_provenance
from mint.core.prompts import build_prompt, format_answer
from mint.core.tokenizer import BOS, END_HEADER, EOT, SPECIAL_TOKENS, START_HEADER, train_chat_tokenizer

log = logging.getLogger(__name__)

# Llama 3's chat template, trimmed to what MINT uses (no tools, no date preamble). The
# `{% generation %}` block marks assistant tokens, so TRL's `assistant_only_loss` works with it.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endgeneration %}"
    "{%- else %}"
    "{{- message['content'] | trim + '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

# The corpus asks about findings in other words than the workflow's question (`DEFAULT_USER`):
# the student should meet that exact question first in fine-tuning, as a real LLM does.
CORPUS_QUESTIONS = (
    "Which rare genetic diseases feature {findings}? List exactly {k} of them, most frequent first, "
    "as a numbered list under the header " + HEADER,
    "A patient shows {findings}. Name exactly {k} rare genetic diseases with these findings, as a "
    "numbered list under the header " + HEADER,
    "Findings: {findings}.\n\nGive exactly {k} rare genetic diseases in which these findings are "
    "common, numbered, under the header " + HEADER,
)
# HPO frequency at or above which a finding counts as common ('Frequent': 30-79%).
COMMON_FREQUENCY = 0.3

# The builtin student's defaults live in one place, the YAML the workflow uses (its comments give
# the sizes and measured times); a settings file given by the user is merged over them.
DEFAULT_TINY_PATH = package_file(__package__, "student_tiny.yaml")


DEFAULT_TINY: dict[str, Any] = load_yaml(DEFAULT_TINY_PATH)


# --------------------------------------------------------------------------- tokenizer


def render_chat(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = False) -> str:
    """`CHAT_TEMPLATE` in Python, so the corpus can be written before any tokenizer exists."""
    parts = [BOS]
    for m in messages:
        parts.append(f"{START_HEADER}{m['role']}{END_HEADER}\n\n{m['content'].strip()}{EOT}")
    if add_generation_prompt:
        parts.append(f"{START_HEADER}assistant{END_HEADER}\n\n")
    return "".join(parts)


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE of `vocab_size` tokens (special tokens included) with Llama 3's chat format."""
    return train_chat_tokenizer(texts, vocab_size, special_tokens=SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE,
                                max_length=DEFAULT_TINY["model"]["max_position_embeddings"])


# --------------------------------------------------------------------------- model


def build_tiny_llama(tokenizer, model_cfg: Mapping[str, Any], seed: int = 0):
    """A freshly initialised `LlamaForCausalLM` of the size `model_cfg` gives, for `tokenizer`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "max_position_embeddings", "tie_word_embeddings")
    missing = [k for k in keys if k not in model_cfg]
    if missing:
        raise MintError(f"student model config: missing keys {missing}; expected {list(keys)}")
    config = LlamaConfig(
        **{k: model_cfg[k] for k in keys},
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


# --------------------------------------------------------------------------- corpus


def pick_distractors(annotations: pl.DataFrame, panel_ids: Sequence[str], n: int, rng: np.random.Generator
                     ) -> list[str]:
    """`n` non-panel diseases, drawn with weight = number of annotated terms shared with the panel."""
    if n <= 0:
        return []
    panel_terms = annotations.filter(pl.col("disease_id").is_in(list(panel_ids)))["hpo_id"].unique()
    shared = (
        annotations.filter(pl.col("hpo_id").is_in(panel_terms.implode()))
        .filter(~pl.col("disease_id").is_in(list(panel_ids)))
        .group_by("disease_id")
        .len()
        .sort("disease_id")
    )
    if shared.height == 0:
        return []
    weights = shared["len"].to_numpy().astype(float)
    idx = rng.choice(shared.height, size=min(n, shared.height), replace=False, p=weights / weights.sum())
    ids = shared["disease_id"].to_list()
    return sorted(ids[i] for i in idx)


def knowledge_corpus(
    diseases: pl.DataFrame,
    annotations: pl.DataFrame,
    terms: pl.DataFrame,
    panel_ids: Sequence[str],
    k: int,
    n_docs: int,
    rng: np.random.Generator,
    *,
    n_distractors: int = 30,
    chat_fraction: float = 0.6,
    names: Mapping[str, str] | None = None,
) -> list[str]:
    """`n_docs` texts about the panel diseases and `n_distractors` look-alikes, no patient cases.

    A `chat_fraction` of them are chats (rendered with `CHAT_TEMPLATE`, the system message of
    `build_prompt`): the user asks which diseases feature one or two findings, the assistant
    answers `format_answer` of `k` diseases that have them, most frequent first, padded with other
    known diseases. The rest are plain descriptions: '<name> is a rare genetic disease. Common
    findings include ...; occasional findings: ...', each a random subset of the annotations.
    `names` overrides disease names (the panel's own spelling).
    """
    panel_ids = list(dict.fromkeys(panel_ids))
    name_of = dict(zip(diseases["disease_id"].to_list(), diseases["name"].to_list()))
    name_of.update(names or {})
    unknown = sorted(set(panel_ids) - set(name_of))
    if unknown:
        raise MintError(f"panel diseases neither in the knowledge tables nor named by the panel: {unknown[:5]}")
    known = panel_ids + pick_distractors(annotations, panel_ids, n_distractors, rng)
    label = dict(zip(terms["hpo_id"].to_list(), terms["name"].to_list()))
    ann = annotations.filter(pl.col("disease_id").is_in(known) & pl.col("hpo_id").is_in(list(label)))
    findings: dict[str, dict[str, float]] = {d: {} for d in known}
    for d, h, f in ann.select("disease_id", "hpo_id", "frequency").iter_rows():
        findings[d][h] = f
    # A panel disease this HPO release does not annotate (real panels have them) is learnt by name only.
    name_only = [d for d in panel_ids if not findings[d]]
    if name_only:
        log.warning("%d panel disease(s) have no annotated finding in this HPO release (e.g. %s): the student "
                    "learns only their names", len(name_only), name_only[0])
    known = [d for d in known if findings[d]]
    if not known:
        raise MintError("no panel disease has an annotated finding in this HPO release")
    system = PROMPT.system

    docs = [f"{name_of[d]} is a rare genetic disease." for d in name_only]
    for _ in range(n_docs):
        d = known[rng.integers(len(known))]
        hpo = list(findings[d])
        freq = np.array([findings[d][h] for h in hpo])
        if rng.random() < chat_fraction:
            # One or two findings of `d`, the frequent ones more often, as a clinician would ask.
            n = min(len(hpo), 1 + int(rng.random() < 0.5))
            weight = freq + 0.05  # very rare findings (2.5%) still get asked about now and then
            asked = [hpo[i] for i in rng.choice(len(hpo), size=n, replace=False, p=weight / weight.sum())]
            score = {e: sum(findings[e].get(h, 0.0) for h in asked) for e in known}
            jitter = rng.random(len(known))  # breaks ties at random, so equal frequencies vary
            order = sorted(range(len(known)), key=lambda i: (-score[known[i]], jitter[i]))
            answer = [known[i] for i in order if score[known[i]] > 0][:k]
            pool = known + name_only
            others = [pool[i] for i in rng.permutation(len(pool)) if pool[i] not in answer]
            answer += others[: k - len(answer)]
            question = CORPUS_QUESTIONS[rng.integers(len(CORPUS_QUESTIONS))]
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": question.format(findings=join_phrases([label[h] for h in asked]), k=k)},
                {"role": "assistant", "content": format_answer([name_of[e] for e in answer], HEADER)},
            ]
            docs.append(render_chat(messages))
        else:
            common = [h for h in hpo if findings[d][h] >= COMMON_FREQUENCY]
            rare = [h for h in hpo if findings[d][h] < COMMON_FREQUENCY]
            common = [common[i] for i in rng.permutation(len(common))[: rng.integers(1, 7)]] if common else []
            rare = [rare[i] for i in rng.permutation(len(rare))[: rng.integers(1, 4)]] if rare else []
            text = f"{name_of[d]} is a rare genetic disease."
            if common and rare:
                text += f" Common findings include {join_phrases([label[h] for h in common])}; occasional findings: "
                text += join_phrases([label[h] for h in rare]) + "."
            elif common:
                text += f" Common findings include {join_phrases([label[h] for h in common])}."
            elif rare:
                text += " Occasional findings include " + join_phrases([label[h] for h in rare]) + "."
            docs.append(text)
    return docs


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
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    cfg = {**DEFAULT_TINY["train"], **train_cfg}
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


def build_builtin_student(
    knowledge: Mapping[str, str | Path],
    panel: pl.DataFrame,
    cfg: Mapping[str, Any],
    out_dir: str | Path,
    log_path: str | Path | None = None,
) -> dict[str, Any]:
    """Corpus -> tokenizer -> tiny Llama -> pre-training; saved in Hugging Face layout in `out_dir`.

    `cfg` is merged over `DEFAULT_TINY`. The folder holds the model, the tokenizer, `metrics.json`
    and `provenance.json`; `load_student(out_dir)` reads it back.
    """
    import torch

    cfg = deep_update(DEFAULT_TINY, cfg or {})
    require_columns(panel, ("label_id", "name"), "candidates")
    torch.set_num_threads(int(cfg["train"]["threads"]))
    seed = int(cfg["train"]["seed"])
    t0 = time.perf_counter()
    diseases, annotations, terms = load_knowledge(knowledge["diseases"], knowledge["annotations"], knowledge["terms"])
    corpus_cfg = cfg["corpus"]
    texts = knowledge_corpus(
        diseases, annotations, terms, panel["label_id"].to_list(),
        k=int(corpus_cfg["k"]), n_docs=int(corpus_cfg["n_docs"]), rng=np.random.default_rng(seed),
        n_distractors=int(corpus_cfg["n_distractors"]), chat_fraction=float(corpus_cfg["chat_fraction"]),
        names=dict(zip(panel["label_id"].to_list(), panel["name"].to_list())),
    )
    # The workflow's own question goes into the vocabulary (not into the training text).
    example = render_chat(build_prompt(PROMPT.resolved(None), int(corpus_cfg["k"]), "A 4-year-old boy.", "note"),
                          add_generation_prompt=True)
    templates = [DEFAULT_SYSTEM, DEFAULT_USER, example]
    tokenizer = train_tokenizer([*texts, *templates], int(cfg["vocab_size"]))
    tokenizer.model_max_length = int(cfg["model"]["max_position_embeddings"])
    model = build_tiny_llama(tokenizer, cfg["model"], seed=seed)
    metrics = pretrain(model, tokenizer, texts, cfg["train"], log_path)
    metrics.update(
        n_parameters=sum(p.numel() for p in model.parameters()),
        n_docs=len(texts),
        vocab_size=len(tokenizer),
        total_seconds=round(time.perf_counter() - t0, 1),
    )
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(metrics, tmp / "metrics.json")
        write_provenance(tmp, provenance(cfg, seed=seed, step="build_builtin_student"))
    return metrics


# --------------------------------------------------------------------------- CLI


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("knowledge_dir", help="folder written by mint.apps.rare_disease.knowledge")
    parser.add_argument("panel", help="candidates Parquet (label_id, name, synonyms)")
    parser.add_argument("out_dir", help="where the model folder goes")
    parser.add_argument("--config", help="YAML merged over DEFAULT_TINY (keys: vocab_size, model, corpus, train)")
    parser.add_argument("--log", help="JSON-lines loss log")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    # OpenMP threads that spin while waiting collapse ~20x when another process holds a core;
    # passive waiting costs little when the cores are free. Read once, when torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = make_parser().parse_args(argv)
    cfg: Mapping[str, Any] = {}
    if args.config:
        cfg = load_yaml(args.config)
        if not isinstance(cfg, Mapping):
            raise MintError(f"{args.config}: expected a mapping with keys {sorted(DEFAULT_TINY)}")
    panel = read_parquet(args.panel, schemas.LABELS)
    metrics = build_builtin_student(knowledge_files(args.knowledge_dir), panel, cfg, args.out_dir, args.log)
    print(json.dumps(metrics, indent=1))
    return metrics


if __name__ == "__main__":
    main()
