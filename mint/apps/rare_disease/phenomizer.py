"""Phenomizer: the classic phenotype-similarity ranker (Köhler et al. 2009), a baseline of the benchmark.

A disease is described by the HPO terms the release annotates to it; a patient by the terms
observed in them. Information content of a term t, over the OMIM diseases of the annotation
table (an annotation counts for the term and all its ancestors):

    IC(t) = -ln(|diseases annotated with t or a descendant of t| / |annotated diseases|)

Similarity of a patient term t to a disease d is Resnik's best match: the largest IC of a common
ancestor of t and any term annotated to d. A case's score for d is the mean of that over the
patient's observed terms ("one_way", patient -> disease, as Phenomizer ranks), or a best-match
average of both directions: "symmetric" averages the patient -> disease and the disease -> patient
means (pyhpo's `funSimAvg`); "bma" averages all best matches of both sides, so a disease with many
annotations outweighs a patient with few terms (pyhpo's and hpo3's `BMA`). Annotation frequencies
are not used, as in the original method.

Vectorised: M[disease, term] = IC(term) where the term is in the ancestor closure of the disease's
annotations (else 0), panel x all terms (800 x 19,500 float32 = 62 MB); the best match of patient
term t is then max over a in anc(t) of M[:, a], one `np.maximum.reduceat` per chunk of cases.

    python -m mint.apps.rare_disease.phenomizer results/knowledge results/cohort results/rankings/phenomizer.parquet
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from mint.core import schemas
from mint.core.cohort import add_split_argument
from mint.core.io import MintError, provenance, read_parquet, write_parquet

MODES = ("one_way", "symmetric", "bma")
MODALITY = "phenomizer"


class PhenomizerRanker:
    """Scores cases (lists of HPO ids) against a disease panel by Resnik best-match similarity.

    annotations: (disease_id, hpo_id, ...) rows, all diseases of the release (they define the IC);
    terms: (hpo_id, parents) rows, the whole ontology; panel_ids: the diseases to score, in order.
    Panel diseases without any annotation score 0 for every case (`n_unannotated` of them).
    """

    def __init__(self, annotations: pl.DataFrame, terms: pl.DataFrame, panel_ids: Sequence[str],
                 mode: str = "one_way", chunk_size: int = 256):
        if mode not in MODES:
            raise MintError(f"phenomizer mode {mode!r}: expected one of {MODES}")
        self.mode = mode
        self.chunk_size = chunk_size
        self.panel_ids = list(panel_ids)
        self.term_ids: list[str] = terms["hpo_id"].to_list()
        self.index = {t: i for i, t in enumerate(self.term_ids)}
        n_terms = len(self.term_ids)
        parents = []
        for tid, ps in zip(self.term_ids, terms["parents"].to_list()):
            unknown = [p for p in (ps or []) if p not in self.index]
            if unknown:
                raise MintError(f"terms table: parent(s) {unknown} of {tid} are not terms of the table")
            parents.append([self.index[p] for p in (ps or [])])
        self._ancestors = _ancestor_closure(parents, self.term_ids)  # per term: sorted indices, itself included

        ann = annotations.select("disease_id", "hpo_id").unique()
        unknown = set(ann["hpo_id"].to_list()) - self.index.keys()
        if unknown:
            raise MintError(f"annotations: HPO id(s) {sorted(unknown)[:5]} are not terms of the terms table")
        by_disease = ann.group_by("disease_id").agg("hpo_id")
        annotated = {d: [self.index[t] for t in ts]
                     for d, ts in zip(by_disease["disease_id"].to_list(), by_disease["hpo_id"].to_list())}
        closures = {d: self.closure(ts) for d, ts in annotated.items()}
        # Diseases annotated with t or a descendant of t = diseases whose closure holds t.
        counts = np.bincount(np.concatenate([np.zeros(0, np.int64), *closures.values()]), minlength=n_terms)
        self.n_diseases = len(closures)
        # A term no disease reaches gets IC 0: it is never a common ancestor with a disease's term.
        with np.errstate(divide="ignore"):
            self.ic = np.where(counts > 0, -np.log(counts / max(self.n_diseases, 1)), 0.0).astype(np.float32)

        # M[d, a] = IC(a) if a is in the ancestor closure of d's annotations, else 0.
        self.matrix = np.zeros((len(self.panel_ids), n_terms), dtype=np.float32)
        for i, d in enumerate(self.panel_ids):
            if d in closures:
                self.matrix[i, closures[d]] = self.ic[closures[d]]
        self.is_annotated = np.array([d in annotated for d in self.panel_ids])
        self.n_unannotated = int((~self.is_annotated).sum())

        # Disease -> patient side (symmetric and bma): the distinct terms annotated to the panel, their
        # ancestors flattened for reduceat, and a panel x term matrix of 1/|annotations of d|.
        panel_terms = sorted({t for d in self.panel_ids for t in annotated.get(d, [])})
        self._panel_terms = np.array(panel_terms, dtype=np.int64)
        self._panel_flat, self._panel_starts = self._flatten(panel_terms)
        col = {t: j for j, t in enumerate(panel_terms)}
        self._panel_weights = np.zeros((len(self.panel_ids), len(panel_terms)), dtype=np.float32)
        self._n_annotations = np.zeros(len(self.panel_ids), dtype=np.float32)
        for i, d in enumerate(self.panel_ids):
            ts = sorted(set(annotated.get(d, [])))
            self._panel_weights[i, [col[t] for t in ts]] = 1.0 / len(ts) if ts else 0.0
            self._n_annotations[i] = len(ts)

    # ------------------------------------------------------------ ontology helpers

    def closure(self, term_indices: Sequence[int]) -> np.ndarray:
        """Sorted indices of the terms and all their ancestors."""
        if len(term_indices) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate([self._ancestors[t] for t in term_indices]))

    def information_content(self, hpo_id: str) -> float:
        return float(self.ic[self._term_index(hpo_id)])

    def _term_index(self, hpo_id: str, where: str = "") -> int:
        try:
            return self.index[hpo_id]
        except KeyError:
            raise MintError(f"{where}HPO id {hpo_id!r} is not a term of this HPO release") from None

    def _flatten(self, term_indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Ancestors of each term, concatenated, and where each term's run starts (for reduceat)."""
        runs = [self._ancestors[t] for t in term_indices]
        starts = np.cumsum([0] + [len(r) for r in runs[:-1]]).astype(np.int64)
        flat = np.concatenate(runs) if runs else np.zeros(0, dtype=np.int64)
        return flat, starts

    # ------------------------------------------------------------ scoring

    def score(self, term_lists: Sequence[Sequence[str]], case_ids: Sequence[str] | None = None,
              progress: bool | None = None) -> np.ndarray:
        """(n_cases, n_panel) float32 scores; a case without terms scores 0 everywhere.

        An HPO id unknown to the release raises MintError naming it (and its case id, if given).
        """
        cases = []
        for i, terms in enumerate(term_lists):
            where = f"case {case_ids[i]!r}: " if case_ids is not None else f"case #{i}: "
            cases.append(list(dict.fromkeys(self._term_index(t, where) for t in (terms or []))))
        out = np.zeros((len(cases), len(self.panel_ids)), dtype=np.float32)
        show = len(cases) > 1000 if progress is None else progress
        with tqdm(total=len(cases), desc=f"phenomizer ({self.mode})", unit="case", disable=not show) as bar:
            for lo in range(0, len(cases), self.chunk_size):
                chunk = cases[lo : lo + self.chunk_size]
                out[lo : lo + len(chunk)] = self._score_chunk(chunk)
                bar.update(len(chunk))
        return out

    def _score_chunk(self, cases: list[list[int]]) -> np.ndarray:
        n_panel = len(self.panel_ids)
        uniq = sorted({t for c in cases for t in c})
        if not uniq or n_panel == 0:
            return np.zeros((len(cases), n_panel), dtype=np.float32)
        col = {t: j for j, t in enumerate(uniq)}
        # best[d, j]: Resnik best match of patient term uniq[j] to disease d.
        flat, starts = self._flatten(uniq)
        best = np.maximum.reduceat(self.matrix[:, flat], starts, axis=1)
        weights = np.zeros((len(cases), len(uniq)), dtype=np.float32)
        for i, c in enumerate(cases):
            if c:
                weights[i, [col[t] for t in c]] = 1.0 / len(c)
        one_way = weights @ best.T
        if self.mode == "one_way":
            return one_way
        reverse = self._disease_to_patient(cases)
        if self.mode == "symmetric":
            return (one_way + reverse) / 2
        # bma: (sum of the n patient-side best matches + sum of the m disease-side ones) / (n + m).
        n = np.array([len(c) for c in cases], dtype=np.float32)[:, None]
        m = self._n_annotations[None, :]
        return (n * one_way + m * reverse) / np.maximum(n + m, 1)

    def _disease_to_patient(self, cases: list[list[int]]) -> np.ndarray:
        """(n_cases, n_panel): mean over d's annotated terms s of the best match of s to the patient.

        The best match of s is the largest IC in anc(s) that is also in the patient's closure.
        """
        if len(self._panel_terms) == 0:
            return np.zeros((len(cases), len(self.panel_ids)), dtype=np.float32)
        patient = np.zeros((len(cases), len(self.term_ids)), dtype=np.float32)
        for i, c in enumerate(cases):
            cl = self.closure(c)
            patient[i, cl] = self.ic[cl]
        back = np.maximum.reduceat(patient[:, self._panel_flat], self._panel_starts, axis=1)
        return back @ self._panel_weights.T

    def rank_cases(self, cases: pl.DataFrame, progress: bool | None = None) -> pl.DataFrame:
        """RANKINGS rows (modality 'phenomizer') for `cases` (columns case_id, hpo_ids).

        Rank 1 = highest score; ties go to annotated diseases first, then by disease_id.
        """
        # Imported here: mint.apps.rare_disease.teacher pulls in torch, which scoring does not need.
        from mint.core.rankings import rankings_frame

        case_ids = cases["case_id"].to_list()
        scores = self.score(cases["hpo_ids"].to_list(), case_ids, progress)
        # rankings_frame breaks ties by column order: put the columns in the tie-break order.
        order = sorted(range(len(self.panel_ids)), key=lambda j: (not self.is_annotated[j], self.panel_ids[j]))
        return rankings_frame(case_ids, [self.panel_ids[j] for j in order], scores[:, order], MODALITY)


