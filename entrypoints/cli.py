"""The ``taskport`` command."""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from prometheus_client import start_http_server
from pydantic import ValidationError

from adapters.handlers.loader import KindLoadError
from adapters.storage.sql import RevisionRefused, SqlStorage
from application.errors import StorageUnavailable
from entrypoints import client_cli
from entrypoints.container import Container, UnsupportedUrl, create_container
from entrypoints.observability import configure_logging, init_sentry
from entrypoints.schedule_cli import schedules
from entrypoints.schema import PendingMigrations, prepare_schema
from entrypoints.settings import WEBHOOK_SECRET_PREFIX, Settings, url_scheme
from entrypoints.worker.runtime import Runtime

if TYPE_CHECKING:
    from adapters.storage.mongo import MongoStorage

PIKA_CONNECTION_LOGGERS = (
    "pika.adapters.base_connection",
    "pika.adapters.utils.connection_workflow",
    "pika.adapters.utils.io_services_utils",
)

app = typer.Typer(help="Taskport: an HTTP-first task service.", no_args_is_help=True)
db = typer.Typer(
    help="The database schema of the SQL storage (TASKPORT_STORAGE_URL).", no_args_is_help=True
)
app.add_typer(db, name="db")

T = TypeVar("T")
client_cli.attach(app)
app.add_typer(schedules, name="schedule")


def _settings_errors(exc: ValidationError) -> str:
    """One line per setting, named as it is set (``TASKPORT_WORKER_CONCURRENCY: ...``); the
    value is not repeated, as it may be a secret."""
    lines = []
    for error in exc.errors():
        loc = "_".join(str(part) for part in error["loc"])
        name = f"TASKPORT_{loc.upper()}" if loc else "settings"
        lines.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def _load(**overrides: Any) -> tuple[Settings, Container]:
    """The settings (from the environment, but for ``overrides``) and the container."""
    try:
        settings = Settings(**overrides)
        container = create_container(settings)
    except ValidationError as exc:
        typer.echo(f"taskport: invalid configuration:\n{_settings_errors(exc)}", err=True)
        raise typer.Exit(2) from exc
    except (UnsupportedUrl, KindLoadError) as exc:
        typer.echo(f"taskport: invalid configuration:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings)
    init_sentry(settings)
    # pika narrates every connection at INFO and each failed attempt as several errors;
    # the broker adapter reports connections and failed attempts once, with the reason.
    logging.getLogger("pika").setLevel(logging.WARNING)
    for noisy in PIKA_CONNECTION_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    return settings, container


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT")] = 8000,
) -> None:
    """Serve the HTTP API (with the embedded worker when configured)."""
    import uvicorn

    from entrypoints.http.app import create_app
    from entrypoints.http.server import Server

    settings, container = _load()
    _prepare_schema_or_exit(settings)
    config = uvicorn.Config(
        create_app(container),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,
        # Requests still open after the grace period are cancelled.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
    )
    Server(config, stopping=container.completions().close).run()


def _prepare_schema_or_exit(settings: Settings) -> None:
    """Migrates (or refuses an outdated schema), or creates MongoDB's indexes, before the
    server starts, so a refusal, or a database still unreachable after the wait, is one
    line, not a failed application start-up."""
    scheme = url_scheme(settings.storage_url)
    if scheme not in ("sqlite", "postgresql", "mongodb"):
        return

    async def prepare() -> None:
        storage: SqlStorage | MongoStorage
        if scheme == "mongodb":
            from adapters.storage.mongo import MongoStorage  # imported only when chosen

            storage = MongoStorage.from_url(settings.storage_url)
        else:
            storage = SqlStorage.from_url(settings.storage_url)
        try:
            await prepare_schema(storage, settings)
        finally:
            await storage.close()

    try:
        asyncio.run(prepare())
    except PendingMigrations as exc:
        typer.echo(f"taskport: {exc}", err=True)
        raise typer.Exit(1) from exc
    except StorageUnavailable as exc:
        typer.echo(f"taskport: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def worker(
    queues: Annotated[
        str | None,
        typer.Option(
            "--queues",
            "-Q",
            help="the queues to take, comma-separated, each with the most of its tasks run "
            "at once when it has a limit: default,images:4 "
            "(TASKPORT_WORKER_QUEUES; all of TASKPORT_QUEUES when not given)",
        ),
    ] = None,
) -> None:
    """Run a worker: consume its queues until SIGTERM or SIGINT."""
    settings, container = _load(**({"worker_queues": queues} if queues is not None else {}))
    if settings.in_process_broker:
        typer.echo(
            "taskport: the in-process queue (TASKPORT_BROKER_URL=memory://) lives inside the API "
            "process; run `taskport serve`, or point TASKPORT_BROKER_URL at a broker",
            err=True,
        )
        raise typer.Exit(2)
    if url_scheme(settings.storage_url) == "memory":
        typer.echo(
            "taskport: in-memory storage (TASKPORT_STORAGE_URL=memory://) lives inside one "
            "process, so a separate worker would never see the API's tasks; point "
            "TASKPORT_STORAGE_URL at a database shared with the API",
            err=True,
        )
        raise typer.Exit(2)
    try:
        with asyncio.Runner(loop_factory=_fast_event_loop()) as runner:
            consumer_failed = runner.run(_work(container))
    except (PendingMigrations, StorageUnavailable) as exc:
        typer.echo(f"taskport: {exc}", err=True)
        raise typer.Exit(1) from exc
    if consumer_failed:
        typer.echo("taskport: the consumer of the task queue stopped (see the log)", err=True)
        raise typer.Exit(1)


