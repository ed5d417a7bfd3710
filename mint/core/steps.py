"""A step's settings: Snakemake's cache key by name, and the lineage of settings its outputs carry.

Snakemake's params trigger compares a job's params as a set of values without their names, and
never tracks params computed from `input`. So every rule gets its params from `StepSettings.params`:
each named value is its own param (what the step's script reads), and one more param, `settings`,
holds all of them as canonical JSON keyed by name. Two settings swapped, or one moved to the value
another already holds, then change that JSON, and the job reruns.

A value that comes from the config is a `Setting` (its config key, the value the step gets, and the
identity its cache key and provenance hold: a model's resolved revision, a file's digest). The keys a
step reads, with their identities, are its *lineage*: every output's provenance sidecar records the
lineage of the step that wrote it merged with that of its inputs (`enter_step`, then
`mint.core.io.provenance`). Before a step runs, `enter_step` checks its inputs: each sidecar still
describes its file (a file copied over a workflow output is caught), inputs agree with each other,
and each setting in their lineage has the value the current config gives it (`expected`, which the
workflow publishes to its jobs in MINT_EXPECTED_SETTINGS). A stale or hand-made mix stops the step,
naming the file and the setting, instead of reaching a report.

    python -c "from mint.core.steps import canonical; print(canonical({'q': 2, 'k': 1}))"
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mint.core.io import ENV_LINEAGE, MintError, file_digest, sidecar_path

SETTINGS_PARAM = "settings"
ENV_EXPECTED = "MINT_EXPECTED_SETTINGS"  # {key: identity} of the current config, set by the workflow
ENV_STEP = "MINT_STEP"  # a shell rule's step (rule, outputs, inputs) for its entry point
ENV_STEP_SETTINGS = "MINT_STEP_SETTINGS"  # and its settings param
_MISSING = object()


def canonical(obj: Any) -> str:
    """JSON with sorted keys and no spaces: equal settings give equal strings, in any key order."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def plain(obj: Any) -> Any:
    """`obj` as JSON would give it back (tuples as lists, paths as strings), so that values compare."""
    return json.loads(canonical(obj))


@dataclass(frozen=True)
class Setting:
    """A value a step gets from config key `key`; `identity` is what its cache key and provenance hold
    (default: the value itself), e.g. a hub model's id and commit where the step gets its snapshot folder."""

    key: str
    value: Any
    identity: Any = _MISSING
    parts: tuple[str, ...] = ()  # a group of config keys under `key` (its value maps each name to its value)

    @property
    def ident(self) -> Any:
        return plain(self.value if self.identity is _MISSING else self.identity)

    def lineage(self) -> dict[str, Any]:
        """{config key: identity} of what this setting stands for: its key, or each key of its group."""
        if self.parts:
            return {f"{self.key}.{name}": plain(self.value[name]) for name in self.parts}
        return {self.key: self.ident}


def config_key_of(key: str) -> str:
    """The config key a setting's key stands for: 'training.recipes' of 'training.recipes[sft]' (a
    qualifier in brackets names what of it the setting holds: a file's digest, a derived value)."""
    return key.split("[", 1)[0]


def _resolve(value: Any, wildcards: Any) -> Any:
    return value(wildcards) if callable(value) else value


@dataclass
class StepSettings:
    """The settings of a workflow's rules, made from one validated config (rules/common.smk holds one).

    `key('preferences.k')` is the config value as a `Setting`; `params(k=..., prompt=...)` gives a rule
    its params. `expected()` holds the identity of every setting a rule was given at parse time."""

    config: Mapping[str, Any]
    _expected: dict[str, Any] = field(default_factory=dict)

    def lookup(self, key: str) -> Any:
        value: Any = self.config
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise MintError(f"workflow: no config key '{key}' (a rule asks for it)")
            value = value[part]
        return value

    def key(self, key: str) -> Setting:
        return self.setting(key, self.lookup(key))

    def setting(self, key: str, value: Any, identity: Any = _MISSING, parts: tuple[str, ...] = ()) -> Setting:
        setting = Setting(key, value, identity, tuple(parts))
        for name, ident in setting.lineage().items():
            known = self._expected.setdefault(name, ident)
            if known != ident:
                raise MintError(f"workflow: setting '{name}' is given two values ({known!r} and {ident!r})")
        return setting

    def group(self, prefix: str, names: Iterable[str]) -> Setting:
        """Config keys `prefix.<name>` as one setting whose value maps each name to its value."""
        names = tuple(names)
        return self.setting(prefix, {name: self.lookup(f"{prefix}.{name}") for name in names}, parts=names)

    def expected(self) -> dict[str, Any]:
        return dict(self._expected)

    def params(self, **named: Any) -> dict[str, Callable[[Any], Any]]:
        """A rule's params: each of `named` (a value, a `Setting`, or a function of the wildcards giving
        either) as a function, so that no string is read as a wildcard pattern, plus `settings`, their
        canonical JSON by name (a `Setting` by its identity) with the lineage of the `Setting`s among
        them. `settings` is the one param Snakemake's trigger compares."""
        if SETTINGS_PARAM in named:
            raise MintError(f"workflow: a rule param may not be named {SETTINGS_PARAM!r}")

        def param(value: Any) -> Callable[..., Any]:
            # Taking `input` makes it a derived param, which Snakemake does not track: `settings` holds
            # every value by name, and a model by its identity, not by the folder it loads from here.
            def resolved(wildcards, input):
                out = _resolve(value, wildcards)
                return out.value if isinstance(out, Setting) else out

            return resolved

        def settings(wildcards):
            values, lineage = {}, {}
            for name, value in named.items():
                out = _resolve(value, wildcards)
                if isinstance(out, Setting):
                    values[name] = out.ident
                    lineage.update(out.lineage())
                else:
                    values[name] = plain(out)
            return canonical({"params": values, "lineage": lineage})

        return {**{name: param(value) for name, value in named.items()}, SETTINGS_PARAM: settings}


