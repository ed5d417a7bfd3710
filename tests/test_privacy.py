"""What a run writes holds patient data (notes, images, answers, logs, weights): readable by its owner
alone whatever the umask, or by the owner's group with `privacy.shared_group: true` (docs/privacy.md).

    .venv/bin/python -m pytest -q tests/test_privacy.py
"""

import os
import stat
import subprocess
import sys

import pytest

from mint.core.config import validate_config
from mint.core.io import ENV_SHARED_GROUP, MintError, apply_output_mode, atomic_dir, write_json
from tests.dag import REPO, SNAKEMAKE, open_to_others


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def umask_022(monkeypatch):
    """The usual umask (anyone may read what is made) for the test; this process's umask and MINT_SHARED_GROUP
    come back afterwards."""
    monkeypatch.delenv(ENV_SHARED_GROUP, raising=False)
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.mark.integration
def test_every_file_and_folder_the_tiny_run_wrote_is_its_owners_alone(tiny_run):
    """The tiny DAG ran under umask 022 (tests/conftest.py): results/, logs/, benchmarks/ and .snakemake/ are
    still 0600 files in 0700 folders."""
    seen, offenders = open_to_others(tiny_run)
    for folder in ("results/cohort", "results/train", "logs", "benchmarks", ".snakemake/metadata", ".snakemake/log"):
        assert (tiny_run / folder).is_dir(), folder
    assert seen > 100
    assert not offenders, f"{len(offenders)} of {seen} open to others: {offenders[:20]}"


@pytest.mark.parametrize("shared_group", [False, True])
def test_files_folders_and_atomic_writes_get_the_mode_whatever_the_umask(tmp_path, umask_022, shared_group):
    apply_output_mode(shared_group)
    files, folders = (0o640, 0o750) if shared_group else (0o600, 0o700)
    write_json({"a": 1}, tmp_path / "out/m.json", prov={"seed": 1})  # atomic_path: mkstemp, then chmod
    with atomic_dir(tmp_path / "model") as tmp:  # mkdtemp, then chmod
        (tmp / "w.bin").write_bytes(b"w")
    (tmp_path / "plain.log").write_text("x")  # any other writer: the umask
    assert {p: mode(tmp_path / p) for p in ("out", "out/m.json", "out/m.json.provenance.json", "model",
                                            "model/w.bin", "plain.log")} == {
        "out": folders, "out/m.json": files, "out/m.json.provenance.json": files, "model": folders,
        "model/w.bin": files, "plain.log": files}


def test_the_mode_reaches_the_processes_a_step_starts(umask_022):
    """accelerate's processes inherit the umask and MINT_SHARED_GROUP; the entry points apply it again."""
    assert apply_output_mode(True) == 0o027
    code = "import os, mint.core.io as io; before = os.umask(0); print(oct(before), oct(io.apply_output_mode()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0o27", "0o27"]
    apply_output_mode(False)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0o77", "0o77"]


def test_unset_means_private_and_existing_paths_get_the_mode(tmp_path, umask_022):
    """Snakemake opens its own log before it reads the Snakefile: those paths are given the mode."""
    (tmp_path / "log").mkdir()
    (tmp_path / "log/run.log").write_text("x")
    assert mode(tmp_path / "log/run.log") == 0o644
    assert apply_output_mode(existing=[tmp_path / "log", tmp_path / "log/run.log", tmp_path / "gone"]) == 0o077
    assert (mode(tmp_path / "log"), mode(tmp_path / "log/run.log")) == (0o700, 0o600)
    assert os.environ[ENV_SHARED_GROUP] == "0"


def test_the_config_key_is_a_boolean_and_private_by_default():
    assert validate_config({})["privacy"] == {"shared_group": False}
    assert validate_config({"privacy": {"shared_group": True}})["privacy"]["shared_group"] is True
    with pytest.raises(MintError, match="privacy.shared_group"):
        validate_config({"privacy": {"shared_group": "yes"}})


@pytest.mark.parametrize("shared_group", [False, True])
def test_the_workflow_applies_the_config_key(tmp_path, shared_group):
    """Snakemake's own log, made before the Snakefile is read, ends up with the mode the config gives."""
    (tmp_path / "config").symlink_to(REPO / "config")  # the recipes, relative to the working directory
    (tmp_path / "privacy.yaml").write_text(f"privacy:\n  shared_group: {str(shared_group).lower()}\n")
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(REPO / "config/rare_disease/default.yaml"), str(tmp_path / "privacy.yaml"),
           "--list-rules"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120, umask=0o022)
    assert res.returncode == 0, res.stderr[-3000:]
    logs = list((tmp_path / ".snakemake/log").iterdir())
    assert logs
    files, folders = (0o640, 0o750) if shared_group else (0o600, 0o700)
    assert {mode(p) for p in [tmp_path / ".snakemake", tmp_path / ".snakemake/log"]} == {folders}
    assert {mode(p) for p in logs} == {files}
