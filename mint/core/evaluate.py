"""Score answers against the true label: name matching, per-case scores, bootstrap summaries.

A student answers with label *names*; `NameMatcher` maps each onto a label id of the vocabulary
(exact on normalised names and synonyms, else fuzzy with a similarity ratio >= 0.8, as the paper
does; the application says how names are normalised), and a name that matches nothing is counted
as a hallucination.
`score_predictions` (student) and `score_rankings` (teacher) give one CASE_SCORES row per case
and method; `summarize` turns those into top-k accuracy, MRR, hallucination and format rates with
95% percentile bootstrap intervals over cases; `paired_bootstrap` compares two methods on the
cases both answered. `seen_labels` names the labels with a real training case, and
`summarize_by_seen` summarises the test cases of those labels apart from the others.

    python -c "from mint.core.evaluate import normalize_name; print(normalize_name('Noonan-Syndrome, 1'))"
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from rapidfuzz import fuzz, process

from mint.core import schemas
from mint.core.io import MintError, require_columns
from mint.core.prompts import parse_answer

# Apostrophes vanish rather than split a word, so "Alzheimer's" and "Alzheimers" meet.
_APOSTROPHES = re.compile(r"['\u2019`]")
_NON_WORD = re.compile(r"[\W_]+")

# The polars form of `schemas.CASE_SCORES`, derived from it so the two cannot drift.
CASE_SCORE_SCHEMA = dict(pl.from_arrow(schemas.CASE_SCORES.empty_table()).schema)

_TOPK = re.compile(r"^top(\d+)$")


def fold(name: str) -> str:
    """Lower-case `name` and drop its accents."""
    text = unicodedata.normalize("NFKD", name)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


def words(text: str) -> str:
    """Apostrophes dropped, other punctuation turned into single spaces."""
    return " ".join(_NON_WORD.sub(" ", _APOSTROPHES.sub("", text)).split())


def normalize_name(name: str) -> str:
    """The default normaliser: lower case, no accents, punctuation as single spaces."""
    return words(fold(name))




def _preview(ids: Sequence[Any], n: int = 10) -> str:
    shown = ", ".join(map(str, ids[:n]))
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > n else "")


class NameMatcher:
    """Map free-text label names onto label ids of a vocabulary.

    `labels` has the LABELS columns (label_id, name, synonyms). When several labels share a
    normalised name, one in `prefer` (the candidates) wins, then a label whose own name it is over
    one that lists it as a synonym, then the earlier row. `cutoff` is the least
    `rapidfuzz.fuzz.ratio` / 100 a fuzzy match needs; `normalise` makes names comparable.
    """

    def __init__(self, labels: pl.DataFrame, prefer: Iterable[str] | None = None, cutoff: float = 0.8,
                 normalise: Callable[[str], str] = normalize_name) -> None:
        require_columns(labels, ("label_id", "name", "synonyms"), "labels")
        if not 0.0 < cutoff <= 1.0:
            raise MintError(f"NameMatcher cutoff must be in (0, 1]; got {cutoff}")
        self.cutoff = cutoff
        self.normalise = normalise
        self.prefer = frozenset(prefer or ())
        # normalised name -> sort key -> id; the smallest key wins a tie.
        candidates: dict[str, dict[str, tuple[int, int, int]]] = {}
        rows = labels.select("label_id", "name", "synonyms").iter_rows()
        for order, (label_id, name, synonyms) in enumerate(rows):
            if label_id is None:
                raise MintError(f"labels: row {order} has no label_id (name {name!r})")
            for is_synonym, text in [(0, name), *((1, s) for s in synonyms or ())]:
                if not text:
                    continue
                key = normalise(text)
                if not key:
                    continue
                rank = (int(label_id not in self.prefer), is_synonym, order)
                ids = candidates.setdefault(key, {})
                if label_id not in ids or rank < ids[label_id]:
                    ids[label_id] = rank
        self._best: dict[str, str] = {key: min(ids, key=ids.__getitem__) for key, ids in candidates.items()}
        self._choices: list[str] = list(self._best)
        self._cache: dict[str, str | None] = {}

    def __len__(self) -> int:
        return len(self._choices)

    def match(self, name: str | None) -> str | None:
        """The label id `name` names, or None when it names no label of the vocabulary."""
        if name is None:
            return None
        if name not in self._cache:
            self._cache[name] = self._match(self.normalise(name))
        return self._cache[name]

    def _match(self, key: str) -> str | None:
        if not key:
            return None
        exact = self._best.get(key)
        if exact is not None:
            return exact
        # All choices at the cutoff or above (few), so that a tie on the best score can go to the
        # panel as exact ties do; extractOne alone would return whichever tied choice came first.
        hits = process.extract(
            key, self._choices, scorer=fuzz.ratio, processor=None, score_cutoff=self.cutoff * 100, limit=None
        )
        if not hits:
            return None
        best_score = max(score for _, score, _ in hits)
        tied = [self._best[choice] for choice, score, _ in hits if score == best_score]
        preferred = [d for d in tied if d in self.prefer]
        return (preferred or tied)[0]


def _truth_map(truth: pl.DataFrame) -> dict[str, str]:
    require_columns(truth, ("case_id", "label_id"), "truth")
    pairs = truth.select("case_id", "label_id").unique(maintain_order=True)
    dup = pairs.filter(pl.col("case_id").is_duplicated())["case_id"].unique(maintain_order=True).to_list()
    if dup:
        raise MintError(f"truth: cases with more than one true label: {_preview(dup)}")
    return dict(pairs.iter_rows())


def _check_known(case_ids: Sequence[str], truth: dict[str, str], what: str) -> None:
    unknown = list(dict.fromkeys(c for c in case_ids if c not in truth))
    if unknown:
        raise MintError(f"{what}: case ids not in the truth table: {_preview(unknown)}")


def _first_rank(predicted_ids: Sequence[str | None], true_id: str) -> int | None:
    for position, label_id in enumerate(predicted_ids, start=1):
        if label_id == true_id:
            return position
    return None


def _score_row(case_id: str, method: str, true_id: str, ids: Sequence[str | None], *, n_predicted: int,
               n_hallucinated: int, format_ok: bool, seed: int | None) -> dict[str, Any]:
    """One CASE_SCORES row: the matched ids and where the true label is among them."""
    return {"case_id": case_id, "method": method, "label_id": true_id, "predicted_ids": list(ids),
            "rank": _first_rank(ids, true_id), "n_predicted": n_predicted, "n_hallucinated": n_hallucinated,
            "format_ok": format_ok, "seed": seed}


def score_predictions(
    predictions: pl.DataFrame, truth: pl.DataFrame, matcher: NameMatcher, k: int, header: str,
    seed: int | None = None,
) -> pl.DataFrame:
    """One CASE_SCORES row per prediction row: matched ids, rank of the truth, hallucinations, format.

    `format_ok` holds when the response keeps the numbered-list format and lists exactly `k` names.
    """
    require_columns(predictions, ("case_id", "method", "response", "predicted_names"), "predictions")
    if k < 1:
        raise MintError(f"score_predictions: k must be >= 1; got {k}")
    true_ids = _truth_map(truth)
    _check_known(predictions["case_id"].to_list(), true_ids, "predictions")
    records = []
    for case_id, method, response, names in predictions.select(
        "case_id", "method", "response", "predicted_names"
    ).iter_rows():
        names = names or []
        ids = [matcher.match(name) for name in names]
        parsed, format_ok = parse_answer(response, header) if response is not None else ([], False)
        records.append(_score_row(case_id, method, true_ids[case_id], ids, n_predicted=len(names),
                                  n_hallucinated=sum(i is None for i in ids),
                                  format_ok=format_ok and len(parsed) == k, seed=seed))
    return pl.DataFrame(records, schema=CASE_SCORE_SCHEMA)


def score_rankings(rankings: pl.DataFrame, truth: pl.DataFrame, k: int, method: str,
                   seed: int | None = None) -> pl.DataFrame:
    """CASE_SCORES rows for a teacher: its top-`k` labels of each case, as if it had named them.

    `rankings` holds one modality (filter it first); ties in `rank` go to the smaller label id so
    the top-k is deterministic. The teacher ranks candidate ids, so it never hallucinates and always
    keeps the format. `seed`: the training seed of a ranking student, None for a teacher or a ranker.
    """
    require_columns(rankings, ("case_id", "modality", "label_id", "rank"), "rankings")
    if k < 1:
        raise MintError(f"score_rankings: k must be >= 1; got {k}")
    modalities = rankings["modality"].unique(maintain_order=True).to_list()
    if len(modalities) > 1:
        raise MintError(f"score_rankings ({method}): rankings mix modalities {modalities}; pass one")
    true_ids = _truth_map(truth)
    _check_known(rankings["case_id"].unique(maintain_order=True).to_list(), true_ids, f"rankings ({method})")
    top = (
        rankings.with_row_index("_row")
        .with_columns(pl.col("_row").min().over("case_id").alias("_first"))
        .sort(["_first", "rank", "label_id"])
        .group_by("case_id", maintain_order=True)
        .agg(pl.col("label_id").head(k).alias("predicted_ids"))
    )
    records = [_score_row(case_id, method, true_ids[case_id], ids, n_predicted=len(ids), n_hallucinated=0,
                          format_ok=True, seed=seed) for case_id, ids in top.iter_rows()]
    return pl.DataFrame(records, schema=CASE_SCORE_SCHEMA)


def _metric_names(ks: Iterable[int]) -> list[str]:
    tops = ["top1", *(f"top{k}" for k in ks)]
    return [*dict.fromkeys(tops), "mrr", "hallucination_rate", "format_rate"]


def _case_terms(scores: pl.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-case numerator and denominator whose sums' ratio is `metric` (denominator 1 for means)."""
    n = scores.height
    rank = scores["rank"].cast(pl.Float64).fill_null(np.inf).to_numpy()
    ones = np.ones(n)
    top = _TOPK.match(metric)
    if top:
        return (rank <= int(top.group(1))).astype(float), ones
    if metric == "mrr":
        return 1.0 / rank, ones  # 1/inf = 0 for an absent truth
    if metric == "format_rate":
        return scores["format_ok"].fill_null(False).cast(pl.Float64).to_numpy(), ones
    if metric == "hallucination_rate":
        return (
            scores["n_hallucinated"].fill_null(0).cast(pl.Float64).to_numpy(),
            scores["n_predicted"].fill_null(0).cast(pl.Float64).to_numpy(),
        )
    raise MintError(f"unknown metric {metric!r}; expected top<k>, mrr, hallucination_rate or format_rate")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray | float:
    # A method that predicted nothing hallucinated nothing: 0, not NaN.
    return np.divide(num, den, out=np.zeros_like(np.asarray(num, dtype=float)), where=den > 0)


