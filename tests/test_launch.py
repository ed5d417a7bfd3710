"""Launch topology: the accelerate configs, the process flags, and real multi-process runs on CPU.

Two CPU processes (gloo DDP, started by `accelerate launch` as on a 2-GPU node) train a tiny
student and answer test notes; the output is written once, loads, and the answers equal those of
one process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest

from mint.apps.rare_disease.prompts import PROMPT
from mint.core.config import load_yaml, validate_config
from mint.core.launch import CPU_FLAGS, launch_flags, use_cpu
from tests.factories import (
    TINY_NAMES,
    make_cases,
    make_labels,
    tiny_note,
    write_cohort,
    write_tiny_student_and_pairs,
)

REPO = Path(__file__).resolve().parent.parent
ACCELERATE_CONFIGS = sorted((REPO / "config" / "accelerate").glob("*.yaml"))
EXPECTED_TYPE = {"cpu": "NO", "ddp": "MULTI_GPU", "zero3": "DEEPSPEED", "fsdp": "FSDP"}


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_loads_with_accelerates_own_loader(path):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(path))
    assert cfg.distributed_type.value == EXPECTED_TYPE[path.stem]
    assert cfg.num_machines == 1
    if path.stem in ("zero3", "fsdp"):
        assert cfg.mixed_precision == "bf16"
    if path.stem == "zero3":
        assert cfg.deepspeed_config["zero_stage"] == 3 and cfg.deepspeed_config["zero3_save_16bit_model"]
    if path.stem == "fsdp":
        fsdp = cfg.fsdp_config
        assert fsdp["fsdp_sharding_strategy"] == "FULL_SHARD" and fsdp["fsdp_use_orig_params"]
        assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    if path.stem == "cpu":
        assert cfg.use_cpu and cfg.num_processes == 1 and cfg.mixed_precision == "no"


def test_every_topology_has_a_config_and_the_default_exists():
    assert {p.stem for p in ACCELERATE_CONFIGS} == set(EXPECTED_TYPE)
    assert (REPO / validate_config({})["training"]["accelerate"]).exists()


def test_fsdp_wraps_a_class_that_transformers_has():
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    wrap = load_yaml(REPO / "config/accelerate/fsdp.yaml")["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"]
    assert wrap == LlamaDecoderLayer.__name__


@pytest.mark.parametrize(
    ("gpus", "visible", "flags"),
    [
        (1, 0, CPU_FLAGS),  # no GPU on the node: one CPU process
        (0, 4, CPU_FLAGS),  # the rule asked for none
        (1, 1, ["--num_processes", "1"]),
        (4, 8, ["--num_processes", "4"]),
        (4, 2, ["--num_processes", "2"]),  # never more processes than visible GPUs
    ],
)
def test_launch_flags(gpus, visible, flags):
    assert launch_flags(gpus, visible) == flags


def test_launch_flags_here_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    out = subprocess.run([sys.executable, "-m", "mint.core.launch", "1"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == CPU_FLAGS


def test_cpu_config_keeps_a_gpu_node_on_the_cpu(monkeypatch):
    """cpu.yaml (use_cpu) and `--cpu` set ACCELERATE_USE_CPU: train and predict then stay on the CPU.

    A GPU is made visible here, so that the flag, not the machine, decides.
    """
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    assert not use_cpu()
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    assert use_cpu()


# --------------------------------------------------------------------------- two CPU processes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny untrained student, 8 preference pairs, 6 test notes, an ORPO recipe and predict's flags."""
    d = tmp_path_factory.mktemp("launch")
    write_tiny_student_and_pairs(d)
    ids = [f"OMIM:10000{i}" for i in range(6)]
    cases = make_cases(ids + ids[:2], ["test"] * 6 + ["train"] * 2, note=[tiny_note(i) for i in range(8)])
    write_cohort(d / "cohort", cases, make_labels(ids, TINY_NAMES))
    # 8 rows, 2 per process and step, one epoch: 4 steps in one process, 2 in two.
    (d / "orpo.yaml").write_text(
        "method: orpo\nlora: null\nargs:\n  learning_rate: 1.0e-3\n  num_train_epochs: 1\n"
        "  per_device_train_batch_size: 2\n  max_length: 480\n  logging_steps: 1\n  save_strategy: 'no'\n"
        "  seed: 3\n"
    )
    # predict's flags as rules/core/evaluate.smk passes them, from the validated config.
    settings = validate_config({"seed": 3, "preferences": {"k": 2, "q": 2},
                                "evaluation": {"batch_size": 2, "max_new_tokens": 8}})
    flags = ["--prompt", json.dumps(PROMPT.resolved(settings["prompt"]), sort_keys=True), "--text-field", "note",
             "--k", str(settings["preferences"]["k"]), "--batch-size", str(settings["evaluation"]["batch_size"]),
             "--max-new-tokens", str(settings["evaluation"]["max_new_tokens"]), "--seed", str(settings["seed"]),
             "--kind", "text"]
    return d, flags


