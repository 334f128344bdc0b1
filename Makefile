# make demo: set up .venv and run the embedded end-to-end demo.
# make test: set up .venv and run lint, types and the whole test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit wheel-test bench clean

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

# The same tests against the built wheel in its own venv, run from a copy of tests/ so
# nothing resolves to the checkout: templates must travel as package data.
WHEEL_TESTS ?= tests/test_cli_e2e.py tests/test_config.py tests/test_render.py tests/test_engine.py
wheel-test: $(STAMP)
	rm -rf build/wheel build/wheel-tests
	$(BIN)/python -m pip wheel --quiet --no-deps -w build/wheel .
	test -x build/wheel-venv/bin/python || $(PYTHON) -m venv build/wheel-venv
	build/wheel-venv/bin/python -m pip install --quiet --force-reinstall --no-deps build/wheel/*.whl
	build/wheel-venv/bin/python -m pip install --quiet "$$(ls build/wheel/*.whl)[test]"
	mkdir -p build/wheel-tests && cp -r tests pyproject.toml build/wheel-tests/
	cd build/wheel-tests && ../wheel-venv/bin/python -m pytest -q -p no:cacheprovider $(WHEEL_TESTS)

test: lint typecheck unit wheel-test

bench: $(STAMP)
	$(BIN)/python bench/recovery.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build