def _fast_event_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (uvicorn[standard] brings it; the API
    runs on it too), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _work(container: Container) -> bool:
    """Runs the worker until SIGTERM or SIGINT, or until its consumer stops by itself;
    returns whether it did (the process should end in error, to be started again)."""
    settings = container.settings()
    if settings.metrics_port:
        try:
            start_http_server(
                settings.metrics_port,
                addr=settings.metrics_host,
                registry=container.metrics().registry,
            )
        except OSError as exc:
            # Several workers on one host: only the first gets the port. The others run
            # on, without /metrics, rather than not at all.
            logging.getLogger("taskport.worker").warning(
                "no /metrics for this worker: %s port %d: %s (set TASKPORT_METRICS_PORT)",
                settings.metrics_host,
                settings.metrics_port,
                exc.strerror or exc,
            )
    runtime = Runtime(container, consume=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await runtime.start()
    logging.getLogger("taskport.worker").info("worker started")
    ended = [asyncio.create_task(event.wait()) for event in (stopping, runtime.consumer_failed)]
    await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
    for waiting in ended:
        waiting.cancel()
    await runtime.stop()
    return runtime.consumer_failed.is_set()


@db.command()
def upgrade(
    revision: Annotated[str, typer.Argument(help="the revision to reach")] = "head",
) -> None:
    """Apply the migrations up to REVISION (the latest by default)."""
    typer.echo(
        _on_sql_storage(
            lambda storage: _migrated(storage, "upgraded", lambda: storage.upgrade(revision))
        )
    )


@db.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help="the revision to go back to; base: empty")],
) -> None:
    """Revert the migrations down to REVISION."""
    typer.echo(
        _on_sql_storage(
            lambda storage: _migrated(storage, "downgraded", lambda: storage.downgrade(revision))
        )
    )


async def _migrated(storage: SqlStorage, done: str, step: Callable[[], Awaitable[None]]) -> str:
    """Runs a migration step; says where the schema was and where it is now (Alembic takes
    a revision that is not on the way, an older one to upgrade to, as nothing to do)."""
    before = await storage.current_revision() or "empty"
    await step()
    after = await storage.current_revision() or "empty"
    if after == before:
        return f"database schema already at {after}"
    return f"database schema {done} from {before} to {after}"


@db.command()
def current() -> None:
    """Print the revision of the database schema, and whether migrations are pending."""

    async def describe(storage: SqlStorage) -> str:
        revision = await storage.current_revision()
        pending = await storage.migrations_pending()
        state = "migrations pending: run `taskport db upgrade`" if pending else "up to date"
        return f"{revision or 'empty (no migrations applied)'} ({state})"

    typer.echo(_on_sql_storage(describe))


def _on_sql_storage(step: Callable[[SqlStorage], Awaitable[T]]) -> T:
    settings, container = _load()
    storage = container.storage()
    if not isinstance(storage, SqlStorage):
        typer.echo(
            f"taskport: TASKPORT_STORAGE_URL ({url_scheme(settings.storage_url)}://) "
            "has no database schema",
            err=True,
        )
        raise typer.Exit(2)

    async def run() -> T:
        try:
            return await step(storage)
        finally:
            await storage.close()

    try:
        return asyncio.run(run())
    except StorageUnavailable as exc:
        typer.echo(f"taskport: {exc}", err=True)
        raise typer.Exit(1) from exc
    except RevisionRefused as exc:
        typer.echo(f"taskport: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command("callback-secret")
def callback_secret() -> None:
    """Print a new secret for TASKPORT_CALLBACK_SECRETS (32 random bytes, Standard Webhooks
    format)."""
    typer.echo(WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode())


def main() -> None:
    app(prog_name="taskport")


if __name__ == "__main__":
    sys.exit(main())