def _stat(num: np.ndarray, den: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray | float:
    """The metric on all cases, or on each bootstrap resample (rows of `idx`)."""
    if idx is None:
        return float(_ratio(np.array(num.sum()), np.array(den.sum())))
    return _ratio(num[idx].sum(axis=1), den[idx].sum(axis=1))


def _check_scores(case_scores: pl.DataFrame, n_boot: int) -> None:
    require_columns(case_scores, CASE_SCORE_SCHEMA, "case_scores")
    if n_boot < 1:
        raise MintError(f"n_boot must be >= 1; got {n_boot}")
    dup = case_scores.filter(pl.struct("case_id", "method", "seed").is_duplicated())
    if dup.height:
        pairs = [f"{m}/{c}" for c, m in dup.select("case_id", "method").unique(maintain_order=True).iter_rows()]
        raise MintError(f"case_scores: (method/case) scored more than once for one seed: {_preview(pairs)}")


def _seed_averaged(scores: pl.DataFrame, metric: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Case ids (sorted) and per-case numerator/denominator, averaged over the method's seeds.

    A method trained with several seeds is one row per case and seed; averaging per case keeps the
    case the unit that the bootstrap resamples, and the point estimate is the mean over seeds.
    """
    num, den = _case_terms(scores, metric)
    per_case = (
        pl.DataFrame({"case_id": scores["case_id"], "num": num, "den": den})
        .group_by("case_id").agg(pl.col("num").mean(), pl.col("den").mean()).sort("case_id")
    )
    return per_case["case_id"].to_list(), per_case["num"].to_numpy(), per_case["den"].to_numpy()


def seed_spread(scores: pl.DataFrame, metric: str) -> tuple[int, float]:
    """(number of seeds, standard deviation of `metric` across them; 0 for a single seed)."""
    values = []
    for _, group in scores.group_by("seed", maintain_order=True):
        num, den = _case_terms(group, metric)
        values.append(_stat(num, den))
    return len(values), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarize(
    case_scores: pl.DataFrame, ks: Sequence[int] = (1, 3, 10), n_boot: int = 1000, seed: int = 0
) -> pl.DataFrame:
    """One row per method (in order of first appearance): n_cases and each metric with its 95% CI.

    Metrics are top1 and top<k> for `ks` (truth within the first k), mrr, hallucination_rate
    (hallucinated names over predicted names, pooled over cases) and format_rate; each has
    `<metric>_lo` / `<metric>_hi` percentile bounds from `n_boot` case resamples. Every method
    draws from a fresh generator seeded `seed`, so its interval does not depend on the others.
    A method scored for several training seeds gives the mean over seeds, intervals from resampling
    cases with each case's seed-averaged score, `n_seeds`, and `top1_seed_sd` / `mrr_seed_sd`
    (the spread between seeds).
    """
    _check_scores(case_scores, n_boot)
    metrics = _metric_names(ks)
    rows = []
    for method in case_scores["method"].unique(maintain_order=True).to_list():
        scores = case_scores.filter(pl.col("method") == method)
        n = scores["case_id"].n_unique()
        idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
        row: dict[str, Any] = {"method": method, "n_cases": n}
        for metric in metrics:
            _, num, den = _seed_averaged(scores, metric)
            lo, hi = np.percentile(_stat(num, den, idx), [2.5, 97.5])
            row.update({metric: _stat(num, den), f"{metric}_lo": float(lo), f"{metric}_hi": float(hi)})
        row["n_seeds"], row["top1_seed_sd"] = seed_spread(scores, "top1")
        row["mrr_seed_sd"] = seed_spread(scores, "mrr")[1]
        rows.append(row)
    schema = {"method": pl.Utf8, "n_cases": pl.Int64}
    for metric in metrics:
        schema.update({metric: pl.Float64, f"{metric}_lo": pl.Float64, f"{metric}_hi": pl.Float64})
    schema.update(n_seeds=pl.Int64, top1_seed_sd=pl.Float64, mrr_seed_sd=pl.Float64)
    return pl.DataFrame(rows, schema=schema)


def training_counts(cases: pl.DataFrame, synthetic_sources: Sequence[str]) -> pl.DataFrame:
    """label_id, n_train (its training cases: split 'train') and n_train_real (those of them whose `source`
    is not one of `synthetic_sources`), for every label with a training case. Other splits do not count."""
    require_columns(cases, ("label_id", "split", "source"), "cases")
    real = ~pl.col("source").fill_null("").is_in(pl.Series(list(synthetic_sources), dtype=pl.String).implode())
    return (cases.filter(pl.col("split") == "train").group_by("label_id")
            .agg(n_train=pl.len().cast(pl.Int64), n_train_real=real.sum().cast(pl.Int64)).sort("label_id"))


def seen_labels(cases: pl.DataFrame, synthetic_sources: Sequence[str]) -> set[str]:
    """The labels *seen* in training: at least one training case (split 'train') of the label comes from a
    real source, one not in `synthetic_sources`. Validation and test cases do not count."""
    counts = training_counts(cases, synthetic_sources)
    return set(counts.filter(pl.col("n_train_real") > 0)["label_id"].to_list())


SEEN_GROUPS = ("seen", "unseen")


def summarize_by_seen(case_scores: pl.DataFrame, seen: Iterable[str], ks: Sequence[int] = (1, 3, 10),
                      n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """`summarize` of the cases whose true label is in `seen`, and of the others, each group on its own.

    A `group` column ('seen' / 'unseen') before `summarize`'s columns; seeds are averaged and intervals
    drawn as `summarize` does, within the group. A group without cases has no rows.
    """
    _check_scores(case_scores, n_boot)
    is_seen = pl.col("label_id").is_in(pl.Series(sorted(seen), dtype=pl.String).implode())
    parts = []
    for group, mask in zip(SEEN_GROUPS, (is_seen, ~is_seen)):
        scores = case_scores.filter(mask)
        if scores.height:
            parts.append(summarize(scores, ks=ks, n_boot=n_boot, seed=seed).select(
                pl.lit(group).alias("group"), pl.all()))
    if parts:
        return pl.concat(parts)
    empty = summarize(case_scores.clear(), ks=ks, n_boot=n_boot, seed=seed)
    return empty.select(pl.lit(None, dtype=pl.String).alias("group"), pl.all())


def paired_bootstrap(
    case_scores: pl.DataFrame,
    method_a: str,
    method_b: str,
    metric: str = "top1",
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Difference `metric`(a) - `metric`(b) on the cases both methods scored, resampled in pairs.

    Returns method_a, method_b, metric, n_cases, a, b, diff, lo, hi (95% percentile interval of the
    difference) and p_value: twice the smaller bootstrap tail beyond 0, with the +1 correction so
    it is never 0 from a finite number of resamples.
    """
    _check_scores(case_scores, n_boot)
    by_method = {}
    for method in (method_a, method_b):
        scores = case_scores.filter(pl.col("method") == method)
        if scores.height == 0:
            have = case_scores["method"].unique(maintain_order=True).to_list()
            raise MintError(f"paired_bootstrap: no case scores for method {method!r}; have {have}")
        by_method[method] = scores
    a = by_method[method_a]
    b = by_method[method_b].filter(pl.col("case_id").is_in(a["case_id"].implode()))
    a = a.filter(pl.col("case_id").is_in(b["case_id"].implode()))
    if a.height == 0:
        raise MintError(f"paired_bootstrap: methods {method_a!r} and {method_b!r} share no case")
    # Both sides sorted by case id (and averaged over seeds), so one index matrix resamples pairs.
    cases, num_a, den_a = _seed_averaged(a, metric)
    _, num_b, den_b = _seed_averaged(b, metric)
    idx = np.random.default_rng(seed).integers(0, len(cases), size=(n_boot, len(cases)))
    diffs = _stat(num_a, den_a, idx) - _stat(num_b, den_b, idx)
    point_a, point_b = _stat(num_a, den_a), _stat(num_b, den_b)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    below = (np.count_nonzero(diffs <= 0) + 1) / (n_boot + 1)
    above = (np.count_nonzero(diffs >= 0) + 1) / (n_boot + 1)
    return {
        "method_a": method_a,
        "method_b": method_b,
        "metric": metric,
        "n_cases": len(cases),
        "a": point_a,
        "b": point_b,
        "diff": point_a - point_b,
        "lo": float(lo),
        "hi": float(hi),
        "p_value": min(1.0, 2 * min(below, above)),
    }


def teacher_agreement(case_scores: pl.DataFrame, rankings: pl.DataFrame, k: int, q: int) -> pl.DataFrame:
    """How much of the teacher's lists each method's answers follow, per method (mean over its cases and seeds).

    `coverage`: the share of the teacher's top `k` labels of the case that the answer names;
    `avoidance`: the share of its bottom `q` labels that the answer does not name (the paper's
    agreement with the `chosen` and `rejected` lists). `rankings` holds one modality, the one that
    made the pairs; cases it does not rank are left out. For rankings too large to hold, add up
    `agreement_terms` of one chunk of cases at a time and pass them to `agreement_table`.
    """
    return agreement_table(case_scores, agreement_terms(case_scores, rankings, k, q))


def agreement_terms(case_scores: pl.DataFrame, rankings: pl.DataFrame, k: int,
                    q: int) -> dict[int, tuple[float, float]]:
    """(coverage, avoidance) of each row of `case_scores` (by position) whose case `rankings` ranks."""
    require_columns(rankings, ("case_id", "label_id", "rank"), "rankings")
    ordered = rankings.sort("case_id", "rank").group_by("case_id", maintain_order=True).agg("label_id")
    lists = {c: (set(ids[:k]), set(ids[-q:])) for c, ids in ordered.iter_rows()}
    terms = {}
    rows = case_scores.select("case_id", "predicted_ids").with_row_index("_row").filter(
        pl.col("case_id").is_in(pl.Series(list(lists), dtype=pl.String).implode()))
    for row, case_id, predicted in rows.iter_rows():
        top, bottom = lists[case_id]
        named = {p for p in predicted or [] if p is not None}
        terms[row] = (len(named & top) / len(top), 1 - len(named & bottom) / len(bottom))
    return terms


def agreement_table(case_scores: pl.DataFrame, terms: Mapping[int, tuple[float, float]]) -> pl.DataFrame:
    """One row per method (method, n_cases, coverage, avoidance) from `agreement_terms`."""
    rows = []
    methods = case_scores["method"].to_list()
    for method in case_scores["method"].unique(maintain_order=True).to_list():
        mine = [terms[i] for i, m in enumerate(methods) if m == method and i in terms]
        covered, avoided = [c for c, _ in mine], [a for _, a in mine]
        rows.append({"method": method, "n_cases": len(covered),
                     "coverage": float(np.mean(covered)) if covered else None,
                     "avoidance": float(np.mean(avoided)) if avoided else None})
    return pl.DataFrame(rows, schema={"method": pl.String, "n_cases": pl.Int64, "coverage": pl.Float64,
                                      "avoidance": pl.Float64})


def confusion(case_scores: pl.DataFrame, method: str, labels: Sequence[str]) -> np.ndarray:
    """(labels, labels + 1) counts: true label (rows) against the label a method names first (columns, in
    `labels` order; the last column: no label of the list named first). Seeds pooled."""
    index = {label: i for i, label in enumerate(labels)}
    out = np.zeros((len(labels), len(labels) + 1), dtype=np.int64)
    for true_id, predicted in case_scores.filter(pl.col("method") == method).select(
            "label_id", "predicted_ids").iter_rows():
        first = (predicted or [None])[0]
        out[index[true_id], index.get(first, len(labels))] += 1
    return out
