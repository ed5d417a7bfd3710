"""A cache that cannot lie: every setting, model and file a step reads reruns exactly that step and what
follows it, and no stale or copied-in result reaches a later step.

The mutation test is generated from the config schemas: each key that a rule of the tiny run recorded in
its `settings` (Snakemake's metadata) is changed, where possible to a value another setting of the same
rule already holds (Snakemake compares params as an unnamed set: such a collision was invisible to it),
and each pair of same-typed settings of a rule is swapped. Each dry run must replan exactly the rules
that read the key and everything below them.
"""

from __future__ import annotations

import ast
import base64
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest
import yaml

from mint.core.app import load_application
from mint.core.config import config_schema, deep_update, load_yaml, validate_config
from mint.core.steps import config_key_of
from tests.dag import TINY, dry_run, nested, rule_graph, snakemake

pytestmark = pytest.mark.integration

# Every training target stays seed 7 (the tiny config's `seed`), so that changing `seed` changes a
# setting, not the names of the training folders.
SAME_TARGETS = {"training": {"seeds": [7]}}

# Schema keys that are no step's setting in the tiny run, and why. The test checks this list both ways:
# a key read by no rule must be here, and a key here must be read by none.
NOT_A_SETTING = {
    "training.methods": "selects which students exist (targets), not how one is made",
    "training.seeds": "selects the training seeds (targets: results/train/seed<N>)",
    "evaluation.panel_ranking": "selects whether the full-panel rows exist (targets)",
    "evaluation.panel_seeds": "selects whose full-panel rows exist (targets)",
    "evaluation.panel_labels": "reaches rank_student as its value, the `top` it gives (checked by READERS in "
                               "test_workflow.py)",
    "baselines.phenomizer": "selects whether the Phenomizer row exists (targets)",
    "baselines.knn": "selects whether the retrieval row exists (targets)",
    "baselines.rag": "selects which retrieval-augmented rows exist (targets)",
    "preferences.student_errors": "selects the pairs file each method trains on (an input: "
                                  "test_student_errors_make_each_seeds_pairs_from_its_sft_student)",
    "teacher.rankings": "off in the tiny run (null); on, import_rankings reads the file by its digest",
    "student.revision": "part of student.base's identity (test_a_new_revision_of_the_student_reruns_its_readers)",
    "privacy.shared_group": "who may read the outputs (their mode, tests/test_privacy.py), not their bytes",
}
# Keys that steps read, but whose value the generated test cannot change to another valid one; each is
# covered otherwise.
NOT_MUTATED = {
    "application": "names another workflow (its schema, rules and steps)",
    "cohort.source": "another source needs its files: the manifest tests below (build_cohort reads `cohort`)",
    "student.base": "a model: test_a_new_revision_of_the_student_reruns_its_readers",
    "student.builtin": "a file, by its digest: "
                       "test_editing_a_recipe_or_the_builtin_student_settings_reruns_its_readers",
    "training.recipes": "a folder, each recipe by its digest (training.recipes[<method>]): "
                        "test_editing_a_recipe_or_the_builtin_student_settings_reruns_its_readers",
    "training.accelerate": "a file, by its digest, as a recipe",
    "teacher.encoder": "a package name or a folder, by its version or digest (mint.core.models.resolve_encoder; "
                       "tests/test_model_identity.py)",
}
# Keys of `cohort` whose source is not the tiny run's (simulated): build_cohort reads the whole `cohort`
# mapping, so each reruns it, like any key it reads; they are tested like the others.


def leaf_keys(schema: dict, prefix: str = "") -> dict[str, dict]:
    """Dotted key -> its schema, for every key that holds a value (objects with properties are walked)."""
    out = {}
    for name, sub in (schema.get("properties") or {}).items():
        key = f"{prefix}{name}"
        if sub.get("type") == "object" and sub.get("properties"):
            out.update(leaf_keys(sub, f"{key}."))
        else:
            out[key] = sub
    return out


