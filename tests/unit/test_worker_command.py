"""``taskport worker`` refuses configurations where a separate worker cannot work."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from entrypoints import cli
from entrypoints.cli import app
from entrypoints.settings import Settings

AMQP = "amqp://guest:guest@127.0.0.1:5672/"


def test_worker_refuses_in_memory_storage() -> None:
    result = CliRunner().invoke(
        app, ["worker"], env={"TASKPORT_STORAGE_URL": "memory://", "TASKPORT_BROKER_URL": AMQP}
    )
    assert result.exit_code == 2
    assert "TASKPORT_STORAGE_URL" in result.output


def test_worker_refuses_the_in_process_queue() -> None:
    result = CliRunner().invoke(app, ["worker"], env={"TASKPORT_BROKER_URL": "memory://"})
    assert result.exit_code == 2
    assert "TASKPORT_BROKER_URL" in result.output


def test_an_invalid_broker_option_is_a_configuration_error() -> None:
    result = CliRunner().invoke(
        app, ["worker"], env={"TASKPORT_BROKER_URL": AMQP + "?queue_type=x"}
    )
    assert result.exit_code == 2
    assert "queue_type" in result.output


@pytest.mark.parametrize(
    "url",
    [
        "mongodb://db:27017/a%20b",
        "mongodb://db:99999/tasks",
        "mongodb://",
        "mongodb+srv://db:27017/tasks",
        "postgresql://taskport:s3cret@db:port/tasks",
        "postgresql:garbage",
        "postgresql+nodriver://db/tasks",
    ],
)
def test_a_storage_url_its_driver_cannot_read_is_a_configuration_error(url: str) -> None:
    result = CliRunner().invoke(
        app, ["worker"], env={"TASKPORT_STORAGE_URL": url, "TASKPORT_BROKER_URL": AMQP}
    )
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[0] == "taskport: invalid configuration:"
    assert lines[1].startswith("TASKPORT_STORAGE_URL is invalid: ")
    assert "s3cret" not in result.output


def test_a_bad_setting_is_named_as_it_is_set_without_its_value() -> None:
    result = CliRunner().invoke(
        app,
        ["worker"],
        env={"TASKPORT_WORKER_CONCURRENCY": "0", "TASKPORT_API_KEYS": "alice-secret"},
    )
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[0] == "taskport: invalid configuration:"
    assert sorted(lines[1:]) == [
        "TASKPORT_API_KEYS: TASKPORT_API_KEYS must look like owner:key,owner:key",
        "TASKPORT_WORKER_CONCURRENCY: Input should be greater than or equal to 1",
    ]
    assert "alice-secret" not in result.output


def test_the_api_runs_no_embedded_worker_with_rabbitmq_unless_asked() -> None:
    assert not Settings(broker_url=AMQP).runs_embedded_worker
    assert Settings(broker_url=AMQP, embedded_worker=True).runs_embedded_worker


def test_callback_secret_prints_a_secret_the_settings_take() -> None:
    made = CliRunner().invoke(app, ["callback-secret"])
    assert made.exit_code == 0
    secret = made.output.strip()
    assert secret.startswith("whsec_")
    assert Settings(callback_secrets=secret).callback_secrets[0].get_secret_value() == secret


def test_a_callback_secret_not_in_the_standard_format_is_refused_unrepeated() -> None:
    short = "whsec_" + "A" * 20  # 15 bytes
    for secret in ("s3cret-of-mine", short, "whsec_not base64!"):
        result = CliRunner().invoke(app, ["worker"], env={"TASKPORT_CALLBACK_SECRETS": f"{secret}"})
        assert result.exit_code == 2
        assert "TASKPORT_CALLBACK_SECRETS: TASKPORT_CALLBACK_SECRETS must be whsec_" in (
            result.output
        )
        assert secret not in result.output


def test_the_queues_given_on_the_command_line_are_the_ones_the_worker_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken: list[tuple[str, ...]] = []
    limits: list[dict[str, int]] = []

    async def work(container: Any) -> bool:
        taken.append(container.settings().consumed_queues)
        limits.append(container.settings().queue_limits)
        return False

    monkeypatch.setattr(cli, "_work", work)
    env = {
        "TASKPORT_STORAGE_URL": "sqlite:///unused.db",
        "TASKPORT_BROKER_URL": AMQP,
        "TASKPORT_QUEUES": "default,images,reports",
        "TASKPORT_WORKER_QUEUES": "default",
    }
    result = CliRunner().invoke(app, ["worker", "--queues", "images,reports"], env=env)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["worker", "--queues", "images:2,reports"], env=env)
    assert result.exit_code == 0, result.output
    assert taken == [("images", "reports"), ("default",), ("images", "reports")]
    assert limits == [{}, {}, {"images": 2}]


def test_a_queue_the_deployment_lacks_is_a_configuration_error() -> None:
    env = {"TASKPORT_BROKER_URL": AMQP, "TASKPORT_QUEUES": "default"}
    result = CliRunner().invoke(app, ["worker", "-Q", "images"], env=env)
    assert result.exit_code == 2
    assert "TASKPORT_WORKER_QUEUES names queues not in TASKPORT_QUEUES: images" in result.output