def read_lineage(path: str | os.PathLike, *, check_digest: bool = True) -> dict[str, dict[str, Any]] | None:
    """The lineage in the provenance sidecar of `path` ({key: {"value", "file"}}), None without a sidecar.

    A file whose sidecar records another digest was not written with that sidecar: MintError."""
    path = Path(path)
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    try:
        prov = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MintError(f"{sidecar}: not a readable provenance record ({err}); remove {path} and rerun") from err
    recorded = prov.get("sha256")
    if check_digest and recorded and path.is_file() and file_digest(path) != recorded:
        raise MintError(f"{path}: the file is not the one the workflow wrote (its provenance {sidecar} records "
                        f"sha256 {recorded}); it was replaced by hand. Delete it and rerun, so that the workflow "
                        "remakes it with the current config")
    return prov.get("settings") or {}


def merge_lineage(inputs: Iterable[str | os.PathLike], rule: str) -> dict[str, dict[str, Any]]:
    """The lineages of `inputs` merged; MintError when two inputs were made with different settings."""
    merged: dict[str, dict[str, Any]] = {}
    for path in inputs:
        for key, entry in (read_lineage(path) or {}).items():
            seen = merged.setdefault(key, {**entry, "via": str(path)})
            if seen["value"] != entry["value"]:
                raise MintError(
                    f"{rule}: its inputs were made with two values of setting '{key}': {seen['via']} "
                    f"(from {seen['file']}) with {seen['value']!r}, {path} (from {entry['file']}) with "
                    f"{entry['value']!r}. Rerun the step that made the stale one (snakemake --forcerun <rule>)")
    return merged


def check_lineage(lineage: Mapping[str, Mapping[str, Any]], expected: Mapping[str, Any], rule: str,
                  what: str = "the current config") -> None:
    """MintError naming the input, the file it came from and the setting, for each setting of `lineage`
    whose value `expected` holds otherwise."""
    for key, entry in sorted(lineage.items()):
        if key in expected and plain(expected[key]) != entry["value"]:
            via = entry.get("via")
            raise MintError(
                f"{rule}: input {via} was made (by {entry['file']}) with setting '{key}' = {entry['value']!r}, "
                f"but {what} gives {plain(expected[key])!r}. A stale or copied-in result would mix two "
                f"settings; delete {entry['file']} (or run `snakemake --forcerun` on the step that makes it) and "
                "rerun")


def enter_step(rule: str, outputs: Iterable[str], settings: str | None, inputs: Iterable[str | os.PathLike],
               expected: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Check a step's inputs before it runs, and publish its lineage for the provenance it writes.

    `settings`: the rule's `settings` param (None: a rule without settings); `expected`: the current
    config's identities (default: MINT_EXPECTED_SETTINGS, which the workflow sets; absent: not checked)."""
    own = json.loads(settings)["lineage"] if settings else {}
    if expected is None:
        expected = json.loads(os.environ[ENV_EXPECTED]) if os.environ.get(ENV_EXPECTED) else {}
    inputs = [p for p in inputs if str(p)]
    merged = merge_lineage(inputs, rule)
    check_lineage(merged, own, rule, what="this step's own settings")
    check_lineage(merged, expected, rule)
    first = next(iter(outputs), rule)
    lineage = {k: {"value": v["value"], "file": v["file"]} for k, v in merged.items()}
    lineage.update({key: {"value": plain(value), "file": str(first)} for key, value in own.items()})
    os.environ[ENV_LINEAGE] = canonical(lineage)
    return lineage


def current_lineage() -> dict[str, Any] | None:
    """The running step's lineage (MINT_LINEAGE), for provenance records; None outside a workflow step."""
    raw = os.environ.get(ENV_LINEAGE)
    return json.loads(raw) if raw else None


def step_from_env() -> dict[str, dict[str, Any]] | None:
    """`enter_step` for an entry point that a shell rule starts: MINT_STEP (rule, outputs, inputs) and
    MINT_STEP_SETTINGS (its settings param); None outside a workflow step."""
    raw = os.environ.get(ENV_STEP)
    if not raw:
        return None
    step = json.loads(raw)
    return enter_step(step["rule"], step["outputs"], os.environ.get(ENV_STEP_SETTINGS) or None, step["inputs"])


def shell_step(rule: str) -> Callable[..., str]:
    """A param of a shell rule: its step as JSON, for `MINT_STEP={params.step:q}
    MINT_STEP_SETTINGS={params.settings:q} <command>`. Derived from input, so Snakemake does not track it
    (the `settings` param is what it tracks)."""

    def step(wildcards, input, output):
        return canonical({"rule": rule, "outputs": [str(p) for p in output], "inputs": [str(p) for p in input]})

    return step
