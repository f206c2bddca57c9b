# One task runner: the README's commands and CI call these targets.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-app test-e2e lint format bench audit clean

$(BIN)/lessons: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/lessons $@

run: $(BIN)/lessons
	$(BIN)/lessons db upgrade
	$(BIN)/lessons serve --host $(HOST) --port $(PORT)

# Browser tests run in their own pytest process: Playwright's sync API and
# asyncio-based tests break each other when they share one event loop.
test: test-app test-e2e

test-app: $(VENV)/.dev
	$(BIN)/pytest -q -m "not e2e" $(PYTEST_ARGS)

test-e2e: $(VENV)/.dev
	$(BIN)/pytest -q -m e2e tests/e2e $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check app tests bench security
	$(BIN)/ruff format --check app tests bench security
	$(BIN)/mypy app security/audit.py

format: $(VENV)/.dev
	$(BIN)/ruff format app tests bench security
	$(BIN)/ruff check --fix app tests bench security

bench: $(VENV)/.dev
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/votes.py
	$(BIN)/python bench/exports.py
	$(BIN)/python bench/suggest.py
	$(BIN)/python bench/costly_reads.py

# Known vulnerabilities in the installed packages (security/audit.py says why
# this is not plain pip-audit); findings are explained in security/pip-audit-exceptions.md.
audit: $(VENV)/.dev
	$(BIN)/python security/audit.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
