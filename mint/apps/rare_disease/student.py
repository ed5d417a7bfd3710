"""The rare-disease application's builtin text student: its knowledge corpus, for the core's tiny Llama.

Real runs load an instruct model (`student.base: meta-llama/Llama-3.2-3B-Instruct`) through
`mint.core.models.load_student`. Where nothing can be downloaded, the core builds a tiny Llama
(`mint.core.students.text.build_text_student`) and pre-trains it for a couple of CPU minutes on a
corpus that this module writes: what a real LLM would have read about these diseases (descriptions of
their findings, and question/answer chats in the numbered-list answer format of the workflow's prompt,
`preferences.k` diseases an answer), never patient cases. Afterwards the student knows the disease
names and the answer format, so that fine-tuning on cases has something to improve.

    python -m mint.apps.rare_disease.student results/knowledge results/cohort/candidates.parquet results/student/base \
        --k 3 --config config/rare_disease/students/benchmark.yaml --log logs/build_student/pretrain_loss.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mint.apps.rare_disease.knowledge import knowledge_files, load_knowledge
from mint.apps.rare_disease.notes import join_phrases
from mint.apps.rare_disease.prompts import PROMPT
from mint.core import schemas
from mint.core.app import package_file
from mint.core.config import deep_update, load_yaml
from mint.core.io import MintError, read_parquet, require_columns
from mint.core.prompts import format_answer
from mint.core.students.text import Document, build_text_student

log = logging.getLogger(__name__)

# The corpus asks about findings in other words than the workflow's question (`prompts.DEFAULT_USER`):
# the student should meet that exact question first in fine-tuning, as a real LLM does.
CORPUS_QUESTIONS = (
    "Which rare genetic diseases feature {findings}? List exactly {k} of them, most frequent first, "
    "as a numbered list under the header {header}",
    "A patient shows {findings}. Name exactly {k} rare genetic diseases with these findings, as a "
    "numbered list under the header {header}",
    "Findings: {findings}.\n\nGive exactly {k} rare genetic diseases in which these findings are "
    "common, numbered, under the header {header}",
)
# HPO frequency at or above which a finding counts as common ('Frequent': 30-79%).
COMMON_FREQUENCY = 0.3
# The one input the workflow's question is asked about when it enters the vocabulary (never the training text).
EXAMPLE_NOTE = "A 4-year-old boy."

# The builtin student's defaults live in one place, the YAML the workflow uses (its comments give
# the sizes and measured times); a settings file given by the user is merged over them. Its answer
# length is the workflow's (`preferences.k`), and its prompt the resolved one: both are given.
DEFAULT_TINY_PATH = package_file(__package__, "student_tiny.yaml")


DEFAULT_TINY: dict[str, Any] = load_yaml(DEFAULT_TINY_PATH)


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
    prompt: Mapping[str, str] | None = None,
) -> list[Document]:
    """`n_docs` documents about the panel diseases and `n_distractors` look-alikes, no patient cases.

    A `chat_fraction` of them are chats (messages, which `mint.core.students.text` renders with its
    chat template) under the system message of `prompt` (the resolved prompt; default: the
    application's): the user asks which diseases feature one or two findings, the assistant answers
    `format_answer` of `k` diseases that have them under the prompt's header, most frequent first,
    padded with other known diseases. The rest are plain descriptions: '<name> is a rare genetic
    disease. Common findings include ...; occasional findings: ...', each a random subset of the
    annotations. `names` overrides disease names (the panel's own spelling).
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
    prompt = prompt or PROMPT.resolved(None)
    system, header = prompt["system"], prompt["header"]

    docs: list[Document] = [f"{name_of[d]} is a rare genetic disease." for d in name_only]
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
                {"role": "user",
                 "content": question.format(findings=join_phrases([label[h] for h in asked]), k=k, header=header)},
                {"role": "assistant", "content": format_answer([name_of[e] for e in answer], header)},
            ]
            docs.append(messages)
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


# --------------------------------------------------------------------------- builtin student


def build_builtin_student(
    knowledge: Mapping[str, str | Path],
    panel: pl.DataFrame,
    cfg: Mapping[str, Any],
    out_dir: str | Path,
    log_path: str | Path | None = None,
    *,
    k: int,
    prompt: Mapping[str, str],
) -> dict[str, Any]:
    """The knowledge corpus of the panel's diseases -> the core's tiny Llama, pre-trained on it, in `out_dir`.

    `cfg` is merged over `DEFAULT_TINY`; `k` (config `preferences.k`) and `prompt` (the resolved prompt:
    the application's, with config `prompt.*` over it) are the workflow's question, which the corpus
    answers in its format. The folder holds the model, the tokenizer, the student's kind, `metrics.json`
    and `provenance.json` (`mint.core.students.text.build_text_student`); `load_student(out_dir)` reads it back.
    """
    cfg = deep_update(DEFAULT_TINY, cfg or {})
    if "k" in (cfg.get("corpus") or {}):
        raise MintError("builtin student settings: key 'corpus.k' is no longer read: the corpus answers with "
                        f"config key 'preferences.k' diseases ({k} here); remove 'corpus.k' from the settings file "
                        "(config key 'student.builtin')")
    require_columns(panel, ("label_id", "name"), "candidates")
    diseases, annotations, terms = load_knowledge(knowledge["diseases"], knowledge["annotations"], knowledge["terms"])
    corpus_cfg = cfg["corpus"]
    corpus = knowledge_corpus(
        diseases, annotations, terms, panel["label_id"].to_list(),
        k=k, n_docs=int(corpus_cfg["n_docs"]), rng=np.random.default_rng(int(cfg["train"]["seed"])),
        n_distractors=int(corpus_cfg["n_distractors"]), chat_fraction=float(corpus_cfg["chat_fraction"]),
        names=dict(zip(panel["label_id"].to_list(), panel["name"].to_list())), prompt=prompt,
    )
    # The cases column the student reads (APPLICATION.student_text), which the prompt's user template names.
    return build_text_student(corpus, cfg, out_dir, prompt=prompt, k=k, text_field="note", example=EXAMPLE_NOTE,
                              log_path=log_path)


# --------------------------------------------------------------------------- CLI


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("knowledge_dir", help="folder written by mint.apps.rare_disease.knowledge")
    parser.add_argument("panel", help="candidates Parquet (label_id, name, synonyms)")
    parser.add_argument("out_dir", help="where the model folder goes")
    parser.add_argument("--k", type=int, required=True, help="diseases an answer lists (config preferences.k)")
    parser.add_argument("--prompt", default=None,
                        help="JSON mapping with system, user and header (default: the application's prompt)")
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
    try:
        prompt = json.loads(args.prompt) if args.prompt else PROMPT.resolved(None)
    except json.JSONDecodeError as err:
        raise MintError(f"--prompt: not a JSON mapping: {err}") from err
    panel = read_parquet(args.panel, schemas.LABELS)
    metrics = build_builtin_student(knowledge_files(args.knowledge_dir), panel, cfg, args.out_dir, args.log,
                                    k=args.k, prompt=prompt)
    print(json.dumps(metrics, indent=1))
    return metrics


if __name__ == "__main__":
    main()
