"""Atomic file writes and provenance sidecars: every step's output goes through here.

A write lands in a temporary sibling first and is renamed into place, so a killed job never
leaves a half-written file that Snakemake (or a later reader) would take for a finished one.
Each output gets `<output>.provenance.json` beside it (inside it, for folders): config hash,
package versions, seed, host, git commit. A user's input is read only from a regular file and
within the stated limits (`require_regular_file`, `read_user_table`, `MAX_TABLE_BYTES`, ...).

    python -c "import mint.core.io as io, json; print(json.dumps(io.provenance({'a': 1}), indent=1))"
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import json
import os
import pickle
import platform
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

# The running workflow step's lineage of settings (mint.core.steps.enter_step sets it): every provenance
# record a step writes holds it, so that later steps can check what their inputs were made with.
ENV_LINEAGE = "MINT_LINEAGE"
TRACKED_PACKAGES = ("mint", "torch", "transformers", "trl", "peft", "accelerate", "polars", "pyarrow", "snakemake")

# Everything a run writes may hold patient data (notes, images, answers, logs, weights): readable by its
# owner alone whatever umask the run started with, or also by the owner's group with
# `privacy.shared_group: true` (apply_output_mode). The processes a step starts inherit the mode by this
# variable as well as by the umask.
ENV_SHARED_GROUP = "MINT_SHARED_GROUP"
PRIVATE_UMASK = 0o077  # files 0600, folders 0700
SHARED_GROUP_UMASK = 0o027  # files 0640, folders 0750: the group reads, only the owner writes


class MintError(ValueError):
    """A user-facing error: the message names the config key, file, row or case at fault."""


# Limits on what a user's input may be (docs/inputs.md, "Limits"): each one is refused above it, naming the file.
# A user table (manifest, panel, phenopacket-store's flat file) is read whole: 1 GiB of CSV is about a million
# cases with 1,000-character notes, and 2-3 GiB in memory once parsed.
MAX_TABLE_BYTES = 1 << 30
# A config or recipe YAML: 16 MiB holds a `cohort.split.test_cases` list of half a million ids.
MAX_YAML_BYTES = 16 << 20
# JSON nesting (objects and arrays, one level each): a phenopacket nests about 10 deep. Python's json
# recurses once a level and stops near 1,000 with a RecursionError; protobuf's JSON parser stops at 100.
MAX_JSON_DEPTH = 64

_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def require_regular_file(path: str | os.PathLike, what: str, max_bytes: int | None = None) -> Path:
    """`path`, once its target (links followed) is known to be a regular file of at most `max_bytes` bytes;
    else MintError naming the file and `what` it should be ("manifest", "phenopacket", ...).

    Checked with stat, before anything opens the file: opening a FIFO waits for a writer (forever), and
    a link to a device (/dev/zero, /dev/urandom) reads without end. A link to a regular file is fine.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MintError(f"{path}: the {what} is not found") from None
    except OSError as err:
        raise MintError(f"{path}: the {what} cannot be read ({err.strerror})") from err
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "not a file")
        link = f" (a link to {os.path.realpath(path)})" if path.is_symlink() else ""
        raise MintError(f"{path}: the {what} is {kind}{link}, not a regular file; give the file itself")
    if max_bytes is not None and st.st_size > max_bytes:
        raise MintError(f"{path}: the {what} is {st.st_size:,} bytes, more than the {max_bytes:,} read at most; "
                        "split it, or shorten what it holds (docs/inputs.md, Limits)")
    return path


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def check_json_depth(text: str, source: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """MintError naming `source` if the JSON `text` nests objects and arrays more than `max_depth` deep.

    Counted on the brackets outside strings, without parsing: a parser recurses a level at a time and a
    deep enough file ends it with a RecursionError that names no file.
    """
    import numpy as np

    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)).encode()
    if not brackets:
        return
    steps = np.frombuffer(brackets, dtype=np.uint8)
    depth = int(np.cumsum(np.where((steps == ord("[")) | (steps == ord("{")), 1, -1)).max())
    if depth > max_depth:
        raise MintError(f"{source}: JSON nested {depth} levels deep; at most {max_depth} are read "
                        "(mint.core.io.MAX_JSON_DEPTH)")


def duplicated_columns(names: Iterable[str], path: str | os.PathLike, what: str) -> None:
    """MintError naming the file and the column if `names` (a table's header) holds a name twice."""
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    twice = [name for name, n in seen.items() if n > 1]
    if twice:
        raise MintError(f"{path}: the {what} has column {twice[0]!r} {seen[twice[0]]} times; each column must appear "
                        f"once (duplicated: {twice[:5]})")


