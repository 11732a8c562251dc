# Two commands do all the set-up on a fresh clone: `make book` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# Chapters, and the contributor template, which is a working chapter too.
NOTEBOOKS := $(sort $(wildcard chapters/*.ipynb)) contributing/chapter_template.ipynb
SANITIZE := tests/nbval_sanitize.cfg

export PATH := $(BIN):$(PATH)
export UNLEARNLIB_PROGRESS ?= 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# Idle OpenMP threads (GNU libgomp, which PyTorch uses on Linux) spin 5,000 times before they
# sleep. Measured on the course's 2-core machine: libgomp's default spin made two trainings that
# share the CPU 16 times slower; OMP_WAIT_POLICY=PASSIVE avoids that but costs about 25% on a
# free CPU; 5,000 spins is within a few percent of the fastest setting on a free CPU and
# about 1.3 times PASSIVE's time when shared. Threads and results are unchanged.
export GOMP_SPINCOUNT ?= 5000

.PHONY: help venv book test unit nbval site lab execute bench zeroshot-long clean

help:
	@echo "make book     build the course website into _build/html (sets up .venv first)"
	@echo "make test     unit tests, nbval on every chapter, strict book build, HTML checks"
	@echo "make lab      JupyterLab on the course with the venv's kernel"
	@echo "make execute  rerun every chapter in place with papermill"
	@echo "make bench    run the benchmarks in benchmarks/"
	@echo "make zeroshot-long  the zero-shot chapter's longer run (<= 30 min on 2 CPU cores)"

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

book: venv
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Open file://$(abspath _build/html/index.html)"

test: venv
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory unit nbval site; \
	echo "make test: all checks passed in $$(( $$(date +%s) - start )) s"

unit: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

nbval: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval --nbval-current-env \
	    --nbval-sanitize-with $(SANITIZE) --nbval-cell-timeout 900 $(NOTEBOOKS)

site: venv
	rm -rf _build/html
	$(BIN)/jupyter-book build . -W -n --keep-going
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/site

lab: venv
	$(BIN)/jupyter lab --notebook-dir=.

execute: venv
	@for nb in $(NOTEBOOKS); do \
	    start=$$(date +%s%N); \
	    $(BIN)/papermill "$$nb" "$$nb" -k python3 --cwd "$$(dirname $$nb)" --no-progress-bar \
	        --execution-timeout 900 >/dev/null 2>"$(VENV)/papermill.log" || { cat "$(VENV)/papermill.log"; exit 1; }; \
	    ms=$$(( ($$(date +%s%N) - start) / 1000000 )); \
	    printf '%-45s %4d.%01d s\n' "$$nb" $$(( ms / 1000 )) $$(( ms % 1000 / 100 )); \
	done

bench: venv
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python "$$b"; done

# The longer run of the zero-shot chapter: writes results/zeroshot_long.csv and
# results/zeroshot_long_curves.csv, which the chapter reads (commit them).
zeroshot-long: venv
	$(BIN)/python scripts/zeroshot_long_run.py

clean:
	rm -rf _build .pytest_cache
