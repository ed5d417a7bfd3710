from pathlib import Path

import pytest

from mint.core.app import load_application
from mint.core.config import load_config, validate_config
from mint.core.io import MintError
from mint.core.train import load_recipe

REPO = Path(__file__).resolve().parent.parent
# Each application's configs (config/<application>/*.yaml; config/accelerate/ holds launch topology only).
CONFIGS = sorted(p for p in REPO.glob("config/*/*.yaml") if p.parent.name != "accelerate") + sorted(
    REPO.glob("tests/data/*/config.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_shipped_config_validates_and_names_shipped_files(path):
    cfg = load_config(path)
    training = cfg["training"]
    shipped = [REPO / training["recipes"] / f"{m}.yaml" for m in training["methods"]]
    shipped.append(REPO / training["accelerate"])
    if cfg["student"]["builtin"]:
        shipped.append(REPO / cfg["student"]["builtin"])
    assert [p for p in shipped if not p.is_file()] == []
    kind = load_application(cfg["application"]).student_kind
    for method in training["methods"]:  # every recipe it names loads, for its application's student
        assert load_recipe(REPO / training["recipes"] / f"{method}.yaml", kind=kind)["method"] == method


def test_defaults_are_filled_in():
    cfg = validate_config({})
    assert cfg["application"] == "rare_disease"
    assert cfg["cohort"]["source"] == "simulated"
    assert cfg["cohort"]["simulated"]["n_diseases"] == 30  # a default two levels down, in the application's schema
    assert cfg["teacher"]["rankings"] is None and cfg["teacher"]["epochs"] == 60  # core and application keys merged
    assert cfg["student"]["builtin"] is None


@pytest.mark.parametrize("app", ["rare_disease", "tissue"])
def test_each_application_defaults_to_its_own_recipes(app):
    """training.recipes has no core default: each application's schema names its tiny set (config/<app>/)."""
    assert validate_config({"application": app})["training"]["recipes"] == f"config/{app}/recipes/tiny"


def test_an_application_without_default_recipes_needs_the_key():
    with pytest.raises(MintError, match=r"config key 'training.recipes' is required: application 'examples.toy_app' "
                                        r"gives it no default"):
        validate_config({"application": "examples.toy_app"})
    config = {"application": "examples.toy_app", "training": {"recipes": "recipes"}}
    assert validate_config(config)["training"]["recipes"] == "recipes"


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"preferences": {"k": 0}}, "preferences.k"),
        ({"cohort": {"source": "photos"}}, "cohort.source"),
        ({"training": {"methods": ["sft", "ppo"]}}, "training.methods.1"),
        ({"teacher": {"epochs": "ten"}}, "teacher.epochs"),
        ({"studnet": {}}, "(top level)"),
        ({"training": {"methods": ["dpo"]}}, "training.methods"),
        # The application's checks (mint.apps.rare_disease.hooks.check_config), run by validate_config.
        ({"cohort": {"source": "manifest"}}, "cohort.manifest.path"),
        ({"cohort": {"source": "phenopacket"}}, "cohort.phenopacket.path"),
        ({"cohort": {"simulated": {"true_terms": [4, 2]}}}, "cohort.simulated.true_terms"),
        ({"cohort": {"split": {"validation": 0.4, "test": 0.6}}}, "cohort.split.validation"),
        ({"baselines": {"rag": ["sft"]}, "training": {"methods": ["orpo"]}}, "baselines.rag"),
        ({"baselines": {"phenomizer": True}, "cohort": {"source": "manifest", "manifest": {"path": "m.csv"}}},
         "baselines.phenomizer"),
        ({"teacher": {"knowledge": True}, "baselines": {"phenomizer": False},
          "cohort": {"source": "manifest", "manifest": {"path": "m.csv"}}}, "teacher.knowledge"),
        ({"cohort": {"split": {"validation": 0}}}, "teacher.knowledge"),
        ({"evaluation": {"panel_seeds": [2]}, "training": {"seeds": [1, 3]}}, "evaluation.panel_seeds"),
        ({"evaluation": {"panel_seeds": [2]}, "seed": 1}, "evaluation.panel_seeds"),
    ],
)
def test_invalid_config_names_the_key(bad, key):
    with pytest.raises(MintError, match=key.replace("(", r"\(").replace(")", r"\)")):
        validate_config(bad, source="test.yaml")


def test_an_invalid_value_names_the_source_that_set_it():
    """rules/common.smk passes each config file (and --config) as an origin; the error names the last that set the
    key."""
    origins = [({"seed": 1}, "config/rare_disease/default.yaml"), ({"seed": 7.0, "evaluation": {}}, "mine.yaml"),
               ({}, "--config")]
    with pytest.raises(MintError, match=r"^workflow config: invalid value at config key 'seed' \(set in mine.yaml\): "
                       r"7.0 is not of type 'integer' \(expected a whole number: write 7\)$"):
        validate_config({"seed": 7.0, "evaluation": {}}, "workflow config", origins)
    with pytest.raises(MintError, match=r"config key 'evaluation.ks.0' \(set in --config\)"):
        cli = {"evaluation": {"ks": [True]}}
        validate_config(cli, "workflow config", [(cli, "--config")])
    with pytest.raises(MintError, match=r"config key 'seed': -1 is less"):  # a file's own validation: no origins
        validate_config({"seed": -1}, "c.yaml")


@pytest.mark.parametrize("value", [2.0, True, float("nan"), float("inf"), "3"])
def test_integer_keys_take_integers_only(value):
    with pytest.raises(MintError, match="'preferences.q'"):
        validate_config({"preferences": {"q": value}}, "c.yaml")