def recorded_settings(wd: Path) -> dict[str, dict]:
    """Rule -> the `settings` it recorded (Snakemake's metadata of its outputs), one job's of each rule."""
    out = {}
    for path in (wd / ".snakemake" / "metadata").iterdir():
        meta = json.loads(path.read_text())
        params = [ast.literal_eval(p) for p in meta.get("params") or []]
        settings = [json.loads(p) for p in params if isinstance(p, str) and p.startswith('{"lineage"')]
        if settings:
            out.setdefault(meta["rule"], settings[0])
    return out


def tracked_params(wd: Path) -> dict[str, list[list]]:
    """Output file -> the params Snakemake compares on a rerun (its metadata)."""
    out = {}
    for path in (wd / ".snakemake" / "metadata").iterdir():
        name = base64.b64decode(path.name.replace("@", "/") + "==").decode(errors="replace")
        out[name] = json.loads(path.read_text()).get("params") or []
    return out


def descendants(parents: dict[str, set[str]], rules: set[str]) -> set[str]:
    """`rules` and every rule below them (without the target rule `all`, which dry_run leaves out)."""
    out, todo = set(rules), list(rules)
    while todo:
        rule = todo.pop()
        for child, ps in parents.items():
            if rule in ps and child not in out:
                out.add(child)
                todo.append(child)
    return out - {"all"}


def readers(settings: dict[str, dict], key: str) -> set[str]:
    """Rules whose settings hold `key` (or a mapping above it, as build_cohort's `cohort`)."""
    return {rule for rule, s in settings.items()
            if any(key == config_key_of(k) or key.startswith(config_key_of(k) + ".") for k in s["lineage"])}


