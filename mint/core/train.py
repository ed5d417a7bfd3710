"""Train the student with one method (sft, dpo, orpo) from a recipe YAML; one entry point for all.

A recipe names the method, where training starts (`init: base`, or `init: sft` for DPO as in the
paper), LoRA settings (`lora: null` means full fine-tuning, what the builtin tiny student's
recipes use) and `args` passed unchanged to TRL's config class.

The output folder is a Hugging Face folder (a peft adapter, or a full model) plus
`mint_student.json` (how to rebuild the model: base, init, adapter), `metrics.json` and
`trainer_log.jsonl`. Checkpoints go to a separate folder (Snakemake deletes the outputs of a
failed job), and a rerun resumes from the last one.

The same code runs as one process or as several under `accelerate launch` (DDP, DeepSpeed
ZeRO-3, FSDP: `config/accelerate/`): every process trains, only process 0 claims the checkpoint
folder and writes the output folder (weights gathered from all processes first when sharded).

    python -m mint.core.train config/recipes/tiny/orpo.yaml results/student/base \
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

from mint.core import schemas
from mint.core.config import check_recipe_fields, load_yaml
from mint.core.io import (
    MintError,
    atomic_dir,
    config_hash,
    file_digest,
    provenance,
    read_parquet,
    temp_files_in,
    write_json,
)
from mint.core.launch import use_cpu
from mint.core.models import load_student
from mint.core.steps import step_from_env
from mint.core.trl_compat import METHODS, VISION_METHODS, trainer_classes, vision_trainer_classes
from mint.core.workflow import rank_log

log = logging.getLogger(__name__)

STUDENT_FILE = "mint_student.json"
KINDS = ("text", "vision")  # the student reads text, or an image with text


def load_recipe(path: str | Path, kind: str = "text") -> dict[str, Any]:
    """A recipe, checked: known keys, a known method, and `args` that its TRL config class accepts.

    `kind`: the student's (a vision student's ORPO trains on DPO's vision path, with DPO's config).
    """
    stem = Path(path).stem
    recipe = check_recipe_fields(load_yaml(path), path, stem if stem in METHODS else None)
    method = recipe.get("method")
    if method not in METHODS:
        raise MintError(f"{path}: recipe key 'method' must be one of {METHODS}, got {method!r}")
    recipe.setdefault("init", "base")
    recipe.setdefault("lora", None)
    recipe.setdefault("args", {})
    recipe.setdefault("dtype", "float32")
    recipe.setdefault("nll", "completion")
    recipe.setdefault("freeze", [])
    freeze = recipe["freeze"]
    if not isinstance(freeze, list) or not all(isinstance(x, str) and x for x in freeze):
        raise MintError(f"{path}: recipe key 'freeze' must be a list of parameter-name patterns (regular "
                        f"expressions, e.g. 'model\\.vision_tower\\.'), got {freeze!r}")
    for pattern in freeze:
        try:
            re.compile(pattern)
        except re.error as err:
            raise MintError(f"{path}: recipe key 'freeze': {pattern!r} is not a regular expression: {err}") from err
    if recipe["nll"] not in ("completion", "full"):
        raise MintError(f"{path}: recipe key 'nll' must be 'completion' or 'full' (ORPO's NLL over the prompt too), "
                        f"got {recipe['nll']!r}")
    if kind == "vision" and method not in VISION_METHODS:
        raise MintError(f"{path}: method {method!r} has no image path here; a vision student trains with "
                        f"{VISION_METHODS} (config key 'training.methods')")
    config_cls, _ = vision_trainer_classes(method) if kind == "vision" else trainer_classes(method)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    bad = sorted(set(recipe["args"]) - fields)
    if bad:
        raise MintError(f"{path}: recipe 'args' key(s) {bad} are not options of TRL's {config_cls.__name__}")
    if recipe["lora"] is not None:
        from peft import LoraConfig

        lora_fields = {f.name for f in dataclasses.fields(LoraConfig)}
        bad = sorted(set(recipe["lora"]) - lora_fields)
        if bad:
            raise MintError(f"{path}: recipe 'lora' key(s) {bad} are not options of peft's LoraConfig")
    return recipe


def load_base(name_or_path: str, dtype: str = "float32", kind: str = "text"):
    """(model, tokenizer or processor) of a base student: a text LLM, or a vision LLM with its processor."""
    if kind == "vision":
        from mint.core.vision import load_vision_student

        return load_vision_student(name_or_path, dtype=dtype)
    return load_student(name_or_path, dtype=dtype)


def load_trained(model_dir: str | Path, dtype: str = "float32", kind: str = "text"):
    """(model, tokenizer or processor) of a trained student folder: base, then each stage's weights merged."""
    model_dir = Path(model_dir)
    spec_path = model_dir / STUDENT_FILE
    if not spec_path.exists():
        return load_base(str(model_dir), dtype, kind)  # a plain model folder or hub id
    spec = json.loads(spec_path.read_text())
    kind = spec.get("kind", "text")
    if spec["init"]:
        model, processing = load_trained(spec["init"], dtype, kind)
    else:
        model, processing = load_base(spec["base"], dtype, kind)
    if spec["adapter"]:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(model_dir)).merge_and_unload()
    else:
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

        auto = AutoModelForImageTextToText if kind == "vision" else AutoModelForCausalLM
        model = auto.from_pretrained(str(model_dir), dtype=getattr(torch, dtype))
    return model, processing


