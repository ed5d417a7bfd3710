import json

import polars as pl
import pyarrow as pa
import pytest

from mint.core.io import (
    MintError,
    atomic_dir,
    atomic_path,
    config_hash,
    provenance,
    read_parquet,
    sidecar_path,
    write_parquet,
)

SCHEMA = pa.schema([("a", pa.int64()), ("b", pa.string())])


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_dir_write_keeps_the_old_folder(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "w.bin").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "w.bin").write_text("v2-partial")
            raise RuntimeError("killed")
    assert (target / "w.bin").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_parquet_roundtrip_with_schema_and_sidecar(tmp_path):
    path = tmp_path / "t.parquet"
    write_parquet(pl.DataFrame({"b": ["x", "y"], "c": [0.5, 0.5], "a": [1, 2]}), path, SCHEMA,
                  provenance({"k": 1, "m": [2]}, seed=3))
    df = read_parquet(path, SCHEMA)
    assert df.columns == ["a", "b"]  # the schema's order; columns outside it are not written
    assert sidecar_path(path) == tmp_path / "t.parquet.provenance.json"
    prov = json.loads(sidecar_path(path).read_text())
    assert prov["config_hash"] == config_hash({"m": [2], "k": 1})  # key order does not matter
    assert prov["config_hash"] != config_hash({"k": 2, "m": [2]})
    assert prov["versions"]["polars"] == pl.__version__


def test_same_data_gives_identical_bytes(tmp_path):
    df = pl.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    write_parquet(df, tmp_path / "1.parquet", SCHEMA)
    write_parquet(df, tmp_path / "2.parquet", SCHEMA)
    assert (tmp_path / "1.parquet").read_bytes() == (tmp_path / "2.parquet").read_bytes()


def test_missing_column_is_named(tmp_path):
    with pytest.raises(MintError, match=r"\['b'\]"):
        write_parquet(pl.DataFrame({"a": [1]}), tmp_path / "x.parquet", SCHEMA)
    write_parquet(pl.DataFrame({"a": [1], "b": ["z"]}), tmp_path / "y.parquet", SCHEMA)
    with pytest.raises(MintError, match="y.parquet"):
        read_parquet(tmp_path / "y.parquet", pa.schema([("c", pa.int64())]))
