from pathlib import Path

import pytest

from mint.core.config import load_config, validate_config
from mint.core.io import MintError

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted(REPO.glob("config/*.yaml")) + sorted(REPO.glob("tests/data/*/config.yaml"))


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.name != "schema.yaml"], ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert cfg["preferences"]["k"] >= 1
    assert set(cfg["training"]["methods"]) <= {"sft", "dpo", "orpo"}


def test_defaults_are_filled_in():
    cfg = validate_config({})
    assert cfg["cohort"]["source"] == "simulated"
    assert cfg["cohort"]["simulated"]["n_diseases"] == 30
    assert cfg["teacher"]["rankings"] is None


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"preferences": {"k": 0}}, "preferences.k"),
        ({"cohort": {"source": "photos"}}, "cohort.source"),
        ({"training": {"methods": ["sft", "ppo"]}}, "training.methods.1"),
        ({"teacher": {"epochs": "ten"}}, "teacher.epochs"),
        ({"studnet": {}}, "(top level)"),
        ({"cohort": {"source": "manifest"}}, "cohort.manifest.path"),
        ({"training": {"methods": ["dpo"]}}, "training.methods"),
        ({"cohort": {"simulated": {"true_terms": [4, 2]}}}, "cohort.simulated.true_terms"),
    ],
)
def test_invalid_config_names_the_key(bad, key):
    with pytest.raises(MintError, match=key.replace("(", r"\(").replace(")", r"\)")):
        validate_config(bad, source="test.yaml")


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(MintError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
