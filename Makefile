# airflow-provider-b24: developer commands. `make test` is what CI runs (twice: current and floor Airflow).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-airflow-$(AIRFLOW_VERSION)
DEPLOY_STAMP := $(VENV)/.installed-deploy-$(AIRFLOW_VERSION)
PYTEST_ARGS ?=
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install lint format typecheck test test-fast test-deployment demo bench bench-quick bench-triggers clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --python $(PY) "apache-airflow==$(AIRFLOW_VERSION)" -e ".[test,bench]"
	@rm -f $(VENV)/.installed-airflow-*
	@touch $@

# The deploy extra (Celery, PostgreSQL drivers, Amazon provider + s3fs, SeaweedFS's weed) on top of install.
$(DEPLOY_STAMP): $(STAMP)
	$(VENV)/bin/uv pip install --python $(PY) "apache-airflow==$(AIRFLOW_VERSION)" -e ".[test,bench,deploy]"
	@rm -f $(VENV)/.installed-deploy-*
	@touch $@

## install: create $(VENV) (if missing) and install the provider with its test and bench extras
install: $(STAMP)

## lint: ruff, and the layer contracts of pyproject.toml [tool.importlinter] (import-linter)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: install
	$(VENV)/bin/mypy

## test: lint, type-check and run the whole pytest suite (unit, emulator, e2e DAG runs, UI)
test: lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

## test-fast: the suite without the slow end-to-end and browser tests
test-fast: install
	$(PY) -m pytest -m "not e2e and not ui" $(PYTEST_ARGS)

## test-deployment: real services (PostgreSQL, Redis, SeaweedFS, scheduler, triggerer, 2 Celery workers);
## needs Debian's postgresql and redis-server packages (.ci/run installs them)
test-deployment: $(DEPLOY_STAMP)
	$(PY) -m pytest $(if $(filter tests/%,$(PYTEST_ARGS)),,tests/deployment) -m deployment -p no:cacheprovider --timeout 900 $(PYTEST_ARGS)

## demo: the main job on the bundled emulator (fetch activities by ID from XCom, typed), in real DAG runs
demo: install
	$(PY) scripts/demo.py

## bench: the full benchmark (writes benchmarks/results.json, RESULTS.md, chart.png); bench-quick: < 3 min
## (bench also runs bench-triggers: deferred triggers sharing their polls, its own RESULTS.md section, ~4 min)
bench: install
	$(PY) -m benchmarks.run --full
	$(PY) -m benchmarks.triggers --label after

bench-triggers: install
	$(PY) -m benchmarks.triggers --label after

bench-quick: install
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf .demo .pytest_cache .mypy_cache .ruff_cache build dist
