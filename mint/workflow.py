"""Glue between Snakemake's `script:` directive and the package: logging into the rule's log file.

Each file in `workflow_scripts/` is three lines: open the log, call one `mint` function with the
rule's files, done. Tracebacks and progress bars go to `logs/<rule>/...log`; a `MintError`
(bad input) is also printed on its own line so the user sees what to fix.

    snakemake --cores 2 --configfile config/config.yaml
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from mint.io import MintError


@contextlib.contextmanager
def step_log(path: str | Path) -> Iterator[None]:
    """Send stdout, stderr and `logging` of the block to `path`; errors are logged, then re-raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        except MintError as err:
            fh.write(f"ERROR: {err}\n")
            print(f"MINT input error: {err}", file=sys.__stderr__)
            raise
        except Exception:
            traceback.print_exc(file=fh)
            raise
        finally:
            root.removeHandler(handler)
