"""Score every method on the test cases and write the comparison: table, plots, summary.

`score_student` / `score_teacher` write per-case scores (CASE_SCORES) for one method;
`make_report` turns all of them into `metrics.csv`, `metrics.json`, `summary.md`,
`accuracy.png` (top-k per method with 95% bootstrap intervals) and `training.png`
(training loss per method), under `results/report/`.

    python -m mint.report --help
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from mint import schemas
from mint.cohort import load_cohort
from mint.config import load_config, section
from mint.evaluate import NameMatcher, paired_bootstrap, score_predictions, score_rankings, summarize
from mint.io import atomic_path, load_json, provenance, read_parquet, write_json, write_parquet
from mint.knowledge import load_knowledge

TEACHER_ROWS = {"note_photo": "teacher (note+photo)", "note": "teacher (note only)", "photo": "teacher (photo only)",
                "external": "teacher (external)"}
BASELINE_ROWS = {"phenomizer": "Phenomizer (HPO similarity)", "knn": "retrieval (nearest patients)",
                 "rag_base": "RAG, base model", "rag_sft": "RAG, SFT"}
STUDENT_ROWS = {"base": "base model", "rag_base": BASELINE_ROWS["rag_base"], "sft": "SFT",
                "rag_sft": BASELINE_ROWS["rag_sft"], "dpo": "DPO (from SFT)", "orpo": "MINT (ORPO)"}
ROW_ORDER = [*(f"teacher_{m}" for m in TEACHER_ROWS), "phenomizer", "knn", *STUDENT_ROWS]


def _truth(cohort_dir: str | Path) -> pl.DataFrame:
    cases, _ = load_cohort(cohort_dir)
    return cases.filter(pl.col("split") == "test").select("case_id", "disease_id")


def answer_matcher(diseases: pl.DataFrame, panel: pl.DataFrame, cutoff: float) -> NameMatcher:
    """Names onto ids over the whole ontology plus the panel's own names.

    A real panel may spell a disease its own way, or list a disease this HPO release lacks: its
    names join the release's as synonyms, so that naming a panel disease is never a hallucination.
    """
    own = panel.select("disease_id", panel_name="name")
    known = (
        diseases.join(own, on="disease_id", how="left")
        .with_columns(synonyms=pl.when(pl.col("panel_name").is_null()).then(pl.col("synonyms"))
                      .otherwise(pl.concat_list(pl.col("synonyms").fill_null([]), pl.col("panel_name"))))
        .select("disease_id", "name", "synonyms")
    )
    extra = own.filter(~pl.col("disease_id").is_in(diseases["disease_id"].implode())).select(
        "disease_id", name="panel_name", synonyms=pl.lit([], pl.List(pl.String)))
    return NameMatcher(pl.concat([known, extra]), prefer=panel["disease_id"].to_list(), cutoff=cutoff)


def score_student(config: Mapping[str, Any], knowledge_dir, cohort_dir, predictions_path, out_path,
                  seed: int | None = None) -> None:
    """CASE_SCORES of a student's answers; `seed`: the training seed of a trained student."""
    diseases, _, _ = load_knowledge(knowledge_dir)
    _, panel = load_cohort(cohort_dir)
    matcher = answer_matcher(diseases, panel, config["evaluation"]["fuzzy_cutoff"])
    preds = read_parquet(predictions_path, schemas.PREDICTIONS)
    scores = score_predictions(preds, _truth(cohort_dir), matcher, config["preferences"]["k"], seed=seed)
    write_parquet(scores, out_path, schemas.CASE_SCORES, provenance(section(config, "evaluation"), seed=config["seed"]))


def score_teacher(config: Mapping[str, Any], cohort_dir, rankings_path, modality: str, out_path,
                  method: str | None = None) -> None:
    """CASE_SCORES of a ranker (the teacher in one modality, or a baseline such as `phenomizer`)."""
    truth = _truth(cohort_dir)
    rankings = read_parquet(rankings_path, schemas.RANKINGS).filter(
        (pl.col("modality") == modality) & pl.col("case_id").is_in(truth["case_id"].to_list())
    )
    truth = truth.filter(pl.col("case_id").is_in(rankings["case_id"].unique().to_list()))
    # The teacher ranks the whole panel, so it is scored on as many diseases as the largest k asked.
    k = max(config["evaluation"]["ks"])
    scores = score_rankings(rankings, truth, k, method or f"teacher_{modality}")
    write_parquet(scores, out_path, schemas.CASE_SCORES, provenance(section(config, "evaluation"), seed=config["seed"]))


