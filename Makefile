# Two commands for a newcomer: `make demo` runs the platform, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# The demo runs with DEBUG on and the dev secret key; never expose it.
DEMO_ENV := DEBUG=1

.PHONY: install demo test test-fast lint format bench migrate

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	$(DEMO_ENV) $(PY) manage.py migrate --noinput

## Run everything: web (uvicorn), a Celery worker and a simulated station on L1. Ctrl-C stops all.
demo: migrate
	$(DEMO_ENV) $(PY) manage.py seed_demo --tokens-file var/demo-stations.json
	$(DEMO_ENV) $(PY) manage.py run_demo --port $(PORT) --tokens-file var/demo-stations.json

## The whole suite. With DATABASE_URL/REDIS_URL set it uses PostgreSQL and Redis;
## REQUIRE_SERVICES=1 makes service-backed tests fail instead of skip (as in .ci/run).
test: install
	$(PY) -m pytest $(PYTEST_ARGS)

## Unit tests only (no PostgreSQL/Redis/worker/server needed).
test-fast: install
	$(PY) -m pytest -m "not integration and not browser" $(PYTEST_ARGS)

## Ruff, and the layering contracts of pyproject.toml (an upward import fails here and in CI).
lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

## Serving benchmark against a running server: make bench TOKEN=... [URL=...] [LINE=L1]
bench: install
	$(PY) bench/serving.py --url $(or $(URL),http://127.0.0.1:$(PORT)) --token $(TOKEN) \
		--line $(or $(LINE),L1) --n $(or $(N),200) --concurrency $(or $(C),8) --json
