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


def test_a_link_to_a_regular_file_is_read_and_a_link_to_a_device_is_not(tmp_path):
    """Links are followed: the target decides (a FIFO or a device would block or never end)."""
    import os

    from mint.core.io import read_user_table, require_regular_file

    table = tmp_path / "real.csv"
    table.write_text("case_id,note\np0,a\n")
    (tmp_path / "link.csv").symlink_to(table)
    assert read_user_table(tmp_path / "link.csv", "manifest")["case_id"].to_list() == ["p0"]
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(MintError, match=r"pipe.csv: the manifest is a FIFO \(named pipe\), not a regular file"):
        require_regular_file(tmp_path / "pipe.csv", "manifest")
    (tmp_path / "zero.csv").symlink_to("/dev/zero")
    with pytest.raises(MintError, match=r"zero.csv: the manifest is a character device \(a link to /dev/zero\)"):
        read_user_table(tmp_path / "zero.csv", "manifest")
    with pytest.raises(MintError, match=r"real.csv: the manifest is 18 bytes, more than the 16 read at most"):
        require_regular_file(table, "manifest", max_bytes=16)


def test_json_depth_counts_the_brackets_outside_strings():
    from mint.core.io import check_json_depth

    check_json_depth('{"a": "[[[[[[[[ \\" [[[[", "b": [[1]]}', "x.json", max_depth=3)  # 3 deep: the rest is text
    with pytest.raises(MintError, match=r"x.json: JSON nested 4 levels deep; at most 3 are read"):
        check_json_depth('{"b": [[[1]]]}', "x.json", max_depth=3)


def test_a_truncated_parquet_is_named(tmp_path):
    path = tmp_path / "cases.parquet"
    write_parquet(pl.DataFrame({"a": list(range(100)), "b": ["x"] * 100}), path, SCHEMA)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(MintError, match=r"cases.parquet: not a readable Parquet file, truncated or corrupt"):
        read_parquet(path)


def test_a_column_twice_is_refused_in_text_and_parquet_tables(tmp_path):
    import pyarrow.parquet as pq

    from mint.core.io import read_user_table

    (tmp_path / "m.tsv").write_text("case_id\tnote\tnote\np0\ta\tb\n")
    with pytest.raises(MintError, match=r"m.tsv: the panel has column 'note' 2 times"):
        read_user_table(tmp_path / "m.tsv", "panel")
    pq.write_table(pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"])], names=["note", "note"]),
                   tmp_path / "m.parquet")
    with pytest.raises(MintError, match=r"m.parquet: the manifest has column 'note' 2 times"):
        read_user_table(tmp_path / "m.parquet", "manifest")
