# Every target creates or reuses .venv, so a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo up test lint bench fuzz clean

$(STAMP): pyproject.toml setup.py civic/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m demo

# The same city as `make demo`, left running for a person to use until Ctrl-C.
up: $(STAMP)
	$(PY) -m demo up

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench

# Longer, randomized fuzzing than the bounded sweep `make test` runs (tests/fuzz/harness.py):
# CIVIC_FUZZ_EXAMPLES examples per parser target, 200 requests per API operation and mode.
fuzz: $(STAMP)
	CIVIC_FUZZ_EXAMPLES=$${CIVIC_FUZZ_EXAMPLES:-2000} $(PY) -m pytest -q tests/fuzz

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build civic/_speedups.*.so