def value_of(cfg: dict, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def json_type(value) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object", type(None): "null"}[type(value)]


def fallbacks(sub: dict, current):
    """Values of the key's schema other than `current`, simplest first."""
    types = sub.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if "enum" in sub:
        yield from (v for v in sub["enum"] if v != current)
    elif isinstance(current, bool):
        yield not current
    elif isinstance(current, int):
        yield from (current + 1, current - 1)
    elif isinstance(current, float):
        yield from (round(current * 0.5, 4), round(min(current * 1.5, 1.0), 4))
    elif isinstance(current, list):
        if current:
            yield current[:-1] or [current[0], current[0] + 1] if isinstance(current[0], int) else current[:-1]
        else:
            yield [1] if (sub.get("items") or {}).get("type") == "integer" else ["changed"]
    elif isinstance(current, str):
        yield current + " (changed)"
    elif current is None:
        if "boolean" in types:
            yield False
        if "string" in types:
            yield "changed"
        if "integer" in types:
            yield 1
        if "array" in types:
            yield ["any_case"]
        if "number" in types:
            yield 0.5


def valid(raw: dict, change: dict) -> bool:
    try:
        validate_config(deep_update(raw, change))
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def dag(tiny_run):
    """(recorded settings by rule, rule graph, the tiny config as written, its schema's keys)."""
    assert "Nothing to be done" in snakemake(tiny_run, "--configfile", TINY, _change(tiny_run, SAME_TARGETS),
                                             "--dry-run").stdout
    raw = load_yaml(tiny_run / TINY)
    schema = config_schema(load_application("rare_disease"))
    return recorded_settings(tiny_run), rule_graph(tiny_run), raw, leaf_keys(schema)


def _change(wd: Path, change: dict) -> str:
    path = wd / "same-targets.yaml"
    path.write_text(yaml.safe_dump(change))
    return str(path)


def test_snakemake_compares_one_param_per_step_its_named_settings(tiny_run):
    """Each step's params reach the trigger as one canonical JSON keyed by name (mint.core.steps): no
    value travels unnamed, so no swap or collision can leave the compared set as it was."""
    tracked = tracked_params(tiny_run)
    assert len(tracked) > 30
    for output, params in tracked.items():
        assert len(params) == 1, (output, params)
        settings = json.loads(ast.literal_eval(params[0]))
        assert set(settings) == {"params", "lineage"}, output


def test_every_schema_key_is_a_steps_setting_or_says_why_not(dag):
    settings, _, raw, keys = dag
    validated = validate_config(raw)
    unread = {key for key in keys if not readers(settings, key)}
    assert unread == set(NOT_A_SETTING), (sorted(unread - set(NOT_A_SETTING)), sorted(set(NOT_A_SETTING) - unread))
    assert set(NOT_MUTATED) <= set(keys) - unread
    for key in keys:  # every key the schema has is in the validated config (defaults filled in)
        value_of(validated, key)


def mutations(dag) -> list[tuple[str, dict, set[str]]]:
    """(what, change, rules its readers) for each read key (a collision first where a valid one exists)
    and each swap of two same-typed settings of a rule."""
    settings, _, raw, keys = dag
    cfg = validate_config(raw)
    out = []
    for key, sub in sorted(keys.items()):
        rules = readers(settings, key)
        if not rules or key in NOT_MUTATED:
            continue
        current = value_of(cfg, key)
        # A value another setting of one of its rules holds, of the same type: invisible to a set of values.
        held = [value_of(cfg, other) for rule in sorted(rules) for other in sorted(keys)
                if other != key and rule in readers(settings, other)]
        collisions = [v for v in held if json_type(v) == json_type(current) and v != current]
        candidates = [*dict.fromkeys(json.dumps(v) for v in [*collisions, *fallbacks(sub, current)])]
        for candidate in candidates:
            change = deep_update(nested(key, json.loads(candidate)), SAME_TARGETS)
            if valid(raw, change):
                out.append((f"{key} -> {candidate}", change, rules))
                break
        else:
            out.append((f"{key}: no valid other value", {}, rules))
    seen = set()
    for rule in sorted(settings):
        own = sorted(k for k in keys if rule in readers(settings, k))
        for i, a in enumerate(own):
            for b in own[i + 1:]:
                va, vb = value_of(cfg, a), value_of(cfg, b)
                if json_type(va) != json_type(vb) or va == vb or (a, b) in seen or {a, b} & set(NOT_MUTATED):
                    continue
                change = deep_update(deep_update(nested(a, vb), nested(b, va)), SAME_TARGETS)
                if valid(raw, change):
                    seen.add((a, b))
                    out.append((f"swap {a} <-> {b}", change, readers(settings, a) | readers(settings, b)))
    return out


@pytest.fixture(scope="module")
def replanned(tiny_run, dag):
    """What -> (rules replanned, rules expected: the readers and everything below them); dry runs two at
    a time (~3 s each)."""
    _, parents, _, _ = dag
    cases = mutations(dag)

    def plan(case):
        what, change, rules = case
        if not change:
            return what, (None, rules)
        try:
            res_planned, _ = dry_run(tiny_run, change)
        except AssertionError as err:  # the dry run failed: reported with the others
            return what, ({f"dry run failed: {str(err)[-300:]}"}, rules)
        return what, (res_planned, descendants(parents, rules))

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(plan, cases))


def test_each_change_collision_and_swap_replans_exactly_its_readers_and_what_follows(replanned):
    keys = [w for w in replanned if not w.startswith("swap")]
    swaps = [w for w in replanned if w.startswith("swap")]
    print(f"{len(keys)} keys changed, {len(swaps)} swaps")  # the closing note quotes these counts
    assert len(keys) >= 40 and len(swaps) >= 10
    wrong = {what: (sorted(planned or []), sorted(expected)) for what, (planned, expected) in replanned.items()
             if planned != expected}
    assert not wrong, json.dumps(wrong, indent=1)[:6000]


# The three cases a user met, and a file edited under a finished run: each on a copy of the tiny run.


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    wd = tmp_path / "run"
    shutil.copytree(tiny_run, wd, symlinks=True)
    return wd


def write(wd: Path, name: str, change: dict) -> str:
    (wd / name).write_text(yaml.safe_dump(change))
    return str(wd / name)


def planned_with(wd: Path, *configs: str, target: tuple[str, ...] = ()) -> set[str]:
    from tests.dag import planned_blocks

    out = snakemake(wd, *target, "--configfile", TINY, *configs, "--dry-run", "--nolock").stdout
    return {rule for rule, _ in planned_blocks(out)} - {"all"}


