"""Pins live in requirements.txt; envs/mint.yaml must say the same; the core stack is the tested one."""

from importlib import metadata
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            out[name.lower().replace("_", "-")] = version
    return out


def test_env_file_mirrors_requirements():
    req = pins((REPO / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((REPO / "envs/mint.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins(pip) == req


def test_core_stack_is_pinned_and_installed():
    req = pins((REPO / "requirements.txt").read_text().splitlines())
    expected = {"torch": "2.13.0", "transformers": "5.24.0", "trl": "1.16.0", "peft": "0.21.2",
                "accelerate": "1.15.0", "snakemake": "9.27.1"}
    for name, version in expected.items():
        assert req[name] == version
        assert metadata.version(name).split("+")[0] == version
