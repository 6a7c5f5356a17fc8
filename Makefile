VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install up test lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

up: install  ## everything on the embedded default; Ctrl-C stops it
	$(VENV)/bin/paywatch up

test: install
	$(PY) -m pytest -q tests

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: install
	$(PY) bench/hot_account.py
	$(PY) bench/pay_e2e.py
	$(PY) bench/guard.py
	$(PY) bench/metrics.py
	$(PY) bench/jobs.py
	$(PY) bench/console.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