def _ancestor_closure(parents: list[list[int]], names: Sequence[str]) -> list[np.ndarray]:
    """Per term, the sorted indices of itself and all its ancestors (parents first: Kahn's order)."""
    n = len(parents)
    children: list[list[int]] = [[] for _ in range(n)]
    for t, ps in enumerate(parents):
        for p in ps:
            children[p].append(t)
    waiting = [len(set(ps)) for ps in parents]
    ready = [t for t in range(n) if waiting[t] == 0]
    out: list[np.ndarray | None] = [None] * n
    while ready:
        t = ready.pop()
        out[t] = np.unique(np.concatenate([np.array([t], dtype=np.int64)] + [out[p] for p in parents[t]]))
        for c in set(children[t]):
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.append(c)
    stuck = [t for t in range(n) if out[t] is None]
    if stuck:
        raise MintError(f"terms table: {len(stuck)} term(s) sit on a cycle of parents, e.g. {names[stuck[0]]}")
    return out  # type: ignore[return-value]


def rank_cohort(annotations_path: str | Path, terms_path: str | Path, cases_path: str | Path,
                candidates_path: str | Path, out_path: str | Path, mode: str = "one_way",
                split: str | None = "test") -> None:
    """Write the Phenomizer RANKINGS of the cohort's cases in `split` (None: all) that list HPO terms."""
    from mint.apps.rare_disease import schemas as knowledge_schemas
    from mint.core.cohort import cases_in, load_cases, load_labels

    annotations = read_parquet(annotations_path, knowledge_schemas.ANNOTATIONS)
    terms = read_parquet(terms_path, knowledge_schemas.TERMS)
    cases, panel = load_cases(cases_path), load_labels(candidates_path)
    if split is not None:
        cases = cases_in(cases, split)
    without = cases.filter(pl.col("hpo_ids").is_null())
    if without.height:
        print(f"phenomizer: skipping {without.height} case(s) without HPO terms, e.g. {without['case_id'][0]!r}")
    ranker = PhenomizerRanker(annotations, terms, panel["label_id"].to_list(), mode)
    df = ranker.rank_cases(cases.filter(pl.col("hpo_ids").is_not_null()))
    write_parquet(df, out_path, schemas.RANKINGS, provenance({"mode": mode}))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("knowledge_dir")
    parser.add_argument("cohort_dir")
    parser.add_argument("out_path")
    parser.add_argument("--mode", choices=MODES, default="one_way")
    add_split_argument(parser)
    args = parser.parse_args(argv)
    k, c = Path(args.knowledge_dir), Path(args.cohort_dir)
    rank_cohort(k / "annotations.parquet", k / "terms.parquet", c / "cases.parquet", c / "candidates.parquet",
                args.out_path, args.mode, args.split)


if __name__ == "__main__":
    main()