@pytest.mark.parametrize("text", ["5e-5", "1e3", "+2E-4", "7", "1.5e3"])
def test_the_hint_for_a_number_yaml_reads_as_text_is_a_yaml_float(text):
    """The error for `learning_rate: 1e-3` says how to write it; what it says YAML reads as that float."""
    import yaml

    from mint.core.recipe_args import yaml_float

    assert isinstance(yaml.safe_load(f"x: {text}")["x"], (str, int))
    assert yaml.safe_load(f"x: {yaml_float(text)}")["x"] == float(text)


@pytest.mark.parametrize("name", ["tissue_type", "mint.apps.no_such_app"])
def test_unknown_application_names_the_key(name):
    with pytest.raises(MintError, match=f"config key 'application'.*{name}"):
        validate_config({"application": name}, source="test.yaml")


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(MintError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_the_knowledge_aware_teacher_is_on_for_hpo_coded_cases_only():
    from mint.apps.rare_disease.hooks import select_teacher, uses_knowledge

    assert uses_knowledge(validate_config({}, source="t.yaml"))
    manifest = validate_config({"cohort": {"source": "manifest", "manifest": {"path": "m.csv"}},
                                "baselines": {"phenomizer": False}}, source="t.yaml")
    assert not uses_knowledge(manifest)
    assert select_teacher(manifest).modalities == ("note_photo", "note")
    fused = select_teacher(validate_config({}, source="t.yaml"))
    assert fused.pair_modality == "note_photo_knowledge" and "knowledge" in fused.modalities
    # Without a validation split the fusion has nothing to fit on: allowed when it is off.
    validate_config({"cohort": {"split": {"validation": 0}}, "teacher": {"knowledge": False}}, source="t.yaml")


def _app(teacher, **fields):
    from mint.core.app import Application, Prompt

    return Application(name="toy", label_noun="shape", labels_noun="shapes", rules=Path("rules.smk"),
                       config_schema={}, case_fields=(), teacher=teacher, modality_labels={"a": "A", "b": "B"},
                       prompt=Prompt("s", "{text}", "H:"), student_text="text", **fields)


def test_an_applications_teacher_is_fixed_or_chosen_by_the_config():
    """`Application.teacher`: one `Teacher`, or a function of the config; external rankings replace either."""
    from mint.core.app import Teacher, selected_teacher

    config = {"teacher": {"rankings": None, "which": "b"}}
    fixed = Teacher(("a", "b"), "a", "metrics.json")
    assert selected_teacher(_app(fixed), config) is fixed
    chosen = selected_teacher(_app(lambda cfg: Teacher((cfg["teacher"]["which"],), cfg["teacher"]["which"])), config)
    assert (chosen.modalities, chosen.pair_modality, chosen.metrics) == (("b",), "b", None)
    external = selected_teacher(_app(fixed), {"teacher": {"rankings": "r.parquet"}})
    assert (external.modalities, external.pair_modality) == (("external",), "external")


def test_a_teacher_modality_without_a_name_in_the_report_is_refused():
    from mint.core.app import Teacher, selected_teacher

    with pytest.raises(MintError, match=r"application 'toy': teacher modalities \['c'\] have no entry in "
                                        r"modality_labels \['a', 'b'\]"):
        _app(Teacher(("a", "c"), "a"))
    with pytest.raises(MintError, match=r"teacher modalities \['c'\]"):
        selected_teacher(_app(lambda cfg: Teacher(("c",), "c")), {"teacher": {"rankings": None}})
    with pytest.raises(MintError, match=r"its teacher function gave None, not a Teacher"):
        selected_teacher(_app(lambda cfg: None), {"teacher": {"rankings": None}})
    with pytest.raises(MintError, match=r"teacher must be a Teacher or a function of the config"):
        _app(("a",))


def test_the_baselines_score_files_follow_the_config():
    """The rare-disease application's own report rows (`score_files`): each ranker, RAG with SFT per seed, RAG base."""
    rare = load_application("rare_disease")
    assert rare.score_files(validate_config({}, source="t.yaml")) == []
    config = validate_config({"baselines": {"phenomizer": True, "knn": True, "rag": ["base", "sft"]},
                              "training": {"seeds": [1, 2]}}, source="t.yaml")
    assert rare.score_files(config) == ["results/scores/phenomizer.parquet", "results/scores/knn.parquet",
                                        "results/scores/seed1/rag_sft.parquet", "results/scores/seed2/rag_sft.parquet",
                                        "results/scores/rag_base.parquet"]
    assert load_application("tissue").score_files is None


def test_build_student_reserves_the_threads_of_its_pretraining(tmp_path):
    """`train.threads` of the user's student settings, else of the application's packaged ones, else 1."""
    from mint.core.config import builtin_student_threads, load_yaml

    for name in ("rare_disease", "tissue"):
        app = load_application(name)
        packaged = load_yaml(app.builtin_student)["train"]["threads"]
        assert builtin_student_threads(app, None) == packaged
        (tmp_path / "mine.yaml").write_text("train:\n  threads: 5\n")
        assert builtin_student_threads(app, tmp_path / "mine.yaml") == 5
        (tmp_path / "sizes.yaml").write_text("model:\n  hidden_size: 64\n")
        assert builtin_student_threads(app, tmp_path / "sizes.yaml") == packaged
    assert builtin_student_threads(load_application("examples.toy_app"), None) == 1
