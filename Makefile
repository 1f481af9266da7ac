# The project's commands; README.md names `make setup`, `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test test-fast chaos bench lint format clean

setup: $(BIN)/opora

$(BIN)/opora: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

run: setup
	$(BIN)/opora up

test: setup
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not integration and not fault"

chaos: setup
	$(BIN)/pytest tests/chaos -m chaos -s

bench: setup
	$(BIN)/python -m bench.event_bus --json bench/results/event_bus.json $(BENCH_ARGS)
	$(BIN)/python -m bench.raids_order

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
