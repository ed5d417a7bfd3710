"""Retrieval baselines: nearest training patients by note, alone (kNN) or as context for a student (RAG).

The retriever finds, for each test note, the most similar training notes: by cosine similarity of
the MiniLM note embeddings the teacher step already computed (`minilm`), or by BM25 over the
notes' words (`bm25`, the `rank-bm25` package). Then

- `knn_rankings`: each panel disease scores the summed similarity of the neighbours that have it,
  a retrieval-only baseline ranked like the teacher (modality `knn`);
- `predict_rag`: a student is asked as usual, with the diagnoses of the neighbours, best first,
  put before the note ("Diagnoses of the most similar earlier patients: ..."). Only diagnoses go
  into the prompt, not whole notes, so that the context fits small students' windows.

    python -m mint.apps.rare_disease.rag config/rare_disease/benchmark.yaml results/cohort \
        results/teacher/note_embeddings.parquet results/student/base results/predict/rag_base.parquet --method rag_base
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from mint.apps.rare_disease.prompts import PROMPT
from mint.core import schemas
from mint.core.cohort import cases_in, load_cases, load_labels
from mint.core.config import load_config
from mint.core.io import MintError, provenance, read_parquet, write_parquet
from mint.core.prompts import CasePrompts, build_prompt
from mint.core.rankings import rankings_frame

RETRIEVERS = ("minilm", "bm25")
_WORD = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def neighbours(
    train_notes: Sequence[str], query_notes: Sequence[str], n: int, retriever: str,
    train_emb: np.ndarray | None = None, query_emb: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, similarities), each (n_queries, n): the `n` most similar training notes, best first.

    Ties go to the earlier training row, so the result is deterministic.
    """
    if retriever not in RETRIEVERS:
        raise MintError(f"config key 'baselines.retriever' must be one of {RETRIEVERS}, got {retriever!r}")
    if len(train_notes) == 0:
        raise MintError("retrieval: no training note to retrieve from")
    n = min(n, len(train_notes))
    if retriever == "minilm":
        if train_emb is None or query_emb is None:
            raise MintError("retrieval with 'minilm' needs the note embeddings")
        sim = query_emb @ train_emb.T  # embeddings are L2-normalised: cosine similarity
    else:
        from rank_bm25 import BM25Okapi

        bm25 = BM25Okapi([_tokens(t) for t in train_notes])
        sim = np.stack([bm25.get_scores(_tokens(q)) for q in query_notes]) if len(query_notes) else np.zeros(
            (0, len(train_notes)))
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :n]
    return idx, np.take_along_axis(sim, idx, axis=1)