def accelerate(*args: str, processes: int) -> subprocess.CompletedProcess:
    """`accelerate launch` as the rules run it: 2 processes through the DDP config (torchrun;
    on CPU they join a gloo group), 1 process as the workflow does without GPUs."""
    flags = (["--config_file", str(REPO / "config/accelerate/ddp.yaml"), "--num_processes", str(processes)]
             if processes > 1 else ["--config_file", str(REPO / "config/accelerate/cpu.yaml"), *CPU_FLAGS])
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *flags, "-m", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return res


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_cpu_processes_train_once_and_the_model_loads(tiny):
    from mint.core.students.load import load_trained

    d, _ = tiny
    out, log = d / "train/orpo", d / "logs/orpo.log"
    accelerate("mint.core.train", str(d / "orpo.yaml"), str(d / "base"), str(d / "preferences.parquet"), str(out),
               "--checkpoints", str(d / "checkpoints"), "--log", str(log), processes=2)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2
    assert metrics["global_step"] == 2  # 8 rows / (2 per process x 2 processes)
    assert metrics["unchanged_tensors"] == [] and metrics["trainable_tensors"] > 0
    assert (out / "provenance.json").exists() and (out / "trainer_log.jsonl").read_text()
    # Written once, by process 0: no leftover temporary folders, checkpoints removed,
    # the metrics printed in process 0's log only.
    assert sorted(p.name for p in out.parent.iterdir()) == ["orpo"]
    assert not (d / "checkpoints").exists()
    assert '"global_step"' in log.read_text()
    rank1 = log.with_name("orpo.rank1.log")
    assert rank1.exists() and '"global_step"' not in rank1.read_text()
    model, tokenizer = load_trained(out)
    assert model.num_parameters() > 0 and tokenizer.eos_token


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_cpu_processes_predict_what_one_process_predicts(tiny):
    d, flags = tiny
    for n in (1, 2):
        accelerate("mint.core.predict", str(d / "base"), str(d / "cohort/cases.parquet"),
                   str(d / f"predict{n}.parquet"), *flags, "--method", "base", "--log", str(d / f"logs/predict{n}.log"),
                   processes=n)
    one, two = (pl.read_parquet(d / f"predict{n}.parquet") for n in (1, 2))
    assert one["case_id"].to_list() == [f"c{i}" for i in range(1, 7)]  # the test cases only
    assert one.equals(two)
    assert (d / "logs/predict2.rank1.log").exists()


@pytest.mark.parametrize("method,extra", [("cpo", ""), ("simpo", "  loss_type: simpo\n  cpo_alpha: 0.0\n"),
                                          ("kto", "")])
