# Two commands from a fresh clone:
#   make run    set up a virtualenv, write a demo into ./demo, run the daemon
#   make test   set up a virtualenv, lint and type-check, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
DEMO ?= demo
PYTEST_ARGS ?=
# pytest-xdist workers: one per core; PYTEST_WORKERS=0 runs the suite in this process.
PYTEST_WORKERS ?= auto
BIN = $(VENV)/bin

.PHONY: setup run lint test bench clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Stockdrop needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

setup: $(BIN)/.installed

run: setup
	@test -f $(DEMO)/stockdrop.toml || $(BIN)/stockdrop init $(DEMO)
	$(BIN)/stockdrop -c $(DEMO)/stockdrop.toml db upgrade
	$(BIN)/stockdrop -c $(DEMO)/stockdrop.toml run

lint: setup
	$(BIN)/ruff check daemon tests bench
	$(BIN)/mypy

# pytest exits 5 when it collected no tests: that is a broken suite, not a pass.
test: setup lint
	@$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --durations=15 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi; \
	exit $$rc

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache
