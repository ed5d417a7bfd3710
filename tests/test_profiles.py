"""The SLURM profiles stay in step with the rules: every rule that declares a GPU gets one on a real
cluster (profiles/slurm) and none on the CPU-only test cluster (profiles/slurm-local); cluster
names live in profiles, never in rules. Fast: reads files, and asks Snakemake which rules it loads
(tests/test_slurm.py runs them).

    .venv/bin/python -m pytest tests/test_profiles.py
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
RULE = re.compile(r"^\s*rule (\w+):", re.M)


def rule_blocks() -> dict[str, str]:
    """Rule name -> its text, from every .smk file under rules/ (common, core/ and apps/)."""
    blocks = {}
    for smk in sorted((REPO / "rules").rglob("*.smk")):
        text = smk.read_text()
        starts = [(m.group(1), m.start()) for m in RULE.finditer(text)]
        for (name, start), (_, end) in zip(starts, [*starts[1:], (None, len(text))]):
            blocks[name] = text[start:end]
    return blocks


def gpu_rules() -> set[str]:
    return {name for name, text in rule_blocks().items() if re.search(r"^\s*gpu\s*=", text, re.M)}


def profile(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())


def test_rule_blocks_cover_every_rule_snakemake_loads(tmp_path):
    """Else the checks below pass on rules they never read (as when rules/ gained subfolders)."""
    (tmp_path / "config").symlink_to(REPO / "config")  # the recipes, relative to the working directory
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--configfile", str(REPO / "config/rare_disease/default.yaml"), "--directory", str(tmp_path), "--list-rules"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    loaded = set(res.stdout.split()) - {"all"}  # `all` is the Snakefile's own target
    assert {"train_student", "predict_student", "build_cohort"} <= loaded
    assert loaded - set(rule_blocks()) == set()


def test_some_rules_declare_a_gpu():
    assert {"train_student", "predict_student"} <= gpu_rules()


def test_real_cluster_profile_gives_every_gpu_rule_a_gpu_partition():
    conf = profile("slurm")
    assert conf["executor"] == "slurm"
    assert {"slurm_partition", "slurm_account"} <= set(conf["default-resources"])
    cpu_partition = conf["default-resources"]["slurm_partition"]
    for rule in gpu_rules():
        res = conf["set-resources"].get(rule)
        assert res, f"profiles/slurm: rule {rule} declares gpu but has no set-resources entry"
        assert res.get("gpu", 0) >= 1, rule
        assert res.get("slurm_partition") not in (None, cpu_partition), f"{rule}: no GPU partition"


def test_local_test_profile_asks_for_no_gpu():
    conf = profile("slurm-local")
    assert conf["executor"] == "slurm" and conf["slurm-status-command"] == "squeue"
    for rule in gpu_rules():
        assert conf["set-resources"].get(rule, {}).get("gpu") == 0, (
            f"profiles/slurm-local: rule {rule} declares gpu; the test cluster has none (set gpu: 0)")


@pytest.mark.parametrize("key", ["slurm_partition", "slurm_account", "slurm_extra", "gpu_model"])
def test_rules_name_no_cluster(key):
    assert [name for name, text in rule_blocks().items() if key in text] == []
