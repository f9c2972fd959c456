# The two commands of the README: `make run` and `make test`. Both build .venv from requirements/ on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# The JavaScript clients the interop tests drive (the MCP TypeScript SDK, the MCP conformance suite and the Node 22
# they run on), exactly as tests/package-lock.json pins them.
NODE_STAMP := tests/node_modules/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# The URL clients reach the server by (the OAuth issuer and the MCP resource, which tokens are bound to): where
# `make run` listens (this machine, when it listens on every address), unless PUBLIC_URL is set. To serve other
# machines (HOST=0.0.0.0), set it to the URL they use. An IPv6 address is written in brackets in a URL.
PUBLIC_URL ?= http://$(if $(filter 0.0.0.0 ::,$(HOST)),127.0.0.1,$(if $(findstring :,$(HOST)),[$(HOST)],$(HOST))):$(PORT)

.PHONY: install install-js run test lint format bench migrate

$(STAMP): requirements/base.txt requirements/dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	@touch $(STAMP)

install: $(STAMP)

# Without Node.js and npm there is nothing to install with, and the tests that need these packages fail, saying
# what to run (.ci/run installs npm where it is missing).
$(NODE_STAMP): tests/package.json tests/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix tests --prefer-offline --no-audit --no-fund --loglevel=error && touch $(NODE_STAMP); \
	else \
	  echo "npm not found: tests/package.json is not installed (the JavaScript interop tests need Node.js and npm)"; \
	fi

install-js: $(NODE_STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

run: migrate
	@echo ""
	@echo "  music21 platform on $(PUBLIC_URL)/  (MCP endpoint: $(PUBLIC_URL)/mcp)"
	@echo "  Admin: $(PUBLIC_URL)/admin/"
	@echo "  First admin: $(BIN)/python manage.py createsuperuser"
	@echo ""
	PUBLIC_URL='$(PUBLIC_URL)' $(BIN)/uvicorn music21_platform.asgi:application --host $(HOST) --port $(PORT)

test: install install-js
	$(BIN)/python -m pytest -n 2

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: migrate
	$(BIN)/python bench/run.py
