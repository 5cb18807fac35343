"""The settings of workers: heartbeats, retentions, events."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from entrypoints.settings import Settings


def test_a_worker_is_lost_after_three_heartbeats_by_default() -> None:
    assert Settings(heartbeat_seconds=2).lost_after_seconds == 6
    assert Settings(heartbeat_seconds=2, worker_lost_after_seconds=10).lost_after_seconds == 10


def test_a_lost_threshold_within_one_heartbeat_is_refused() -> None:
    with pytest.raises(ValidationError, match="TASKPORT_WORKER_LOST_AFTER_SECONDS"):
        Settings(heartbeat_seconds=5, worker_lost_after_seconds=5)


def test_a_cancel_request_is_looked_for_twice_a_second_by_default() -> None:
    assert Settings().cancel_poll_seconds == 0.5


@pytest.mark.parametrize(
    ("name", "seconds"),
    [
        *(("task_retention_seconds", s) for s in (0, -5, 1e11, 1e20, float("inf"))),
        *(("outbox_retention_seconds", s) for s in (-5, 1e11, 1e20, float("inf"))),
    ],
)
def test_a_retention_is_positive_and_at_most_a_century(name: str, seconds: float) -> None:
    """Past a century, the prune's cutoff would fall outside the calendar at every pass. The
    outbox's may be 0: a sent message is deleted at once."""
    with pytest.raises(ValidationError):
        Settings(**{name: seconds})


@pytest.mark.parametrize("name", ["worker_lost_after_seconds", "worker_prune_after_seconds"])
@pytest.mark.parametrize("seconds", [1e11, 1e300, float("inf")])
def test_a_worker_threshold_is_at_most_a_century(name: str, seconds: float) -> None:
    """Past it, the start failed with an OverflowError instead of naming the setting."""
    with pytest.raises(ValidationError, match=name):
        Settings(**{name: seconds})


def test_events_are_refused_on_the_in_process_queue_no_other_system_hears() -> None:
    with pytest.raises(ValidationError, match="TASKPORT_PUBLISH_EVENTS needs a broker"):
        Settings(publish_events=True)
    assert Settings(publish_events=True, broker_url="amqp://localhost/").publish_events


def test_queues_are_read_from_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKPORT_QUEUES", "default, images,reports,images")
    monkeypatch.setenv("TASKPORT_WORKER_QUEUES", "images")
    settings = Settings()
    assert settings.queues == ["default", "images", "reports"]
    assert settings.consumed_queues == ("images",)


def test_a_queue_given_a_limit_is_taken_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKPORT_QUEUES", "default,images,reports")
    monkeypatch.setenv("TASKPORT_WORKER_QUEUES", "default, images:4,reports:1,images:4")
    settings = Settings()
    assert settings.consumed_queues == ("default", "images", "reports")
    assert settings.queue_limits == {"images": 4, "reports": 1}
    assert Settings(queues=["default", "images"], worker_queues=[]).queue_limits == {}


def test_a_worker_takes_every_queue_unless_told_which() -> None:
    assert Settings().consumed_queues == ("default",)
    assert Settings(queues=["default", "images"]).consumed_queues == ("default", "images")


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"queues": ["Images"]}, "TASKPORT_QUEUES|queue 'Images'"),
        ({"queues": ["a.b"]}, "queue 'a.b'"),
        ({"queues": ["x" * 41]}, "1-40 characters"),
        ({"queues": []}, "TASKPORT_QUEUES must name 1 to 40"),
        ({"queues": [f"q{n}" for n in range(41)]}, "TASKPORT_QUEUES must name 1 to 40"),
        ({"queues": ["default"], "worker_queues": ["images"]}, "TASKPORT_WORKER_QUEUES"),
        ({"queues": ["default"], "worker_queues": ["default:0"]}, "1 or more"),
        ({"queues": ["default"], "worker_queues": ["default:two"]}, "whole number"),
        ({"queues": ["default"], "worker_queues": ["default:"]}, "whole number"),
        ({"queues": ["default"], "worker_queues": ["default:2", "default:3"]}, "named twice"),
        ({"worker_queues": ["default:65"]}, r"at most TASKPORT_WORKER_CONCURRENCY \(64\)"),
        ({"queues": ["default"], "worker_queues": ["Default:2"]}, "queue 'Default'"),
    ],
)
def test_queues_that_cannot_be_served_are_refused(settings: dict, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(**settings)
