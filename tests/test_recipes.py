"""Every recipe YAML loads through the code that uses it and builds its TRL config."""

from pathlib import Path

import pytest

from mint.core.app import load_application
from mint.core.io import MintError
from mint.core.train import load_recipe
from mint.core.trainers import METHODS, VISION_METHODS, trainer_classes

REPO = Path(__file__).resolve().parent.parent
# config/<application>/recipes/<set>/<method>.yaml, and the test configs' recipes.
RECIPES = sorted(REPO.glob("config/*/recipes/*/*.yaml")) + sorted(REPO.glob("tests/data/*/recipes/*.yaml"))


def test_recipes_exist_for_every_method_and_set():
    for folder in {p.parent for p in RECIPES}:
        stems = {p.stem for p in folder.glob("*.yaml")}
        assert {"sft", "dpo", "orpo"} <= stems <= set(METHODS), folder
        if folder.name in ("tiny", "paper"):  # the default and the paper's sets offer every method of the student
            kind = load_application(folder.parents[1].name).student_kind
            assert stems == set(METHODS if kind == "text" else VISION_METHODS), folder


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_recipe_builds_its_trl_config(path, tmp_path):
    recipe = load_recipe(path)
    assert recipe["method"] == path.stem
    config_cls, _ = trainer_classes(recipe["method"])
    args = {**recipe["args"], "bf16": False, "fp16": False}  # no GPU here, as train_student does
    # The TRL config raises on an argument it does not know or a value it rejects.
    config_cls(output_dir=str(tmp_path), report_to=[], **args)
    if recipe["lora"] is not None:
        from peft import LoraConfig

        LoraConfig(task_type="CAUSAL_LM", **recipe["lora"])


def test_paper_recipes_keep_the_papers_settings():
    orpo = load_recipe(REPO / "config/rare_disease/recipes/paper/orpo.yaml")
    assert orpo["lora"]["r"] == 256 and orpo["lora"]["lora_alpha"] == 128
    assert orpo["args"]["beta"] == 0.1 and orpo["args"]["learning_rate"] == 5e-5
    assert load_recipe(REPO / "config/rare_disease/recipes/paper/dpo.yaml")["init"] == "sft"


def test_tissue_paper_recipes_keep_the_papers_settings():
    for method in ("sft", "dpo", "orpo"):
        recipe = load_recipe(REPO / f"config/tissue/recipes/paper/{method}.yaml", kind="vision")
        assert recipe["lora"]["r"] == 256 and recipe["lora"]["lora_alpha"] == 128, method
    assert load_recipe(REPO / "config/tissue/recipes/paper/orpo.yaml", kind="vision")["args"]["beta"] == 0.1


def test_tissue_paper_lora_targets_the_language_model_the_vision_mlps_and_the_projector():
    """The recipes' target_modules on a tiny Mllama (Llama-3.2-11B-Vision's architecture, from a config)."""
    import re

    from peft import LoraConfig, get_peft_model
    from transformers import MllamaConfig, MllamaForConditionalGeneration

    config = MllamaConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_global_layers": 1,
                       "attention_heads": 2, "intermediate_layers_indices": [0], "image_size": 28, "patch_size": 14,
                       "vision_output_dim": 64},
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 1, "cross_attention_layers": [1], "vocab_size": 300, "pad_token_id": 0,
                     "bos_token_id": 1, "eos_token_id": 2})
    lora = {**load_recipe(REPO / "config/tissue/recipes/paper/orpo.yaml", kind="vision")["lora"], "r": 2}
    model = get_peft_model(MllamaForConditionalGeneration(config), LoraConfig(task_type="CAUSAL_LM", **lora))
    adapted = {re.sub(r"^base_model\.model\.model\.|\.lora_A\..*$", "", n) for n, _ in model.named_parameters()
               if "lora_A" in n}
    linear = {n.removeprefix("model.") for n, m in MllamaForConditionalGeneration(config).named_modules()
              if type(m).__name__ == "Linear" and n != "lm_head"}
    vision_mlp = {n for n in linear if n.startswith("vision_model.") and re.search(r"\.mlp\.fc[12]$", n)}
    assert adapted == {n for n in linear if n.startswith("language_model.")} | vision_mlp | {"multi_modal_projector"}
    assert len(vision_mlp) == 6  # 2 local + 1 global layer, fc1 and fc2 each
    assert not {n for n in adapted if "vision_model" in n and "self_attn" in n}


def test_unknown_recipe_arg_is_named(tmp_path):
    bad = tmp_path / "orpo.yaml"
    bad.write_text("method: orpo\nargs:\n  learning_rat: 0.1\n")
    with pytest.raises(MintError, match="learning_rat"):
        load_recipe(bad)


