# Taskport's commands. Needs only Python 3.11+: uv is installed with pip when missing.
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
PORT ?= 8000

.PHONY: run test check sync uv format

uv:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 \
		|| $(PYTHON) -m pip install --quiet uv

sync: uv
	@$(UV) sync --locked --quiet

## Serve the API on http://127.0.0.1:$(PORT) with the embedded default (nothing else needed).
run: sync
	$(UV) run taskport serve --host 127.0.0.1 --port $(PORT)

## The whole test suite.
test: sync
	$(UV) run pytest

## Lint, format check, strict types on the core, layer contracts.
check: sync
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy --strict domain application
	$(UV) run lint-imports --no-cache

format: sync
	$(UV) run ruff format .
	$(UV) run ruff check --fix .
