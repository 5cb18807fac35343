# Taskport's commands. Needs only Python 3.11+: uv is installed with pip when missing.
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
PORT ?= 8000
RUN := $(UV) run --locked
# Installed packages are compiled to bytecode once, at install: where Python may not write
# it (PYTHONDONTWRITEBYTECODE), each process would otherwise compile every module it
# imports, seconds at each start of a server, a worker or a command.
export UV_COMPILE_BYTECODE := 1

.PHONY: run test check format uv bench bench-quick

uv:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 \
		|| $(PYTHON) -m pip install --quiet uv

## Serve the API on http://127.0.0.1:$(PORT) with the embedded default (nothing else needed).
run: uv
	$(RUN) taskport serve --host 127.0.0.1 --port $(PORT)

## The whole test suite (with the load-test tools: one test drives Locust).
test: uv
	$(RUN) --group bench pytest

## Benchmarks against FastAPI, Celery and Dramatiq on the local PostgreSQL and RabbitMQ
## (under 15 minutes); figures in bench/results/. bench-quick: the same with small counts.
bench: uv
	$(RUN) --group bench python -m bench.run

bench-quick: uv
	$(RUN) --group bench python -m bench.run --quick

## Lint, format check, strict types on the core and the client, layer contracts, compose files.
check: uv
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy --strict domain application client/taskport_client
	$(RUN) lint-imports --no-cache
	$(RUN) check-jsonschema --builtin-schema vendor.compose-spec compose/*.yaml

format: uv
	$(RUN) ruff format .
	$(RUN) ruff check --fix .