def test_k_and_q_swapped_remake_the_pairs_and_everything_after_them(run_copy, dag):
    _, parents, _, _ = dag
    before = write(run_copy, "k1q2.yaml", {"preferences": {"k": 1, "q": 2}})
    snakemake(run_copy, "results/preferences/preferences.parquet", "--configfile", TINY, before)
    swapped = write(run_copy, "k2q1.yaml", {"preferences": {"k": 2, "q": 1}})
    planned = planned_with(run_copy, swapped, target=("results/preferences/preferences.parquet",))
    assert planned == {"build_preferences"}
    # The rest of the run was made with k = 2, q = 2: of the other readers of k and q, only the report's q moved.
    assert planned_with(run_copy, swapped) == descendants(parents, {"build_preferences", "make_report"})


def hub_cache(root: Path, model: Path, repo_id: str, commits: list[str]) -> Path:
    """A Hugging Face cache with `model` as each of `commits` of `repo_id` (refs/main: the first)."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    for commit in commits:
        shutil.copytree(model, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commits[0])
    return root


def test_a_new_revision_of_the_student_reruns_its_readers(run_copy, dag, monkeypatch):
    """student.base as a hub id: switching revision, or model, replans every step that loads it."""
    _, parents, _, _ = dag
    a, b = "a" * 40, "b" * 40
    cache = hub_cache(run_copy / "hf", run_copy / "results/student/base", "test/tiny", [a, b])
    hub_cache(cache, run_copy / "results/student/base", "test/other", [a])
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    first = write(run_copy, "rev_a.yaml", {"student": {"base": "test/tiny", "revision": a}})
    snakemake(run_copy, "results/predict/base.parquet", "--configfile", TINY, first)
    assert planned_with(run_copy, first, target=("results/predict/base.parquet",)) == set()
    second = write(run_copy, "rev_b.yaml", {"student": {"base": "test/tiny", "revision": b}})
    assert planned_with(run_copy, second, target=("results/predict/base.parquet",)) == {"predict_student"}
    readers_of_base = {"train_student", "predict_student", "rank_student", "predict_rag"}
    assert planned_with(run_copy, second) == descendants(parents, readers_of_base)
    other = write(run_copy, "other.yaml", {"student": {"base": "test/other", "revision": a}})  # same commit name
    assert planned_with(run_copy, other, target=("results/predict/base.parquet",)) == {"predict_student"}
    prov = json.loads((run_copy / "results/predict/base.parquet.provenance.json").read_text())
    assert prov["settings"]["student.base"]["value"] == f"test/tiny@{a}"


def test_editing_a_recipe_or_the_builtin_student_settings_reruns_its_readers(run_copy, dag):
    _, parents, _, _ = dag
    recipe = run_copy / "tests/data/tiny/recipes/orpo.yaml"
    recipe.write_text(recipe.read_text() + "\n# edited\n")
    assert planned_with(run_copy) == descendants(parents, {"train_student"}) - {"predict_rag"}
    student = run_copy / "tests/data/tiny/student.yaml"
    student.write_text(student.read_text() + "\n# edited\n")
    assert "build_student" in planned_with(run_copy)


@pytest.fixture(scope="module")
def manifest_run(tiny_run, tmp_path_factory):
    """The tiny run's knowledge and student, with a cohort from a manifest of notes and photos."""
    from PIL import Image

    wd = tmp_path_factory.mktemp("manifest") / "run"
    shutil.copytree(tiny_run, wd, symlinks=True)
    cases = pl.read_parquet(wd / "results/cohort/cases.parquet")
    (wd / "data").mkdir()
    rows = []
    for i, (case, note, label) in enumerate(cases.select("case_id", "note", "label_id").iter_rows()):
        Image.new("RGB", (16, 16), (i * 7 % 255, 40, 90)).save(wd / "data" / f"{case}.png")
        rows.append({"case_id": case, "note": note, "image_path": f"{case}.png", "disease_id": label})
    pl.DataFrame(rows).write_csv(wd / "data" / "manifest.csv")
    config = write(wd, "manifest.yaml", {"cohort": {"source": "manifest", "manifest": {"path": "data/manifest.csv"}},
                                         "baselines": {"phenomizer": False}, "teacher": {"knowledge": False}})
    snakemake(wd, "results/cohort/cases.parquet", "--configfile", TINY, config)
    return wd, config


