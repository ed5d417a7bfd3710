"""Load and validate the workflow config, filling in defaults.

The schema is the core's (`mint/core/schema.yaml`: the keys every application shares) with the
selected application's own (`config_schema`) merged in, both package data. The Snakefile validates
as soon as the config loads; tests and the CLI use the same code. An invalid config raises
`MintError` naming the file, the key, the value and what was expected. Types are strict: an integer key
refuses 2.0 and booleans (YAML's yes/no), a number key refuses NaN, infinity and numbers YAML read as text
(`1e-3`: PyYAML's floats need a dot and a signed exponent, `1.0e-3`).

    python -m mint.core.config config/rare_disease/default.yaml
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mint.core.app import Application, load_application, package_file
from mint.core.io import MAX_YAML_BYTES, MintError, require_regular_file
from mint.core.recipe_args import check_args, is_decimal, yaml_float

SCHEMA_PATH = package_file("mint.core", "schema.yaml")
# The workflow's folder (Snakefile, config/): what the schema's default paths are relative to.
WORKFLOW_ROOT = Path(__file__).resolve().parents[2]
RECIPE_KEYS = {"method", "init", "lora", "args", "dtype", "nll", "freeze"}  # a training recipe's keys (mint.core.train)
DTYPES = ("float32", "bfloat16", "float16", "auto")  # a recipe's `dtype` (mint.core.models.load_student)


def _is_integer(checker, instance) -> bool:
    """JSON schema's integer, strictly: jsonschema also takes 2.0 (then `seed: 7.0` names a folder seed7.0)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(checker, instance) -> bool:
    """A finite number: NaN passes every range check (each comparison is false), infinity most."""
    return isinstance(instance, (int, float)) and not isinstance(instance, bool) and math.isfinite(instance)


def _with_defaults(validator_class):
    """A validator that also writes each property's `default` into the instance (as Snakemake does)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    types = validator_class.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})
    return jsonschema.validators.extend(validator_class, {"properties": set_defaults}, type_checker=types)


def _type_hint(err: jsonschema.ValidationError) -> str:
    """Why a value YAML read is not of the schema's type, where that is not plain: '' otherwise."""
    if err.validator != "type":
        return ""
    wanted = {err.validator_value} if isinstance(err.validator_value, str) else set(err.validator_value)
    value = err.instance
    if not wanted & {"integer", "number"}:
        return ""
    if isinstance(value, bool):
        expected = "a number" if "number" in wanted else "an integer"
        return f" (YAML reads yes/no, on/off and true/false as booleans; expected {expected})"
    if isinstance(value, float) and not math.isfinite(value):
        return " (expected a finite number)"
    if isinstance(value, float) and "number" not in wanted:
        return " (expected a whole number" + (f": write {int(value)})" if value.is_integer() else ")")
    if isinstance(value, str) and is_decimal(value.strip()):
        if "number" in wanted:
            return f" (YAML reads {value} as text: write {yaml_float(value.strip())})"
        if value.strip().lstrip("+-").isdigit():
            return " (a whole number given as text: remove the quotes)"
    return ""


def _origin(path: Sequence[Any], origins: Sequence[tuple[Mapping[str, Any], str]]) -> str | None:
    """The name of the last of `origins` ((mapping, name), lowest precedence first) that sets the config key
    at `path` (or the list it lies in); None where none does (a default)."""
    found, missing = None, object()
    for mapping, name in origins:
        node: Any = mapping
        for part in path:
            if isinstance(node, list):
                break
            node = node[part] if isinstance(node, Mapping) and part in node else missing
        if node is not missing and path:
            found = name
    return found


