"""The tissue teacher: a CLIP-style model trained in the workflow, or a real CLIP checkpoint such as PLIP.

The trained teacher embeds a patch (a small CNN over the RGB image) fused with the patch's nucleus
features (`patches.nucleus_features`, standardised on the training split) into a joint space with
text: captions and tissue prompts, embedded by the offline MiniLM sentence encoder and mapped there
by a trainable linear projection. Training is contrastive, CLIP's symmetric InfoNCE over the
patch-caption pairs of a batch (patches with the same caption count as positives of each other),
plus a supervised cross-entropy over the tissue prompts, whose weight is `supervised_weight`
(0: contrastive only). A case's tissues are then ranked zero-shot by the cosine similarity of its
embedding and each prompt's ("an H&E patch of <tissue> tissue"). Modality dropout zeroes the nucleus
branch (and its presence flag) for a share of the training patches, so one model ranks with
`image_nuclei` (image and nucleus features) and with `image` (the image alone).

`rank_with_clip` instead ranks with a real CLIP checkpoint by hub id or folder, zero-shot from the
same prompts; that is how PLIP (`vinid/plip`, a Hugging Face `CLIPModel`) is used.

Steps and their files (a Snakemake rule calls each with named files):

- `write_text_embeddings(cases, candidates, out)`: MiniLM embeddings of every case's caption and of
  every candidate's prompt (TEXT_EMBEDDINGS); its own step so the encoder runs once per cohort.
- `train_teacher(cases, candidates, nuclei, text_embeddings, model, metrics)`; `rank_tissues(cases,
  candidates, nuclei, model, out)`: RANKINGS rows for both modalities.
- `rank_tissues_with_clip(cases, candidates, out)`: RANKINGS rows of a CLIP checkpoint.

Inputs: cases.parquet (CASES plus `image_path`, a PNG or any image PIL reads, and `caption`),
candidates.parquet (LABELS: the label ids ranked and the names the prompts use), nuclei.parquet
(`NUCLEI`: case_id, features = one float vector per case, the same length for all).

    python -m mint.apps.tissue.teacher results/cohort results/teacher
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from mint.apps.tissue.cohort import CASE_FIELDS, NUCLEI
from mint.apps.tissue.readers import load_image
from mint.core import schemas
from mint.core.cohort import load_cases, load_labels
from mint.core.io import (
    MintError,
    atomic_path,
    load_checkpoint,
    provenance,
    read_parquet,
    require_columns,
    write_json,
    write_parquet,
)
from mint.core.models import unloadable_folder
from mint.core.rankings import rankings_frame
from mint.core.text_encoder import DEFAULT_ENCODER, sentence_encoder

MODALITIES = ("image_nuclei", "image")
DEFAULT_PROMPT = "an H&E patch of {name} tissue"
CASE_COLUMNS = tuple(f.name for f in CASE_FIELDS)  # image_path, caption
# `kind` is "caption" (id = case_id) or "prompt" (id = label_id); `text` is what was embedded.
TEXT_EMBEDDINGS = pa.schema(
    [("kind", pa.string()), ("id", pa.string()), ("text", pa.string()), ("embedding", pa.list_(pa.float32()))]
)

# Sizes that learn the simulated default (40 patches per tissue at 64 px: 760 patches, 418 to train on) in
# about 16 s of one CPU core, to 0.76-0.81 test top-1 with image and nuclei against 0.28-0.34 with the image
# alone (seeds 0-2, MiniLM captions). The config's `teacher` section gives every key; these are its defaults.
DEFAULTS: dict[str, Any] = {
    "image_size": 64,  # px a side the patches are resized to
    "hidden": 128,  # width of each branch
    "joint": 128,  # dimension of the joint image-text space
    "epochs": 40,
    "batch_size": 32,
    "learning_rate": 0.002,
    "weight_decay": 0.0001,
    "modality_dropout": 0.3,  # share of training patches whose nucleus branch is dropped
    "supervised_weight": 1.0,  # weight of the prompt cross-entropy next to the contrastive loss
    # One thread: the model is small, and where another job shares the cores, two OpenMP threads that spin
    # waiting for each other made training 7x slower (107 s against 16 s) on this 2-core machine.
    "threads": 1,
    "cross_fit": 0,
}


def _check_settings(settings: Mapping[str, Any]) -> None:
    missing = sorted(set(DEFAULTS) - set(settings))
    if missing:
        raise MintError(f"teacher settings: missing key(s) {missing}; expected {sorted(DEFAULTS)}")
    if not 0 <= settings["modality_dropout"] < 1:
        raise MintError(f"teacher settings: 'modality_dropout' {settings['modality_dropout']} must be in [0, 1)")


def prompt_texts(names: Sequence[str], template: str) -> list[str]:
    """One prompt per label name: `template` with `{name}` filled in."""
    if "{name}" not in template:
        raise MintError(f"prompt template {template!r} has no '{{name}}' placeholder for the tissue name")
    return [template.format(name=n) for n in names]


# ---------------------------------------------------------------- text embeddings


def encode_texts(texts: Sequence[str], encoder: str, threads: int, batch_size: int = 64) -> np.ndarray:
    """(len(texts), dim) L2-normalised float32 sentence embeddings, each distinct text encoded once."""
    torch.set_num_threads(threads)
    unique = sorted(set(texts))
    emb = sentence_encoder(encoder).encode(unique, batch_size=batch_size, show_progress_bar=False,
                                           normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
    index = {t: i for i, t in enumerate(unique)}
    return emb[[index[t] for t in texts]]


def write_text_embeddings(cases_path: str | Path, candidates_path: str | Path, out_path: str | Path, *,
                          encoder: str, prompt_template: str, threads: int) -> None:
    """TEXT_EMBEDDINGS of every case's caption (null captions left out) and every candidate's prompt."""
    cases, labels = load_cases(cases_path), load_labels(candidates_path)
    require_columns(cases, ["caption"], str(cases_path))
    with_caption = cases.filter(pl.col("caption").is_not_null())
    prompts = prompt_texts(labels["name"].to_list(), prompt_template)
    texts = with_caption["caption"].to_list() + prompts
    emb = encode_texts(texts, encoder, threads)
    n = with_caption.height
    df = pl.DataFrame({"kind": ["caption"] * n + ["prompt"] * labels.height,
                       "id": with_caption["case_id"].to_list() + labels["label_id"].to_list(),
                       "text": texts, "embedding": list(emb)})
    write_parquet(df, out_path, TEXT_EMBEDDINGS,
                  provenance({"encoder": encoder, "prompt_template": prompt_template}))


# ---------------------------------------------------------------- inputs


def load_images(cases: pl.DataFrame, size: int) -> np.ndarray:
    """(n_cases, 3, size, size) float32 RGB in [0, 1], each image resized to `size` px a side."""
    require_columns(cases, ["image_path"], "cases")
    out = np.zeros((cases.height, 3, size, size), np.float32)
    for i, (case_id, path) in enumerate(zip(cases["case_id"], cases["image_path"], strict=True)):
        if path is None:
            raise MintError(f"cases row {i} (case_id {case_id!r}): no image_path; the teacher needs every patch")
        image = load_image(path)
        if image.shape[:2] != (size, size):
            image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
        out[i] = image.transpose(2, 0, 1) / 255.0
    return out


def load_nuclei(cases: pl.DataFrame, nuclei_path: str | Path) -> np.ndarray:
    """(n_cases, n_features) float32 nucleus features in the order of `cases`."""
    df = read_parquet(nuclei_path, NUCLEI)
    joined = cases.select("case_id").join(df, on="case_id", how="left", maintain_order="left")
    if joined["features"].null_count():
        missing = joined.filter(pl.col("features").is_null())["case_id"].head(3).to_list()
        raise MintError(f"{nuclei_path}: no nucleus features for case(s) {missing}")
    lengths, ids = joined["features"].list.len().to_numpy(), joined["case_id"].to_list()
    if (lengths != lengths[0]).any():
        j = int(np.flatnonzero(lengths != lengths[0])[0])
        raise MintError(f"{nuclei_path}: case {ids[j]!r} has {lengths[j]} nucleus features, case {ids[0]!r} has "
                        f"{lengths[0]}; every case needs the same number")
    feats = np.asarray(joined["features"].to_list(), dtype=np.float32)
    if not np.isfinite(feats).all():
        bad = ids[int(np.flatnonzero(~np.isfinite(feats).all(axis=1))[0])]
        raise MintError(f"{nuclei_path}: case {bad!r} has a NaN or infinite nucleus feature")
    return feats


def load_text_embeddings(cases: pl.DataFrame, labels: pl.DataFrame, path: str | Path
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(caption embeddings per case (zeros where none), caption ids per case (-1 where none), prompt
    embeddings per label), from a TEXT_EMBEDDINGS file. Cases with one caption text share its id."""
    df = read_parquet(path, TEXT_EMBEDDINGS)
    prompts = labels.select("label_id").join(df.filter(pl.col("kind") == "prompt"), left_on="label_id",
                                             right_on="id", how="left", maintain_order="left")
    if prompts["embedding"].null_count():
        missing = prompts.filter(pl.col("embedding").is_null())["label_id"].head(3).to_list()
        raise MintError(f"{path}: no prompt embedding for label(s) {missing}; rerun write_text_embeddings")
    prompt_emb = np.asarray(prompts["embedding"].to_list(), dtype=np.float32)
    caps = cases.select("case_id").join(df.filter(pl.col("kind") == "caption"), left_on="case_id", right_on="id",
                                        how="left", maintain_order="left")
    have = caps["embedding"].is_not_null().to_numpy()
    caption_emb = np.zeros((cases.height, prompt_emb.shape[1]), np.float32)
    if have.any():
        caption_emb[have] = np.asarray(caps.filter(pl.col("embedding").is_not_null())["embedding"].to_list(),
                                       dtype=np.float32)
    texts = caps["text"].to_list()
    index = {t: i for i, t in enumerate(sorted({t for t in texts if t is not None}))}
    caption_id = np.array([index[t] if t is not None else -1 for t in texts], dtype=np.int64)
    return caption_emb, caption_id, prompt_emb