def display_name(method: str) -> str:
    if method.startswith("teacher_"):
        return TEACHER_ROWS.get(method.removeprefix("teacher_"), method)
    return STUDENT_ROWS.get(method) or BASELINE_ROWS.get(method, method)


def make_report(
    config: Mapping[str, Any], score_paths: Sequence[str | Path], train_dirs: Sequence[str | Path],
    teacher_metrics: str | Path | None, out_dir: str | Path, cohort_dir: str | Path | None = None,
) -> pl.DataFrame:
    """Write the comparison under `out_dir`; with `cohort_dir`, also the cohort and per-disease sections."""
    ev = config["evaluation"]
    scores = pl.concat([read_parquet(p, schemas.CASE_SCORES) for p in score_paths])
    table = summarize(scores, ks=tuple(ev["ks"]), n_boot=ev["bootstrap"], seed=config["seed"])
    table = table.with_columns(label=pl.col("method").map_elements(display_name, return_dtype=pl.String))
    # Rows in a fixed order (teachers, rankers, then the students), whatever the input order.
    table = table.sort(pl.col("method").map_elements(
        lambda m: ROW_ORDER.index(m) if m in ROW_ORDER else len(ROW_ORDER), return_dtype=pl.Int64), maintain_order=True)
    out = Path(out_dir)
    prov = provenance(section(config, "evaluation", "preferences", "training", "baselines"), seed=config["seed"])
    with atomic_path(out / "metrics.csv") as tmp:
        table.write_csv(tmp)
    training = [load_json(Path(d) / "metrics.json") for d in train_dirs]
    comparisons = [
        paired_bootstrap(scores, "orpo", other, metric=m, n_boot=ev["bootstrap"], seed=config["seed"])
        for other in table["method"].to_list() if other != "orpo" and "orpo" in table["method"].to_list()
        for m in ("top1", "mrr")
    ]
    cohort = _cohort_facts(cohort_dir) if cohort_dir else None
    per_disease = _per_disease(scores, cohort_dir) if cohort_dir else None
    if per_disease is not None:
        with atomic_path(out / "per_disease.csv") as tmp:
            per_disease.write_csv(tmp)
        _plot_per_disease(per_disease, out / "per_disease.png")
    write_json({"metrics": table.to_dicts(), "training": training, "orpo_vs": comparisons, "cohort": cohort,
                "teacher": load_json(teacher_metrics) if teacher_metrics else None}, out / "metrics.json", prov)
    _plot_accuracy(table, config["preferences"]["k"], out / "accuracy.png")
    _plot_training(train_dirs, out / "training.png")
    _write_summary(config, table, training, comparisons, teacher_metrics, cohort, out / "summary.md")
    return table


def _cohort_facts(cohort_dir: str | Path) -> dict[str, Any]:
    """Counts the report states: cases by source and split, the panel, exclusions by reason."""
    cases, panel = load_cohort(cohort_dir)
    excluded_path = Path(cohort_dir) / "excluded.parquet"
    excluded = read_parquet(excluded_path, schemas.EXCLUDED) if excluded_path.exists() else None
    by = cases.group_by("source", "split").len().sort("source", "split")
    return {
        "sources": sorted(cases["source"].unique().to_list()),
        "cases": {f"{src}/{split}": n for src, split, n in by.iter_rows()},
        "panel": panel.height,
        "test_diseases": cases.filter(pl.col("split") == "test")["disease_id"].n_unique(),
        "publications": {split: cases.filter((pl.col("split") == split) & pl.col("publication").is_not_null())
                         ["publication"].n_unique() for split in ("train", "validation", "test")},
        "excluded": dict(excluded.group_by("reason").len().sort("reason").iter_rows()) if excluded is not None else {},
    }


# Bins of a disease's real (not simulated) training patients, for the per-disease view.
TRAIN_BINS = [(0, 0, "0"), (1, 2, "1-2"), (3, 5, "3-5"), (6, 10, "6-10"), (11, 10**9, ">10")]


