"""Choose the tissue recipes' epochs on the validation split (never the test split).

From a finished tissue run (its cohort, builtin student and preference rows), trains SFT and ORPO
from the base for each number of epochs, answers the validation patches and prints top-1, top-5
and the share of well-formed answers. Everything is written under `<run>/select_epochs/`.

    .venv/bin/python -m bench.select_tissue_epochs runs/tissue --epochs 4 8
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import polars as pl
import yaml

from mint.apps.tissue.prompts import PROMPT, normalise
from mint.core.predict import predict
from mint.core.report import score_student

REPO = Path(__file__).resolve().parents[1]
DATA = {"sft": "results/preferences/sft.parquet", "orpo": "results/preferences/preferences.parquet"}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a finished tissue run's working directory")
    p.add_argument("--epochs", type=int, nargs="+", default=[4, 8])
    p.add_argument("--methods", nargs="+", default=["sft", "orpo"])
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    run, out = a.run.resolve(), a.run.resolve() / "select_epochs"
    out.mkdir(exist_ok=True)
    # The validation patches, as the split the scorer reads; the test patches are left out.
    cases = pl.read_parquet(run / "results/cohort/cases.parquet")
    val = cases.filter(pl.col("split") != "test").with_columns(
        split=pl.when(pl.col("split") == "validation").then(pl.lit("test")).otherwise(pl.col("split")),
        image_path=pl.lit(f"{run}/") + pl.col("image_path"))  # the run's relative paths, read from here
    val.write_parquet(out / "cases.parquet")
    prompt = PROMPT.resolved(None)
    rows = []
    for epochs in a.epochs:
        for method in a.methods:
            recipe = yaml.safe_load((REPO / f"config/tissue/recipes/tiny/{method}.yaml").read_text())
            recipe["args"]["num_train_epochs"] = epochs
            recipe["init"] = "base"
            name = f"{method}-{epochs}"
            (out / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
            model = out / name
            if not model.exists():
                subprocess.run([sys.executable, "-m", "mint.core.train", str(out / f"{name}.yaml"),
                                str(run / "results/student/base"), str(run / DATA[method]), str(model),
                                "--kind", "vision", "--threads", str(a.threads)], check=True, cwd=run)
            predict(str(model), out / "cases.parquet", out / f"{name}.parquet", method=method, prompt=prompt,
                    text_field=None, image_field="image_path", k=5, threads=a.threads, max_new_tokens=48)
            score_student(out / "cases.parquet", run / "results/cohort/candidates.parquet",
                          run / "results/cohort/vocabulary.parquet"
                          if (run / "results/cohort/vocabulary.parquet").exists() else None,
                          out / f"{name}.parquet", out / f"{name}.scores.parquet", k=5, header=PROMPT.header,
                          fuzzy_cutoff=0.8, normalise=normalise)
            s = pl.read_parquet(out / f"{name}.scores.parquet")
            rank = s["rank"].fill_null(10**6)
            rows.append({"method": method, "epochs": epochs, "n": s.height,
                         "top1 %": round(100 * (rank == 1).mean(), 1), "top5 %": round(100 * (rank <= 5).mean(), 1),
                         "format ok %": round(100 * s["format_ok"].mean(), 1)})
    print(pl.DataFrame(rows))


if __name__ == "__main__":
    main()
