VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install install-core up test test-fast lint bench clean

# `dev` holds every extra (console, bench) plus the test tools: what `make up`, `make test`
# and `make bench` need. The stamp depends on pyproject.toml, so a new dependency (a
# fresh clone, a pull) reinstalls before the target runs.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

install-core:  ## the API and the worker only (no console, no bench baselines, no test tools)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .

up: install  ## everything on the embedded default; Ctrl-C stops it
	$(VENV)/bin/paywatch up

test: install  ## everything (what CI runs)
	$(PY) -m pytest -q tests

test-fast: install  ## unit and contract tests: all but those marked slow (see tests/conftest.py)
	$(PY) -m pytest -q -m "not slow" tests

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: install  ## the bench extra (pybreaker, limits) comes with dev
	$(PY) bench/hot_account.py
	$(PY) bench/pay_e2e.py
	$(PY) bench/http_clients.py
	$(PY) bench/guard.py
	$(PY) bench/metrics.py
	$(PY) bench/jobs.py
	$(PY) bench/console.py
	$(PY) bench/routing.py
	$(PY) bench/detect.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
