# Two commands on a fresh machine:  make demo  (set up + run the embedded default)  and  make test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
# Nothing is downloaded at run time: models come from installed packages or are built here.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export OMP_WAIT_POLICY := PASSIVE

.PHONY: setup demo demo-tissue benchmark test test-fast test-offline lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/report/report.html
	@echo; cat results/report/summary.md; echo; echo "HTML report: results/report/report.html"

# The tissue application's embedded default (simulated H&E patches, a tiny vision student).
# In its own folder, runs/tissue, so that the rare-disease demo's results/ stay as they are.
demo-tissue: setup
	mkdir -p runs/tissue
	$(BIN)/snakemake --cores $(CORES) --snakefile $(CURDIR)/Snakefile --directory runs/tissue \
		--configfile $(CURDIR)/config/tissue/default.yaml
	@echo; cat runs/tissue/results/report/summary.md

# The phenopacket benchmark (config/rare_disease/benchmark.yaml) in its own folder, runs/benchmark, reading the
# phenopacket-store snapshot in place through the link data/phenopacket-store, which the config names
# (STORE=... to point elsewhere; nothing is copied).
STORE ?= $(abspath ../shared/phenopacket-store)
BENCH_DIR ?= runs/benchmark
benchmark: setup
	mkdir -p $(BENCH_DIR)
	ln -sfn $(STORE) data/phenopacket-store
	$(BIN)/snakemake --cores $(CORES) --snakefile $(CURDIR)/Snakefile --directory $(BENCH_DIR) \
		--configfile $(CURDIR)/config/rare_disease/benchmark.yaml
	cd $(BENCH_DIR) && $(CURDIR)/$(BIN)/snakemake --snakefile $(CURDIR)/Snakefile \
		--configfile $(CURDIR)/config/rare_disease/benchmark.yaml --report results/report/report.html
	@echo; cat $(BENCH_DIR)/results/report/summary.md

test: setup
	$(BIN)/python -m pytest -q --durations=25

test-fast: setup
	$(BIN)/python -m pytest -q -m "not integration and not slow"

# The tiny rare-disease DAG with no network at all (a network namespace with no interface up; as
# root, else a user namespace), then the privacy grep of its logs, .snakemake/ and report.
UNSHARE := $(if $(filter 0,$(shell id -u)),unshare -n,unshare -rn)
test-offline: setup
	$(UNSHARE) $(BIN)/python -m pytest -q tests/test_workflow.py -k "no_note_text or metrics_table"

# ruff (Python), snakefmt (Snakefile and rules) and Snakemake's own linter; CI runs it before the tests.
lint: setup
	$(BIN)/ruff check mint tests bench workflow_scripts examples
	$(BIN)/snakefmt --check Snakefile rules examples/toy_app/rules.smk
	$(BIN)/snakemake --lint

bench: setup
	$(BIN)/python bench/demo_walltime.py

clean:
	rm -rf results logs .snakemake
