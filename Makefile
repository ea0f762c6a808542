# Every target works as the first command on a fresh machine: it installs and starts what it needs.
# The demo and the tests run in development (published secrets, local servers); see SECURITY.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install stack test soak unit lint typecheck demo down clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

stack: install
	$(BIN)/jobmeter stack up

test: stack
	$(BIN)/ruff check .
	$(BIN)/mypy events projections jobmeter services tests
	JOBMETER_ENV=development $(BIN)/pytest -q --durations=25

soak: stack
	JOBMETER_ENV=development $(BIN)/pytest -q -m soak

unit: install
	JOBMETER_ENV=development $(BIN)/pytest -q tests/unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy events projections jobmeter services tests

demo: stack
	JOBMETER_ENV=development $(BIN)/jobmeter demo

down:
	$(BIN)/jobmeter stack down

clean: down
	rm -rf $(VENV) .jobmeter
