"""The ``taskport`` command."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from adapters.handlers.loader import KindLoadError
from entrypoints import client_cli
from entrypoints.container import Container, UnsupportedUrl, create_container
from entrypoints.settings import Settings, url_scheme
from entrypoints.worker.runtime import Runtime

app = typer.Typer(help="Taskport: an HTTP-first task service.", no_args_is_help=True)
client_cli.attach(app)


def _load() -> tuple[Settings, Container]:
    try:
        settings = Settings()
        container = create_container(settings)
    except (ValidationError, UnsupportedUrl, KindLoadError) as exc:
        typer.echo(f"taskport: invalid configuration:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    return settings, container


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT")] = 8000,
) -> None:
    """Serve the HTTP API (with the embedded worker when configured)."""
    import uvicorn

    from entrypoints.http.app import create_app

    settings, container = _load()
    uvicorn.run(create_app(container), host=host, port=port, log_level=settings.log_level.lower())


@app.command()
def worker() -> None:
    """Run a worker: consume the task queue until SIGTERM or SIGINT."""
    settings, container = _load()
    if url_scheme(settings.broker_url) == "memory":
        typer.echo(
            "taskport: the in-process queue (TASKPORT_BROKER_URL=memory://) lives inside the API "
            "process; run `taskport serve`, or point TASKPORT_BROKER_URL at a broker",
            err=True,
        )
        raise typer.Exit(2)
    asyncio.run(_work(container))


async def _work(container: Container) -> None:
    runtime = Runtime(container, consume=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await runtime.start()
    logging.getLogger("taskport.worker").info("worker started")
    await stopping.wait()
    await runtime.stop()


def main() -> None:
    app(prog_name="taskport")


if __name__ == "__main__":
    sys.exit(main())
