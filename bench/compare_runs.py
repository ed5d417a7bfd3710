"""Compare students of several run folders on the same cases: accuracy and paired differences.

Options are chosen in run folders of their own (a pair option, a recipe), scored on the validation
split (`evaluation.split: validation`); their score files share names, so this reads them as
`name=folder/results/scores/<run>.parquet`, renames each to `name`, and prints every one's top-1,
top-10 and MRR (95% bootstrap intervals) and each one's paired difference against the first.

    python -m bench.compare_runs sft=runs/val-base/results/scores/seed1/sft.parquet \\
        orpo=runs/val-base/results/scores/seed1/orpo.parquet orpo_ce=runs/val-ce/results/scores/seed1/orpo.parquet
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import polars as pl

from mint.core import schemas
from mint.core.evaluate import paired_bootstrap, summarize
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


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="name=path of a CASE_SCORES Parquet; the first is the reference")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 10])
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print("\n".join(compare(load_named(a.runs), ks=a.ks, n_boot=a.bootstrap, seed=a.seed)))


if __name__ == "__main__":
    main()
