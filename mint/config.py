"""Load and validate the workflow config against `config/schema.yaml`, filling in defaults.

The Snakefile validates as soon as the config loads; tests and the CLI use the same code.
An invalid config raises `MintError` naming the key, the value and what was expected.

    python -m mint.config config/config.yaml
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mint.io import MintError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"


def _with_defaults(validator_class):
    """A validator that also writes each property's `default` into the instance (as Snakemake does)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise MintError(f"file not found: {path}")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise MintError(f"{path}: not valid YAML: {err}") from err


def validate_config(config: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """A validated copy of `config` with defaults filled in; MintError names the first bad key."""
    schema = load_yaml(SCHEMA_PATH)
    instance = copy.deepcopy(dict(config))
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    # Fill defaults first (validation of nested objects happens after their defaults exist).
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise MintError(f"{source}: invalid value at config key '{key}': {err.message}")
    _check_consistency(instance, source)
    return instance


def _check_consistency(cfg: Mapping[str, Any], source: str) -> None:
    """Rules across keys that JSON schema cannot say."""
    cohort = cfg["cohort"]
    if cohort["source"] == "manifest" and not cohort["manifest"]["path"]:
        raise MintError(f"{source}: config key 'cohort.manifest.path' is required when cohort.source is 'manifest'")
    if cohort["source"] == "phenopacket" and not cohort["phenopacket"]["path"]:
        raise MintError(f"{source}: config key 'cohort.phenopacket.path' is required when cohort.source is "
                        "'phenopacket'")
    for key in ("true_terms", "noise_terms"):
        lo, hi = cohort["simulated"][key]
        if lo > hi:
            raise MintError(f"{source}: config key 'cohort.simulated.{key}': range [{lo}, {hi}] has min > max")
    split = cohort["split"]
    if split["validation"] + split["test"] >= 0.9:
        raise MintError(f"{source}: config keys 'cohort.split.validation' + 'cohort.split.test' leave < 10% to train")
    methods = cfg["training"]["methods"]
    if "dpo" in methods and "sft" not in methods:
        raise MintError(f"{source}: config key 'training.methods': 'dpo' starts from the SFT model, so add 'sft'")
    if "sft" in cfg["baselines"]["rag"] and "sft" not in methods:
        raise MintError(f"{source}: config key 'baselines.rag': 'sft' prompts the SFT model, so add 'sft' to "
                        "'training.methods'")
    if cfg["baselines"]["phenomizer"] and cohort["source"] == "manifest":
        raise MintError(f"{source}: config key 'baselines.phenomizer' needs HPO-coded cases; a manifest has notes only")


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise MintError(f"{path}: the config must be a mapping of keys, got {type(raw).__name__}")
    if overrides:
        raw = deep_update(raw, overrides)
    return validate_config(raw, source=str(path))


def deep_update(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def section(config: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """The sub-config a step depends on (with the seed): what its provenance hash covers."""
    return {"seed": config["seed"], **{k: config[k] for k in keys}}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Validate a MINT config and print it with defaults.")
    parser.add_argument("config")
    args = parser.parse_args(argv)
    print(json.dumps(load_config(args.config), indent=2))


if __name__ == "__main__":
    main()
