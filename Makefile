# make demo: set up .venv and run the embedded end-to-end demo.
# make test: set up .venv and run lint, types and the whole test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/failover demo

lint: $(STAMP)
	$(BIN)/ruff check failover providers cli.py tests bench
	$(BIN)/ruff format --check failover providers cli.py tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/recovery.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build