def load_dataset(method: str, data_path: str | Path, kind: str = "text") -> tuple[Dataset, list[str]]:
    """The method's training rows in TRL's conversational format (messages as lists of dicts), and their case ids.

    A vision student's rows also hold `images`: paths, decoded to images when the trainer reads a row.
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
    dataset = Dataset.from_list(df.drop("case_id").to_dicts())
    if vision:
        from datasets import Image, Sequence

        missing = [p for paths in df["images"].to_list() for p in paths if not Path(p).is_file()]
        if missing:
            raise MintError(f"{data_path}: image(s) not found, e.g. {missing[0]!r} ({len(missing)} in all)")
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
    if kind not in KINDS:
        raise MintError(f"student kind {kind!r}: expected one of {KINDS}")
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
        trainer = trainer_cls(model=model, args=targs, train_dataset=dataset, processing_class=tokenizer)
        before = _snapshot(trainer.model) if main_process else {}
        last = _last_checkpoint(checkpoint_dir)
        if last:
            log.info("resuming from %s", last)
        result = trainer.train(resume_from_checkpoint=str(last) if last else None)
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
        spec = {"method": method, "base": base, "init": init, "adapter": adapter}
        if kind != "text":  # text students' folders stay as they were
            spec["kind"] = kind
        (tmp / STUDENT_FILE).write_text(json.dumps(spec, indent=2) + "\n")
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


def _claim_checkpoints(checkpoint_dir: Path, run: Mapping[str, Any]) -> None:
    """Keep checkpoints only if they belong to this very run (same recipe, model and data)."""
    marker = checkpoint_dir / "mint_run.json"
    key = config_hash(run)
    if checkpoint_dir.exists() and (not marker.exists() or json.loads(marker.read_text()).get("key") != key):
        log.info("checkpoints in %s belong to another run: starting over", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"key": key}) + "\n")


def _last_checkpoint(checkpoint_dir: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not checkpoint_dir.is_dir():
        return None
    last = get_last_checkpoint(str(checkpoint_dir))
    return Path(last) if last else None


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
    with rank_log(a.log):
        step_from_env()  # inside a workflow step: check its inputs' provenance (mint.core.steps)
        metrics = train_student(a.recipe, a.base, a.data, a.out_dir, a.init, a.checkpoints, a.threads, a.seed,
                                a.kind)
        if metrics is not None:
            print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