def _label_index(cases: pl.DataFrame, labels: pl.DataFrame, cases_path: str | Path) -> np.ndarray:
    index = {t: i for i, t in enumerate(labels["label_id"].to_list())}
    unknown = cases.filter(~pl.col("label_id").is_in(list(index)))
    if unknown.height:
        raise MintError(f"{cases_path}: case {unknown['case_id'][0]!r} has label {unknown['label_id'][0]!r}, "
                        "not among the candidates")
    return np.array([index[t] for t in cases["label_id"].to_list()], dtype=np.int64)


# ---------------------------------------------------------------- model


class PatchTextModel(nn.Module):
    """Patch encoder (CNN over the image, MLP over nucleus features, fused) and text projection into one space.

    An absent nucleus branch is a zero vector plus a 0 in the `present` flag the fusion layer sees.
    """

    def __init__(self, n_features: int, text_dim: int, hidden: int, joint: int):
        super().__init__()
        # Three batch-normalised conv blocks, the first with stride 2 (64 px -> 16 -> 8 -> 4): a full-resolution
        # first layer cost 10x the CPU time (1.8 s against 0.2 s an epoch of 420 patches on 2 cores).
        blocks: list[nn.Module] = []
        for c_in, c_out, stride in ((3, 16, 2), (16, 32, 1), (32, 64, 1)):
            blocks += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d(2)]
        self.image = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Dropout(0.3),
                                   nn.Linear(64 * 16, hidden), nn.ReLU())
        self.nuclei = nn.Sequential(nn.Linear(n_features, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.fuse = nn.Sequential(nn.Dropout(0.1), nn.Linear(2 * hidden + 1, hidden), nn.GELU(),
                                  nn.Linear(hidden, joint))
        self.text = nn.Linear(text_dim, joint)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def encode_patches(self, images: torch.Tensor, nuclei: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        flag = present[:, None]
        fused = torch.cat([self.image(images), self.nuclei(nuclei * flag) * flag, flag], dim=1)
        return F.normalize(self.fuse(fused), dim=1)

    def encode_texts(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(embeddings), dim=1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()  # CLIP caps the logit scale at 100


def presence(n: int, modality: str) -> torch.Tensor:
    if modality not in MODALITIES:
        raise MintError(f"unknown teacher modality {modality!r}; expected one of {MODALITIES}")
    return torch.full((n,), 1.0 if modality == "image_nuclei" else 0.0)


@torch.no_grad()
def similarities(model: PatchTextModel, images: np.ndarray, nuclei: np.ndarray, prompts: np.ndarray,
                 modality: str, batch: int = 256) -> np.ndarray:
    """(n_cases, n_labels) cosine similarity of each patch's embedding and each prompt's."""
    model.eval()
    text = model.encode_texts(torch.from_numpy(prompts))
    out = [np.zeros((0, len(prompts)), np.float32)]
    for i in range(0, len(images), batch):
        img = torch.from_numpy(images[i : i + batch])
        z = model.encode_patches(img, torch.from_numpy(nuclei[i : i + batch]), presence(len(img), modality))
        out.append((z @ text.T).numpy())
    return np.concatenate(out)


def accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    if len(labels) == 0:
        return float("nan")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def _augment(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A random rotation by a multiple of 90° and flip per patch: a section has no up or left."""
    turns, flips = rng.integers(0, 4, len(images)), rng.random(len(images)) < 0.5
    out = images.clone()
    for k in range(4):
        for flip in (False, True):
            sel = torch.from_numpy(np.flatnonzero((turns == k) & (flips == flip)))
            if len(sel):
                x = torch.rot90(images[sel], k, dims=(2, 3))
                out[sel] = torch.flip(x, dims=(3,)) if flip else x
    return out


def _soft_cross_entropy(logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against targets spread evenly over each row's positives (`same`, 0/1)."""
    return -(same / same.sum(dim=1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def fit_teacher(images: np.ndarray, nuclei: np.ndarray, captions: np.ndarray, caption_ids: np.ndarray,
                prompts: np.ndarray, labels: np.ndarray, train_idx: np.ndarray, select_idx: np.ndarray,
                settings: Mapping[str, Any], seed: int, desc: str = "train teacher"
                ) -> tuple[PatchTextModel, list[dict[str, float]]]:
    """Train one model on `train_idx`; keep the epoch with the best `image_nuclei` top-1 on `select_idx`.

    `images` and `nuclei` are standardised already. The contrastive term uses the training patches that
    have a caption (`caption_ids` >= 0); the supervised term all of them.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = PatchTextModel(nuclei.shape[1], prompts.shape[1], settings["hidden"], settings["joint"])
    opt = torch.optim.AdamW(model.parameters(), lr=settings["learning_rate"], weight_decay=settings["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=settings["epochs"])
    prompt_t, drop, bs = torch.from_numpy(prompts), settings["modality_dropout"], settings["batch_size"]
    best, best_state, history = -1.0, None, []
    for epoch in tqdm(range(settings["epochs"]), desc=desc, unit="epoch"):
        model.train()
        order = rng.permutation(train_idx)
        total = 0.0
        for i in range(0, len(order), bs):
            idx = order[i : i + bs]
            present = torch.from_numpy((rng.random(len(idx)) >= drop).astype(np.float32))
            z = model.encode_patches(_augment(torch.from_numpy(images[idx]), rng), torch.from_numpy(nuclei[idx]),
                                     present)
            scale = model.scale()
            loss = settings["supervised_weight"] * F.cross_entropy(
                scale * z @ model.encode_texts(prompt_t).T, torch.from_numpy(labels[idx]))
            cap = np.flatnonzero(caption_ids[idx] >= 0)
            if len(cap) > 1:  # symmetric InfoNCE over the batch's patch-caption pairs
                ids = torch.from_numpy(caption_ids[idx][cap])
                same = (ids[:, None] == ids[None, :]).float()
                logits = scale * z[cap] @ model.encode_texts(torch.from_numpy(captions[idx][cap])).T
                loss = loss + (_soft_cross_entropy(logits, same) + _soft_cross_entropy(logits.T, same)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        score = accuracy(similarities(model, images[select_idx], nuclei[select_idx], prompts, "image_nuclei"),
                         labels[select_idx])
        history.append({"epoch": epoch + 1, "train_loss": total / len(train_idx), "select_top1": score})
        if score >= best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    if not all(torch.isfinite(v).all() for v in best_state.values() if v.is_floating_point()):
        raise MintError("teacher training gave NaN or infinite weights; lower 'teacher.learning_rate'")
    return model, history


def _standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((x - mean) / std).astype(np.float32)


def _statistics(images: np.ndarray, nuclei: np.ndarray, train: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel image and per-feature nucleus mean and sd of the training cases (sd 0 counts as 1)."""
    img_mean = images[train].mean(axis=(0, 2, 3), keepdims=True)[0]
    img_std = images[train].std(axis=(0, 2, 3), keepdims=True)[0]
    nuc_mean, nuc_std = nuclei[train].mean(axis=0), nuclei[train].std(axis=0)
    return {"image_mean": img_mean, "image_std": np.where(img_std > 0, img_std, 1.0).astype(np.float32),
            "nuclei_mean": nuc_mean, "nuclei_std": np.where(nuc_std > 0, nuc_std, 1.0).astype(np.float32)}


def train_teacher(
    cases_path: str | Path, candidates_path: str | Path, nuclei_path: str | Path, text_embeddings_path: str | Path,
    model_path: str | Path, metrics_path: str | Path, *, settings: Mapping[str, Any], seed: int,
    log_path: str | Path | None = None,
) -> dict[str, Any]:
    """Train the teacher on the training split; write its weights to `model_path`, `metrics.json` to `metrics_path`.

    `settings`: every key of `DEFAULTS` (the config's `teacher` section). Model selection on the
    validation split (`image_nuclei` top-1) where there is one, else the last best training epoch.
    With `cross_fit: K` (K >= 2), K more models are trained, each without one fold of the training
    cases, to rank that fold (`rank_tissues`): what the teacher would say of a patch it never saw.
    """
    _check_settings(settings)
    torch.set_num_threads(settings["threads"])
    cases, labels = load_cases(cases_path), load_labels(candidates_path)
    require_columns(cases, CASE_COLUMNS, str(cases_path))
    y = _label_index(cases, labels, cases_path)
    split = cases["split"].to_numpy()
    tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "validation")
    if len(tr) == 0:
        raise MintError(f"{cases_path}: no case in the 'train' split")
    images, nuclei = load_images(cases, settings["image_size"]), load_nuclei(cases, nuclei_path)
    captions, caption_ids, prompts = load_text_embeddings(cases, labels, text_embeddings_path)
    stats = _statistics(images, nuclei, split == "train")
    images = _standardise(images, stats["image_mean"], stats["image_std"])
    nuclei = _standardise(nuclei, stats["nuclei_mean"], stats["nuclei_std"])
    select = va if len(va) else tr
    fit = (images, nuclei, captions, caption_ids, prompts, y)
    model, history = fit_teacher(*fit, tr, select, settings, seed)

    folds = []
    if settings["cross_fit"] >= 2:
        k = settings["cross_fit"]
        fold_of = np.random.default_rng(seed).permutation(len(tr)) % k
        for f in range(k):
            fold_model, _ = fit_teacher(*fit, tr[fold_of != f], select, settings, seed + 1 + f,
                                        desc=f"fold {f + 1}/{k}")
            folds.append({"case_ids": cases["case_id"].gather(tr[fold_of == f]).to_list(),
                          "state_dict": fold_model.state_dict()})

    metrics: dict[str, Any] = {"n_labels": labels.height, "n_train": len(tr), "history": history,
                               "cross_fit": settings["cross_fit"]}
    for split_name in ("validation", "test"):
        idx = np.flatnonzero(split == split_name)
        for modality in MODALITIES:
            scores = similarities(model, images[idx], nuclei[idx], prompts, modality)
            metrics[f"{split_name}_{modality}_top1"] = accuracy(scores, y[idx], 1)
            metrics[f"{split_name}_{modality}_top5"] = accuracy(scores, y[idx], 5)
    prov = provenance({"teacher": dict(settings)}, seed=seed)
    # Saved through a file handle: given a path, torch.save names the archive's root folder after the
    # (temporary, random) file name, and identical weights would give different bytes.
    with atomic_path(model_path) as tmp, open(tmp, "wb") as fh:
        torch.save({"state_dict": model.state_dict(), "labels": labels["label_id"].to_list(), "prompts": prompts,
                    "n_features": nuclei.shape[1], "hidden": settings["hidden"], "joint": settings["joint"],
                    "image_size": settings["image_size"], "statistics": stats, "folds": folds}, fh)
    write_json(metrics, metrics_path, prov)
    if log_path:
        Path(log_path).write_text("\n".join(json.dumps(h) for h in history) + "\n")
    return metrics


def rank_tissues(cases_path: str | Path, candidates_path: str | Path, nuclei_path: str | Path,
                 model_path: str | Path, out_path: str | Path, *, threads: int) -> None:
    """Score every case over the candidates with each modality (RANKINGS rows, score = cosine similarity)."""
    torch.set_num_threads(threads)
    cases, labels = load_cases(cases_path), load_labels(candidates_path)
    ckpt = load_checkpoint(model_path)
    if ckpt["labels"] != labels["label_id"].to_list():
        raise MintError(f"{model_path}: teacher was trained on other candidates than {candidates_path}")
    stats = ckpt["statistics"]
    images = _standardise(load_images(cases, ckpt["image_size"]), stats["image_mean"], stats["image_std"])
    nuclei = load_nuclei(cases, nuclei_path)
    if nuclei.shape[1] != ckpt["n_features"]:
        raise MintError(f"{nuclei_path}: {nuclei.shape[1]} nucleus features per case; {model_path} was trained "
                        f"on {ckpt['n_features']}")
    nuclei = _standardise(nuclei, stats["nuclei_mean"], stats["nuclei_std"])

    def scores_of(state_dict, rows) -> dict[str, np.ndarray]:
        model = PatchTextModel(ckpt["n_features"], ckpt["prompts"].shape[1], ckpt["hidden"], ckpt["joint"])
        model.load_state_dict(state_dict)
        return {m: similarities(model, images[rows], nuclei[rows], ckpt["prompts"], m) for m in MODALITIES}

    scores = scores_of(ckpt["state_dict"], slice(None))
    row_of = {c: i for i, c in enumerate(cases["case_id"].to_list())}
    for fold in ckpt["folds"]:  # out-of-fold scores for the training cases (cross_fit)
        rows = [row_of[c] for c in fold["case_ids"] if c in row_of]
        fold_scores = scores_of(fold["state_dict"], rows)
        for m in MODALITIES:
            scores[m][rows] = fold_scores[m]
    frames = [rankings_frame(cases["case_id"].to_list(), ckpt["labels"], scores[m], m) for m in MODALITIES]
    write_parquet(pl.concat(frames), out_path, schemas.RANKINGS, provenance({"model": str(model_path)}))


# ---------------------------------------------------------------- real CLIP checkpoints (PLIP)


def load_clip(model_id_or_path: str | Path):
    """(CLIPModel, CLIPProcessor) from a folder (a `ModelRef.source`: a hub id's cache snapshot is one) from its
    files alone, or from a hub id already in the local Hugging Face cache."""
    from transformers import CLIPModel, CLIPProcessor

    source = str(model_id_or_path)
    local = Path(source).is_dir()
    try:
        return (CLIPModel.from_pretrained(source, local_files_only=local).eval(),
                CLIPProcessor.from_pretrained(source, local_files_only=local))
    except (OSError, ValueError) as err:
        if local:
            holds = "a folder with a CLIPModel and its processor"
            raise MintError(f"CLIP model {unloadable_folder(Path(source), holds)}: {err}") from err
        raise MintError(f"CLIP model {source!r}: no folder of that name, and the hub id cannot be loaded (offline: it "
                        f"must be in the Hugging Face cache); give a folder with a CLIPModel and its processor, or "
                        f"download the id first (`hf download {source}`): {err}") from err


def _projected(features) -> torch.Tensor:
    """The projected embedding `get_*_features` gives: a tensor in transformers 4, `.pooler_output` from 5."""
    return features if isinstance(features, torch.Tensor) else features.pooler_output


@torch.no_grad()
def rank_with_clip(model_id_or_path: str | Path, image_paths: Sequence[str | Path], tissue_names: Sequence[str],
                   prompt_template: str = DEFAULT_PROMPT, *, batch_size: int = 32) -> np.ndarray:
    """(n_images, n_tissues) cosine similarity of each image and each tissue's prompt, zero-shot."""
    model, processor = load_clip(model_id_or_path)
    prompts = prompt_texts(tissue_names, prompt_template)
    text_inputs = processor.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
    text = F.normalize(_projected(model.get_text_features(**text_inputs)), dim=-1)
    out = [np.zeros((0, len(prompts)), np.float32)]
    for i in range(0, len(image_paths), batch_size):
        images = [Image.fromarray(load_image(p)) for p in image_paths[i : i + batch_size]]
        pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        emb = F.normalize(_projected(model.get_image_features(pixel_values=pixels)), dim=-1)
        out.append((emb @ text.T).float().numpy())
    return np.concatenate(out)


def rank_tissues_with_clip(cases_path: str | Path, candidates_path: str | Path, out_path: str | Path, *,
                           model: str, prompt_template: str, batch_size: int, threads: int,
                           modality: str = "image") -> None:
    """RANKINGS rows of every case from a CLIP checkpoint (`rank_with_clip`), under `modality` (a CLIP
    model sees the image alone)."""
    torch.set_num_threads(threads)
    cases, labels = load_cases(cases_path), load_labels(candidates_path)
    require_columns(cases, ["image_path"], str(cases_path))
    missing = cases.filter(pl.col("image_path").is_null())
    if missing.height:
        raise MintError(f"{cases_path}: case {missing['case_id'][0]!r} has no image_path")
    scores = rank_with_clip(model, cases["image_path"].to_list(), labels["name"].to_list(), prompt_template,
                            batch_size=batch_size)
    frame = rankings_frame(cases["case_id"].to_list(), labels["label_id"].to_list(), scores, modality)
    write_parquet(frame, out_path, schemas.RANKINGS,
                  provenance({"model": model, "prompt_template": prompt_template}))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Embed captions and prompts, train the tissue teacher, rank.")
    parser.add_argument("cohort_dir", help="folder with cases.parquet, candidates.parquet and nuclei.parquet")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoder", default=DEFAULT_ENCODER)
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    args = parser.parse_args(argv)
    cohort, out = Path(args.cohort_dir), Path(args.out_dir)
    settings = {**DEFAULTS, "epochs": args.epochs}
    paths = {k: cohort / f"{k}.parquet" for k in ("cases", "candidates", "nuclei")}
    write_text_embeddings(paths["cases"], paths["candidates"], out / "text_embeddings.parquet", encoder=args.encoder,
                          prompt_template=DEFAULT_PROMPT, threads=settings["threads"])
    metrics = train_teacher(*paths.values(), out / "text_embeddings.parquet", out / "model.pt", out / "metrics.json",
                            settings=settings, seed=args.seed)
    rank_tissues(*paths.values(), out / "model.pt", out / "rankings.parquet", threads=settings["threads"])
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=1))


if __name__ == "__main__":
    main()
