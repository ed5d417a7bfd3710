"""The core runs an application it has never heard of: the toy application of examples/toy_app
(six shapes, one-line descriptions, an external rankings file as the teacher, a student the core's
builtin text student makes from the toy's corpus) through the whole core DAG: preferences,
SFT/DPO/ORPO training, prediction, scoring and the report.

    .venv/bin/python -m pytest -q tests/test_toy_app.py
"""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from examples.toy_app import FEATURES, SHAPES

REPO = Path(__file__).resolve().parent.parent
TOY = REPO / "examples" / "toy_app"

def _toy_inputs(wd: Path, k: int) -> None:
    """Cases (6 per shape), an external teacher that ranks the truth first for 2 in 3 cases, a tiny student."""
    rng = np.random.default_rng(0)
    rows, scores = [], {}
    for j, (label, words) in enumerate(FEATURES.items()):
        for i in range(6):
            case_id = f"{label}_{i}"
            split = "test" if i < 2 else "validation" if i == 2 else "train"
            rows.append({"case_id": case_id, "label_id": label, "split": split,
                         "description": f"A drawing: {words}, size {rng.integers(1, 9)}."})
            s = rng.random(len(SHAPES))
            s[j] += 1.0 if i % 3 else 0.0
            scores[case_id] = s
    pl.DataFrame(rows).write_csv(wd / "toy.csv")
    labels = list(SHAPES)
    pl.DataFrame({"case_id": [c for c in scores for _ in labels], "label_id": labels * len(scores),
                  "score": np.concatenate(list(scores.values()))}).write_parquet(wd / "rankings.parquet")
    # The student folder config key `student.base` names: the core's tiny Llama, pre-trained on the toy's corpus.
    from examples.toy_app.student import build_student

    build_student(wd / "student", k=k)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("toy")
    shutil.copytree(REPO / "tests" / "data" / "tiny" / "recipes", wd / "recipes")
    config = {"application": "examples.toy_app", "seed": 3, "toy": {"cases": "toy.csv"},
              "teacher": {"rankings": "rankings.parquet"}, "preferences": {"k": 2, "q": 2},
              "student": {"base": "student"}, "training": {"methods": ["sft", "dpo", "orpo"], "recipes": "recipes"},
              "evaluation": {"max_new_tokens": 12, "bootstrap": 20}}
    _toy_inputs(wd, k=config["preferences"]["k"])  # the student answers with preferences.k shapes
    (wd / "toy.yaml").write_text(yaml.safe_dump(config))  # its paths are relative to it: the run folder
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd),
           "--cores", "2", "--configfile", "toy.yaml"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=wd)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return wd


@pytest.mark.integration
@pytest.mark.slow
def test_every_method_has_a_row_named_by_the_core(toy_run):
    table = pl.read_csv(toy_run / "results/report/metrics.csv")
    assert table["method"].to_list() == ["teacher_external", "base", "sft", "dpo", "orpo", "base_panel", "sft_panel",
                                         "dpo_panel", "orpo_panel"]
    assert table["label"].to_list() == ["teacher (external)", "base model", "SFT", "DPO (from SFT)", "MINT (ORPO)",
                                        "base model (full panel)", "SFT (full panel)", "DPO (from SFT) (full panel)",
                                        "MINT (ORPO) (full panel)"]
    assert (table["n_cases"] == 12).all()
    summary = (toy_run / "results/report/summary.md").read_text()
    assert "Students answer from the description only, with a list of k=2 shapes" in summary
    assert "disease" not in summary.lower() and "note" not in summary.lower()


@pytest.mark.integration
@pytest.mark.slow
def test_pairs_come_from_the_external_teacher_in_the_toy_prompt(toy_run):
    prefs = pl.read_parquet(toy_run / "results/preferences/preferences.parquet")
    assert prefs.height == 18  # 3 training cases x 6 shapes
    ranks = pl.read_parquet(toy_run / "results/rankings/teacher.parquet")
    first = ranks.filter(pl.col("rank") == 1).select("case_id", "label_id")
    best = dict(first.iter_rows())
    for row in prefs.iter_rows(named=True):
        assert row["chosen_ids"][0] == best[row["case_id"]]
        assert row["prompt"][0]["content"] == "You name shapes."
        assert row["prompt"][1]["content"].startswith("A drawing: ")
        assert row["chosen"][0]["content"].startswith("SHAPES:\n1. ")
        assert row["teacher"] == "external"


@pytest.mark.integration
@pytest.mark.slow
def test_no_rare_disease_step_ran(toy_run):
    logs = {p.name for p in (toy_run / "logs").iterdir()}
    assert logs == {"build_cohort", "import_rankings", "build_preferences", "train_student", "predict_student",
                    "score_student", "rank_student", "score_student_panel", "score_teacher", "make_report"}
    assert not (toy_run / "results" / "knowledge").exists()


def test_the_toy_application_imports_nothing_of_another_application():
    """Its modules and rules reach the core only: no module of mint.apps, at any level of the code."""
    imported = set()
    for path in sorted(TOY.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    assert {m for m in imported if m == "mint.apps" or m.startswith("mint.apps.")} == set()
    assert "mint.core.students.text" in imported  # its student is the core's
    assert "mint.apps" not in (TOY / "rules.smk").read_text()


def test_the_toy_corpus_answers_with_k_shapes_under_its_header():
    from examples.toy_app import APPLICATION
    from examples.toy_app.student import shape_corpus
    from mint.core.prompts import parse_answer

    chats = [d for d in shape_corpus(k=3, n_docs=10) if not isinstance(d, str)]
    assert len(chats) == 10
    for chat in chats:
        names, ok = parse_answer(chat[-1]["content"], APPLICATION.prompt.header)
        assert ok and len(names) == 3 and set(names) <= set(SHAPES.values())
