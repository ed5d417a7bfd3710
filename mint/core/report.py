"""Score every method on the test cases and write the comparison: table, plots, summary.

`score_student` / `score_ranker` write per-case scores (CASE_SCORES) for one method;
`make_report` turns all of them into `metrics.csv`, `metrics.json`, `summary.md`,
`accuracy.png` (top-k per method with 95% bootstrap intervals), `training.png` (training loss
per method), `per_label.{png,csv}` (accuracy by the label's training cases) and `by_seen_label.csv`
(accuracy on the test cases whose label has a real training case, and on the others). Rows, nouns and
extra sections come from the application (`mint.core.app.Application`).

    python -m mint.core.report --help
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from mint.core import schemas
from mint.core.app import Application, load_application
from mint.core.cohort import load_cases, load_labels, split_truth
from mint.core.evaluate import (
    CASE_SCORE_SCHEMA,
    SEEN_GROUPS,
    NameMatcher,
    agreement_table,
    agreement_terms,
    confusion,
    normalize_name,
    paired_bootstrap,
    score_predictions,
    score_rankings,
    seen_labels,
    summarize,
    summarize_by_seen,
    training_counts,
)
from mint.core.io import atomic_path, load_json, provenance, read_parquet, sidecar_path, write_json, write_parquet
from mint.core.rankings import RankedLists
from mint.core.trainers import fell_back

STUDENT_ROWS = {"base": "base model", "sft": "SFT", "dpo": "DPO (from SFT)", "orpo": "MINT (ORPO)"}
# A student's full-panel ranking (`mint.core.panel`) is the method `<student><PANEL_SUFFIX>` of the report,
# its row `<student's row> (full panel)`, after every row that answers.
PANEL_SUFFIX = "_panel"
# The summary's first lines when the scores are of the validation cases (`evaluation.split: validation`).
VALIDATION_BANNER = [
    "**Scored on the validation cases** (`evaluation.split: validation`), for choosing options without reading "
    "the test split. The teacher's fusion or epoch was chosen on these cases, so the teacher's rows are "
    "in-sample here; the students and the rankers never trained on them.",
    "",
]


def score_student(
    cases_path: str | Path, candidates_path: str | Path, vocabulary_path: str | Path | None,
    predictions_path: str | Path, out_path: str | Path, *, k: int, header: str, fuzzy_cutoff: float,
    normalise: Callable[[str], str] = normalize_name, seed: int | None = None, split: str = "test",
) -> None:
    """CASE_SCORES of a student's answers to the `split` cases; `seed`: the training seed of a trained student.

    Names are matched over the vocabulary (the candidates when there is none), candidates first.
    """
    candidates = load_labels(candidates_path)
    vocabulary = load_labels(vocabulary_path) if vocabulary_path else candidates
    matcher = NameMatcher(vocabulary, prefer=candidates["label_id"].to_list(), cutoff=fuzzy_cutoff,
                          normalise=normalise)
    preds = read_parquet(predictions_path, schemas.PREDICTIONS)
    scores = score_predictions(preds, split_truth(load_cases(cases_path), split), matcher, k, header, seed=seed)
    write_parquet(scores, out_path, schemas.CASE_SCORES,
                  provenance({"k": k, "header": header, "fuzzy_cutoff": fuzzy_cutoff}, seed=seed,
                             **recorded_cuts(predictions_path)))


def score_ranker(cases_path: str | Path, rankings_path: str | Path, out_path: str | Path, *, modality: str,
                 method: str, k: int, chunk: int = 50_000, seed: int | None = None, split: str = "test") -> None:
    """CASE_SCORES on the `split` cases of a ranker (the teacher in one modality, a baseline, or a student
    ranking the whole panel, `mint.core.panel`), from its top `k` labels; `seed`: a trained student's training seed.

    A ranker ranks every candidate, so it is scored on as many labels as the largest k the report asks.
    Its rankings are read streamed, `chunk` cases at a time (`mint.core.rankings.RankedLists`).
    """
    truth = split_truth(load_cases(cases_path), split)
    with RankedLists(rankings_path, modality, top=k, cases=truth, scratch=Path(out_path).parent) as ranked:
        parts = [score_rankings(rows, truth.join(rows.select("case_id").unique(), on="case_id"), k, method, seed)
                 for rows in _ranked_rows(ranked, modality, chunk)]
    scores = pl.concat(parts) if parts else pl.DataFrame(schema=CASE_SCORE_SCHEMA)
    write_parquet(scores, out_path, schemas.CASE_SCORES, provenance({"modality": modality, "k": k}, seed=seed,
                                                                    **recorded_cuts(rankings_path)))


def recorded_cuts(path: str | Path) -> dict[str, int]:
    """{"truncated_prompts": n} where the provenance beside `path` records how many of a student's prompts were
    cut to its context (`mint.core.prompts.CasePrompts`); {} where it records none (a teacher's rankings)."""
    side = sidecar_path(path)
    n = load_json(side).get("truncated_prompts") if side.is_file() else None
    return {"truncated_prompts": n} if n is not None else {}


def _ranked_rows(ranked: RankedLists, modality: str, chunk: int) -> Iterator[pl.DataFrame]:
    """RANKINGS rows (case_id, modality, label_id, rank) of the labels `ranked` keeps, `chunk` cases at a
    time in their order in the file; rank is the position among the kept labels (the same order)."""
    for part in ranked.chunks(ranked.cases["case_id"], chunk):
        yield (part.select("case_id", "label_ids").explode("label_ids")
               .select("case_id", modality=pl.lit(modality), label_id="label_ids",
                       rank=pl.int_range(1, pl.len() + 1).over("case_id").cast(pl.Int32)))


def agreement_with_teacher(case_scores: pl.DataFrame, rankings_path: str | Path, *, modality: str, k: int, q: int,
                           chunk: int = 50_000) -> pl.DataFrame:
    """`mint.core.evaluate.teacher_agreement` of `case_scores` with the `modality` rankings, read streamed
    `chunk` cases at a time: only each case's top `k` and bottom `q` labels, only the scored cases."""
    terms: dict[int, tuple[float, float]] = {}
    with RankedLists(rankings_path, modality, top=k, bottom=q, cases=case_scores.select("case_id").unique()) as ranked:
        for rows in _ranked_rows(ranked, modality, chunk):
            terms.update(agreement_terms(case_scores, rows, k, q))
    return agreement_table(case_scores, terms)


def row_labels(app: Application) -> dict[str, str]:
    """Report rows in order, method -> label: the teachers' modalities (`modality_labels`, then external
    rankings), then the application's order."""
    modalities = dict.fromkeys([*app.modality_labels, "external"])
    teacher = {f"teacher_{m}": f"teacher ({app.modality_labels.get(m, m)})" for m in modalities}
    students = {m: app.rows.get(m) or STUDENT_ROWS.get(m, m) for m in app.row_order}
    panel = {f"{m}{PANEL_SUFFIX}": f"{label} (full panel)" for m, label in students.items() if m in STUDENT_ROWS}
    return {**teacher, **students, **panel}


def display_name(method: str, rows: Mapping[str, str]) -> str:
    if method not in rows and method.endswith(PANEL_SUFFIX):
        return f"{display_name(method.removesuffix(PANEL_SUFFIX), rows)} (full panel)"
    return rows.get(method) or STUDENT_ROWS.get(method, method)


def _order_key(rows: Mapping[str, str]) -> Callable[[str], int]:
    order = list(rows)
    return lambda m: order.index(m) if m in order else len(order)


def write_timings(training: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Each student's training time (seconds, from its metrics.json): kept out of summary.md and
    metrics.csv, so that reporting the same run twice gives the same bytes there."""
    table = pl.DataFrame([{"step": "train_student", "method": m["method"], "seed": m.get("seed"),
                           "seconds": m.get("train_runtime")} for m in training],
                         schema={"step": pl.String, "method": pl.String, "seed": pl.Int64, "seconds": pl.Float64})
    with atomic_path(path) as tmp:
        table.write_csv(tmp)


def make_report(
    score_paths: Sequence[str | Path], train_dirs: Sequence[str | Path], out_dir: str | Path, *, app: Application,
    k: int, ks: Sequence[int], n_boot: int, seed: int, teacher_metrics: str | Path | None = None,
    cases_path: str | Path | None = None, candidates_path: str | Path | None = None,
    excluded_path: str | Path | None = None, rankings_path: str | Path | None = None, modality: str | None = None,
    q: int | None = None, teacher_description: str | None = None, split: str = "test",
) -> pl.DataFrame:
    """Write the comparison under `out_dir`; with the cohort files, also the cohort and per-label sections.

    `k`: labels a student names; `ks`: the top-k accuracies reported; `n_boot` bootstrap resamples.
    With the teacher's rankings (`modality`: the one that made the pairs, `q`: the rejected list's
    length), also `agreement.csv` (coverage of the teacher's top k, avoidance of its bottom q) and
    `confusion.png` (true label against the label MINT names first). `teacher_description`: which
    teacher ranked, from what (a line of the summary). `split`: the cases the scores are of (`evaluation.split`).
    """
    rows = row_labels(app)
    parts = [read_parquet(p, schemas.CASE_SCORES) for p in score_paths]
    scores = pl.concat(parts)
    # Prompts cut to a student's context, by method (over its seeds): stated only where some were.
    cut: dict[str, int] = {}
    for path, part in zip(score_paths, parts):
        n = recorded_cuts(path).get("truncated_prompts", 0)
        if n and part.height:
            cut[part["method"][0]] = cut.get(part["method"][0], 0) + n
    table = summarize(scores, ks=tuple(ks), n_boot=n_boot, seed=seed)
    table = table.with_columns(label=pl.col("method").map_elements(lambda m: display_name(m, rows),
                                                                   return_dtype=pl.String))
    # Rows in a fixed order (teachers, rankers, then the students), whatever the input order.
    table = table.sort(pl.col("method").map_elements(_order_key(rows), return_dtype=pl.Int64), maintain_order=True)
    out = Path(out_dir)
    prov = provenance({"k": k, "ks": list(ks), "bootstrap": n_boot, "application": app.name, "split": split},
                      seed=seed)
    with atomic_path(out / "metrics.csv") as tmp:
        table.write_csv(tmp)
    training = [load_json(Path(d) / "metrics.json") for d in train_dirs]
    write_timings(training, out / "timings.csv")
    # ORPO's answers against every other row; ORPO's full-panel ranking against every other row that ranks
    # the whole panel (the teachers, the rankers and the other students' full-panel rankings).
    present = table["method"].to_list()
    ranking = [m for m in present if m.endswith(PANEL_SUFFIX) or m.startswith("teacher_") or m in app.rankers]
    pairs = [(mine, other) for mine, others in (("orpo", present), (f"orpo{PANEL_SUFFIX}", ranking))
             if mine in present for other in others if other != mine]
    comparisons = [paired_bootstrap(scores, mine, other, metric=m, n_boot=n_boot, seed=seed)
                   for mine, other in pairs for m in ("top1", "mrr")]
    # The teacher whose lists make the pairs against each ranker: is it worth distilling?
    teacher_row = f"teacher_{modality}" if modality else None
    teacher_vs = [paired_bootstrap(scores, teacher_row, ranker, metric=m, n_boot=n_boot, seed=seed)
                  for ranker in app.rankers if teacher_row in present and ranker in present
                  for m in ("top1", f"top{max(ks)}", "mrr")]
    cohort = cases = None
    seen_section: list[str] = []
    if cases_path and candidates_path:
        cases = load_cases(cases_path)
        cohort = _cohort_facts(cases, load_labels(candidates_path), excluded_path)
        seen_section = _seen_section(scores, cases, table, app, ks, n_boot, seed, out / "by_seen_label.csv", split)
        per_label = _per_label(scores, cases, app.synthetic_sources)
        with atomic_path(out / "per_label.csv") as tmp:
            per_label.write_csv(tmp)
        _plot_per_label(per_label, rows, app, out / "per_label.png")
    agreement = None
    if rankings_path and modality and q:
        # Rows that name k labels: a ranker's top-k list (the teacher's, a full-panel one) is longer.
        method = pl.col("method")
        answers = scores.filter(~method.str.starts_with("teacher_") & ~method.str.ends_with(PANEL_SUFFIX))
        agreement = agreement_with_teacher(answers, rankings_path, modality=modality, k=k, q=q)
        with atomic_path(out / "agreement.csv") as tmp:
            agreement.write_csv(tmp)
        if candidates_path:
            method = "orpo" if "orpo" in table["method"].to_list() else table["method"][-1]
            _plot_confusion(scores, method, load_labels(candidates_path), rows, app, out / "confusion.png")
    teacher = load_json(teacher_metrics) if teacher_metrics else None
    write_json({"split": split, "metrics": table.to_dicts(), "training": training, "orpo_vs": comparisons,
                "teacher_vs": teacher_vs, "cohort": cohort, "teacher": teacher,
                **({"truncated_prompts": cut} if cut else {})}, out / "metrics.json", prov)
    _plot_accuracy(table, k, app, out / "accuracy.png", split)
    _plot_training(train_dirs, rows, out / "training.png")
    context = {"table": table, "k": k, "ks": list(ks), "teacher_metrics": teacher, "cohort": cohort, "cases": cases,
               "agreement": agreement, "q": q, "teacher_description": teacher_description,
               "seen_section": seen_section, "teacher_vs": teacher_vs, "split": split, "truncated": cut}
    _write_summary(app, rows, context, training, comparisons, out / "summary.md")
    return table


def _cohort_facts(cases: pl.DataFrame, candidates: pl.DataFrame, excluded_path: str | Path | None) -> dict[str, Any]:
    """Counts the report states: cases by source and split, where the splits came from, the candidates,
    exclusions by reason."""
    excluded = read_parquet(excluded_path, schemas.EXCLUDED) if excluded_path else None
    by = cases.group_by("source", "split").len().sort("source", "split")
    given = (cases.group_by("split_source", "split").len().sort("split_source", "split")
             if "split_source" in cases.columns else None)
    return {
        "split_sources": {f"{src}/{split}": n for src, split, n in given.iter_rows()} if given is not None else {},
        "sources": sorted(cases["source"].unique().to_list()),
        "cases": {f"{src}/{split}": n for src, split, n in by.iter_rows()},
        "candidates": candidates.height,
        "test_labels": cases.filter(pl.col("split") == "test")["label_id"].n_unique(),
        "groups": {split: cases.filter((pl.col("split") == split) & pl.col("group").is_not_null())
                   ["group"].n_unique() for split in ("train", "validation", "test")},
        "excluded": dict(excluded.group_by("reason").len().sort("reason").iter_rows()) if excluded is not None else {},
    }


def _seen_section(scores: pl.DataFrame, cases: pl.DataFrame, table: pl.DataFrame, app: Application,
                  ks: Sequence[int], n_boot: int, seed: int, path: Path, split: str = "test") -> list[str]:
    """Summary lines "By whether the label has a real training case", and the table as `path` (CSV).

    Every row of the main `table` (its order and labels), on the `split` cases whose label is seen
    (`mint.core.evaluate.seen_labels`) and on the others; one line instead when one group is empty.
    """
    by = summarize_by_seen(scores, seen_labels(cases, app.synthetic_sources), ks=tuple(ks), n_boot=n_boot, seed=seed)
    labels = dict(table.select("method", "label").iter_rows())
    order = {m: i for i, m in enumerate(labels)}
    by = (by.with_columns(label=pl.col("method").replace_strict(labels, default=pl.col("method")),
                          _order=pl.col("method").replace_strict(order, default=len(order), return_dtype=pl.Int64))
          .sort("_order", maintain_order=True).sort("group", maintain_order=True)  # SEEN_GROUPS are alphabetical
          .select("group", "method", "label", pl.exclude("group", "method", "label", "_order")))
    with atomic_path(path) as tmp:
        by.write_csv(tmp)
    sizes = {g: int(by.filter(pl.col("group") == g)["n_cases"].max() or 0) for g in SEEN_GROUPS}
    if not any(sizes.values()):
        return []
    synthetic = " or ".join(f"`{s}`" for s in app.synthetic_sources) or "none"
    lines = ["", "## By whether the label has a real training case", ""]
    if not all(sizes.values()):
        which = f"every {split} case's" if sizes["seen"] else f"no {split} case's"
        return lines + [f"Not split: {which} {app.label_noun} has a real training case (source not {synthetic}), "
                        "so either group would repeat the main table."]
    rest = [x for x in ks if x != 1]
    tops = ["top1", *([f"top{max(rest)}"] if rest else [])]
    head = [f"{top.replace('top', 'top-')} % {g} ({sizes[g]} cases)" for g in SEEN_GROUPS for top in tops]
    lines += [f"A {split} case's {app.label_noun} is *seen* when at least one of its training cases comes from a real "
              f"source (not {synthetic}; validation cases do not count). Means over seeds and 95% bootstrap "
              f"intervals as in the main table; `{path.name}` has every metric.", "",
              "| method | " + " | ".join(head) + " |", "|" + "---|" * (len(head) + 1)]
    cells = {(r["group"], r["method"]): r for r in by.iter_rows(named=True)}
    for method, label in labels.items():
        row = [_fmt(cells[g, method], top) if (g, method) in cells else "-" for g in SEEN_GROUPS for top in tops]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return lines


# Bins of a label's real (not synthetic: `Application.synthetic_sources`) training cases, for the per-label view.
TRAIN_BINS = [(0, 0, "0"), (1, 2, "1-2"), (3, 5, "3-5"), (6, 10, "6-10"), (11, 10**9, ">10")]


def _per_label(scores: pl.DataFrame, cases: pl.DataFrame, synthetic_sources: Sequence[str]) -> pl.DataFrame:
    """Top-1 per method and test label (seed-averaged) with the label's training cases, real and all."""
    counts = training_counts(cases, synthetic_sources)
    hits = scores.with_columns(hit=(pl.col("rank").fill_null(10**6) <= 1).cast(pl.Float64))
    per_case = hits.group_by("method", "case_id", "label_id").agg(pl.col("hit").mean())
    return (
        per_case.group_by("method", "label_id").agg(n_test=pl.len(), top1=pl.col("hit").mean())
        .join(counts, on="label_id", how="left")
        .with_columns(pl.col("n_train", "n_train_real").fill_null(0))
        .sort("method", "label_id")
    )


def _plot_per_label(per_label: pl.DataFrame, rows: Mapping[str, str], app: Application, path: Path) -> None:
    """Top-1 of the test cases against how many real training cases their label has."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    labels = [b[2] for b in TRAIN_BINS]
    methods = sorted(per_label["method"].unique().to_list(), key=_order_key(rows))
    for method in methods:
        d = per_label.filter(pl.col("method") == method)
        ys = []
        for lo, hi, _ in TRAIN_BINS:
            b = d.filter(pl.col("n_train_real").is_between(lo, hi))
            # Case-weighted: the share of the bin's test cases ranked first.
            ys.append(float((b["top1"] * b["n_test"]).sum() / b["n_test"].sum()) * 100 if b.height else float("nan"))
        ax.plot(labels, ys, marker="o", label=display_name(method, rows))
    n_cases = [int(per_label.filter((pl.col("method") == methods[0]) & pl.col("n_train_real").is_between(lo, hi))
                   ["n_test"].sum()) for lo, hi, _ in TRAIN_BINS]
    ax.set_xticks(range(len(labels)), [f"{lab}\n({n} cases)" for lab, n in zip(labels, n_cases)], fontsize=8)
    ax.set_xlabel(f"real training cases of the test case's {app.label_noun}")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"Accuracy by how many real training cases a {app.label_noun} has", fontsize=9)
    _save(fig, path)


def _plot_confusion(scores: pl.DataFrame, method: str, labels: pl.DataFrame, rows: Mapping[str, str],
                    app: Application, path: Path) -> None:
    """True label (rows) against the label `method` names first (columns; last: none of the list), row shares."""
    counts = confusion(scores, method, labels["label_id"].to_list())
    shares = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    plt = _pyplot()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(min(3 + 0.35 * n, 14), min(2.5 + 0.3 * n, 12)))
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    names = labels["name"].to_list()
    ax.set_xticks(range(n + 1), [*names, "none"], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel(f"{app.label_noun} named first")
    ax.set_ylabel(f"true {app.label_noun}")
    ax.set_title(f"{display_name(method, rows)}: share of each true {app.label_noun}'s test cases", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    _save(fig, path)


def _fmt(row: Mapping[str, Any], m: str, pct: bool = True) -> str:
    f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.3f}")
    return f"{f(row[m])} [{f(row[m + '_lo'])}, {f(row[m + '_hi'])}]"


def fast_forward_lines(training: Sequence[Mapping[str, Any]], rows: Mapping[str, str]) -> list[str]:
    """A line of the summary naming each student that trained TRL's way instead of with the workflow's own forward
    pass (`fast_forward` in its metrics.json, mint.core.trainers.fast_forward); none when every student used it."""
    fell = [m for m in training if fell_back(m.get("fast_forward"))]
    if not fell:
        return []
    named = "; ".join(f"{display_name(m['method'], rows)} seed {m.get('seed', '')}: {m['fast_forward']}" for m in fell)
    return ["", f"Trained with TRL's own forward pass, not the workflow's (slower; the same loss up to float "
            f"rounding): {named}."]


def _write_summary(app: Application, rows: Mapping[str, str], context: Mapping[str, Any], training, comparisons,
                   path: Path) -> None:
    table, k = context["table"], context["k"]
    ks = [x for x in context["ks"] if x != 1]
    seeds = int(table["n_seeds"].max())
    head = ["method", "n", "top-1 %"] + [f"top-{x} %" for x in ks] + ["MRR", "hallucinated %", "format ok %"]
    head += ["seeds", "top-1 sd between seeds"] if seeds > 1 else []
    lines = [
        "# MINT evaluation",
        "",
        *(VALIDATION_BANNER if context["split"] == "validation" else []),
        f"{context['split'].capitalize()} cases: {table['n_cases'].max()}. Students answer from "
        f"{app.student_input} only, with a list of "
        f"k={k} {app.labels_noun} (so top-{max(ks) if ks else k} of a student can be at most its top-{k}); the "
        f"teacher and the rankers rank every candidate, and so does a student's '(full panel)' row: every "
        f"candidate by the student's likelihood of naming it first. Brackets: 95% bootstrap intervals over cases"
        + (f"; students trained with {seeds} seeds give the mean over seeds, resampled by case." if seeds > 1
           else "."),
        "",
        *([f"Teacher: {context['teacher_description']}.", ""] if context.get("teacher_description") else []),
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in table.iter_rows(named=True):
        cells = [row["label"], str(row["n_cases"]), _fmt(row, "top1")] + [_fmt(row, f"top{x}") for x in ks]
        cells += [_fmt(row, "mrr", pct=False), _fmt(row, "hallucination_rate"), _fmt(row, "format_rate")]
        spread = f"{100 * row['top1_seed_sd']:.1f}" if row["n_seeds"] > 1 else ""  # one seed: no spread
        cells += [str(row["n_seeds"]), spread] if seeds > 1 else []
        lines.append("| " + " | ".join(cells) + " |")
    if context.get("truncated"):
        named = "; ".join(f"{display_name(m, rows)}: {n}" for m, n in context["truncated"].items())
        lines += ["", "Prompts cut to the student's context, the case text's first tokens kept "
                      f"(docs/inputs.md, Limits; over all seeds): {named}."]
    by_method = {r["method"]: r for r in table.iter_rows(named=True)}
    ablation = [(m, app.modality_labels.get(m.removeprefix("teacher_"), m), "teacher")
                for m in by_method if m.startswith("teacher_") and m != "teacher_external"]
    if ablation and "orpo" in by_method:
        ablation += [(m, app.student_input, f"student ({who})") for m, who in (("orpo", "MINT"), ("sft", "SFT"))
                     if m in by_method]
        top = f"top{max(ks)}" if ks else "top1"
        lines += ["", "## Modality ablation", "", f"| model | input | top-1 % | {top.replace('top', 'top-')} % | MRR |",
                  "|---|---|---|---|---|"]
        for m, inp, who in ablation:
            r = by_method[m]
            lines.append(f"| {who} | {inp} | {_fmt(r, 'top1')} | {_fmt(r, top)} | {_fmt(r, 'mrr', pct=False)} |")
    lines += context.get("seen_section") or []
    if comparisons:
        lines += ["", "## MINT (ORPO) against each method, paired bootstrap on the same cases", "",
                  "| MINT | other | metric | MINT - other | 95% interval | p |", "|---|---|---|---|---|---|"]
        for c in comparisons:
            lines.append(f"| {display_name(c['method_a'], rows)} | {display_name(c['method_b'], rows)} | "
                         f"{c['metric']} | {c['diff']:+.3f} | [{c['lo']:+.3f}, {c['hi']:+.3f}] | {c['p_value']:.3f} |")
    if context.get("teacher_vs"):
        lines += ["", "## The teacher against each ranker, paired bootstrap on the same cases", "",
                  "| teacher | ranker | metric | teacher - ranker | 95% interval | p |", "|---|---|---|---|---|---|"]
        for c in context["teacher_vs"]:
            lines.append(f"| {display_name(c['method_a'], rows)} | {display_name(c['method_b'], rows)} | "
                         f"{c['metric']} | {c['diff']:+.3f} | [{c['lo']:+.3f}, {c['hi']:+.3f}] | {c['p_value']:.3f} |")
    if training:
        lines += ["", "## Training", "", "Wall-clock times are in `timings.csv` (they differ between two runs of the "
                  "same settings; this summary does not).", "",
                  "| method | seed | fine-tuning | trainable parameters | steps | tensors unchanged |",
                  "|---|---|---|---|---|---|"]
        for m in training:
            lines.append(f"| {display_name(m['method'], rows)} | {m.get('seed', '')} | {m['fine_tuning']} | "
                         f"{m['trainable_parameters']:,} | {m['global_step']} | "
                         f"{len(m['unchanged_tensors'])} of {m['trainable_tensors']} |")
        lines += fast_forward_lines(training, rows)
    agreement = context.get("agreement")
    if agreement is not None and agreement.height:
        lines += ["", "## Agreement with the teacher's lists", "",
                  f"The share of the teacher's top {k} that an answer names, and of its bottom {context['q']} that it "
                  "does not name (mean over test cases and seeds).", "",
                  "| method | coverage of top % | avoidance of bottom % |", "|---|---|---|"]
        for r in agreement.iter_rows(named=True):
            lines.append(f"| {display_name(r['method'], rows)} | {100 * r['coverage']:.1f} | "
                         f"{100 * r['avoidance']:.1f} |")
    cohort = context["cohort"]
    if cohort:
        lines += ["", "## Cohort", "", f"Candidates: {cohort['candidates']} {app.labels_noun}; "
                  f"{cohort['test_labels']} of them have test cases.", "", "| source / split | cases |", "|---|---|"]
        lines += [f"| {key} | {n} |" for key, n in cohort["cases"].items()]
        if cohort.get("split_sources"):
            lines += ["", "Where each case's split came from (column: given with the input, a `split` column or "
                      "folds; config: `cohort.split` test lists; group: the given split of its group; seeded: the "
                      "seeded split; always_train: generated training cases).", "",
                      "| split source / split | cases |", "|---|---|"]
            lines += [f"| {key} | {n} |" for key, n in cohort["split_sources"].items()]
        excluded = cohort["excluded"]
        lines += ["", f"Excluded input cases: {sum(excluded.values())}"
                  + (" (" + ", ".join(f"{reason}: {n}" for reason, n in excluded.items()) + ")" if excluded else "")
                  + "; `results/cohort/excluded.parquet` names each with its reason."]
    if app.summary_sections is not None:
        lines += app.summary_sections(context)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on cluster nodes
    import matplotlib.pyplot as plt

    return plt


def _plot_accuracy(table: pl.DataFrame, k: int, app: Application, path: Path, split: str = "test") -> None:
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
    ax.set_ylabel(f"{split} accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title(f"{app.label_noun.capitalize()} prediction on the {split} cases (95% bootstrap intervals)", fontsize=9)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    fig.clf()
    _pyplot().close(fig)


def _plot_training(train_dirs: Sequence[str | Path], rows: Mapping[str, str], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for d in train_dirs:
        log = [json.loads(x) for x in (Path(d) / "trainer_log.jsonl").read_text().splitlines() if x.strip()]
        pts = [(r["step"], r["loss"]) for r in log if "loss" in r]
        if pts:
            meta = load_json(Path(d) / "metrics.json")
            seed = f" (seed {meta['seed']})" if meta.get("seed") is not None else ""
            ax.plot(*zip(*pts), marker=".", label=display_name(meta["method"], rows) + seed)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (method's own objective)")
    ax.legend(fontsize=8)
    _save(fig, path)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write the MINT comparison report from per-method case scores.")
    p.add_argument("out_dir")
    p.add_argument("--application", default="rare_disease")
    p.add_argument("--scores", nargs="+", required=True)
    p.add_argument("--train", nargs="*", default=[])
    p.add_argument("--teacher-metrics", default=None)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--ks", type=int, nargs="+", default=[1, 3, 10])
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args(argv)
    print(make_report(a.scores, a.train, a.out_dir, app=load_application(a.application), k=a.k, ks=a.ks,
                      n_boot=a.bootstrap, seed=a.seed, teacher_metrics=a.teacher_metrics))


if __name__ == "__main__":
    main()