def read_user_table(path: Path, what: str, *, text_suffixes: tuple[str, ...] = (".csv", ".tsv", ".txt"),
                    expected: str = "a header and one row per line") -> pl.DataFrame:
    """A user's table (Parquet, or UTF-8 CSV; any other text suffix is tab-separated), every column a
    string; MintError naming the file and the `what` if it is not UTF-8, empty (`expected` says what
    should be there) or broken. Only a regular file of at most `MAX_TABLE_BYTES` is read, and a column
    named twice in the header is refused (polars would rename the second copy `<name>_duplicated_0`)."""
    suffix = path.suffix.lower()
    require_regular_file(path, what, MAX_TABLE_BYTES)
    try:
        if suffix == ".parquet":
            duplicated_columns(pq.read_schema(path).names, path, what)
            df = pl.read_parquet(path)
            return df.with_columns(pl.col(c).cast(pl.String) for c in df.columns)
        if suffix in text_suffixes:
            separator = "," if suffix == ".csv" else "\t"
            text = path.read_bytes().decode("utf-8")  # polars' own message for other encodings names no file
            end = text.find("\n")
            header = text if end < 0 else text[:end].rstrip("\r")
            duplicated_columns(next(csv.reader([header], delimiter=separator), []), path, what)
            return pl.read_csv(path, separator=separator, infer_schema=False)
    except UnicodeDecodeError as err:
        raise MintError(f"{path}: the {what} is not UTF-8 text (byte {err.start}: {err.reason}); save it as "
                        "UTF-8") from err
    except pl.exceptions.NoDataError as err:
        raise MintError(f"{path}: the {what} is empty; expected {expected}") from err
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError) as err:
        raise MintError(f"{path}: not a readable {what} ({err})") from err
    raise MintError(f"{path}: a {what} must be .csv, .tsv or .parquet")


def apply_output_mode(shared_group: bool | None = None, existing: Iterable[str | os.PathLike] = ()) -> int:
    """Set this process's umask (inherited by the processes it starts) so that what it creates is its
    owner's alone (files 0600, folders 0700), or also its group's to read (0640, 0750) with `shared_group`;
    None: as the running workflow says (MINT_SHARED_GROUP, default private). `existing`: paths made before
    the mode was set (Snakemake's own log), given the mode a new one would get; a path of another owner
    keeps its mode. Returns the umask set.

        python -c "import mint.core.io as io; print(oct(io.apply_output_mode()))"
    """
    if shared_group is None:
        shared_group = os.environ.get(ENV_SHARED_GROUP) == "1"
    os.environ[ENV_SHARED_GROUP] = "1" if shared_group else "0"
    mask = SHARED_GROUP_UMASK if shared_group else PRIVATE_UMASK
    os.umask(mask)
    for path in existing:
        try:
            os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~mask)
        except (FileNotFoundError, PermissionError):  # not there, or another user's (not ours to change)
            continue
    return mask


def current_umask() -> int:
    """The umask in force. Reading it means setting it: for that instant it is the private one, so that
    a file another thread creates meanwhile is never more open than outputs are."""
    mask = os.umask(PRIVATE_UMASK)
    os.umask(mask)
    return mask


def require_columns(df: pl.DataFrame, columns: Iterable[str], what: str) -> None:
    """MintError naming `what` and the missing columns, if `df` lacks any of `columns`."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MintError(f"{what}: missing columns {missing}; have {df.columns}")


def config_hash(config: Mapping[str, Any]) -> str:
    """Stable short hash of a (JSON-serialisable) config mapping."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (short): identifies an input without trusting its mtime."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _versions() -> dict[str, str]:
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _git_commit() -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() or None


