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


def test_tissue_paper_recipes_keep_the_papers_settings():
    for method in ("sft", "dpo", "orpo"):
        recipe = load_recipe(REPO / f"config/recipes/tissue-paper/{method}.yaml", kind="vision")
        assert recipe["lora"]["r"] == 256 and recipe["lora"]["lora_alpha"] == 128, method
    assert load_recipe(REPO / "config/recipes/tissue-paper/orpo.yaml", kind="vision")["args"]["beta"] == 0.1


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
    lora = {**load_recipe(REPO / "config/recipes/tissue-paper/orpo.yaml", kind="vision")["lora"], "r": 2}
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
