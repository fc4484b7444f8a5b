# Tidings — the two commands a newcomer needs: `make run` and `make test`.
# Uses the active virtual environment if there is one, else creates .venv/.

PYTHON ?= python3
ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := .venv
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.tidings-installed
TEST_STAMP := $(VENV)/.tidings-test-installed

.PHONY: run install test lint bench clean schemas

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP)

install: $(STAMP)

## make run: migrate the SQLite database, load the demo shop on first run, start the engine.
run: $(STAMP)
	$(BIN)/tidings db upgrade
	$(BIN)/tidings run --demo-if-empty

## make test: install with test extras and run the whole suite.
test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make schemas: regenerate the JSON Schemas the shipped YAML files point editors at.
schemas: $(STAMP)
	for kind in campaign segments schedule; do $(BIN)/tidings schema $$kind > schemas/$$kind.schema.json; done

lint: $(TEST_STAMP)
	$(BIN)/ruff check engine tests bench
	$(BIN)/mypy engine

bench: $(TEST_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf var .pytest_cache .hypothesis test-artifacts
