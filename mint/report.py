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
STUDENT_ROWS = {"base": "base model", "sft": "SFT", "dpo": "DPO (from SFT)", "orpo": "MINT (ORPO)"}


def _truth(cohort_dir: str | Path) -> pl.DataFrame:
    cases, _ = load_cohort(cohort_dir)
    return cases.filter(pl.col("split") == "test").select("case_id", "disease_id")


def score_student(config: Mapping[str, Any], knowledge_dir, cohort_dir, predictions_path, out_path) -> None:
    diseases, _, _ = load_knowledge(knowledge_dir)
    _, panel = load_cohort(cohort_dir)
    matcher = NameMatcher(diseases, prefer=panel["disease_id"].to_list(), cutoff=config["evaluation"]["fuzzy_cutoff"])
    preds = read_parquet(predictions_path, schemas.PREDICTIONS)
    scores = score_predictions(preds, _truth(cohort_dir), matcher, config["preferences"]["k"])
    write_parquet(scores, out_path, schemas.CASE_SCORES, provenance(section(config, "evaluation"), seed=config["seed"]))


def score_teacher(config: Mapping[str, Any], cohort_dir, rankings_path, modality: str, out_path) -> None:
    truth = _truth(cohort_dir)
    rankings = read_parquet(rankings_path, schemas.RANKINGS).filter(
        (pl.col("modality") == modality) & pl.col("case_id").is_in(truth["case_id"].to_list())
    )
    truth = truth.filter(pl.col("case_id").is_in(rankings["case_id"].unique().to_list()))
    # The teacher ranks the whole panel, so it is scored on as many diseases as the largest k asked.
    k = max(config["evaluation"]["ks"])
    scores = score_rankings(rankings, truth, k, f"teacher_{modality}")
    write_parquet(scores, out_path, schemas.CASE_SCORES, provenance(section(config, "evaluation"), seed=config["seed"]))


def display_name(method: str) -> str:
    if method.startswith("teacher_"):
        return TEACHER_ROWS.get(method.removeprefix("teacher_"), method)
    return STUDENT_ROWS.get(method, method)


def make_report(
    config: Mapping[str, Any], score_paths: Sequence[str | Path], train_dirs: Sequence[str | Path],
    teacher_metrics: str | Path | None, out_dir: str | Path,
) -> pl.DataFrame:
    ev = config["evaluation"]
    scores = pl.concat([read_parquet(p, schemas.CASE_SCORES) for p in score_paths])
    table = summarize(scores, ks=tuple(ev["ks"]), n_boot=ev["bootstrap"], seed=config["seed"])
    table = table.with_columns(label=pl.col("method").map_elements(display_name, return_dtype=pl.String))
    # Rows in a fixed order (teacher rows, then the students as in STUDENT_ROWS), whatever the input order.
    order = [f"teacher_{m}" for m in TEACHER_ROWS] + list(STUDENT_ROWS)
    table = table.sort(pl.col("method").map_elements(lambda m: order.index(m) if m in order else len(order),
                                                     return_dtype=pl.Int64), maintain_order=True)
    out = Path(out_dir)
    prov = provenance(section(config, "evaluation", "preferences", "training"), seed=config["seed"])
    with atomic_path(out / "metrics.csv") as tmp:
        table.write_csv(tmp)
    training = {Path(d).name: load_json(Path(d) / "metrics.json") for d in train_dirs}
    comparisons = [
        paired_bootstrap(scores, "orpo", other, metric=m, n_boot=ev["bootstrap"], seed=config["seed"])
        for other in table["method"].to_list() if other != "orpo" and "orpo" in table["method"].to_list()
        for m in ("top1", "mrr")
    ]
    write_json({"metrics": table.to_dicts(), "training": training, "orpo_vs": comparisons,
                "teacher": load_json(teacher_metrics) if teacher_metrics else None}, out / "metrics.json", prov)
    _plot_accuracy(table, config["preferences"]["k"], out / "accuracy.png")
    _plot_training(train_dirs, out / "training.png")
    _write_summary(config, table, training, comparisons, teacher_metrics, out / "summary.md")
    return table


def _fmt(row: Mapping[str, Any], m: str, pct: bool = True) -> str:
    f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.3f}")
    return f"{f(row[m])} [{f(row[m + '_lo'])}, {f(row[m + '_hi'])}]"


def _write_summary(config, table: pl.DataFrame, training, comparisons, teacher_metrics, path: Path) -> None:
    k = config["preferences"]["k"]
    ks = [x for x in config["evaluation"]["ks"] if x != 1]
    head = ["method", "n", "top-1 %"] + [f"top-{x} %" for x in ks] + ["MRR", "hallucinated %", "format ok %"]
    lines = [
        "# MINT evaluation",
        "",
        f"Test cases: {table['n_cases'].max()}. Students answer from the note only, with a list of k={k} diseases "
        f"(so top-{max(ks) if ks else k} of a student can be at most its top-{k}); the teacher ranks the whole panel. "
        "Brackets: 95% bootstrap intervals over cases.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in table.iter_rows(named=True):
        cells = [row["label"], str(row["n_cases"]), _fmt(row, "top1")] + [_fmt(row, f"top{x}") for x in ks]
        cells += [_fmt(row, "mrr", pct=False), _fmt(row, "hallucination_rate"), _fmt(row, "format_rate")]
        lines.append("| " + " | ".join(cells) + " |")
    if training:
        lines += ["", "## Training", "", "| method | fine-tuning | trainable parameters | steps | seconds | "
                  "tensors unchanged |", "|---|---|---|---|---|---|"]
        for name, m in training.items():
            lines.append(f"| {display_name(name)} | {m['fine_tuning']} | {m['trainable_parameters']:,} | "
                         f"{m['global_step']} | {m.get('train_runtime', float('nan')):.0f} | "
                         f"{len(m['unchanged_tensors'])} of {m['trainable_tensors']} |")
    if comparisons:
        lines += ["", "## MINT (ORPO) against each method, paired bootstrap on the same cases", "",
                  "| other | metric | ORPO - other | 95% interval | p |", "|---|---|---|---|---|"]
        for c in comparisons:
            lines.append(f"| {display_name(c['method_b'])} | {c['metric']} | {c['diff']:+.3f} | "
                         f"[{c['lo']:+.3f}, {c['hi']:+.3f}] | {c['p_value']:.3f} |")
    if teacher_metrics:
        t = load_json(teacher_metrics)
        lines += ["", "## Teacher (test split, top-1)", "",
                  f"note+photo {100 * t['test_note_photo_top1']:.1f}%, note only {100 * t['test_note_top1']:.1f}%, "
                  f"photo only {100 * t['test_photo_top1']:.1f}%."]
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
            ax.plot(*zip(*pts), marker=".", label=display_name(Path(d).name))
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