def _per_disease(scores: pl.DataFrame, cohort_dir: str | Path) -> pl.DataFrame:
    """Top-1 per method and test disease (seed-averaged) with the disease's training cases, real and all."""
    cases, _ = load_cohort(cohort_dir)
    train = cases.filter(pl.col("split") == "train")
    counts = train.group_by("disease_id").agg(
        n_train=pl.len(), n_train_real=(pl.col("source") != "simulated").sum().cast(pl.Int64))
    hits = scores.with_columns(hit=(pl.col("rank").fill_null(10**6) <= 1).cast(pl.Float64))
    per_case = hits.group_by("method", "case_id", "disease_id").agg(pl.col("hit").mean())
    return (
        per_case.group_by("method", "disease_id").agg(n_test=pl.len(), top1=pl.col("hit").mean())
        .join(counts, on="disease_id", how="left")
        .with_columns(pl.col("n_train", "n_train_real").fill_null(0))
        .sort("method", "disease_id")
    )


def _plot_per_disease(per_disease: pl.DataFrame, path: Path) -> None:
    """Top-1 of the test cases against how many real training patients their disease has."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    labels = [b[2] for b in TRAIN_BINS]
    methods = sorted(per_disease["method"].unique().to_list(),
                     key=lambda m: ROW_ORDER.index(m) if m in ROW_ORDER else len(ROW_ORDER))
    for method in methods:
        d = per_disease.filter(pl.col("method") == method)
        ys = []
        for lo, hi, _ in TRAIN_BINS:
            b = d.filter(pl.col("n_train_real").is_between(lo, hi))
            # Case-weighted: the share of the bin's test cases ranked first.
            ys.append(float((b["top1"] * b["n_test"]).sum() / b["n_test"].sum()) * 100 if b.height else float("nan"))
        ax.plot(labels, ys, marker="o", label=display_name(method))
    n_cases = [int(per_disease.filter((pl.col("method") == methods[0]) & pl.col("n_train_real").is_between(lo, hi))
                   ["n_test"].sum()) for lo, hi, _ in TRAIN_BINS]
    ax.set_xticks(range(len(labels)), [f"{lab}\n({n} cases)" for lab, n in zip(labels, n_cases)], fontsize=8)
    ax.set_xlabel("real training patients of the test case's disease")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Accuracy by how many real training patients a disease has", fontsize=9)
    _save(fig, path)


def _fmt(row: Mapping[str, Any], m: str, pct: bool = True) -> str:
    f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.3f}")
    return f"{f(row[m])} [{f(row[m + '_lo'])}, {f(row[m + '_hi'])}]"


ABLATION = [("teacher_note_photo", "note + photo", "teacher"), ("teacher_note", "note", "teacher"),
            ("teacher_photo", "photo", "teacher"), ("orpo", "note", "student (MINT)"), ("sft", "note", "student (SFT)")]


def _write_summary(config, table: pl.DataFrame, training, comparisons, teacher_metrics, cohort, path: Path) -> None:
    k = config["preferences"]["k"]
    ks = [x for x in config["evaluation"]["ks"] if x != 1]
    seeds = int(table["n_seeds"].max())
    head = ["method", "n", "top-1 %"] + [f"top-{x} %" for x in ks] + ["MRR", "hallucinated %", "format ok %"]
    head += ["seeds", "top-1 sd between seeds"] if seeds > 1 else []
    lines = [
        "# MINT evaluation",
        "",
        f"Test cases: {table['n_cases'].max()}. Students answer from the note only, with a list of k={k} diseases "
        f"(so top-{max(ks) if ks else k} of a student can be at most its top-{k}); the teacher and the rankers "
        "rank the whole panel. Brackets: 95% bootstrap intervals over cases"
        + (f"; students trained with {seeds} seeds give the mean over seeds, resampled by case." if seeds > 1
           else "."),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in table.iter_rows(named=True):
        cells = [row["label"], str(row["n_cases"]), _fmt(row, "top1")] + [_fmt(row, f"top{x}") for x in ks]
        cells += [_fmt(row, "mrr", pct=False), _fmt(row, "hallucination_rate"), _fmt(row, "format_rate")]
        spread = f"{100 * row['top1_seed_sd']:.1f}" if row["n_seeds"] > 1 else ""  # one seed: no spread
        cells += [str(row["n_seeds"]), spread] if seeds > 1 else []
        lines.append("| " + " | ".join(cells) + " |")
    rows = {r["method"]: r for r in table.iter_rows(named=True)}
    ablation = [(m, inp, who) for m, inp, who in ABLATION if m in rows]
    if any(m.startswith("teacher_") for m, _, _ in ablation) and "orpo" in rows:
        top = f"top{max(ks)}" if ks else "top1"
        lines += ["", "## Modality ablation", "", f"| model | input | top-1 % | {top.replace('top', 'top-')} % | MRR |",
                  "|---|---|---|---|---|"]
        for m, inp, who in ablation:
            r = rows[m]
            lines.append(f"| {who} | {inp} | {_fmt(r, 'top1')} | {_fmt(r, top)} | {_fmt(r, 'mrr', pct=False)} |")
    if comparisons:
        lines += ["", "## MINT (ORPO) against each method, paired bootstrap on the same cases", "",
                  "| other | metric | ORPO - other | 95% interval | p |", "|---|---|---|---|---|"]
        for c in comparisons:
            lines.append(f"| {display_name(c['method_b'])} | {c['metric']} | {c['diff']:+.3f} | "
                         f"[{c['lo']:+.3f}, {c['hi']:+.3f}] | {c['p_value']:.3f} |")
    if training:
        lines += ["", "## Training", "", "| method | seed | fine-tuning | trainable parameters | steps | seconds | "
                  "tensors unchanged |", "|---|---|---|---|---|---|---|"]
        for m in training:
            lines.append(f"| {display_name(m['method'])} | {m.get('seed', '')} | {m['fine_tuning']} | "
                         f"{m['trainable_parameters']:,} | {m['global_step']} | "
                         f"{m.get('train_runtime', float('nan')):.0f} | "
                         f"{len(m['unchanged_tensors'])} of {m['trainable_tensors']} |")
    if teacher_metrics:
        t = load_json(teacher_metrics)
        lines += ["", "## Teacher (test split, top-1)", "",
                  f"note+photo {100 * t['test_note_photo_top1']:.1f}%, note only {100 * t['test_note_top1']:.1f}%, "
                  f"photo only {100 * t['test_photo_top1']:.1f}%."]
    if cohort:
        lines += ["", "## Cohort", "", f"Panel: {cohort['panel']} diseases; {cohort['test_diseases']} of them have "
                  "test cases.", "", "| source / split | cases |", "|---|---|"]
        lines += [f"| {key} | {n} |" for key, n in cohort["cases"].items()]
        excluded = cohort["excluded"]
        lines += ["", f"Excluded input cases: {sum(excluded.values())}"
                  + (" (" + ", ".join(f"{reason}: {n}" for reason, n in excluded.items()) + ")" if excluded else "")
                  + "; `results/cohort/excluded.parquet` names each with its reason."]
        if "phenopacket" in cohort["sources"]:
            pubs = cohort["publications"]
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
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on cluster nodes
    import matplotlib.pyplot as plt

    return plt


def _plot_accuracy(table: pl.DataFrame, k: int, path: Path) -> None:
    plt = _pyplot()
    metrics = ["top1"] + ([f"top{k}"] if f"top{k}" in table.columns and k != 1 else [])
    fig, ax = plt.subplots(figsize=(1.2 * table.height + 2, 3.6))
    width = 0.8 / len(metrics)
    for j, m in enumerate(metrics):
        xs = [i + j * width for i in range(table.height)]
        vals = table[m].to_numpy() * 100
        err = [vals - table[m + "_lo"].to_numpy() * 100, table[m + "_hi"].to_numpy() * 100 - vals]
        ax.bar(xs, vals, width, yerr=err, capsize=3, label=m.replace("top", "top-"))
    ax.set_xticks([i + width * (len(metrics) - 1) / 2 for i in range(table.height)])
    ax.set_xticklabels(table["label"].to_list(), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("Disease prediction on the test notes (95% bootstrap intervals)", fontsize=9)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    fig.clf()
    _pyplot().close(fig)


def _plot_training(train_dirs: Sequence[str | Path], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for d in train_dirs:
        rows = [json.loads(x) for x in (Path(d) / "trainer_log.jsonl").read_text().splitlines() if x.strip()]
        pts = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        if pts:
            meta = load_json(Path(d) / "metrics.json")
            seed = f" (seed {meta['seed']})" if meta.get("seed") is not None else ""
            ax.plot(*zip(*pts), marker=".", label=display_name(meta["method"]) + seed)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (method's own objective)")
    ax.legend(fontsize=8)
    _save(fig, path)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write the MINT comparison report from per-method case scores.")
    p.add_argument("config")
    p.add_argument("out_dir")
    p.add_argument("--scores", nargs="+", required=True)
    p.add_argument("--train", nargs="*", default=[])
    p.add_argument("--teacher-metrics", default=None)
    a = p.parse_args(argv)
    print(make_report(load_config(a.config), a.scores, a.train, a.teacher_metrics, a.out_dir))


if __name__ == "__main__":
    main()