def knn_scores(idx: np.ndarray, sim: np.ndarray, train_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_queries, n_classes): per disease, the summed similarity of the neighbours that have it."""
    out = np.zeros((len(idx), n_classes))
    rows = np.repeat(np.arange(len(idx)), idx.shape[1])
    np.add.at(out, (rows, train_labels[idx].reshape(-1)), np.maximum(sim, 0).reshape(-1) + 1e-9)
    return out


def rag_context(diagnoses: Sequence[str]) -> str:
    return "Diagnoses of the most similar earlier patients, most similar first: " + "; ".join(diagnoses) + "."


def _retrieve(cases_path, candidates_path, embeddings_path, retriever: str, n_neighbours: int, split: str = "test"):
    """The `split` cases, training cases and the neighbours of each `split` case among the training cases."""
    cases, panel = load_cases(cases_path), load_labels(candidates_path)
    train = cases.filter(pl.col("split") == "train").sort("case_id")
    scored = cases_in(cases, split)
    train_emb = query_emb = None
    if retriever == "minilm":
        emb = read_parquet(embeddings_path)
        by_id = dict(zip(emb["case_id"].to_list(), emb["embedding"].to_list()))
        missing = [c for c in cases["case_id"].to_list() if c not in by_id]
        if missing:
            raise MintError(f"{embeddings_path}: no embedding for case(s) {missing[:3]}; rerun embed_notes")
        train_emb = np.asarray([by_id[c] for c in train["case_id"].to_list()], dtype=np.float32)
        query_emb = np.asarray([by_id[c] for c in scored["case_id"].to_list()], dtype=np.float32)
    idx, sim = neighbours(train["note"].to_list(), scored["note"].to_list(), n_neighbours, retriever,
                          train_emb, query_emb)
    return scored, train, panel, idx, sim


def knn_rankings(cases_path, candidates_path, embeddings_path, out_path, *, retriever: str,
                 n_neighbours: int, split: str = "test") -> None:
    """RANKINGS (modality `knn`) of the `split` cases by their nearest training patients."""
    scored, train, panel, idx, sim = _retrieve(cases_path, candidates_path, embeddings_path, retriever, n_neighbours,
                                               split)
    classes = panel["label_id"].to_list()
    index = {d: i for i, d in enumerate(classes)}
    labels = np.array([index[d] for d in train["label_id"].to_list()], dtype=np.int64)
    scores = knn_scores(idx, sim, labels, len(classes))
    write_parquet(rankings_frame(scored["case_id"].to_list(), classes, scores, "knn"), out_path, schemas.RANKINGS,
                  provenance({"retriever": retriever, "neighbours": n_neighbours}))


def predict_rag(
    model_dir: str, cases_path, candidates_path, embeddings_path, out_path, *, method: str,
    prompt: Mapping[str, str], k: int, retriever: str, n_neighbours: int, rag_diseases: int, batch_size: int,
    max_new_tokens: int, threads: int, seed: int, split: str = "test",
) -> None:
    """The student's answers when the neighbours' diagnoses precede each `split` note (PREDICTIONS)."""
    from mint.core.predict import answer_prompts, write_predictions

    scored, train, panel, idx, _ = _retrieve(cases_path, candidates_path, embeddings_path, retriever, n_neighbours,
                                             split)
    name_of = dict(zip(panel["label_id"].to_list(), panel["name"].to_list()))
    train_dx = train["label_id"].to_list()
    contexts = [rag_context(list(dict.fromkeys(name_of[train_dx[j]] for j in row))[:rag_diseases]) for row in idx]
    # A note too long for the student is cut, its first tokens and the retrieved context kept (CasePrompts).
    prompts = CasePrompts(scored["note"].to_list(),
                          lambda i, note: build_prompt(prompt, k, note, "note", context=contexts[i]),
                          scored["case_id"].to_list())
    # This application's student is a text one (APPLICATION.student_kind): for a hub model, which records no kind.
    answers = answer_prompts(model_dir, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                             threads=threads, seed=seed, kind="text")
    settings = {"prompt": dict(prompt), "k": k, "retriever": retriever, "neighbours": n_neighbours,
                "rag_diseases": rag_diseases, "batch_size": batch_size, "max_new_tokens": max_new_tokens}
    write_predictions(scored["case_id"].to_list(), method, answers, prompt["header"], out_path,
                      provenance(settings, seed=seed, model=str(model_dir), truncated_prompts=len(prompts.truncated)))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Answer the test notes with retrieved diagnoses as context (RAG).")
    p.add_argument("config")
    p.add_argument("cohort_dir")
    p.add_argument("embeddings")
    p.add_argument("model_dir")
    p.add_argument("out")
    p.add_argument("--method", default="rag")
    a = p.parse_args(argv)
    config, cohort = load_config(a.config), Path(a.cohort_dir)
    b, ev = config["baselines"], config["evaluation"]
    predict_rag(a.model_dir, cohort / "cases.parquet", cohort / "candidates.parquet", a.embeddings, Path(a.out),
                method=a.method, prompt=PROMPT.resolved(config["prompt"]), k=config["preferences"]["k"],
                retriever=b["retriever"], n_neighbours=b["neighbours"], rag_diseases=b["rag_diseases"],
                batch_size=ev["batch_size"], max_new_tokens=ev["max_new_tokens"], threads=ev["threads"],
                seed=config["seed"], split=ev["split"])


if __name__ == "__main__":
    main()
