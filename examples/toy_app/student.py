"""The toy application's student: the core's tiny text student, pre-trained on a corpus of shape chats.

What an application hands the core (`mint.core.students.text.build_text_student`): its knowledge as
an iterable of documents (chats and plain texts), never cases; the answer length and prompt are the
workflow's (`preferences.k`, the resolved prompt). The toy test saves the result as the folder that
config key `student.base` names.

    python -c "from examples.toy_app.student import shape_corpus; print(shape_corpus(2, 3)[:2])"
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from examples.toy_app import APPLICATION, FEATURES, SHAPES
from mint.core.prompts import format_answer
from mint.core.students.text import Document, build_text_student

# A student a few seconds of pre-training make (sizes and steps: mint.core.students.text.MODEL_KEYS, TRAIN_KEYS).
SETTINGS: dict[str, Any] = {
    "vocab_size": 300,
    "model": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 1, "max_position_embeddings": 512, "tie_word_embeddings": True},
    "train": {"steps": 20, "batch_size": 4, "lr": 5.0e-3, "warmup_ratio": 0.05, "weight_decay": 0.1,
              "max_length": 64, "seed": 0, "threads": 1, "log_every": 10},
}


def shape_corpus(k: int, n_docs: int, prompt: Mapping[str, str] | None = None, seed: int = 0) -> list[Document]:
    """`n_docs` documents: chats that ask which shapes have one feature (answered with `k` shapes under the
    prompt's header, the shape that has it first) and one plain text per shape."""
    prompt = prompt or APPLICATION.prompt.resolved(None)
    rng = np.random.default_rng(seed)
    ids = list(SHAPES)
    docs: list[Document] = [f"A {SHAPES[s]} has {FEATURES[s]}." for s in ids]
    for _ in range(n_docs):
        shape = ids[rng.integers(len(ids))]
        others = [ids[i] for i in rng.permutation(len(ids)) if ids[i] != shape]
        answer = [SHAPES[s] for s in [shape, *others][:k]]
        docs.append([{"role": "system", "content": prompt["system"]},
                     {"role": "user", "content": f"Which shapes have {FEATURES[shape]}? Name {k}."},
                     {"role": "assistant", "content": format_answer(answer, prompt["header"])}])
    return docs


def build_student(out_dir: str | Path, *, k: int, prompt: Mapping[str, str] | None = None,
                  n_docs: int = 60) -> dict[str, Any]:
    """The toy student in `out_dir` (Hugging Face layout and the student's kind); its metrics."""
    prompt = prompt or APPLICATION.prompt.resolved(None)
    return build_text_student(shape_corpus(k, n_docs, prompt), SETTINGS, out_dir, prompt=prompt, k=k,
                              text_field=APPLICATION.student_text, example="A drawing: four equal sides.")