def test_other_preference_methods_train_every_weight(tiny, method, extra, tmp_path):
    """CPO, SimPO (TRL's CPO trainer) and KTO (which unpairs the pairs) train on the same Parquet."""
    from mint.core.train import train_student

    d, _ = tiny
    recipe = tmp_path / f"{method}.yaml"
    recipe.write_text(f"method: {method}\nlora: null\nargs:\n{extra}  learning_rate: 1.0e-3\n  num_train_epochs: 1\n"
                      "  per_device_train_batch_size: 4\n  max_length: 480\n  logging_steps: 1\n"
                      "  save_strategy: 'no'\n")
    metrics = train_student(recipe, str(d / "base"), d / "preferences.parquet", tmp_path / "out",
                            checkpoint_dir=tmp_path / "ckpt", seed=5)
    assert metrics["method"] == method and metrics["seed"] == 5
    assert metrics["trainable_tensors"] > 0 and metrics["unchanged_tensors"] == []


@pytest.mark.slow
def test_same_seed_gives_the_same_lora_adapter(tiny, tmp_path):
    """peft draws LoRA's A matrices when the adapter is made, in an order that depends on Python's
    hash seed (`target_modules: all-linear` is a set): train_student seeds that draw, so two
    processes with different hash seeds make the same adapter."""
    from safetensors.torch import load_file

    d, _ = tiny
    recipe = tmp_path / "orpo.yaml"
    recipe.write_text("method: orpo\nlora: {r: 4, lora_alpha: 8, target_modules: all-linear}\nargs:\n"
                      "  learning_rate: 1.0e-3\n  num_train_epochs: 1\n  per_device_train_batch_size: 4\n"
                      "  max_length: 480\n  save_strategy: 'no'\n")
    adapters = []
    for run, seed, hash_seed in (("a", 5, "1"), ("b", 5, "2"), ("c", 6, "1")):
        cmd = [sys.executable, "-m", "mint.core.train", str(recipe), str(d / "base"), str(d / "preferences.parquet"),
               str(tmp_path / run), "--checkpoints", str(tmp_path / f"ckpt_{run}"), "--seed", str(seed)]
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        adapters.append(load_file(tmp_path / run / "adapter_model.safetensors"))
    same, other = adapters[0], adapters[2]
    assert all(same[k].equal(adapters[1][k]) for k in same)
    assert any(not same[k].equal(other[k]) for k in same)


def test_dpo_precomputes_the_reference_and_trains_the_same(tiny, tmp_path, monkeypatch):
    """train_student has DPO compute the reference log-probs once before training (unless the recipe
    says false): the same losses, step by step over two epochs, as a reference pass at every step."""
    from trl import DPOTrainer

    from mint.core.train import train_student

    d, _ = tiny
    calls = []
    precompute = DPOTrainer._precompute_ref_logps
    monkeypatch.setattr(DPOTrainer, "_precompute_ref_logps",
                        lambda self, *a, **k: calls.append(tempfile.gettempdir()) or precompute(self, *a, **k))
    losses = {}
    for name, extra in (("default", ""), ("every step", "  precompute_ref_log_probs: false\n")):
        recipe = tmp_path / "dpo.yaml"
        recipe.write_text("method: dpo\ninit: sft\nlora: null\nargs:\n  learning_rate: 1.0e-3\n  num_train_epochs: 2\n"
                          "  per_device_train_batch_size: 4\n  max_length: 480\n  logging_steps: 1\n"
                          f"  save_strategy: 'no'\n{extra}")
        out = tmp_path / name.replace(" ", "_")
        train_student(recipe, str(d / "base"), d / "preferences.parquet", out, init_dir=d / "base",
                      checkpoint_dir=tmp_path / "ckpt", seed=5)
        log = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
        losses[name] = [r["loss"] for r in log if "loss" in r]
        assert len(calls) == 1, name  # precomputed once, in the default run (and not in the other)
    # Temporary files (datasets keeps the precomputed log-probs in one) lie in the run, and are gone afterwards.
    assert Path(calls[0]).parent == tmp_path / "ckpt" and not Path(calls[0]).exists()
    assert len(losses["default"]) == 4 and losses["default"][-1] != losses["default"][0]
    assert losses["default"] == pytest.approx(losses["every step"], rel=1e-4)
