"""At start the SQLite default migrates itself; PostgreSQL with pending migrations is
refused unless TASKPORT_MIGRATE_ON_START says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from typer.testing import CliRunner

from adapters.storage.sql import SqlStorage
from adapters.storage.sql.schema import SCHEMA_REVISION
from entrypoints.cli import app as cli
from entrypoints.container import create_container
from entrypoints.http.app import create_app
from entrypoints.schema import PendingMigrations
from entrypoints.settings import Settings


async def revision_of(url: str) -> str | None:
    storage = SqlStorage.from_url(url)
    try:
        return await storage.current_revision()
    finally:
        await storage.close()


async def test_a_new_sqlite_file_is_created_and_migrated_at_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'taskport.db'}"
    app = create_app(create_container(Settings(storage_url=url)))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://taskport") as client:
            response = await client.post("/v1/tasks", json={"kind": "echo", "payload": {}})
            assert response.status_code == 201
    assert await revision_of(url) is not None


async def test_postgresql_with_pending_migrations_refuses_to_start(
    empty_postgres_url: str,
) -> None:
    app = create_app(create_container(Settings(storage_url=empty_postgres_url)))
    with pytest.raises(PendingMigrations, match="taskport db upgrade"):
        async with LifespanManager(app):
            pass
    assert await revision_of(empty_postgres_url) is None


async def test_migrate_on_start_brings_postgresql_to_head(empty_postgres_url: str) -> None:
    settings = Settings(storage_url=empty_postgres_url, migrate_on_start=True)
    async with LifespanManager(create_app(create_container(settings))):
        pass
    assert await revision_of(empty_postgres_url) is not None


def test_db_commands_upgrade_show_and_downgrade_the_schema(tmp_path: Path) -> None:
    runner = CliRunner(env={"TASKPORT_STORAGE_URL": f"sqlite:///{tmp_path / 'taskport.db'}"})

    def run(*args: str) -> str:
        outcome = runner.invoke(cli, ["db", *args])
        assert outcome.exit_code == 0, outcome.output
        return outcome.output

    assert "migrations pending" in run("current")
    run("upgrade")
    assert "up to date" in run("current")
    run("downgrade", "base")
    assert "empty" in run("current")


def test_db_commands_say_the_revision_the_schema_is_at(tmp_path: Path) -> None:
    runner = CliRunner(env={"TASKPORT_STORAGE_URL": f"sqlite:///{tmp_path / 'taskport.db'}"})

    def run(*args: str) -> str:
        outcome = runner.invoke(cli, ["db", *args])
        assert outcome.exit_code == 0, outcome.output
        return outcome.output

    assert f"upgraded from empty to {SCHEMA_REVISION}" in run("upgrade")
    # An older revision is not on the way up: nothing changes, and the command says so.
    assert f"already at {SCHEMA_REVISION}" in run("upgrade", "0003")
    assert f"downgraded from {SCHEMA_REVISION} to 0005" in run("downgrade", "0005")
    assert "already at 0005" in run("downgrade", "0005")
    assert "downgraded from 0005 to empty" in run("downgrade", "base")


@pytest.mark.parametrize("args", [("upgrade", "0099"), ("downgrade", "no-such-revision")])
def test_db_commands_refuse_an_unknown_revision_in_one_line(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    runner = CliRunner(env={"TASKPORT_STORAGE_URL": f"sqlite:///{tmp_path / 'taskport.db'}"})
    outcome = runner.invoke(cli, ["db", *args])
    assert outcome.exit_code == 2, outcome.output
    assert f"taskport: cannot migrate to {args[1]}: " in outcome.output
    assert "Traceback" not in outcome.output
    assert isinstance(outcome.exception, SystemExit)


def test_db_commands_refuse_the_memory_storage() -> None:
    outcome = CliRunner(env={"TASKPORT_STORAGE_URL": "memory://"}).invoke(cli, ["db", "current"])
    assert outcome.exit_code == 2


def test_serve_on_an_outdated_postgresql_schema_exits_with_one_clear_line(
    empty_postgres_url: str,
) -> None:
    env = {**os.environ, "TASKPORT_STORAGE_URL": empty_postgres_url}
    done = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", "serve", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "run `taskport db upgrade`" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