def provenance(config: Mapping[str, Any] | None = None, seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """What produced an output. Deliberately free of timestamps so reruns stay byte-identical."""
    record: dict[str, Any] = {
        "config_hash": config_hash(config) if config is not None else None,
        "seed": seed,
        "versions": _versions(),
        "git_commit": _git_commit(),
        "host": platform.node(),
        "python": platform.python_version(),
    }
    lineage = os.environ.get(ENV_LINEAGE)
    if lineage:
        record["settings"] = json.loads(lineage)
    record.update(extra)
    return record


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove what a killed write of `path` left beside it (`.<name>.XXXXXXXX.tmp`, file or folder).

    A kill (SIGKILL, a node lost) skips the cleanup of `atomic_path` / `atomic_dir`; the next write of
    the same output removes the leftovers. Only one job writes an output at a time (Snakemake locks
    it), so a temporary of `path` found here belongs to no running write.
    """
    path = Path(path)
    stale = [p for p in path.parent.glob(f".{glob.escape(path.name)}.{'[a-z0-9_]' * 8}.tmp")]
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.parent.name.endswith(".tmp"):  # inside a fresh atomic_dir nothing is stale (and files are many)
        remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600: the mode of the run's other files
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700: the mode of the run's other folders
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def temp_files_in(folder: str | os.PathLike) -> Iterator[Path]:
    """Python's temporary files (`tempfile`, and the libraries that use it) in a fresh folder under `folder`,
    a place inside the run, until the block ends; the folder is then removed. Patient-derived data never
    lands in the system's temporary folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".mint-tmp-", dir=folder)
    before = tempfile.tempdir
    tempfile.tempdir = tmp
    try:
        yield Path(tmp)
    finally:
        tempfile.tempdir = before
        shutil.rmtree(tmp, ignore_errors=True)


def sidecar_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / "provenance.json" if path.is_dir() else path.with_name(path.name + ".provenance.json")


def write_json(obj: Any, path: str | os.PathLike, prov: Mapping[str, Any] | None = None) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    if prov is not None:
        write_provenance(path, prov)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_provenance(path: str | os.PathLike, prov: Mapping[str, Any]) -> None:
    """`prov` beside `path` (inside a folder); for a file, with its sha256, so that a reader can tell a
    file copied over it (mint.core.steps.read_lineage)."""
    if Path(path).is_file():
        prov = {**prov, "sha256": file_digest(path)}
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(prov, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_parquet(
    df: pl.DataFrame, path: str | os.PathLike, schema: pa.Schema, prov: Mapping[str, Any] | None = None
) -> None:
    """Write `df` cast to `schema` (column order and types fixed in `mint.core.schemas`)."""
    require_columns(df, schema.names, str(path))
    table = df.select([f.name for f in schema]).to_arrow().cast(schema)
    with atomic_path(path) as tmp:
        # No statistics/timestamps that vary between runs: identical inputs give identical bytes.
        pq.write_table(table, tmp, compression="zstd")
    if prov is not None:
        write_provenance(path, prov)


# pyarrow's default row group (rows). `ParquetStream` cuts its groups there too, so a file written
# batch by batch has the bytes `write_parquet` gives the whole table.
ROW_GROUP = 1024 * 1024


class ParquetStream:
    """A Parquet file of `schema` written batch by batch: memory holds one row group, not the table.

    Row groups of `ROW_GROUP` rows, as `pq.write_table` cuts them, so the same rows in the same order
    give the same bytes as one `write_parquet` of them all; a smaller `row_group` holds less in memory
    and gives those bytes up to that many rows (above, the same rows in more row groups). The file
    appears (atomically, with its provenance) when the `with` block ends without error.

        with ParquetStream(path, schemas.RANKINGS, prov) as out:
            out.write(frame)  # any number of polars frames or pyarrow tables
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema, prov: Mapping[str, Any] | None = None,
                 row_group: int | None = None) -> None:
        self.path, self.schema, self.prov = Path(path), schema, prov
        self.row_group = row_group or ROW_GROUP
        self._pending: list[pa.Table] = []
        self._rows = 0
        self._written = False

    def __enter__(self) -> ParquetStream:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._writer = pq.ParquetWriter(tmp, self.schema, compression="zstd")
        return self

    def write(self, batch: pl.DataFrame | pa.Table) -> None:
        """Append rows (a polars frame is cast to the schema as `write_parquet` casts it)."""
        if isinstance(batch, pl.DataFrame):
            require_columns(batch, self.schema.names, str(self.path))
            batch = batch.select(self.schema.names).to_arrow().cast(self.schema)
        self._pending.append(batch)
        self._rows += batch.num_rows
        if self._rows >= self.row_group:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        table = pa.concat_tables(self._pending).combine_chunks()
        while table.num_rows >= self.row_group or (final and table.num_rows):
            self._writer.write_table(table.slice(0, self.row_group), row_group_size=self.row_group)
            self._written = True
            table = table.slice(self.row_group)
        self._pending, self._rows = ([table] if table.num_rows else []), table.num_rows

    def __exit__(self, *exc: Any) -> None:
        try:
            if exc[0] is None:
                if not self._written and not self._rows:  # as write_table writes an empty table
                    self._writer.write_table(self.schema.empty_table(), row_group_size=self.row_group)
                elif self._pending:
                    self._flush(final=True)
            self._writer.close()
        finally:
            self._atomic.__exit__(*exc)
        if exc[0] is None and self.prov is not None:
            write_provenance(self.path, self.prov)


def read_parquet(path: str | os.PathLike, schema: pa.Schema | None = None) -> pl.DataFrame:
    """Read a Parquet file; with `schema`, check that its columns are there (naming the file)."""
    path = Path(path)
    if not path.exists():
        raise MintError(f"file not found: {path}")
    try:
        df = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError) as err:
        raise MintError(f"{path}: not a readable Parquet file, truncated or corrupt ({err}); remove it and rerun "
                        "the step that writes it") from err
    if schema is not None:
        require_columns(df, schema.names, str(path))
    return df


def load_checkpoint(path: str | os.PathLike) -> Any:
    """A checkpoint written by `torch.save`, loaded with `weights_only=True`: tensors, numbers, strings,
    lists, dicts and numpy arrays, never arbitrary pickled objects (a file that needs them is refused,
    naming it)."""
    import numpy as np
    import torch

    numpy_arrays = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.Float32DType,
                    np.dtypes.Float64DType, np.dtypes.Int64DType, np.dtypes.Int32DType]
    try:
        with torch.serialization.safe_globals(numpy_arrays):
            return torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise MintError(f"{path}: not a checkpoint that loads with weights_only=True (tensors, numbers, strings, "
                        f"lists, dicts, numpy arrays): {str(err).splitlines()[0]}") from err


def load_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())
