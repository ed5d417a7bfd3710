"""Compare students of several run folders on the same cases: accuracy and paired differences.

Options are chosen in run folders of their own (a pair option, a recipe), scored on the validation
split (`evaluation.split: validation`); their score files share names, so this reads them as
`name=folder/results/scores/<run>.parquet`, renames each to `name`, and prints every one's top-1,
top-10 and MRR (95% bootstrap intervals) and each one's paired difference against the first.

    python -m bench.compare_runs sft=runs/val-base/results/scores/seed1/sft.parquet \\
        orpo=runs/val-base/results/scores/seed1/orpo.parquet orpo_ce=runs/val-ce/results/scores/seed1/orpo.parquet \\
        --cases runs/val-base/results/cohort/cases.parquet

`--cases`: also each run's accuracy on the cases whose label has a real training case ("seen") and on
the others ("unseen"), as the report's seen / unseen table splits them (`mint.core.evaluate.seen_labels`;
generated cases are those of `--application`'s `synthetic_sources`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import polars as pl

from mint.core import schemas
from mint.core.app import load_application
from mint.core.evaluate import paired_bootstrap, seen_labels, summarize, summarize_by_seen
from mint.core.io import MintError, read_parquet


def load_named(specs: Sequence[str]) -> pl.DataFrame:
    """CASE_SCORES of every `name=path`, with `method` set to the name."""
    parts = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise MintError(f"{spec!r}: give name=path/to/scores.parquet")
        parts.append(read_parquet(path, schemas.CASE_SCORES).with_columns(method=pl.lit(name)))
    return pl.concat(parts)


def compare(scores: pl.DataFrame, ks: Sequence[int] = (1, 10), n_boot: int = 1000, seed: int = 0) -> list[str]:
    """Markdown lines: a table of each method, then each one minus the first, paired on shared cases."""
    table = summarize(scores, ks=tuple(ks), n_boot=n_boot, seed=seed)
    tops = [f"top{k}" for k in ks]
    lines = ["| run | n | " + " | ".join(f"top-{k} %" for k in ks) + " | MRR |",
             "|---|---|" + "---|" * (len(ks) + 1)]
    for r in table.iter_rows(named=True):
        cells = [f"{100 * r[t]:.1f} [{100 * r[t + '_lo']:.1f}, {100 * r[t + '_hi']:.1f}]" for t in tops]
        lines.append(f"| {r['method']} | {r['n_cases']} | " + " | ".join(cells) + f" | {r['mrr']:.3f} |")
    methods = table["method"].to_list()
    lines += ["", f"| run - {methods[0]} | metric | difference (points) | 95% interval | p |", "|---|---|---|---|---|"]
    for other in methods[1:]:
        for metric in ("top1", *tops[1:]):
            c = paired_bootstrap(scores, other, methods[0], metric=metric, n_boot=n_boot, seed=seed)
            lines.append(f"| {other} | {metric} | {100 * c['diff']:+.1f} | [{100 * c['lo']:+.1f}, "
                         f"{100 * c['hi']:+.1f}] | {c['p_value']:.3f} |")
    return lines


def by_seen(scores: pl.DataFrame, cases: pl.DataFrame, ks: Sequence[int] = (1, 10), n_boot: int = 1000,
            seed: int = 0, synthetic_sources: Sequence[str] = ("simulated",)) -> list[str]:
    """Markdown lines: each run's top-k % on the seen and on the unseen labels' cases (`summarize_by_seen`)."""
    table = summarize_by_seen(scores, seen_labels(cases, synthetic_sources), ks=tuple(ks), n_boot=n_boot, seed=seed)
    groups = {(r["method"], r["group"]): r for r in table.iter_rows(named=True)}
    lines = ["| run | n seen / unseen | " + " | ".join(f"top-{k} % seen / unseen" for k in ks) + " |",
             "|---|---|" + "---|" * len(ks)]
    for method in scores["method"].unique(maintain_order=True):
        rows = [groups.get((method, group)) for group in ("seen", "unseen")]
        n = " / ".join("0" if r is None else str(r["n_cases"]) for r in rows)
        cells = [" / ".join("–" if r is None else f"{100 * r[f'top{k}']:.1f}" for r in rows) for k in ks]
        lines.append(f"| {method} | {n} | " + " | ".join(cells) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="name=path of a CASE_SCORES Parquet; the first is the reference")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 10])
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cases", default=None, help="the cohort's cases.parquet: add the seen / unseen table")
    p.add_argument("--application", default="rare_disease",
                   help="with --cases: the application whose synthetic_sources mark generated training cases")
    a = p.parse_args(argv)
    scores = load_named(a.runs)
    lines = compare(scores, ks=a.ks, n_boot=a.bootstrap, seed=a.seed)
    if a.cases:
        synthetic = load_application(a.application).synthetic_sources
        lines += ["", *by_seen(scores, read_parquet(a.cases), ks=a.ks, n_boot=a.bootstrap, seed=a.seed,
                               synthetic_sources=synthetic)]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
