"""Checkpoints that survive a kill: a training run killed inside a checkpoint save resumes, on a plain rerun,
from the last complete checkpoint (the half-written one is reported and removed), and ends with the very
weights of a run that was never killed.

    .venv/bin/python -m pytest -q tests/test_checkpoints.py
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mint.core.train import COMPLETE_FILE, _claim_checkpoints, _last_checkpoint
from tests.factories import write_tiny_student_and_pairs

REPO = Path(__file__).resolve().parent.parent
KILL_STEP = 4  # checkpoints at steps 2, 4, 6: the kill comes inside the second save

# `python -m mint.core.train`, killed inside the save of checkpoint-KILL_STEP: the Trainer method named on the
# command line writes half of its file and the process ends at once (os._exit skips every cleanup, as a
# SIGKILL or an out-of-memory kill does). Test-only: the production code has no hook for this.
KILLED_TRAIN = textwrap.dedent(f"""
    import os
    import sys

    from transformers import Trainer

    method, half_file = sys.argv.pop(1), sys.argv.pop(1)
    original = getattr(Trainer, method)

    def killed_inside(self, output_dir=None, *args, **kwargs):
        if self.state.global_step != {KILL_STEP}:
            return original(self, output_dir, *args, **kwargs)
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, half_file), "wb") as f:
            f.write(b"half a file")
        os._exit(137)

    setattr(Trainer, method, killed_inside)
    from mint.core.train import main

    main(sys.argv[1:])
""")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny untrained student, 8 preference pairs and an ORPO recipe that checkpoints every 2 of its 6 steps,
    keeping one checkpoint (as the workflow's recipes do)."""
    d = tmp_path_factory.mktemp("checkpoints")
    write_tiny_student_and_pairs(d)
    (d / "orpo.yaml").write_text(
        "method: orpo\nlora: null\nargs:\n  learning_rate: 1.0e-3\n  max_steps: 6\n  per_device_train_batch_size: 2\n"
        "  max_length: 480\n  logging_steps: 1\n  save_strategy: steps\n  save_steps: 2\n  save_total_limit: 1\n"
        "  seed: 3\n"
    )
    return d


def _train(d: Path, name: str, *killed_inside: str, processes: int = 1) -> subprocess.CompletedProcess:
    """Train into d/<name> (checkpoints in d/<name>.ckpt, log in d/<name>.log); killed inside a save if asked.
    Several processes: `accelerate launch` with the DDP config (gloo on the CPU), as the rules run it."""
    if killed_inside:
        (d / "killed_train.py").write_text(KILLED_TRAIN)
        entry = [str(d / "killed_train.py"), *killed_inside]
    else:
        entry = ["-m", "mint.core.train"]
    launch = [sys.executable]
    if processes > 1:
        launch += ["-m", "accelerate.commands.launch", "--config_file", str(REPO / "config/accelerate/ddp.yaml"),
                   "--num_processes", str(processes)]
    cmd = [*launch, *entry, str(d / "orpo.yaml"), str(d / "base"), str(d / "preferences.parquet"),
           str(d / name), "--checkpoints", str(d / f"{name}.ckpt"), "--log", str(d / f"{name}.log")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tiny):
    res = _train(tiny, "uninterrupted")
    assert res.returncode == 0, res.stderr[-5000:]
    return tiny / "uninterrupted"


