# One task runner: the README's commands and CI call these targets.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-app test-e2e lint format bench clean

$(BIN)/lessons: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
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
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy app

format: $(VENV)/.dev
	$(BIN)/ruff format app tests bench
	$(BIN)/ruff check --fix app tests bench

bench: $(VENV)/.dev
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/votes.py
	$(BIN)/python bench/exports.py
	$(BIN)/python bench/suggest.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
