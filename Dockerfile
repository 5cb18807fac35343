# syntax=docker/dockerfile:1.7
# One image for `taskport serve`, `taskport worker` and `taskport db upgrade`.

FROM python:3.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first, from the lock file alone: this layer survives code changes. The
# Python client is a dependency of the development group only: uv reads its metadata.
COPY pyproject.toml uv.lock README.md ./
COPY client/pyproject.toml client/README.md ./client/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project
COPY domain ./domain
COPY application ./application
COPY adapters ./adapters
COPY entrypoints ./entrypoints
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 taskport \
    && useradd --system --uid 10001 --gid taskport --home-dir /app --no-create-home taskport \
    && mkdir -p /data && chown taskport:taskport /data
COPY --from=build --chown=taskport:taskport /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TASKPORT_STORAGE_URL=sqlite:////data/taskport.db \
    TASKPORT_METRICS_HOST=0.0.0.0
WORKDIR /app
USER taskport
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["taskport"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
