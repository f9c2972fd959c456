# The two commands of the README: `make run` and `make test`. Both build .venv from requirements/ on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint format bench migrate

$(STAMP): requirements/base.txt requirements/dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	@touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

run: migrate
	@echo ""
	@echo "  music21 platform on http://$(HOST):$(PORT)/  (MCP endpoint: http://$(HOST):$(PORT)/mcp)"
	@echo "  Admin: http://$(HOST):$(PORT)/admin/"
	@echo "  First admin: $(BIN)/python manage.py createsuperuser"
	@echo ""
	$(BIN)/uvicorn music21_platform.asgi:application --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest -n 2

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: migrate
	$(BIN)/python bench/run.py
