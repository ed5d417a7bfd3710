"""Every recipe YAML loads through the code that uses it and builds its TRL config."""

from pathlib import Path

import pytest

from mint.core.io import MintError
from mint.core.train import load_recipe
from mint.core.trl_compat import METHODS, trainer_classes

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted(REPO.glob("config/recipes/*/*.yaml")) + sorted(REPO.glob("tests/data/*/recipes/*.yaml"))


def test_recipes_exist_for_every_method_and_set():
    for folder in {p.parent for p in RECIPES}:
        stems = {p.stem for p in folder.glob("*.yaml")}
        assert {"sft", "dpo", "orpo"} <= stems <= set(METHODS), folder
        if folder.name in ("tiny", "paper"):  # the default and the paper's sets offer every method
            assert stems == set(METHODS), folder


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
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
    orpo = load_recipe(REPO / "config/recipes/paper/orpo.yaml")
    assert orpo["lora"]["r"] == 256 and orpo["lora"]["lora_alpha"] == 128
    assert orpo["args"]["beta"] == 0.1 and orpo["args"]["learning_rate"] == 5e-5
    assert load_recipe(REPO / "config/recipes/paper/dpo.yaml")["init"] == "sft"


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
