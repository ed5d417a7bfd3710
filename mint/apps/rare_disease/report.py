"""The rare-disease application's report sections and its config rules that JSON schema cannot state.

    python -c "from mint.apps.rare_disease.report import summary_sections; help(summary_sections)"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mint.core.io import MintError


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