def test_a_manifest_row_added_or_edited_or_an_image_replaced_remakes_the_cohort(manifest_run):
    wd, config = manifest_run
    target = ("results/cohort/cases.parquet",)
    assert planned_with(wd, config, target=target) == set()
    manifest = wd / "data" / "manifest.csv"
    original = manifest.read_text()
    rows = pl.read_csv(manifest)
    try:
        extra = rows.head(1).with_columns(pl.col("case_id") + "_extra")
        pl.concat([rows, extra]).write_csv(manifest)
        assert planned_with(wd, config, target=target) == {"build_cohort"}
        # ... and the teacher, the pairs, the students and the report after it.
        assert {"train_teacher", "build_preferences", "train_student", "make_report"} <= planned_with(wd, config)
        rows.with_columns(pl.when(pl.col("case_id") == rows["case_id"][0]).then(pl.lit("A shorter note."))
                          .otherwise(pl.col("note")).alias("note")).write_csv(manifest)
        assert planned_with(wd, config, target=target) == {"build_cohort"}
    finally:
        manifest.write_text(original)
    image = next((wd / "data").glob("*.png"))
    before = image.read_bytes()
    try:
        from PIL import Image

        Image.new("RGB", (16, 16), (1, 2, 3)).save(image)
        assert planned_with(wd, config, target=target) == {"build_cohort"}
    finally:
        image.write_bytes(before)


def test_the_guard_refuses_a_copied_in_result_naming_the_file_and_the_setting(run_copy):
    """An older preferences.parquet (k = 1) copied into a run whose config says k = 2, with its sidecar:
    the next step that reads it stops, naming the file and the setting, before any report."""
    older = run_copy.parent / "older"
    shutil.copytree(run_copy, older, symlinks=True)
    change = write(older, "k1.yaml", {"preferences": {"k": 1}})
    snakemake(older, "results/preferences/preferences.parquet", "--configfile", TINY, change)
    for name in ("preferences.parquet", "preferences.parquet.provenance.json"):
        shutil.copy2(older / "results/preferences" / name, run_copy / "results/preferences" / name)
    res = snakemake(run_copy, "--configfile", TINY, "--forcerun", "make_report", check=False)
    assert res.returncode != 0
    message = res.stdout + res.stderr
    assert "results/preferences/preferences.parquet" in message and "'preferences.k'" in message
    # The step that reads it refuses either because its inputs disagree (the base student was built with
    # k = 2) or because the config now gives k = 2: both name the file, the key and the two values.
    assert ("= 1" in message and "gives 2" in message) or (
        "two values of setting 'preferences.k'" in message and "with 1" in message and "with 2" in message)


def test_the_guard_refuses_a_file_copied_over_a_result_without_its_sidecar(run_copy):
    target = run_copy / "results/scores/seed7/orpo.parquet"
    shutil.copy2(run_copy / "results/scores/seed7/sft.parquet", target)
    res = snakemake(run_copy, "--configfile", TINY, "--forcerun", "make_report", check=False)
    assert res.returncode != 0
    assert "results/scores/seed7/orpo.parquet: the file is not the one the workflow wrote" in res.stdout + res.stderr


def test_the_report_is_reproducible(run_copy):
    """The same run reported twice: byte-identical summary and table (timings are in their own file)."""
    report = run_copy / "results/report"
    before = {name: (report / name).read_bytes() for name in ("summary.md", "metrics.csv")}
    snakemake(run_copy, "--configfile", TINY, "--forcerun", "make_report")
    assert {name: (report / name).read_bytes() for name in before} == before
    timings = pl.read_csv(report / "timings.csv")
    assert {"step", "seconds"} <= set(timings.columns) and timings.height > 0
