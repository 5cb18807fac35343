"""Reporting to Sentry: a DSN that cannot be one stops the start by the setting's name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from entrypoints.cli import app as cli
from entrypoints.settings import Settings


@pytest.mark.parametrize(
    "dsn", ["garbage", "ftp://key@sentry.example/1", "https://sentry.example/1"]
)
def test_a_sentry_dsn_that_cannot_be_one_is_an_invalid_configuration(dsn: str) -> None:
    with pytest.raises(ValidationError, match="sentry_dsn"):
        Settings(sentry_dsn=dsn)
    outcome = CliRunner(
        env={"TASKPORT_SENTRY_DSN": dsn, "TASKPORT_STORAGE_URL": "memory://"}
    ).invoke(cli, ["db", "current"])
    assert outcome.exit_code == 2, outcome.output
    assert "taskport: invalid configuration:\nTASKPORT_SENTRY_DSN: " in outcome.output
    assert isinstance(outcome.exception, SystemExit)


def test_a_sentry_dsn_is_kept_secret() -> None:
    settings = Settings(sentry_dsn="https://public-key@o1.ingest.sentry.example/42")
    assert settings.sentry_dsn is not None
    assert "public-key" not in repr(settings)
    assert settings.sentry_dsn.get_secret_value().endswith("/42")


def test_an_empty_sentry_dsn_leaves_sentry_off() -> None:
    """A compose file passes an unset TASKPORT_SENTRY_DSN as an empty string."""
    assert Settings(sentry_dsn="").sentry_dsn is None
    assert Settings(sentry_dsn=" ").sentry_dsn is None
