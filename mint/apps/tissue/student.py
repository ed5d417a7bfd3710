"""The tissue application's builtin vision student: a tiny LLaVA, pre-trained on the training captions.

Real runs load a vision LLM (`student.base: meta-llama/Llama-3.2-11B-Vision-Instruct`) through
`mint.core.students.vision.load_vision_student`. Offline, `build_builtin_student` makes a stand-in from
configs (`mint.core.students.vision.build_tiny_llava`, sizes in `student_tiny.yaml`) and trains it for a few
CPU seconds to describe the training patches ("Describe this patch." -> the patch's caption), so
that it has seen images, and the tissue names, before alignment. Never on test patches.

    python -m mint.apps.tissue.student results/cohort/cases.parquet results/student/base
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch

from mint.apps.tissue.prompts import DEFAULT_SYSTEM, DEFAULT_USER, HEADER
from mint.apps.tissue.tissues import TISSUES
from mint.core.app import package_file
from mint.core.cohort import load_cases
from mint.core.config import deep_update, load_yaml
from mint.core.images import dataset_images, open_image
from mint.core.io import MintError, provenance, write_json, write_provenance
from mint.core.students.vision import build_tiny_llava, save_vision_student
from mint.core.trainers import vision_trainer_classes

DEFAULT_TINY: dict[str, Any] = load_yaml(package_file(__package__, "student_tiny.yaml"))
DESCRIBE = "Describe this patch."
ASK_TISSUE = "Which tissue is this?"


def pretrain_vision_tower(tower, pixel_values: torch.Tensor, labels: Sequence[str], settings: Mapping[str, Any]
                          ) -> list[dict[str, float]]:
    """Stage 1: teach a vision tower trained from scratch to tell the training patches' tissues apart.

    A linear head on the mean of the tower's patch features (what LLaVA passes on: the last layer,
    class token dropped) is trained with cross-entropy on the tissue each caption names, with the
    eight rotations and flips of a patch as augmentation (tissue has no orientation); the head is then
    discarded. Without this stage, caption pre-training through the language model leaves the tower
    untrained: the tissue word is one token in ~25 of a caption, and the language prior is learnt first.
    Returns the loss curve ({step, loss}, every 50 steps). Same seed, same weights.
    """
    names = sorted(set(labels))
    target = torch.tensor([names.index(x) for x in labels])
    steps, batch = int(settings["steps"]), int(settings["batch_size"])
    generator = torch.Generator().manual_seed(int(settings["seed"]))
    head = torch.nn.Linear(tower.config.hidden_size, len(names))
    torch.nn.init.zeros_(head.weight)  # and the bias: no draw from the global generator
    torch.nn.init.zeros_(head.bias)
    params = [*tower.parameters(), *head.parameters()]
    optimiser = torch.optim.AdamW(params, lr=float(settings["learning_rate"]), weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(steps, 1))
    tower.train()
    curve, running = [], []
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(target), (batch,), generator=generator)
        x = torch.rot90(pixel_values[idx], int(torch.randint(0, 4, (1,), generator=generator)), (2, 3))
        if torch.rand(1, generator=generator).item() < 0.5:
            x = x.flip(3)
        features = tower(pixel_values=x).last_hidden_state[:, 1:].mean(1)
        loss = torch.nn.functional.cross_entropy(head(features), target[idx])
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        schedule.step()
        running.append(loss.item())
        if step % 50 == 0 or step == steps:
            curve.append({"step": step, "loss": round(sum(running) / len(running), 4)})
            running = []
    return curve


def caption_rows(cases: pl.DataFrame, ask_tissue: bool = True) -> list[dict[str, Any]]:
    """TRL vision prompt/completion rows of the training patches: the image, 'Describe', its caption; and
    with `ask_tissue`, the image, 'Which tissue?', the tissue's name as answers write it ("Head & Neck."),
    whose tokens a caption ("... of head & neck tissue") does not teach."""
    train = cases.filter(pl.col("split") == "train").sort("case_id")
    if train.height == 0:
        raise MintError("builtin tissue student: no training patch to pre-train on")
    names = {t.id: t.name for t in TISSUES}
    rows = []
    for path, caption, label in zip(train["image_path"].to_list(), train["caption"].to_list(),
                                    train["label_id"].to_list()):
        rows.append({"images": [path], "prompt": [{"role": "user", "content": DESCRIBE}],
                     "completion": [{"role": "assistant", "content": caption}]})
        if ask_tissue:
            rows.append({"images": [path], "prompt": [{"role": "user", "content": ASK_TISSUE}],
                         "completion": [{"role": "assistant", "content": f"{names[label]}."}]})
    return rows


def build_builtin_student(cases_path: str | Path, settings: Mapping[str, Any], out_dir: str | Path,
                          log_path: str | Path | None = None) -> dict[str, Any]:
    """Tokenizer -> tiny LLaVA -> caption pre-training; saved in Hugging Face layout in `out_dir`."""
    from datasets import Dataset, Image, Sequence

    cfg = deep_update(DEFAULT_TINY, settings or {})
    train_cfg = cfg["train"]
    torch.set_num_threads(int(train_cfg["threads"]))
    t0 = time.perf_counter()
    cases = load_cases(cases_path)
    rows = caption_rows(cases, bool(train_cfg["ask_tissue"]))
    names = [t.name for t in TISSUES]
    texts = [DEFAULT_SYSTEM, DEFAULT_USER, DESCRIBE, ASK_TISSUE, HEADER, *names,
             *(r["completion"][0]["content"] for r in rows)]
    model, processor = build_tiny_llava(texts, int(cfg["image_size"]), int(cfg["patch"]),
                                        vocab_size=int(cfg["vocab_size"]), text=cfg["text"], vision=cfg["vision"],
                                        seed=int(train_cfg["seed"]))
    vision_curve = []
    if int(cfg["vision_pretrain"]["steps"]) > 0:
        train = cases.filter(pl.col("split") == "train").sort("case_id")
        pictures = [open_image(path, "RGB") for path in train["image_path"].to_list()]
        pixels = processor.image_processor(images=pictures, return_tensors="pt")["pixel_values"]
        vision_curve = pretrain_vision_tower(model.model.vision_tower, pixels, train["label_id"].to_list(),
                                             {"seed": train_cfg["seed"], **cfg["vision_pretrain"]})
    if train_cfg["freeze_vision_tower"]:  # as LLaVA's caption stage: the language side learns to read it
        model.model.vision_tower.requires_grad_(False)
    images = dataset_images([r["images"] for r in rows])  # paths, or converted pixels (mint.core.images)
    rows = [dict(r, images=i) for r, i in zip(rows, images, strict=True)]
    dataset = Dataset.from_list(rows).cast_column("images", Sequence(Image()))
    config_cls, trainer_cls = vision_trainer_classes("sft")
    out_dir = Path(out_dir)
    scratch = out_dir.with_name(out_dir.name + ".pretrain")
    args = config_cls(output_dir=str(scratch), max_steps=int(train_cfg["steps"]),
                      per_device_train_batch_size=int(train_cfg["batch_size"]),
                      learning_rate=float(train_cfg["learning_rate"]), lr_scheduler_type="cosine",
                      max_length=None, gradient_checkpointing=False, logging_steps=10, save_strategy="no",
                      report_to=[], use_cpu=True, seed=int(train_cfg["seed"]), dataloader_num_workers=0)
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, processing_class=processor)
    result = trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        Path(log_path).write_text("".join(json.dumps(r) + "\n" for r in trainer.state.log_history))
    metrics = {"n_parameters": sum(p.numel() for p in model.parameters()), "n_rows": len(rows),
               "vocab_size": len(processor.tokenizer), "steps": trainer.state.global_step,
               "vision_pretrain_loss": vision_curve,
               "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
               "train_runtime": result.metrics.get("train_runtime"),
               "total_seconds": round(time.perf_counter() - t0, 1)}
    model.requires_grad_(True)
    save_vision_student(model, processor, out_dir)
    write_json(metrics, out_dir / "metrics.json")
    write_provenance(out_dir, provenance(cfg, seed=int(train_cfg["seed"]), step="build_builtin_student"))
    import shutil

    shutil.rmtree(scratch, ignore_errors=True)
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases")
    p.add_argument("out_dir")
    p.add_argument("--config", help="YAML merged over student_tiny.yaml")
    a = p.parse_args(argv)
    print(json.dumps(build_builtin_student(a.cases, load_yaml(a.config) if a.config else {}, a.out_dir), indent=1))


if __name__ == "__main__":
    main()
