"""A short fingerprint of the files a step reads by path, cheap enough to take at every workflow start.

A step that reads files named in its config (a manifest, the images it lists, a folder of records,
arrays of gigabytes) gets them as no Snakemake input. Its rule carries their fingerprint as a
param instead, so that Snakemake's params trigger reruns the step when one of them changes.

What is hashed, per file, in the order of the path strings (each path as given, files under a
given folder joined to it):

- the path itself, so that pointing at another file (or a row naming another image) is a change;
- the content's sha256 for tables and settings (`CONTENT_SUFFIXES`: CSV, TSV, text, JSON, YAML,
  Parquet) of any size, and for any other file up to `content_limit` bytes: touching or copying such
  a file without changing it reruns nothing, and an edit that keeps its size and modification time is
  still seen;
- otherwise (size, st_mtime_ns): a file above the limit is never read. Writing a file sets its
  modification time, so replacing it is seen; a copy that keeps the old time and size (`cp -p`,
  `rsync -a` of an equal-sized file) is not.

A group of many files (a manifest's images) takes `content_limit=0`: 100,000 small images cost
about 0.8 s by size and time against 3.6 s read from a warm cache, and reading them from a cold one
costs their whole size in I/O at every workflow start (`bench/fingerprint_scale.py`). Threads do not
help: with the GIL, a pool of 2 or 4 took 7 s where one thread takes 0.8 s (2 cores).

A folder stands for every regular file below it, recursively (links to files followed, links to
folders not descended, as `os.walk` does). A missing path is a MintError naming it.

    python -m mint.core.fingerprint data/manifest.csv data/images
"""

from __future__ import annotations

import argparse
import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from mint.core.io import MintError

# Read in full whatever their size: the tables and settings a step parses (it reads them whole anyway).
CONTENT_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".json", ".yaml", ".yml", ".parquet"})
BLOCK = 1 << 20  # bytes read at a time from a large table


def _walk(folder: str, found: dict[str, os.stat_result]) -> None:
    """Every regular file below `folder` into `found` (path -> stat), recursively."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _walk(entry.path, found)
            elif entry.is_file():  # follows a link to a file; the stat below follows it too
                found[entry.path] = entry.stat()


def _expand(files: Iterable[str | os.PathLike], key: str | None) -> dict[str, os.stat_result]:
    """path -> stat of every file given, and of every file below each folder given."""
    where = f"config key '{key}': " if key else ""
    found: dict[str, os.stat_result] = {}
    for item in files:
        path = os.fspath(item)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise MintError(f"{where}file not found: {path}; the step reads it, so it must exist") from None
        except OSError as err:
            raise MintError(f"{where}cannot read {path}: {err.strerror}") from err
        if stat.S_ISDIR(st.st_mode):
            _walk(path, found)
        elif stat.S_ISREG(st.st_mode):
            found[path] = st
        else:
            raise MintError(f"{where}{path} is neither a file nor a folder; expected a file the step reads")
    return found


def _content(path: str) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.digest()


def file_record(path: str, st: os.stat_result, content_limit: int) -> bytes:
    """What the fingerprint holds of one file: its content's digest, or its size and modification time."""
    if st.st_size <= content_limit or os.path.splitext(path)[1].lower() in CONTENT_SUFFIXES:
        return b"c" + _content(path)
    return b"s%d:%d" % (st.st_size, st.st_mtime_ns)


def fingerprint_files(files: Iterable[str | Path], *, content_limit: int = 1 << 20, key: str | None = None) -> str:
    """16 hex digits of sha256 over each file's path and record (`file_record`), sorted by path string.

    `files`: files and folders (a folder: every regular file below it); `content_limit`: bytes up to
    which any file is hashed by content (0: only `CONTENT_SUFFIXES`); `key`: the config key that names
    the files, for the error a missing one raises.
    """
    found = _expand(files, key)
    h = hashlib.sha256()
    for path in sorted(found):
        h.update(path.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
        h.update(file_record(path, found[path], content_limit))
        h.update(b"\n")
    return h.hexdigest()[:16]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="files and folders")
    parser.add_argument("--content-limit", type=int, default=1 << 20, help="bytes up to which a file is read")
    args = parser.parse_args(argv)
    print(fingerprint_files(args.paths, content_limit=args.content_limit))


if __name__ == "__main__":
    main()
