# The project's commands; README.md names `make setup`, `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup assets translations run test test-fast chaos bench lint format clean

# Front-end assets come from npm (package.json + package-lock.json), copied where the apps
# serve them: htmx for the console, Swagger UI for every service's /docs. Never a CDN.
CONSOLE_VENDOR := services/console/static/vendor
SWAGGER_UI := shared/http/static/swagger-ui
ASSETS := $(CONSOLE_VENDOR)/htmx.min.js $(SWAGGER_UI)/swagger-ui-bundle.js

setup: $(BIN)/opora assets

assets: $(ASSETS)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

$(ASSETS): node_modules/.package-lock.json
	mkdir -p $(CONSOLE_VENDOR) $(SWAGGER_UI)
	cp node_modules/htmx.org/dist/htmx.min.js $(CONSOLE_VENDOR)/
	cp node_modules/swagger-ui-dist/swagger-ui.css node_modules/swagger-ui-dist/swagger-ui-bundle.js \
	   node_modules/swagger-ui-dist/swagger-ui-standalone-preset.js $(SWAGGER_UI)/

# The console's English catalogue: extract the strings, merge them into the .po, compile the .mo.
translations: setup
	cd services/console && ../../$(BIN)/pybabel extract -F babel.cfg -k _l --no-location \
	   -o /tmp/opora-console.pot . && ../../$(BIN)/pybabel update -i /tmp/opora-console.pot \
	   -d translations -w 100 && ../../$(BIN)/pybabel compile -d translations

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
	$(BIN)/python -m bench.console_pages --json bench/results/console_pages.json

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
