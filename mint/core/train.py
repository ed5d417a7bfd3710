"""Train the student with one method (sft, dpo, orpo) from a recipe YAML; one entry point for all.

A recipe names the method, where training starts (`init: base`, or `init: sft` for DPO as in the
paper), LoRA settings (`lora: null` means full fine-tuning, what the builtin tiny student's
recipes use) and `args` passed to TRL's config class (but `save_total_limit`: see below), checked by type
and range first, as at start-up, a number YAML reads as text (`5e-5`) converted (mint.core.recipe_args).

The output folder is a Hugging Face folder (a peft adapter, or a full model) plus
`mint_student.json` (the student's kind, and how to rebuild the model: base, init, adapter;
`mint.core.students.kind`), `metrics.json` and
`trainer_log.jsonl`. Checkpoints go to a separate folder (Snakemake deletes the outputs of a
failed job), and a rerun resumes from the last complete one: a checkpoint counts once every process has
saved it and process 0 has written `mint_complete.json` into it; one a kill cut short is removed on the
rerun. So MINT applies the recipe's `save_total_limit` itself, removing older checkpoints only once a newer
one is complete (the Trainer's own rotation removes them before the newer one is marked).

The same code runs as one process or as several under `accelerate launch` (DDP, DeepSpeed
ZeRO-3, FSDP: `config/accelerate/`): every process trains, only process 0 claims the checkpoint
folder and writes the output folder (weights gathered from all processes first when sharded).

    python -m mint.core.train config/rare_disease/recipes/tiny/orpo.yaml results/student/base \
        results/preferences/preferences.parquet results/train/orpo
    accelerate launch --config_file config/accelerate/ddp.yaml --num_processes 4 -m mint.core.train ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import TrainerCallback

from mint.core import schemas
from mint.core.config import check_recipe_fields, load_yaml
from mint.core.images import dataset_images
from mint.core.io import (
    MintError,
    apply_output_mode,
    atomic_dir,
    config_hash,
    file_digest,
    provenance,
    read_parquet,
    temp_files_in,
    write_json,
)
from mint.core.launch import use_cpu
from mint.core.steps import step_from_env
from mint.core.students.kind import KINDS, check_kind, write_student_record
from mint.core.students.load import load_base, load_trained
from mint.core.trainers import (
    METHODS,
    fast_forward_outcome,
    fell_back,
    trainer_classes,
    vision_trainer_classes,
)
from mint.core.workflow import rank_log

log = logging.getLogger(__name__)


def load_recipe(path: str | Path, kind: str = "text") -> dict[str, Any]:
    """A recipe, checked as start-up checks it (`mint.core.config.check_recipe_fields`: known keys, a known method,
    `args` of the types and ranges of its TRL config class, a number YAML read as text converted), with defaults.

    `kind`: the student's (a vision student's ORPO trains on DPO's vision path, with DPO's config).
    """
    stem = Path(path).stem
    recipe = check_recipe_fields(load_yaml(path), path, stem if stem in METHODS else None, kind)
    recipe.setdefault("init", "base")
    recipe.setdefault("lora", None)
    recipe.setdefault("args", {})
    recipe.setdefault("dtype", "float32")
    recipe.setdefault("nll", "completion")
    recipe.setdefault("freeze", [])
    if recipe["lora"] is not None:
        from peft import LoraConfig

        lora_fields = {f.name for f in dataclasses.fields(LoraConfig)}
        bad = sorted(set(recipe["lora"]) - lora_fields)
        if bad:
            raise MintError(f"{path}: recipe 'lora' key(s) {bad} are not options of peft's LoraConfig")
    return recipe


def load_dataset(method: str, data_path: str | Path, kind: str = "text") -> tuple[Dataset, list[str]]:
    """The method's training rows in TRL's conversational format (messages as lists of dicts), and their case ids.

    A vision student's rows also hold `images`: paths (converted pixels where Pillow alone would read a file
    otherwise than `mint.core.images` does), decoded to images when the trainer reads a row.
    """
    vision = kind == "vision"
    if method == "sft":
        schema, columns = (schemas.SFT_VISION if vision else schemas.SFT), ["case_id", "prompt", "completion"]
    else:
        schema = schemas.PREFERENCES_VISION if vision else schemas.PREFERENCES
        columns = ["case_id", "prompt", "chosen", "rejected"]
    df = read_parquet(data_path, schema).select(columns + (["images"] if vision else []))
    if df.height == 0:
        raise MintError(f"{data_path}: no training rows")
    rows = df.drop("case_id").to_dicts()
    if vision:
        missing = [p for paths in df["images"].to_list() for p in paths if not Path(p).is_file()]
        if missing:
            raise MintError(f"{data_path}: image(s) not found, e.g. {missing[0]!r} ({len(missing)} in all)")
        # A path where Pillow reads the file as MINT does (8-bit RGB or grey); else converted pixels
        # (16-bit scaled, not clipped): mint.core.images.
        images = dataset_images(df["images"].to_list())
        rows = [dict(row, images=i) for row, i in zip(rows, images, strict=True)]
    dataset = Dataset.from_list(rows)
    if vision:
        from datasets import Image, Sequence

        dataset = dataset.cast_column("images", Sequence(Image()))
    return dataset, df["case_id"].to_list()


def check_lengths(dataset: Dataset, case_ids: Sequence[str], tokenizer, max_length: int | None, recipe_path) -> None:
    """Fail before training if a prompt plus answer is cut by `max_length`.

    Truncation would silently train on a cut (or, for ORPO, empty) answer: the log-odds of an
    empty answer are 0/0, and the weights turn to NaN.
    """
    if max_length is None:
        return
    answers = [c for c in ("completion", "chosen", "rejected") if c in dataset.column_names]
    for case_id, row in zip(case_ids, dataset):
        for col in answers:
            text = tokenizer.apply_chat_template(row["prompt"] + row[col], tokenize=False)
            n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            if n > max_length:
                raise MintError(
                    f"{recipe_path}: case {case_id!r}: prompt + {col} is {n} tokens, more than recipe key "
                    f"'args.max_length' ({max_length}); raise it or shorten the prompt"
                )


def freeze_parameters(model, patterns: list[str], recipe_path: str | Path = "recipe") -> int:
    """Stop training every parameter whose name a pattern matches (`re.search`); returns how many tensors.

    A pattern that matches no parameter is an error (a typo would otherwise train what it meant to keep).
    """
    names = [n for n, _ in model.named_parameters()]
    frozen = 0
    for pattern in patterns:
        hits = [n for n in names if re.search(pattern, n)]
        if not hits:
            raise MintError(f"{recipe_path}: recipe key 'freeze': {pattern!r} matches no parameter of "
                            f"{type(model).__name__} (e.g. {names[0]!r})")
        for name, param in model.named_parameters():
            if re.search(pattern, name) and param.requires_grad:
                param.requires_grad_(False)
                frozen += 1
    return frozen


def _snapshot(model) -> dict[str, torch.Tensor]:
    """Trainable tensors, copied to the CPU (a full fine-tune's copy would not fit beside it on the GPU)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def _gathered_state(trainer) -> tuple[dict[str, torch.Tensor], bool]:
    """(full state dict on process 0, whether the weights were sharded); every process must call it.

    Under ZeRO-3 or FSDP each process holds a shard: accelerate gathers them (to process 0).
    Otherwise it is the model's own state dict.
    """
    sharded = bool(trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled)
    return trainer.accelerator.get_state_dict(trainer.model_wrapped), sharded


def train_student(
    recipe_path: str | Path,
    base: str,
    data_path: str | Path,
    out_dir: str | Path,
    init_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    threads: int = 1,
    seed: int | None = None,
    kind: str = "text",
) -> dict[str, Any] | None:
    """Train one method; returns its metrics (also written to `out_dir/metrics.json`).

    Under `accelerate launch` with several processes, every process trains and only process 0
    writes (and returns the metrics; the others return None).
    """
    torch.set_num_threads(threads)
    check_kind(kind)  # the application's declared kind; a base folder that records another is an error
    recipe = load_recipe(recipe_path, kind)
    method = recipe["method"]
    if recipe["init"] == "sft" and init_dir is None:
        raise MintError(f"{recipe_path}: recipe starts from the SFT model (init: sft) but no SFT folder was given")
    init = str(init_dir) if recipe["init"] == "sft" else None
    model, tokenizer = (load_trained(init, recipe["dtype"], kind) if init
                        else load_base(base, recipe["dtype"], kind))  # a processor for a vision student

    classes = vision_trainer_classes if kind == "vision" else trainer_classes
    config_cls, trainer_cls = classes(method, completion_only_nll=recipe["nll"] == "completion")
    args = dict(recipe["args"])
    if seed is not None:  # the workflow's training seed (config training.seeds) overrides the recipe's
        args["seed"] = seed
    if method == "dpo" and kind == "text":
        # The reference model's log-probs once, before training, instead of a reference forward pass at
        # every step of every epoch, and no second copy of the model in memory (a recipe may say false).
        args.setdefault("precompute_ref_log_probs", True)
    adapter = recipe["lora"] is not None
    if adapter:
        from peft import LoraConfig, get_peft_model
        from transformers import set_seed

        # LoRA's A matrices are drawn at random here, before the trainer seeds anything: seed them
        # too, so the same seed gives the same adapter.
        set_seed(args.get("seed", 42))
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **recipe["lora"]))
    freeze_parameters(model, recipe["freeze"], recipe_path)
    gpu = not use_cpu()  # no GPU, or config/accelerate/cpu.yaml
    if not gpu and (args.get("bf16") or args.get("fp16")):
        log.warning("on the CPU: training in float32 instead of the recipe's bf16/fp16")
    # use_cpu: several CPU processes then join one gloo group (DDP on CPU).
    args.update(bf16=args.get("bf16", False) and gpu, fp16=args.get("fp16", False) and gpu, use_cpu=not gpu)
    checkpoint_dir = Path(checkpoint_dir or Path(out_dir).with_name(Path(out_dir).name + ".checkpoints"))
    keep = args.pop("save_total_limit", None)  # applied by CompleteCheckpoints, once a newer one is complete
    targs = config_cls(output_dir=str(checkpoint_dir), report_to=[], **args)
    main_process = targs.process_index == 0  # also sets up the process group under accelerate launch

    dataset, case_ids = load_dataset(method, data_path, kind)
    if kind == "text":  # a vision row's length depends on its image tokens: TRL then needs max_length null
        check_lengths(dataset, case_ids, tokenizer, targs.max_length, recipe_path)
    if main_process:
        _claim_checkpoints(checkpoint_dir, {"recipe": recipe, "base": base, "init": init, "seed": targs.seed,
                                            "data": file_digest(data_path)})
    targs.distributed_state.wait_for_everyone()  # the others resume from what process 0 kept
    # Temporary files the libraries write (datasets keeps DPO's precomputed reference log-probs in one) stay in
    # the run, under the checkpoint folder, and go when training ends.
    with temp_files_in(checkpoint_dir):
        trainer = trainer_cls(model=model, args=targs, train_dataset=dataset, processing_class=tokenizer,
                              callbacks=[CompleteCheckpoints(keep)])
        before = _snapshot(trainer.model) if main_process else {}
        last = _last_checkpoint(checkpoint_dir)
        if last:
            log.info("resuming from %s", last)
        result = trainer.train(resume_from_checkpoint=str(last) if last else None)
    fast_forward = fast_forward_outcome(trainer)  # None: a trainer without a forward pass of the workflow's own
    if fell_back(fast_forward):
        log.warning("%s: trained with TRL's own forward pass, not the workflow's (slower, the same loss up to "
                    "float rounding): %s", method, fast_forward)
    state, sharded = _gathered_state(trainer)
    if not trainer.is_world_process_zero():
        return None
    # Compare in the saved precision (ZeRO-3 gathers 16-bit weights).
    after = {n: state[n].detach().cpu() for n in before}
    unchanged = sorted(n for n in before if torch.equal(before[n].to(after[n].dtype), after[n]))
    broken = sorted(n for n, t in after.items() if not torch.isfinite(t).all())
    if broken:
        raise MintError(f"{recipe_path}: training diverged: {len(broken)} parameter tensors hold NaN/inf "
                        f"(e.g. {broken[0]}); lower 'args.learning_rate' or check the data")

    metrics = {
        "method": method,
        "seed": targs.seed,
        "recipe": str(recipe_path),
        "fine_tuning": "lora" if adapter else "full",
        "nll": recipe["nll"] if method == "orpo" else None,
        "fast_forward": fast_forward,
        "n_rows": len(dataset),
        "trainable_parameters": int(sum(t.numel() for t in after.values())),
        "trainable_tensors": len(after),
        "unchanged_tensors": unchanged,
        "resumed_from": str(last) if last else None,
        "global_step": trainer.state.global_step,
        "processes": targs.world_size,
        **{k: v for k, v in result.metrics.items() if isinstance(v, int | float)},
    }
    if last and "train_loss" in metrics:
        # TRL's train_loss averages this session's steps only; the report reads the whole run's.
        metrics["train_loss_since_resume"] = metrics["train_loss"]
        whole = whole_run_loss(trainer.state.log_history)
        if whole is not None:
            metrics["train_loss"] = whole
    with atomic_dir(out_dir) as tmp:
        # FSDP leaves trainer.model wrapped; the gathered state dict holds the weights.
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(str(tmp), state_dict=state if sharded else None)
        tokenizer.save_pretrained(str(tmp))
        write_student_record(tmp, kind, method=method, base=base, init=init, adapter=adapter)
        (tmp / "trainer_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in trainer.state.log_history))
        write_json(metrics, tmp / "metrics.json")
        write_json(provenance({"recipe": recipe, "base": base, "init": init},
                              seed=targs.seed), tmp / "provenance.json")
    shutil.rmtree(checkpoint_dir, ignore_errors=True)  # finished: the output folder is the result
    if not checkpoint_dir.is_absolute() and ".." not in checkpoint_dir.parts:
        # The workflow's results/checkpoints/seed<N>/ once its last method is done; never a user's own folder.
        remove_empty_parents(checkpoint_dir, levels=2)
    return metrics


def whole_run_loss(log_history: Sequence[Mapping[str, Any]]) -> float | None:
    """Mean training loss over every logged step of a run, resumed sessions included (the trainer state
    carries the log): each logged 'loss' is the mean over the steps since the previous one, so it is
    weighted by their number. None when nothing was logged."""
    previous, total, steps = 0, 0.0, 0
    for row in log_history:
        if "loss" in row and "step" in row and row["step"] > previous:
            n = row["step"] - previous
            total, steps, previous = total + float(row["loss"]) * n, steps + n, row["step"]
    return total / steps if steps else None


def remove_empty_parents(path: Path, levels: int) -> None:
    """Remove up to `levels` parent folders of `path` that are left empty, nearest first."""
    for parent in list(Path(path).parents)[:levels]:
        try:
            parent.rmdir()
        except OSError:  # not empty (or gone): stop here
            return


COMPLETE_FILE = "mint_complete.json"  # in a checkpoint folder: written last, once every process has saved it
CHECKPOINT = re.compile(r"checkpoint-(\d+)")  # the Trainer's folder names (transformers' PREFIX_CHECKPOINT_DIR)


class CompleteCheckpoints(TrainerCallback):
    """Mark each checkpoint complete once it is saved, then keep the newest `keep` complete ones.

    The Trainer writes `checkpoint-N` in place, file by file (weights, optimizer, scheduler, RNG
    state, trainer state), so a kill mid-save leaves a folder a resume fails on. `on_save` runs in
    every process right after the whole save: once all processes are there (each may have written its
    own shard), process 0 writes `COMPLETE_FILE` atomically; only marked folders count (`_last_checkpoint`).
    Older ones are removed after that, marker first, so that a kill never leaves fewer complete
    checkpoints than before, and a folder half removed is no longer marked.
    """

    def __init__(self, keep: int | None):
        self.keep = keep  # the recipe's save_total_limit; None or <= 0 keeps all

    def on_save(self, args, state, control, **kwargs):
        args.distributed_state.wait_for_everyone()
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            write_json({"global_step": state.global_step}, folder / COMPLETE_FILE)
            if self.keep and self.keep > 0:
                protected = {folder, Path(state.best_model_checkpoint or folder)}
                for old in _complete_checkpoints(Path(args.output_dir))[:-self.keep]:
                    if old not in protected:
                        (old / COMPLETE_FILE).unlink()
                        shutil.rmtree(old)
        return control


def _checkpoint_folders(checkpoint_dir: Path) -> list[Path]:
    """The `checkpoint-N` folders, oldest (lowest N) first."""
    folders = [p for p in checkpoint_dir.iterdir() if CHECKPOINT.fullmatch(p.name) and p.is_dir()]
    return sorted(folders, key=lambda p: int(CHECKPOINT.fullmatch(p.name).group(1)))


def _complete_checkpoints(checkpoint_dir: Path) -> list[Path]:
    return [p for p in _checkpoint_folders(checkpoint_dir) if (p / COMPLETE_FILE).is_file()]


def _claim_checkpoints(checkpoint_dir: Path, run: Mapping[str, Any]) -> None:
    """Keep checkpoints only if they belong to this very run (same recipe, model and data) and are
    complete; a checkpoint a kill cut short is removed, with a warning that names it."""
    marker = checkpoint_dir / "mint_run.json"
    key = config_hash(run)
    if checkpoint_dir.exists() and (not marker.exists() or json.loads(marker.read_text()).get("key") != key):
        log.info("checkpoints in %s belong to another run: starting over", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"key": key}) + "\n")
    for folder in _checkpoint_folders(checkpoint_dir):
        if not (folder / COMPLETE_FILE).is_file():
            log.warning("%s: an incomplete checkpoint (no %s): removed", folder, COMPLETE_FILE)
            shutil.rmtree(folder)


