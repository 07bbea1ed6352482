# Two commands do all the set-up on a fresh clone:
#   make demo   - deploy the sample workflow to the embedded local cloud and run it end to end
#   make test   - lint, type-check and run the whole test suite (unit, infrastructure, LocalStack tiers)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup demo test unit integration infra e2e bench-smoke lint bench local-up local-down clean

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/coafi demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/python scripts/typecheck.py

test: lint
	$(BIN)/pytest

unit: setup
	$(BIN)/pytest tests/unit

integration: setup  ## workflows run in process: moto's Step Functions interpreter calling the handlers
	$(BIN)/pytest tests/integration

infra: setup
	$(BIN)/pytest tests/infra

e2e: setup
	$(BIN)/pytest tests/e2e

bench-smoke: setup
	$(BIN)/pytest tests/bench

bench: setup
	$(BIN)/python bench/run_all.py

.PHONY: bench-local
bench-local: setup  ## every benchmark, plus local_e2e and local_load on the embedded LocalStack
	$(BIN)/python bench/run_all.py --with-local

local-up: setup
	$(BIN)/coafi local up

local-down: setup
	$(BIN)/coafi local down

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