def load_yaml(path: str | Path) -> Any:
    """A YAML file's content ({} if empty); MintError naming the file, and the line of a syntax error."""
    path = Path(path)
    if not path.exists():
        raise MintError(f"file not found: {path}")
    require_regular_file(path, "YAML file", MAX_YAML_BYTES)  # before opening: a FIFO would block
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise MintError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"{path} line {mark.line + 1} column {mark.column + 1}" if mark is not None else str(path)
        problem = " ".join(str(p) for p in (getattr(err, "context", None), getattr(err, "problem", None)) if p)
        raise MintError(f"{where}: not valid YAML: {problem or err}") from err


def builtin_student_threads(app: Application, settings: str | Path | None) -> int:
    """The threads the builtin student's pre-training uses: `train.threads` of the user's settings file
    (config `student.builtin`), else of the application's packaged ones, else 1. Its rule reserves as many,
    so that Snakemake's count of busy cores is the step's own."""
    threads = 1
    for path in (app.builtin_student, settings):
        if path and Path(path).is_file():
            threads = (load_yaml(path).get("train") or {}).get("threads", threads)
    return int(threads)


def config_schema(app: Application) -> dict[str, Any]:
    """The core schema with the application's keys merged in (a key both define: properties merged)."""
    return deep_update(load_yaml(SCHEMA_PATH), app.config_schema)


def validate_config(config: Mapping[str, Any], source: str = "config",
                    origins: Sequence[tuple[Mapping[str, Any], str]] = ()) -> dict[str, Any]:
    """A validated copy of `config` with defaults filled in; MintError names the first bad key, and the one of
    `origins` ((mapping, name) of each source merged into `config`, lowest precedence first) that set it."""
    app_name = config.get("application", "rare_disease")
    if not isinstance(app_name, str):
        raise MintError(f"{source}: config key 'application' must be a string, got {app_name!r}")
    app = load_application(app_name)
    schema = config_schema(app)
    instance = copy.deepcopy(dict(config))
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    # Fill defaults first (validation of nested objects happens after their defaults exist).
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        if err.validator == "required":  # a key without a default (training.recipes where the application has none)
            missing = [name for name in err.validator_value if name not in err.instance]
            key = ".".join(str(p) for p in [*err.absolute_path, missing[0]])
            raise MintError(f"{source}: config key '{key}' is required: application {app_name!r} gives it no default")
        origin = _origin(list(err.absolute_path), origins)
        where = f" (set in {origin})" if origin else ""
        raise MintError(f"{source}: invalid value at config key '{key}'{where}: {err.message}{_type_hint(err)}")
    _check_consistency(instance, source)
    if app.check_config is not None:
        app.check_config(instance, source)
    return instance


def training_seeds(cfg: Mapping[str, Any]) -> list[int]:
    """The seeds each trained method is trained, answered and scored with: `training.seeds`, or `seed`."""
    return list(cfg["training"]["seeds"] or [cfg["seed"]])


def _check_consistency(cfg: Mapping[str, Any], source: str) -> None:
    """Rules across the core's keys that JSON schema cannot say."""
    methods = cfg["training"]["methods"]
    if "dpo" in methods and "sft" not in methods:
        raise MintError(f"{source}: config key 'training.methods': 'dpo' starts from the SFT model, so add 'sft'")
    panel_seeds, trained = cfg["evaluation"]["panel_seeds"], training_seeds(cfg)
    if panel_seeds is not None and not set(panel_seeds) <= set(trained):
        raise MintError(f"{source}: config key 'evaluation.panel_seeds': {sorted(set(panel_seeds) - set(trained))} "
                        f"not among the training seeds {trained} (training.seeds, or seed)")