def _last_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    if not checkpoint_dir.is_dir():
        return None
    complete = _complete_checkpoints(checkpoint_dir)
    return complete[-1] if complete else None


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train the MINT student with one method from a recipe.")
    p.add_argument("recipe")
    p.add_argument("base", help="base model: a model folder or a Hugging Face id")
    p.add_argument("data", help="sft.parquet or preferences.parquet")
    p.add_argument("out_dir")
    p.add_argument("--init", default=None, help="trained SFT folder (recipes with init: sft)")
    p.add_argument("--checkpoints", default=None)
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    p.add_argument("--seed", type=int, default=None, help="training seed (default: the recipe's args.seed)")
    p.add_argument("--kind", default="text", choices=KINDS, help="the student reads text, or images with text")
    p.add_argument("--log", default=None, help="log file (process k > 0 writes <stem>.rank<k>.log beside it)")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    a = make_parser().parse_args(argv)
    apply_output_mode()  # a workflow step's output mode (MINT_SHARED_GROUP); run by hand, owner-only
    with rank_log(a.log):
        step_from_env()  # inside a workflow step: check its inputs' provenance (mint.core.steps)
        metrics = train_student(a.recipe, a.base, a.data, a.out_dir, a.init, a.checkpoints, a.threads, a.seed,
                                a.kind)
        if metrics is not None:
            print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