def test_unknown_method_is_named(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("method: ppo\n")
    with pytest.raises(MintError, match="ppo"):
        load_recipe(bad)


def test_orpo_lives_in_trl_experimental():
    from trl.experimental.orpo import ORPOTrainer

    config_cls, trainer_cls = trainer_classes("orpo", completion_only_nll=False)
    assert trainer_cls is ORPOTrainer and config_cls.__module__.startswith("trl.experimental.orpo")
    # The default subclasses TRL's trainer and only changes which tokens the NLL term covers.
    assert issubclass(trainer_classes("orpo")[1], ORPOTrainer)


def test_recipe_nll_choice_is_checked(tmp_path):
    bad = tmp_path / "orpo.yaml"
    bad.write_text("method: orpo\nnll: prompt\n")
    with pytest.raises(MintError, match="'nll'"):
        load_recipe(bad)


@pytest.mark.parametrize("value, named", [("'model.vision_tower'", "list"), ("[1]", "list"), ("['(']", "regular")],
                         ids=["string", "not-text", "bad-regex"])
def test_recipe_freeze_patterns_are_checked(value, named, tmp_path):
    bad = tmp_path / "sft.yaml"
    bad.write_text(f"method: sft\nfreeze: {value}\n")
    with pytest.raises(MintError, match=f"'freeze'.*{named}"):
        load_recipe(bad)


def test_the_option_table_is_the_installed_trls():
    """Start-up checks `args` against mint/core/trl_fields.py (no TRL import); it must be what TRL's dataclasses say."""
    from mint.core.recipe_args import TABLE_PATH, build_table, table_source

    assert TABLE_PATH.read_text(encoding="utf-8") == table_source(*build_table()), (
        "TRL's config classes changed: rerun `python -m mint.core.recipe_args --write`")


def test_every_shipped_recipe_is_unchanged_by_the_check():
    """The shipped recipes are already of TRL's types: the check converts nothing in them."""
    from mint.core.config import check_recipe_fields, load_yaml

    for path in RECIPES:
        kind = "vision" if path.parent.name.startswith("tissue") else "text"
        raw = load_yaml(path)
        assert check_recipe_fields(raw, path, path.stem, kind) == raw, path


def test_a_number_yaml_reads_as_text_is_converted_and_reaches_the_trl_config(tmp_path, monkeypatch):
    """PyYAML reads `5e-5` as the string '5e-5' (its floats need a dot and a signed exponent). Start-up and
    training convert it alike, and train_student hands TRL's config the float."""
    import yaml

    import mint.core.train as train
    from mint.core.config import check_recipe

    recipe = tmp_path / "sft.yaml"
    recipe.write_text("method: sft\nargs:\n  learning_rate: 5e-5\n  num_train_epochs: '2'\n  max_steps: '3'\n")
    assert yaml.safe_load(recipe.read_text())["args"]["learning_rate"] == "5e-5"
    at_start_up = check_recipe(recipe, "sft", "test")["args"]
    assert at_start_up == {"learning_rate": 5e-5, "num_train_epochs": 2.0, "max_steps": 3}
    assert type(at_start_up["learning_rate"]) is float and type(at_start_up["max_steps"]) is int
    assert load_recipe(recipe)["args"] == at_start_up

    class Given(Exception):
        pass

    def config_cls(**kwargs):  # stands for TRL's SFTConfig: what train_student passes it
        raise Given(kwargs)

    import torch

    monkeypatch.setattr(train, "load_base", lambda *a, **k: (torch.nn.Linear(1, 1), None))
    monkeypatch.setattr(train, "trainer_classes", lambda method, **k: (config_cls, None))
    with pytest.raises(Given) as given:
        train.train_student(recipe, "base", tmp_path / "data.parquet", tmp_path / "out", seed=7)
    assert given.value.args[0]["learning_rate"] == 5e-5 and type(given.value.args[0]["learning_rate"]) is float
    assert given.value.args[0]["max_steps"] == 3 and given.value.args[0]["seed"] == 7


def test_a_vision_orpo_recipe_is_checked_against_dpos_options(tmp_path):
    """A vision student's ORPO trains with DPOConfig (mint.core.trainers.vision_trainer_classes)."""
    recipe = tmp_path / "orpo.yaml"
    recipe.write_text("method: orpo\nargs:\n  max_completion_length: 64\n")
    assert load_recipe(recipe)["args"] == {"max_completion_length": 64}  # an option of ORPOConfig
    with pytest.raises(MintError, match=r"\['max_completion_length'\] are not options of TRL's DPOConfig"):
        load_recipe(recipe, kind="vision")