def check_inputs(cfg: Mapping[str, Any], source: str = "config") -> None:
    """Start-up checks of the files a validated config names, before any step runs (rules/common.smk).

    Paths are as `resolve_paths` gives them (relative to the working directory, or absolute): the recipe of each trained
    method (a mapping whose `method` is its file's name; `init: sft` needs SFT trained too), the
    student base (`mint.core.models.check_student_base`), external rankings, and the application's own
    (`Application.check_inputs`: its input files, its panel's size against k + q).
    """
    from mint.core.models import check_student_base

    methods = cfg["training"]["methods"]
    kind = load_application(cfg["application"]).student_kind
    for method in methods:
        recipe = check_recipe(Path(cfg["training"]["recipes"]) / f"{method}.yaml", method,
                              f"{source}: config key 'training.recipes'", kind)
        if recipe.get("init", "base") == "sft" and "sft" not in methods:
            raise MintError(f"{source}: config key 'training.methods': the {method} recipe starts from the SFT "
                            "model (init: sft), so add 'sft'")
    check_student_base(cfg["student"]["base"], source, cfg["student"]["revision"])
    rankings = cfg["teacher"]["rankings"]
    if rankings is not None and not Path(rankings).exists():
        raise MintError(f"{source}: config key 'teacher.rankings': file not found: {rankings}")
    if rankings is not None:
        require_regular_file(rankings, "rankings file (config key 'teacher.rankings')")
    app = load_application(cfg["application"])
    if app.check_inputs is not None:
        app.check_inputs(cfg, source)


def check_recipe(path: Path, method: str, where: str, kind: str = "text") -> dict[str, Any]:
    """The recipe `path` for `method`, checked (`check_recipe_fields`) for a `kind` student."""
    if not path.is_file():
        raise MintError(f"{where}: no recipe {path} for method {method!r} (config key 'training.methods')")
    return check_recipe_fields(load_yaml(path), path, method, kind)


def check_recipe_fields(recipe: Any, path: str | Path, method: str | None, kind: str = "text") -> dict[str, Any]:
    """A recipe checked for a `kind` ('text' | 'vision') student, by type and range, and its `args` converted
    where a number is given as text: start-up (`check_inputs`) and training (`mint.core.train.load_recipe`) both
    call this, so the recipe that trains is the one start-up passed.

    A mapping of known keys whose `method` is `method` (the file's; None: not known) and a training method
    (one with an image path for a vision student), `init` base or sft, `dtype` one of `DTYPES`, `nll` completion
    or full, `freeze` a list of regular expressions, `lora` a mapping or null, and `args` options of the
    method's TRL config class with values of their types (`mint.core.recipe_args.check_args`). Returns a copy
    (`args` converted; absent keys stay absent)."""
    from mint.core.trainers import METHODS, VISION_METHODS

    if not isinstance(recipe, dict):
        raise MintError(f"{path}: a recipe must be a mapping of keys (method, init, args, ...), got "
                        f"{type(recipe).__name__}")
    unknown = set(recipe) - RECIPE_KEYS
    if unknown:
        raise MintError(f"{path}: unknown recipe key(s) {sorted(unknown)}; allowed: {sorted(RECIPE_KEYS)}")
    if method is not None and recipe.get("method") != method:
        raise MintError(f"{path}: recipe key 'method' is {recipe.get('method')!r}, but the file is the recipe of "
                        f"{method!r}; expected 'method: {method}'")
    method = recipe.get("method")
    if method not in METHODS:
        raise MintError(f"{path}: recipe key 'method' must be one of {METHODS}, got {method!r}")
    if kind == "vision" and method not in VISION_METHODS:
        raise MintError(f"{path}: method {method!r} has no image path here; a vision student trains with "
                        f"{VISION_METHODS} (config key 'training.methods')")
    if recipe.get("init", "base") not in ("base", "sft"):
        raise MintError(f"{path}: recipe key 'init' must be 'base' or 'sft', got {recipe['init']!r}")
    if recipe.get("dtype", "float32") not in DTYPES:
        raise MintError(f"{path}: recipe key 'dtype' must be one of {DTYPES}, got {recipe['dtype']!r}")
    if recipe.get("nll", "completion") not in ("completion", "full"):
        raise MintError(f"{path}: recipe key 'nll' must be 'completion' or 'full' (ORPO's NLL over the prompt too), "
                        f"got {recipe['nll']!r}")
    freeze = recipe.get("freeze", [])
    if not isinstance(freeze, list) or not all(isinstance(x, str) and x for x in freeze):
        raise MintError(f"{path}: recipe key 'freeze' must be a list of parameter-name patterns (regular "
                        f"expressions, e.g. 'model\\.vision_tower\\.'), got {freeze!r}")
    for pattern in freeze:
        try:
            re.compile(pattern)
        except re.error as err:
            raise MintError(f"{path}: recipe key 'freeze': {pattern!r} is not a regular expression: {err}") from err
    lora = recipe.get("lora")
    if lora is not None and not isinstance(lora, dict):
        raise MintError(f"{path}: recipe key 'lora' must be a mapping of peft LoraConfig options (r, lora_alpha, "
                        f"...) or null (full fine-tuning), got {type(lora).__name__}")
    out = dict(recipe)
    if "args" in recipe:
        out["args"] = check_args(recipe["args"], method, kind, path)
    return out


