"""Build the tissue cohort: simulated H&E patches (the embedded default), PanNuke folds or a manifest.

Every source gives the core's tables (`mint.core.schemas`): the cases (CASES plus this
application's `image_path` and `caption`), the 19 PanNuke tissues as candidates, the excluded
input cases (none: every bad input stops the step, naming it), the patches as PNG files, and
`nuclei.parquet`: each case's nucleus features from its masks (`patches.nucleus_features`), what
the teacher sees beside the image.

    python -m mint.apps.tissue.cohort results/cohort --per-tissue 10
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from PIL import Image
from tqdm import tqdm

from mint.apps.tissue.patches import FEATURE_NAMES, nucleus_features, simulate_patches
from mint.apps.tissue.tissues import TISSUE_IDS, labels_frame
from mint.core import schemas
from mint.core.cohort import check_kept, split_cases
from mint.core.io import MintError, atomic_dir, provenance, write_parquet
from mint.core.paths import file_in

CASE_FIELDS = (
    pa.field("image_path", pa.string()),  # the patch (PNG), relative to the working directory
    pa.field("caption", pa.string()),  # what the patch shows, for the teacher's contrastive training
)
NUCLEI = pa.schema([("case_id", pa.string()), ("features", pa.list_(pa.float32()))])
SOURCES = ("simulated", "pannuke", "manifest")


def _simulated(sim: Mapping[str, Any], seed: int, images_tmp: Path, images_dir: str):
    rows, feats = [], []
    n = sim["per_tissue"] * len(TISSUE_IDS)
    for patch in tqdm(simulate_patches(sim["per_tissue"], seed=seed, size=sim["size"]), total=n,
                      desc="render patches", unit="patch"):
        Image.fromarray(patch.image).save(file_in(images_tmp, patch.case_id, ".png"), optimize=False)
        rows.append({"case_id": patch.case_id, "source": "simulated", "group": None, "label_id": patch.tissue_id,
                     "image_path": f"{images_dir}/{patch.case_id}.png", "caption": patch.caption})
        feats.append(nucleus_features(patch.instance, patch.types))
    return pl.DataFrame(rows, schema_overrides={"group": pl.String}), feats


def _from_reader(cases: pl.DataFrame, load, source: str, images_tmp: Path, images_dir: str):
    """Cases a reader found (case_id, label_id, optional split): their patches copied in as PNG, features."""
    from mint.apps.tissue.patches import caption, type_counts

    names = dict(labels_frame().select("label_id", "name").iter_rows())
    rows, feats = [], []
    for i, row in enumerate(tqdm(cases.iter_rows(named=True), total=cases.height, desc=f"read {source}",
                                 unit="patch")):
        image, instance, types = load(i)
        Image.fromarray(image).save(file_in(images_tmp, row["case_id"], ".png"), optimize=False)
        masked = instance is not None
        f = nucleus_features(instance, types) if masked else np.zeros(len(FEATURE_NAMES), np.float32)
        # A real patch's arrangement is not known: its caption names the tissue and, with masks, its nuclei.
        text = (caption(names[row["label_id"]], None, type_counts(instance, types)) if masked
                else f"H&E patch of {names[row['label_id']].lower()} tissue.")
        rows.append({**row, "source": source, "group": row.get("group"),
                     "image_path": f"{images_dir}/{row['case_id']}.png", "caption": text})
        feats.append(f)
    return pl.DataFrame(rows, schema_overrides={"group": pl.String}), feats


def build_cohort(*, cases_path: str | Path, candidates_path: str | Path, excluded_path: str | Path,
                 nuclei_path: str | Path, images_dir: str | Path, cohort: Mapping[str, Any], seed: int) -> None:
    """Write the cases, candidates, exclusions, nucleus features and the patch folder.

    `cohort`: the config's `cohort` section (source and its settings, split shares and given test cases).
    A given split (PanNuke's folds, a manifest's `split` column, `cohort.split.test_cases` and
    `test_groups`) comes first; the other cases get the seeded split (`mint.core.cohort.split_cases`).
    """
    images = Path(images_dir)
    source = cohort["source"]
    with atomic_dir(images) as tmp:
        if source == "simulated":
            cases, feats = _simulated(cohort["simulated"], seed, tmp, str(images))
        elif source == "pannuke":
            from mint.apps.tissue.readers import read_pannuke_folds

            found, load = read_pannuke_folds(cohort["pannuke"]["path"], cohort["pannuke"]["folds"])
            cases, feats = _from_reader(found, load, "pannuke", tmp, str(images))
        elif source == "manifest":
            from mint.apps.tissue.readers import read_manifest_cases

            found, load = read_manifest_cases(cohort["manifest"]["path"],
                                              allow_absolute=cohort.get("allow_absolute_paths", False))
            cases, feats = _from_reader(found, load, "manifest", tmp, str(images))
        else:
            raise MintError(f"config key 'cohort.source': {source!r} is not one of {SOURCES}")
        if cases.height == 0:
            raise MintError(f"config key 'cohort.source' ({source}): no cases")
        split = cohort["split"]  # inside the block: a split that cannot hold leaves no patch folder
        cases = split_cases(cases, split["validation"], split["test"], seed, test_cases=split.get("test_cases", []),
                            test_groups=split.get("test_groups", []), where=f"the {source} cases")
        check_kept(cases, f"the {source} cases")
    order = cases.with_row_index("_i").sort("case_id")
    nuclei = pl.DataFrame({"case_id": order["case_id"], "features": [feats[i].tolist() for i in order["_i"]]})
    sources = dict(cases.group_by("split_source").len().sort("split_source").iter_rows())
    prov = provenance({"cohort": dict(cohort)}, seed=seed, split_source=sources)
    write_parquet(labels_frame(), candidates_path, schemas.LABELS, prov)
    write_parquet(order.drop("_i"), cases_path, schemas.cases_schema([schemas.SPLIT_SOURCE, *CASE_FIELDS]), prov)
    write_parquet(nuclei, nuclei_path, NUCLEI, prov)
    write_parquet(pl.DataFrame(schema={f.name: pl.String for f in schemas.EXCLUDED}), excluded_path,
                  schemas.EXCLUDED, prov)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Simulate a tissue cohort.")
    p.add_argument("out_dir")
    p.add_argument("--per-tissue", type=int, default=10)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = Path(a.out_dir)
    build_cohort(cases_path=out / "cases.parquet", candidates_path=out / "candidates.parquet",
                 excluded_path=out / "excluded.parquet", nuclei_path=out / "nuclei.parquet", images_dir=out / "images",
                 cohort={"source": "simulated", "simulated": {"per_tissue": a.per_tissue, "size": a.size},
                         "split": {"validation": 0.15, "test": 0.3}}, seed=a.seed)


if __name__ == "__main__":
    main()