def _resumes_from_checkpoint_2(d: Path, name: str, half_file: str, processes: int = 1) -> Path:
    """After the kill: checkpoint-KILL_STEP is half-written and checkpoint-2 kept; a plain rerun reports and
    removes the half one, resumes from checkpoint-2 and finishes. Returns the output folder."""
    out, ckpt, log = d / name, d / f"{name}.ckpt", d / f"{name}.log"
    assert not out.exists(), "a killed run must not leave an output folder"
    half = ckpt / f"checkpoint-{KILL_STEP}"
    assert (half / half_file).read_bytes() == b"half a file" and not (half / COMPLETE_FILE).exists()
    # The checkpoint before it is kept (save_total_limit 1 removes it only once a newer one is complete).
    assert (ckpt / "checkpoint-2" / COMPLETE_FILE).exists()

    res = _train(d, name, processes=processes)  # a plain rerun, as Snakemake's (or --rerun-incomplete's) would be
    assert res.returncode == 0, res.stderr[-5000:]
    text = log.read_text()
    assert f"{half}: an incomplete checkpoint (no {COMPLETE_FILE}): removed" in text, text[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"] == str(ckpt / "checkpoint-2")
    assert metrics["global_step"] == 6 and metrics["processes"] == processes
    assert not ckpt.exists()  # finished: checkpoints are cleaned up
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("method", "half_file"), [
    ("save_model", "model.safetensors"),  # the weights half-written: no file the resume could use yet
    ("_save_rng_state", "rng_state.pth"),  # weights, optimizer and scheduler written, the RNG state half, no state
], ids=["in-weights", "in-rng-state"])
def test_a_run_killed_inside_a_checkpoint_save_resumes_from_the_last_complete_one(tiny, uninterrupted, method,
                                                                                 half_file):
    name = f"killed-{method.strip('_')}"
    res = _train(tiny, name, method, half_file)
    assert res.returncode == 137, res.stderr[-5000:]
    out = _resumes_from_checkpoint_2(tiny, name, half_file)
    assert (out / "model.safetensors").read_bytes() == (uninterrupted / "model.safetensors").read_bytes()


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_killed_inside_a_checkpoint_save_resume_from_the_last_complete_one(tiny):
    """Under DDP every process saves (its RNG state) and process 0 marks the checkpoint once all have."""
    res = _train(tiny, "ddp-uninterrupted", processes=2)
    assert res.returncode == 0, res.stderr[-5000:]
    res = _train(tiny, "ddp-killed", "_save_rng_state", "rng_state.pth", processes=2)
    assert res.returncode != 0, res.stderr[-5000:]  # torchrun reports its killed processes
    out = _resumes_from_checkpoint_2(tiny, "ddp-killed", "rng_state.pth", processes=2)
    uninterrupted = tiny / "ddp-uninterrupted/model.safetensors"
    assert (out / "model.safetensors").read_bytes() == uninterrupted.read_bytes()


def _checkpoint(folder: Path, step: int, complete: bool) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if complete:
        (path / COMPLETE_FILE).write_text(json.dumps({"global_step": step}) + "\n")
    return path


def test_only_complete_checkpoints_count_and_the_others_are_removed(tmp_path, caplog):
    run = {"recipe": {"method": "sft"}, "seed": 7}
    _claim_checkpoints(tmp_path, run)
    two, four, six = (_checkpoint(tmp_path, n, n != 6) for n in (2, 4, 6))
    temporary = tmp_path / ".mint-tmp-abc"  # the run's temporary files: not a checkpoint
    temporary.mkdir()
    with caplog.at_level(logging.WARNING, logger="mint.core.train"):
        _claim_checkpoints(tmp_path, run)
    assert f"{six}: an incomplete checkpoint (no {COMPLETE_FILE}): removed" in caplog.text
    assert not six.exists() and two.exists() and temporary.exists()
    assert _last_checkpoint(tmp_path) == four
    (four / COMPLETE_FILE).unlink()  # as a kill between removing its marker and its files leaves it
    _claim_checkpoints(tmp_path, run)
    assert _last_checkpoint(tmp_path) == two


def test_no_complete_checkpoint_starts_over(tmp_path):
    _claim_checkpoints(tmp_path, {"seed": 1})
    _checkpoint(tmp_path, 2, complete=False)
    _claim_checkpoints(tmp_path, {"seed": 1})
    assert _last_checkpoint(tmp_path) is None
    assert _last_checkpoint(tmp_path / "absent") is None


def test_a_save_is_marked_complete_before_older_checkpoints_are_removed(tmp_path):
    """`save_total_limit` (here 2) counts complete checkpoints, and the best one is kept besides."""
    from types import SimpleNamespace

    from mint.core.train import CompleteCheckpoints

    args = SimpleNamespace(output_dir=str(tmp_path), distributed_state=SimpleNamespace(wait_for_everyone=lambda: None))
    folders = [_checkpoint(tmp_path, n, n != 8) for n in (2, 4, 6, 8)]
    best = str(folders[0])  # as the Trainer records it with load_best_model_at_end
    state = SimpleNamespace(is_world_process_zero=True, global_step=8, best_model_checkpoint=best)
    CompleteCheckpoints(keep=2).on_save(args, state, control=None)
    assert json.loads((folders[3] / COMPLETE_FILE).read_text()) == {"global_step": 8}
    assert [p.exists() for p in folders] == [True, False, True, True]
    not_zero = SimpleNamespace(is_world_process_zero=False, global_step=10, best_model_checkpoint=None)
    CompleteCheckpoints(keep=1).on_save(args, not_zero, control=None)  # only process 0 writes and removes
    assert [p.exists() for p in folders] == [True, False, True, True]
