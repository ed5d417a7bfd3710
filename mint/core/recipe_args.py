"""A recipe's `args` checked by type and range against the TRL config class its method trains with.

Start-up (`mint.core.config.check_recipe_fields`, from rules/common.smk) and training (`mint.core.train.load_recipe`)
call the same `check_args`, so the recipe that trains is the one start-up passed. TRL's config classes take any
value unchecked (`learning_rate="5e-5"`, `per_device_train_batch_size=0`, `bf16="maybe"`) and a later step fails
naming no key; here each option must have its TRL type, and the options in `RANGES` a sensible value:

- a number that YAML reads as text is converted: PyYAML reads `5e-5` as the string '5e-5' (its floats need a dot
  and a signed exponent: `5.0e-5`); a string that is exactly a decimal number (`[+-]digits[.digits][e[+-]digits]`)
  becomes a float where TRL wants a float, and a string of digits an integer where it wants an integer;
- everything else of the wrong type is refused: a float where an integer is meant (`16.0`), a boolean where a
  number is meant (YAML's `yes`), NaN or infinity for any float option, an option TRL's class does not have.

Importing TRL takes seconds, so the option types come from `mint/core/trl_fields.py`, a table generated from the
installed TRL's dataclasses; tests/test_recipes.py fails when they differ (then regenerate it):

    python -m mint.core.recipe_args --write
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mint.core.io import MintError

TABLE_PATH = Path(__file__).with_name("trl_fields.py")
SEED_MAX = 2**32 - 1  # numpy's seeds (transformers' set_seed seeds numpy too)

# Options whose values TRL takes unchecked and training trips over: (holds for a value, what is expected).
# Checked after the type, on values that are not null.
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "learning_rate": (lambda v: v > 0, "a number > 0"),
    "num_train_epochs": (lambda v: v > 0, "a number > 0"),
    "max_steps": (lambda v: v == -1 or v >= 1, "-1 (num_train_epochs decides) or an integer >= 1"),
    "per_device_train_batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "per_device_eval_batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1, "an integer >= 1"),
    "warmup_steps": (lambda v: v >= 0, "a number >= 0 (below 1: a share of all steps)"),
    "weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "max_grad_norm": (lambda v: v >= 0, "a number >= 0 (0: no clipping)"),
    "beta": (lambda v: v >= 0, "a number >= 0"),
    "max_length": (lambda v: v >= 1, "an integer >= 1 (tokens), or null"),
    "logging_steps": (lambda v: v > 0, "a number > 0 (below 1: a share of all steps)"),
    "save_steps": (lambda v: v > 0, "a number > 0 (below 1: a share of all steps)"),
    "eval_steps": (lambda v: v > 0, "a number > 0 (below 1: a share of all steps)"),
    "seed": (lambda v: 0 <= v <= SEED_MAX, f"an integer from 0 to {SEED_MAX}"),
    "data_seed": (lambda v: 0 <= v <= SEED_MAX, f"an integer from 0 to {SEED_MAX}"),
}

_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string", "list": "a list",
          "dict": "a mapping", "null": "null"}


def yaml_float(text: str) -> str:
    """`text`, a decimal number, as YAML 1.1 (PyYAML) reads a float: '5e-5' -> '5.0e-5', '1e3' -> '1.0e+3'."""
    mantissa, _, exponent = text.lower().partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if exponent and exponent[0] not in "+-":
        exponent = "+" + exponent
    return mantissa + (f"e{exponent}" if exponent else "")


def is_decimal(text: str) -> bool:
    """Whether `text` is exactly a decimal number (no NaN, infinity, underscores or hex)."""
    return bool(_DECIMAL.fullmatch(text))


# ------------------------------------------------------------------------------------- the table


def option_kind(annotation: Any) -> str:
    """The YAML kinds a config-class field of type `annotation` takes, '|'-joined: int, float, bool, str, list,
    dict, null; 'any' for a type a YAML value cannot be (accelerate's ParallelismConfig) or one not known here.
    An Enum is a str (transformers takes an enum's value); `Literal[False]` a bool."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = {option_kind(a) for a in typing.get_args(annotation)}
    elif origin is typing.Literal:
        parts = {option_kind(type(v)) for v in typing.get_args(annotation)}
    elif annotation in (None, type(None)):
        parts = {"null"}
    elif annotation in (bool, int, float, str):
        parts = {annotation.__name__}
    elif annotation in (list, tuple) or origin in (list, tuple):
        parts = {"list"}
    elif annotation is dict or origin is dict:
        parts = {"dict"}
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        parts = {"str"}
    else:
        parts = {"any"}
    kinds = set().union(*(p.split("|") for p in parts))
    return "any" if "any" in kinds else "|".join(sorted(kinds))


# Kinds a class's __post_init__ also takes beyond its annotation: DPOConfig makes a list of one loss_type string.
ALSO_TAKES = {"loss_type": "str"}


def option_kinds(config_cls: type) -> dict[str, str]:
    """{option: kind} of a TRL config dataclass (fields the constructor takes), with `ALSO_TAKES`."""
    fields = dataclasses.fields(config_cls)
    # Annotations as text (a module with `from __future__ import annotations`) resolve to types first.
    hints = typing.get_type_hints(config_cls) if any(isinstance(f.type, str) for f in fields) else {}
    out = {}
    for f in fields:
        if f.init:
            kinds = set(option_kind(hints.get(f.name, f.type)).split("|"))
            if f.name in ALSO_TAKES and "any" not in kinds:
                kinds.add(ALSO_TAKES[f.name])
            out[f.name] = "|".join(sorted(kinds))
    return out


def config_class_name(method: str, kind: str = "text") -> str:
    """The name of the TRL config class `method` trains with for a `kind` ('text' | 'vision') student."""
    from mint.core import trl_fields

    names = trl_fields.CONFIG_CLASS.get(kind, {})
    if method not in names:
        raise MintError(f"training method {method!r} has no TRL config for a {kind} student; expected one of "
                        f"{sorted(names)}")
    return names[method]


def config_options(config_name: str) -> dict[str, str]:
    """{option: kind} of the TRL config class `config_name`, from the generated table."""
    from mint.core import trl_fields

    return {**trl_fields.SHARED, **trl_fields.OWN[config_name]}


def _trainer_classes() -> tuple[Callable, Callable, Sequence[str], Sequence[str]]:
    """The registry of methods -> TRL classes (the one module that imports TRL)."""
    from mint.core.trainers import METHODS, VISION_METHODS, trainer_classes, vision_trainer_classes

    return trainer_classes, vision_trainer_classes, METHODS, VISION_METHODS


def build_table() -> tuple[str, dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """(TRL's version, {kind: {method: config class name}}, {config class name: {option: kind}}) from the installed
    TRL, through the registry."""
    from mint.core.trainers.surface import trl_version  # only mint.core.trainers imports TRL

    trainer_classes, vision_trainer_classes, methods, vision_methods = _trainer_classes()
    classes = {"text": {m: trainer_classes(m)[0] for m in methods},
               "vision": {m: vision_trainer_classes(m)[0] for m in vision_methods}}
    names = {kind: {m: cls.__name__ for m, cls in by.items()} for kind, by in classes.items()}
    options = {cls.__name__: option_kinds(cls) for by in classes.values() for cls in by.values()}
    return trl_version(), names, options


def table_source(version: str, names: Mapping[str, Mapping[str, str]],
                 options: Mapping[str, Mapping[str, str]]) -> str:
    """The text of mint/core/trl_fields.py for `build_table`'s result."""
    q = json.dumps  # a Python string literal in double quotes
    shared = {k: v for k, v in next(iter(options.values())).items()
              if all(o.get(k) == v for o in options.values())}
    lines = [f'"""Generated from trl=={version} by `python -m mint.core.recipe_args --write`: do not edit.',
             "",
             "The options (and their YAML kinds) of the TRL config class each training method uses, so that start-up",
             "checks a recipe's `args` without importing TRL (mint.core.recipe_args). tests/test_recipes.py fails when",
             'the installed TRL differs; then rerun the command."""',
             "",
             f"TRL_VERSION = {q(version)}",
             "",
             "# student kind -> training method -> TRL config class (mint.core.trainers)",
             "CONFIG_CLASS = {"]
    for kind, by in names.items():
        lines += [f"    {q(kind)}: {{", *(f"        {q(m)}: {q(n)}," for m, n in by.items()), "    },"]
    lines += ["}", "", "# Options every class has, with the same kinds.", "SHARED = {"]
    lines += [f"    {q(k)}: {q(v)}," for k, v in sorted(shared.items())]
    lines += ["}", "", "# Each class's other options.", "OWN = {"]
    for name in sorted(options):
        lines.append(f"    {q(name)}: {{")
        lines += [f"        {q(k)}: {q(v)}," for k, v in sorted(options[name].items()) if k not in shared]
        lines.append("    },")
    lines += ["}", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- the check


def _describe(kind: str) -> str:
    """'int|null' -> 'an integer or null'; 'bool|null|str' -> 'true or false, a string or null'."""
    words = [_WORDS[k] for k in kind.split("|")]
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]


def check_arg(key: str, value: Any, kind: str, path: str | Path) -> Any:
    """`value` of option `key` (of `kind`, as `option_kind` gives it), converted where it is a number as text;
    MintError naming the recipe file and key otherwise."""
    kinds = set(kind.split("|"))
    where = f"{path}: recipe key 'args.{key}'"
    if "any" in kinds:
        return value
    if value is None:
        ok = "null" in kinds
    elif isinstance(value, bool):
        ok = "bool" in kinds
    elif isinstance(value, int):
        ok = bool(kinds & {"int", "float"})
    elif isinstance(value, float):
        if "float" in kinds and not math.isfinite(value):
            raise MintError(f"{where} must be a finite number, got {value!r}")
        ok = "float" in kinds
    elif isinstance(value, str):
        ok = "str" in kinds
        if not ok and "int" in kinds and _INTEGER.fullmatch(value.strip()):
            value, ok = int(value), True  # a quoted integer
        elif not ok and "float" in kinds and is_decimal(value.strip()):
            value, ok = float(value), True  # YAML's text for 5e-5 (written 5.0e-5, a float)
    elif isinstance(value, (list, tuple)):
        ok = "list" in kinds
    elif isinstance(value, Mapping):
        ok = "dict" in kinds
    else:
        ok = False
    if not ok:
        extra = " (a whole number, without a decimal point)" if isinstance(value, float) and "int" in kinds else ""
        raise MintError(f"{where} must be {_describe(kind)}{extra}, got {value!r}")
    rule = RANGES.get(key)
    if rule is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        holds, expected = rule
        if not holds(value):
            raise MintError(f"{where} must be {expected}, got {value!r}")
    return value


def check_args(args: Any, method: str, kind: str, path: str | Path) -> dict[str, Any]:
    """A recipe's `args` (null: none) checked against the options of the TRL config class that `method` trains
    a `kind` student with: a copy with numbers given as text converted (`check_arg`)."""
    if args is None:
        return {}
    if not isinstance(args, Mapping):
        raise MintError(f"{path}: recipe key 'args' must be a mapping of TRL options (learning_rate: 1.0e-3, ...), "
                        f"got {type(args).__name__}")
    config_name = config_class_name(method, kind)
    options = config_options(config_name)
    bad = sorted(str(k) for k in args if k not in options)
    if bad:
        close = {k: difflib.get_close_matches(k, options, n=1) for k in bad}
        hint = "; ".join(f"{k!r}: did you mean {c[0]!r}?" for k, c in close.items() if c)
        raise MintError(f"{path}: recipe 'args' key(s) {bad} are not options of TRL's {config_name}"
                        + (f" ({hint})" if hint else ""))
    return {key: check_arg(key, value, options[key], path) for key, value in args.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write (or check) mint/core/trl_fields.py from the installed TRL.")
    parser.add_argument("--write", action="store_true", help=f"write {TABLE_PATH.name} (default: only check it)")
    a = parser.parse_args(argv)
    text = table_source(*build_table())
    if a.write:
        TABLE_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {TABLE_PATH}")
    elif TABLE_PATH.read_text(encoding="utf-8") != text:
        raise SystemExit(f"{TABLE_PATH} differs from the installed TRL's config classes; rerun with --write")


if __name__ == "__main__":
    main()