def check_panel_size(n_labels: int, cfg: Mapping[str, Any], source: str, what: str) -> None:
    """k + q labels must fit in the panel: chosen and rejected lists are disjoint."""
    k, q = cfg["preferences"]["k"], cfg["preferences"]["q"]
    if k + q > n_labels:
        raise MintError(f"{source}: config keys 'preferences.k' + 'preferences.q' = {k} + {q} = {k + q}, more than "
                        f"the {n_labels} candidate labels of {what}; expected k + q <= {n_labels}")


def path_keys(schema: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted config key -> 'path' (a file or folder) or 'model' (a folder, or a hub id / package name),
    for each key the schema marks with that `format`."""
    out: dict[str, str] = {}
    for name, sub in (schema.get("properties") or {}).items():
        key = f"{prefix}{name}"
        if sub.get("format") in ("path", "model"):
            out[key] = sub["format"]
        out.update(path_keys(sub, f"{key}."))
    return out


def _get(mapping: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(mapping, Mapping) or part not in mapping:
            return None
        mapping = mapping[part]
    return mapping


def _set(mapping: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        mapping = mapping[part]
    mapping[last] = value


def resolve_paths(cfg: Mapping[str, Any], sources: Sequence[tuple[Mapping[str, Any], str | Path]],
                  default_base: str | Path, workdir: str | Path) -> dict[str, Any]:
    """A copy of the validated `cfg` whose path keys (`path_keys`) are resolved against the folder of the
    config file that set them: `sources` are (the file's mapping, its folder) from lowest to highest
    precedence (command-line values: the working directory); a default resolves against `default_base`
    (the workflow's folder). A 'model' key resolves so only when that path exists (else it is a hub id or
    a package name). A result inside `workdir` is given relative to it (steps run there), else absolute."""
    out = copy.deepcopy(dict(cfg))
    workdir = Path(workdir).absolute()
    for key, kind in path_keys(config_schema(load_application(out["application"]))).items():
        value = _get(out, key)
        if not isinstance(value, str) or value == "builtin":
            continue
        base = Path(default_base)
        for mapping, folder in sources:
            if _get(mapping, key) is not None:
                base = Path(folder)
        path = Path(value).expanduser()
        path = path if path.is_absolute() else Path(base).absolute() / path
        if kind == "model" and not path.exists():
            continue
        path = Path(os.path.normpath(path))
        _set(out, key, str(path.relative_to(workdir)) if path.is_relative_to(workdir) else str(path))
    return out


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise MintError(f"{path}: the config must be a mapping of keys, got {type(raw).__name__}")
    if overrides:
        raw = deep_update(raw, overrides)
    sources = [(raw, Path(path).absolute().parent)]
    return resolve_paths(validate_config(raw, source=str(path)), sources, WORKFLOW_ROOT, Path.cwd())


def deep_update(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Validate a MINT config and print it with defaults.")
    parser.add_argument("config")
    args = parser.parse_args(argv)
    print(json.dumps(load_config(args.config), indent=2))


if __name__ == "__main__":
    main()
