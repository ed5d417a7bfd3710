"""Glue between Snakemake's `script:` directive and the package: logging into the rule's log file.

Each file in `workflow_scripts/` is three lines: enter the step (`run_step`: its log, and the check of
its inputs' provenance against the current settings, mint.core.steps), call one `mint` function with
the rule's files, done. Tracebacks and progress bars go to `logs/<rule>/...log`; a `MintError`
(bad input) is also printed on its own line so the user sees what to fix. Entry points that
`accelerate launch` starts once per GPU (`mint.core.train`, `mint.core.predict`) take `--log` and use
`rank_log`: the same, one file per process.

    snakemake --cores 2 --configfile config/rare_disease/default.yaml
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from mint.core.io import MintError, apply_output_mode
from mint.core.steps import SETTINGS_PARAM, enter_step


@contextlib.contextmanager
def step_log(path: str | Path, echo: bool = True) -> Iterator[None]:
    """Send stdout, stderr and `logging` of the block to `path`; errors are logged, then re-raised.

    `echo`: also print a `MintError` to the terminal (off for all but one of several processes).
    """
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
            if echo:
                print(f"MINT input error: {err}", file=sys.__stderr__)
            raise
        except Exception:
            traceback.print_exc(file=fh)
            raise
        finally:
            root.removeHandler(handler)


@contextlib.contextmanager
def run_step(smk, log: str | Path | None = None) -> Iterator[None]:
    """A `script:` step: its log (`log`, default the rule's first), in which its inputs' provenance is
    checked against its settings and the current config before the block runs (`enter_step`). What it
    writes, its log first, has the workflow's output mode (`apply_output_mode`: its owner's alone by default)."""
    apply_output_mode()
    with step_log(log or smk.log[0]):
        settings = smk.params.get(SETTINGS_PARAM) if hasattr(smk.params, "get") else None
        enter_step(smk.rule, [str(p) for p in smk.output], settings, [str(p) for p in smk.input])
        yield


def rank_log(path: str | Path | None) -> contextlib.AbstractContextManager:
    """`step_log` for a process that `accelerate launch` may start several times.

    Process 0 (or the only one) writes `path`, process k `<stem>.rank<k><suffix>` beside it, so
    they do not overwrite each other; only process 0 echoes a `MintError`. No path: the terminal.
    """
    if path is None:
        return contextlib.nullcontext()
    path = Path(path)
    rank = int(os.environ.get("RANK", "0"))  # set by torchrun/DeepSpeed before the process starts
    if rank:
        path = path.with_name(f"{path.stem}.rank{rank}{path.suffix}")
    return step_log(path, echo=rank == 0)
