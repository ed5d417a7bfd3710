"""Turn the teacher's rankings into the student's training data.

Per training case: a prompt (system + user message asking for exactly k labels), `chosen` =
the teacher's top-k as a numbered list (or, with `chosen: mass`, the shortest top list whose
softmax probability reaches `mass`, at most k), `rejected` = its bottom-q (or, with `rejected:
hard`, the q just below the chosen ones; `confident_errors`, the same without the true label;
`similar`, the q labels the teacher's scores across the training cases correlate most with the
chosen ones, `mint.core.rankings.label_similarity`). TRL's conversational preference format: the prompt is the message
list, chosen/rejected are the assistant message only (the paper's scripts put the whole chat
in chosen/rejected, training the prompt twice). Also the SFT dataset (prompt/completion).

    python -m mint.core.preferences results/cohort/cases.parquet results/cohort/candidates.parquet \
        results/rankings/teacher.parquet results/preferences/preferences.parquet results/preferences/sft.parquet \
        --modality note_photo --text-field note --prompt '{"system": "...", "user": "{note} {k}", "header": "A:"}'
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from mint.core import schemas
from mint.core.cohort import load_cases, load_labels
from mint.core.io import MintError, ParquetStream, provenance
from mint.core.prompts import assistant, build_prompt, format_answer
from mint.core.rankings import RankedLists, label_similarity

log = logging.getLogger(__name__)

# Rows a row group of the pairs holds (~1.5 KB each with the prompt): memory holds one group. Up to
# this many training cases the files have the bytes of one `write_parquet` (pyarrow cuts at 1Mi rows).
ROW_GROUP = 65_536
CHOSEN = ("top_k", "mass")
REJECTED = ("bottom", "hard", "confident_errors", "similar")


def pick_lists(ranked: Sequence[str], truth: str, k: int, q: int, rejected: str, truth_in_chosen: bool,
               n_ranked: int | None = None, n_chosen: int | None = None,
               similar_to: Callable[[Sequence[str]], Sequence[str]] | None = None):
    """(chosen ids, rejected ids) from one case's ranked candidates (best first). Pure, per example.

    `ranked` may be the whole ranking, or (`n_ranked`: the whole ranking's length) the part of it that
    `_training_lists` keeps: the best k + q + 1, the worst q + 1 and the truth, which decide both lists.
    `n_chosen` (at most k; default k): the length of chosen (`chosen: mass`, `mass_size`). Rejected:
    `bottom` the q worst, the very worst first; `hard` the q just below the chosen ones; `confident_errors`
    those without the truth (the teacher's best wrong labels after the chosen); `similar` the first q
    labels of `similar_to(chosen)` (all labels, most similar first) that are neither chosen nor the truth.
    The last two give one label fewer where k + q is the whole panel and the truth is not chosen.
    """
    n_ranked = len(ranked) if n_ranked is None else n_ranked
    if n_ranked < k + q:
        raise MintError(f"{n_ranked} candidates are too few for k={k} + q={q} "
                        "(config keys 'preferences.k', 'preferences.q')")
    ranked = list(ranked)
    if truth_in_chosen and truth in ranked:
        ranked.remove(truth)
        ranked.insert(0, truth)
    size = k if n_chosen is None else n_chosen
    chosen = ranked[:size]
    rest = ranked[size:]
    if rejected == "hard":
        rej = rest[:q]
    elif rejected == "confident_errors":
        rej = [label for label in rest if label != truth][:q]
    elif rejected == "similar":
        if similar_to is None:
            raise ValueError("rejected='similar' needs similar_to")
        rej = [label for label in similar_to(chosen) if label not in chosen and label != truth][:q]
    elif rejected == "bottom":
        rej = rest[-q:][::-1]  # the very worst first
    else:
        raise MintError(f"config key 'preferences.rejected': {rejected!r} is not one of {REJECTED}")
    return chosen, rej


def mass_size(scores: Sequence[float], lse: float, mass: float, k: int) -> int:
    """The length of the shortest top list whose softmax probability reaches `mass`, at least 1, at most k.

    `scores`: the case's best scores, best first (at least k of them); `lse`: the log-sum-exp of all its
    scores, so that exp(score - lse) is a label's softmax probability among all the candidates. Scores
    are read as logits (or log-probabilities); a teacher calibrated by temperature gives calibrated mass.
    """
    probs = np.exp(np.asarray(scores[:k], dtype=float) - lse)
    reached = np.flatnonzero(np.cumsum(probs) >= mass - 1e-12)
    return int(reached[0]) + 1 if reached.size else k


def similar_labels(similarity: np.ndarray, labels: Sequence[str]) -> Callable[[Sequence[str]], list[str]]:
    """`similar_to` for `pick_lists`: all labels, most similar first to any chosen one (the highest of
    their correlations with the chosen labels in `similarity`, `label_similarity`), ties in label order."""
    index = {label: j for j, label in enumerate(labels)}

    def similar_to(chosen: Sequence[str]) -> list[str]:
        closeness = similarity[[index[c] for c in chosen]].max(axis=0)
        return [labels[j] for j in np.argsort(-closeness, kind="stable")]

    return similar_to


def sft_target(ranked: Sequence[str], truth: str, k: int, target: str) -> list[str]:
    """SFT imitates the teacher's top-k, or the truth followed by the teacher's best other k-1."""
    if target == "teacher":
        return list(ranked[:k])
    return [truth, *[d for d in ranked if d != truth][: k - 1]]


def _training_lists(rankings_path: str | Path, modality: str, train: pl.DataFrame, k: int, q: int,
                    scratch: str | Path | None = None, scores: bool = False) -> RankedLists:
    """The training cases' labels that `pick_lists` and `sft_target` can reach, best first (`RankedLists`).

    Those are the best k + q + 1 (chosen, or the truth plus the best k - 1 others, then the hard
    negatives or confident errors, one further when the truth moved up or is skipped), the worst q + 1
    (the bottom negatives, one further when the truth is among them) and the truth; with `scores` (for
    `chosen: mass`), their scores too; read streamed, never the whole (cases x labels) table.
    """
    return RankedLists(rankings_path, modality, top=k + q + 1, bottom=q + 1,
                       cases=train.select("case_id", "label_id"), keep_own=True, scratch=scratch, scores=scores)


def build_preferences(
    cases_path: str | Path, candidates_path: str | Path, rankings_path: str | Path,
    preferences_path: str | Path, sft_path: str | Path, *, modality: str, prompt: Mapping[str, str],
    text_field: str | None, k: int, q: int, rejected: str = "bottom", truth_in_chosen: bool = False,
    sft_target_kind: str = "teacher", seed: int = 0, image_field: str | None = None, chunk: int = 8192,
    chosen: str = "top_k", mass: float = 0.9,
) -> None:
    """Write PREFERENCES and SFT rows for the training split from the `modality` rankings.

    `text_field` / `image_field`: the cases columns the student reads (its text, its image path);
    with an image, each row also holds `images` (TRL's vision format, the image before the text).
    `chosen` (`CHOSEN`) and `rejected` (`REJECTED`) choose the lists (`pick_lists`); with `chosen: mass`
    the chosen list may name fewer than k labels (`mass_size`), while SFT still imitates k.
    Rows are made `chunk` cases at a time and written in row groups of `ROW_GROUP` rows (`ParquetStream`).
    """
    if chosen not in CHOSEN:
        raise MintError(f"config key 'preferences.chosen': {chosen!r} is not one of {CHOSEN}")
    if rejected not in REJECTED:
        raise MintError(f"config key 'preferences.rejected': {rejected!r} is not one of {REJECTED}")
    cases, candidates = load_cases(cases_path), load_labels(candidates_path)
    names = dict(zip(candidates["label_id"].to_list(), candidates["name"].to_list()))
    header = prompt["header"]
    train = cases.filter(pl.col("split") == "train").sort("case_id")
    untrained = sorted(set(candidates["label_id"].to_list()) - set(train["label_id"].to_list()))
    if untrained:  # allowed (a label may be a distractor only), but the student never sees it as the truth
        log.warning("%d of %d candidate labels have no training case (e.g. %s): the student sees them only in "
                    "the teacher's lists", len(untrained), candidates.height, untrained[:5])
    settings = {"modality": modality, "prompt": dict(prompt), "k": k, "q": q, "rejected": rejected,
                "truth_in_chosen": truth_in_chosen, "sft_target": sft_target_kind}
    if chosen != "top_k":  # today's settings (and config hash) unchanged by default
        settings.update(chosen=chosen, mass=mass)
    prov = provenance(settings, seed=seed)
    vision = image_field is not None
    similar_to = None
    if rejected == "similar":
        labels = candidates["label_id"].to_list()
        similar_to = similar_labels(label_similarity(rankings_path, modality, train["case_id"], labels), labels)
    by_mass = chosen == "mass"
    with _training_lists(rankings_path, modality, train, k, q, Path(preferences_path).parent,
                         scores=by_mass) as ranked:
        unranked = train.join(ranked.cases, on="case_id", how="anti")["case_id"]
        if unranked.len():
            raise MintError(f"{rankings_path}: no '{modality}' ranking for training case {unranked[0]!r}")
        with (ParquetStream(preferences_path, schemas.PREFERENCES_VISION if vision else schemas.PREFERENCES,
                            prov, ROW_GROUP) as pref_out,
              ParquetStream(sft_path, schemas.SFT_VISION if vision else schemas.SFT, prov, ROW_GROUP) as sft_out):
            if not train.height:  # no rows: the schema check names the missing columns, as before
                pref_out.write(pl.DataFrame())
            # Each read of the kept lists scans them all: few large reads, rows made in small chunks.
            parts = (part for lists in ranked.chunks(train["case_id"], 8 * chunk)
                     for part in lists.iter_slices(chunk))
            for start, part in zip(range(0, train.height, chunk), parts):
                part = train.slice(start, chunk).with_columns(
                    part.select("n", "label_ids", *(["lse", "scores"] if by_mass else [])))
                pref_rows, sft_rows = [], []
                for case in part.iter_rows(named=True):
                    ranked_ids = case["label_ids"]
                    messages = build_prompt(prompt, k, case[text_field] if text_field else None, text_field)
                    n_chosen = mass_size(case["scores"], case["lse"], mass, k) if by_mass else None
                    chosen_ids, rejected_ids = pick_lists(ranked_ids, case["label_id"], k, q, rejected,
                                                          truth_in_chosen, n_ranked=case["n"], n_chosen=n_chosen,
                                                          similar_to=similar_to)
                    pref_rows.append({
                        "case_id": case["case_id"],
                        "prompt": messages,
                        "chosen": assistant(format_answer([names[d] for d in chosen_ids], header)),
                        "rejected": assistant(format_answer([names[d] for d in rejected_ids], header)),
                        "chosen_ids": chosen_ids,
                        "rejected_ids": rejected_ids,
                        "truth_in_chosen": case["label_id"] in chosen_ids,
                        "teacher": modality,
                        "k": k,
                        "q": q,
                        "seed": seed,
                    })
                    if image_field:
                        pref_rows[-1]["images"] = [case[image_field]]
                    target = sft_target(ranked_ids, case["label_id"], k, sft_target_kind)
                    sft_rows.append({
                        "case_id": case["case_id"],
                        "prompt": messages,
                        "completion": assistant(format_answer([names[d] for d in target], header)),
                        "target_ids": target,
                        "target": sft_target_kind,
                        "k": k,
                        "seed": seed,
                        **({"images": [case[image_field]]} if image_field else {}),
                    })
                pref_out.write(pl.DataFrame(pref_rows))
                sft_out.write(pl.DataFrame(sft_rows))


def student_errors(student_ranked: Sequence[str], chosen: Sequence[str], truth: str, fallback: Sequence[str],
                   q: int) -> list[str]:
    """The student's own mistakes as a rejected list: its best labels that are neither chosen nor the truth,
    best first, the first q; filled from `fallback` (the teacher's rejected list) where fewer. Pure."""
    errors = [label for label in student_ranked if label not in chosen and label != truth][:q]
    return errors + [label for label in fallback if label not in errors and label != truth][: q - len(errors)]


def build_student_error_pairs(preferences_path: str | Path, cases_path: str | Path, candidates_path: str | Path,
                              student_rankings_path: str | Path, out_path: str | Path, *, header: str,
                              q: int) -> None:
    """The teacher's pairs with the student's own mistakes as rejected (`preferences.student_errors`).

    `student_rankings_path`: RANKINGS of the training cases by a student (the SFT model of the same seed,
    `mint.core.panel.rank_panel` with `split='train'`), at least its best k + q + 1 labels each, so that q
    labels remain after leaving out the chosen ones and the truth. Each pair keeps its prompt and chosen
    list; its rejected list becomes `student_errors` of the student's ranking, the teacher's list the
    fallback. On-policy negatives: the names the student would say and the teacher does not choose, where
    the teacher's bottom-q are names it gives almost no probability from the start (log-odds ratio ~0).
    Streamed a row group of the pairs at a time.
    """
    truth = dict(load_cases(cases_path).select("case_id", "label_id").iter_rows())
    names = dict(load_labels(candidates_path).select("label_id", "name").iter_rows())
    student = (pl.scan_parquet(student_rankings_path).select("case_id", "label_id", "rank")
               .sort("case_id", "rank").group_by("case_id", maintain_order=True).agg("label_id").collect())
    ranked = dict(student.iter_rows())
    ranked_ids = student["case_id"].implode()
    pairs = pq.ParquetFile(preferences_path)
    vision = "images" in pairs.schema_arrow.names
    settings = {"rejected": "student_errors", "q": q, "header": header}
    prov = provenance(settings, pairs=str(preferences_path), student=str(student_rankings_path))
    with ParquetStream(out_path, schemas.PREFERENCES_VISION if vision else schemas.PREFERENCES, prov,
                       ROW_GROUP) as out:
        for batch in pairs.iter_batches(ROW_GROUP):
            part = pl.from_arrow(batch)
            missing = part.filter(~pl.col("case_id").is_in(ranked_ids))["case_id"]
            if missing.len():
                raise MintError(f"{student_rankings_path}: the student ranked no labels for training case "
                                f"{missing[0]!r}")
            rejected = [student_errors(ranked[case], chosen, truth[case], fallback, q)
                        for case, chosen, fallback in part.select("case_id", "chosen_ids", "rejected_ids").iter_rows()]
            out.write(part.with_columns(
                pl.Series("rejected_ids", rejected, dtype=pl.List(pl.String)),
                pl.Series("rejected", [assistant(format_answer([names[d] for d in ids], header)) for ids in rejected]),
                pl.lit(q, dtype=pl.Int32).alias("q")))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Build preference and SFT datasets from teacher rankings.")
    p.add_argument("cases")
    p.add_argument("candidates")
    p.add_argument("rankings")
    p.add_argument("preferences")
    p.add_argument("sft")
    p.add_argument("--modality", required=True)
    p.add_argument("--prompt", required=True, help="JSON with system, user, header")
    p.add_argument("--text-field", default=None)
    p.add_argument("--image-field", default=None)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--q", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    build_preferences(a.cases, a.candidates, a.rankings, a.preferences, a.sft, modality=a.modality,
                      prompt=json.loads(a.prompt), text_field=a.text_field, k=a.k, q=a.q, seed=a.seed,
                      image_field=a.image_field)


if __name__ == "__main__":
    main()
