"""Turn the teacher's rankings into the student's training data.

Per training case: a prompt (system + user message asking for exactly k diseases), `chosen` =
the teacher's top-k as a numbered list, `rejected` = its bottom-q (or, with `rejected: hard`,
the q just below rank k). TRL's conversational preference format: the prompt is the message
list, chosen/rejected are the assistant message only (the paper's scripts put the whole chat
in chosen/rejected, training the prompt twice). Also the SFT dataset (prompt/completion).

    python -m mint.preferences config/config.yaml results/cohort results/rankings/teacher.parquet results/preferences
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from mint import schemas
from mint.cohort import load_cohort
from mint.config import load_config, section
from mint.io import MintError, provenance, read_parquet, write_parquet
from mint.prompts import assistant, build_prompt, format_answer


def teacher_modality(config: Mapping[str, Any]) -> str:
    return "external" if config["teacher"]["rankings"] else "note_photo"


def pick_lists(ranked: Sequence[str], truth: str, k: int, q: int, rejected: str, truth_in_chosen: bool):
    """(chosen ids, rejected ids) from one case's ranked panel (best first). Pure, per example."""
    if len(ranked) < k + q:
        raise MintError(f"panel of {len(ranked)} diseases is too small for k={k} + q={q} "
                        "(config keys 'preferences.k', 'preferences.q')")
    ranked = list(ranked)
    if truth_in_chosen and truth in ranked:
        ranked.remove(truth)
        ranked.insert(0, truth)
    chosen = ranked[:k]
    rest = ranked[k:]
    rej = rest[:q] if rejected == "hard" else rest[-q:][::-1]  # bottom: the very worst first
    return chosen, rej


def sft_target(ranked: Sequence[str], truth: str, k: int, target: str) -> list[str]:
    """SFT imitates the teacher's top-k, or the truth followed by the teacher's best other k-1."""
    if target == "teacher":
        return list(ranked[:k])
    return [truth, *[d for d in ranked if d != truth][: k - 1]]


def build_preferences(
    config: Mapping[str, Any], cohort_dir: str | Path, rankings_path: str | Path, out_dir: str | Path
) -> None:
    """Write `preferences.parquet` (PREFERENCES) and `sft.parquet` (SFT) for the training split."""
    pcfg = config["preferences"]
    k, q, seed = pcfg["k"], pcfg["q"], config["seed"]
    cases, panel = load_cohort(cohort_dir)
    names = dict(zip(panel["disease_id"].to_list(), panel["name"].to_list()))
    modality = teacher_modality(config)
    rankings = read_parquet(rankings_path, schemas.RANKINGS).filter(pl.col("modality") == modality)
    ranked_of = {
        case_id: group.sort("rank")["disease_id"].to_list()
        for (case_id,), group in rankings.group_by("case_id")
    }
    train = cases.filter(pl.col("split") == "train").sort("case_id")
    pref_rows, sft_rows = [], []
    for case in train.iter_rows(named=True):
        ranked = ranked_of.get(case["case_id"])
        if ranked is None:
            raise MintError(f"{rankings_path}: no '{modality}' ranking for training case {case['case_id']!r}")
        prompt = build_prompt(case["note"], k, config["prompt"])
        chosen, rejected = pick_lists(ranked, case["disease_id"], k, q, pcfg["rejected"], pcfg["truth_in_chosen"])
        pref_rows.append({
            "case_id": case["case_id"],
            "prompt": prompt,
            "chosen": assistant(format_answer([names[d] for d in chosen])),
            "rejected": assistant(format_answer([names[d] for d in rejected])),
            "chosen_ids": chosen,
            "rejected_ids": rejected,
            "truth_in_chosen": case["disease_id"] in chosen,
            "teacher": modality,
            "k": k,
            "q": q,
            "seed": seed,
        })
        target = sft_target(ranked, case["disease_id"], k, pcfg["sft_target"])
        sft_rows.append({
            "case_id": case["case_id"],
            "prompt": prompt,
            "completion": assistant(format_answer([names[d] for d in target])),
            "target_ids": target,
            "target": pcfg["sft_target"],
            "k": k,
            "seed": seed,
        })
    prov = provenance(section(config, "preferences", "prompt"), seed=seed)
    out_dir = Path(out_dir)
    write_parquet(pl.DataFrame(pref_rows), out_dir / "preferences.parquet", schemas.PREFERENCES, prov)
    write_parquet(pl.DataFrame(sft_rows), out_dir / "sft.parquet", schemas.SFT, prov)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build preference and SFT datasets from teacher rankings.")
    parser.add_argument("config")
    parser.add_argument("cohort_dir")
    parser.add_argument("rankings")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    build_preferences(load_config(args.config), args.cohort_dir, args.rankings, args.out_dir)


if __name__ == "__main__":
    main()
