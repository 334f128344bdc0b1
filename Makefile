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

# Bytecode first: the end-to-end tests start a `failover` process for nearly every step,
# and where PYTHONDONTWRITEBYTECODE is set (these machines) each one compiled the
# package from source again (a fifth of its CPU). Python reads valid .pyc files whatever
# that variable says, and ignores stale ones.
COMPILE := -m compileall -q -j 0
unit: $(STAMP)
	$(BIN)/python $(COMPILE) failover providers cli.py tests >/dev/null
	$(BIN)/python -m pytest -q --durations=30 $(PYTEST_ARGS)

# Tests against the built wheel in its own venv, run from a copy of tests/ so nothing
# resolves to the checkout. They prove what installing changes, not the logic the unit
# run already proved: the templates travel as package data (test_render renders the
# cloud-init and status page templates from where the installed package finds them), and
# the installed console script works end to end (deploy, a real failover between hosts
# started from the installed package, demo, every command's --help). No extra is
# installed: that proves `pip install failover` alone runs the local providers (check
# imports no cloud SDK), and spares CI installing every SDK a second time.
E2E := tests/test_cli_e2e.py::test
WHEEL_TESTS ?= tests/test_render.py $(E2E)_deploy_then_kill_moves_to_second_provider \
  $(E2E)_demo_json $(E2E)_help_lists_every_command $(E2E)_check_imports_no_cloud_sdk
wheel-test: $(STAMP)
	rm -rf build/wheel build/wheel-tests
	$(BIN)/python -m pip wheel --quiet --no-deps -w build/wheel .
	test -x build/wheel-venv/bin/python || $(PYTHON) -m venv build/wheel-venv
	build/wheel-venv/bin/python -m pip install --quiet --force-reinstall --no-deps build/wheel/*.whl
	build/wheel-venv/bin/python -m pip install --quiet "$$(ls build/wheel/*.whl)" "pytest>=8" "pytest-timeout>=2.3"
	mkdir -p build/wheel-tests && cp -r tests pyproject.toml build/wheel-tests/
	build/wheel-venv/bin/python $(COMPILE) build/wheel-tests/tests >/dev/null
	cd build/wheel-tests && ../wheel-venv/bin/python -m pytest -q -p no:cacheprovider $(WHEEL_TESTS)

test: lint typecheck unit wheel-test

bench: $(STAMP)
	$(BIN)/python bench/recovery.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build
