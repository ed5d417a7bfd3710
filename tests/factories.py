"""One factory for test cohorts: cases, candidates and rankings written as the workflow writes them.

    from tests.factories import make_cases, write_cohort
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from mint.core import schemas
from mint.core.io import write_parquet
from mint.core.rankings import rankings_frame

RARE_DISEASE_FIELDS = (
    pa.field("note", pa.string()),
    pa.field("image_path", pa.string()),
    pa.field("hpo_ids", schemas.STRINGS),
    pa.field("note_hpo_ids", schemas.STRINGS),
)


def make_cases(labels: Sequence[str], splits: Sequence[str] | str = "train", **columns: Sequence[Any]) -> pl.DataFrame:
    """One case per label (`c1`, `c2`, ...) with the core columns; `columns` adds or overrides any column.

    Rare-disease columns get defaults too: a note naming the case, no photo, no HPO terms.
    """
    n = len(labels)
    base: dict[str, Any] = {
        "case_id": [f"c{i}" for i in range(1, n + 1)],
        "source": ["simulated"] * n,
        "group": [None] * n,
        "label_id": list(labels),
        "split": [splits] * n if isinstance(splits, str) else list(splits),
        "note": [f"note of case {i}" for i in range(1, n + 1)],
        "image_path": [None] * n,
        "hpo_ids": [None] * n,
        "note_hpo_ids": [None] * n,
    }
    base.update({k: list(v) for k, v in columns.items()})
    schema = schemas.cases_schema(RARE_DISEASE_FIELDS)
    extra = [k for k in base if k not in schema.names]
    table = pl.DataFrame({k: base[k] for k in schema.names},
                         schema=dict(pl.from_arrow(schema.empty_table()).schema))
    return table.with_columns(pl.Series(k, base[k]) for k in extra)


def make_labels(ids: Sequence[str], names: Sequence[str] | None = None,
                synonyms: Sequence[Sequence[str]] | None = None) -> pl.DataFrame:
    """LABELS rows; names default to 'Label <id>'."""
    return pl.DataFrame({"label_id": list(ids), "name": list(names or [f"Label {i}" for i in ids]),
                         "synonyms": [list(s) for s in synonyms] if synonyms else [[] for _ in ids]},
                        schema={"label_id": pl.String, "name": pl.String, "synonyms": pl.List(pl.String)})


def write_cohort(folder: str | Path, cases: pl.DataFrame, candidates: pl.DataFrame) -> dict[str, Path]:
    """cases.parquet and candidates.parquet in `folder`, as a cohort step writes them; their paths."""
    folder = Path(folder)
    paths = {"cases": folder / "cases.parquet", "candidates": folder / "candidates.parquet"}
    schema = schemas.cases_schema([f for f in RARE_DISEASE_FIELDS if f.name in cases.columns])
    write_parquet(cases, paths["cases"], schema)
    write_parquet(candidates, paths["candidates"], schemas.LABELS)
    return paths


def write_rankings(path: str | Path, scores: Mapping[str, Sequence[float]], labels: Sequence[str],
                   modality: str) -> Path:
    """RANKINGS of `scores` (case id -> one score per label)."""
    frame = rankings_frame(list(scores), list(labels), np.asarray(list(scores.values()), dtype=float), modality)
    write_parquet(frame, path, schemas.RANKINGS)
    return Path(path)


def write_tiny_clip(folder: Path) -> Path:
    """A freshly initialised CLIPModel with a character-level CLIP tokenizer, saved as a hub folder would be."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in (chr(i) for i in range(33, 127)):
        if not c.isupper():  # the tokenizer lower-cases first
            vocab.setdefault(c, len(vocab))
            vocab.setdefault(c + "</w>", len(vocab))  # a character that ends a word
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={**small, "vocab_size": len(vocab), "max_position_embeddings": 64, "bos_token_id": 0,
                     "eos_token_id": 1, "pad_token_id": 1},
        vision_config={**small, "image_size": 32, "patch_size": 8}, projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def job_stats(out: str) -> dict[str, int]:
    """Rule -> job count from Snakemake's 'Job stats' table (a run's or a dry run's output), without the
    target `all`."""
    table = out.split("Job stats:")[1].split("total")[0]
    rows = [line.split() for line in table.splitlines()[3:] if line.strip()]
    return {rule: int(count) for rule, count in rows if rule != "all"}


TINY_NAMES = ["Alpha syndrome", "Beta dysplasia", "Gamma syndrome", "Delta disease", "Epsilon syndrome",
              "Zeta anomaly"]
TINY_FINDINGS = ["Hypertelorism", "Seizure", "Short stature", "Cleft palate", "Scoliosis", "Hypotonia"]
TINY_MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 512, "tie_word_embeddings": True}


def tiny_note(i: int) -> str:
    return f"A {i + 2}-year-old child. Findings: {TINY_FINDINGS[i % 6]}, {TINY_FINDINGS[(i + 2) % 6]}."


def write_tiny_student_and_pairs(folder: Path, n: int = 8) -> None:
    """An untrained tiny text student in `folder/base` and `n` preference pairs in `folder/preferences.parquet`
    (k = 2 names of TINY_NAMES chosen, two others rejected), for tests that train for a few steps."""
    import pyarrow.parquet as pq

    from mint.apps.rare_disease.prompts import HEADER, PROMPT
    from mint.core.prompts import assistant, build_prompt, format_answer
    from mint.core.students.text import build_tiny_llama, render_chat, train_tokenizer

    prompts = [build_prompt(PROMPT.resolved(None), 2, tiny_note(i), "note") for i in range(n)]
    answers = [(format_answer([TINY_NAMES[i % 6], TINY_NAMES[(i + 1) % 6]], HEADER),
                format_answer([TINY_NAMES[(i + 3) % 6], TINY_NAMES[(i + 4) % 6]], HEADER)) for i in range(n)]
    tokenizer = train_tokenizer([render_chat(p + assistant(a)) for p, (a, _) in zip(prompts, answers)], 400)
    model = build_tiny_llama(tokenizer, TINY_MODEL)
    model.save_pretrained(folder / "base")
    tokenizer.save_pretrained(folder / "base")
    pairs = [{"case_id": f"c{i}", "prompt": p, "chosen": assistant(c), "rejected": assistant(r)}
             for i, (p, (c, r)) in enumerate(zip(prompts, answers))]
    pq.write_table(pa.Table.from_pylist(pairs, schema=schemas.PREFERENCES), folder / "preferences.parquet")
