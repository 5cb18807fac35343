"""Cron expressions in time zones, as schedules read them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.cron import CronRecurrence
from domain.errors import InvalidSchedule

cron = CronRecurrence()


def test_a_time_skipped_by_daylight_saving_runs_at_the_first_minute_after_it() -> None:
    # 2026-03-29: Paris goes from 02:00 to 03:00; 02:30 does not exist.
    evening = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert cron.next_after("30 2 * * *", "Europe/Paris", evening) == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )


def test_a_time_repeated_by_daylight_saving_runs_once() -> None:
    # 2026-10-25: Paris goes from 03:00 back to 02:00; 02:30 happens twice.
    first = cron.next_after("30 2 * * *", "Europe/Paris", datetime(2026, 10, 24, 23, 0, tzinfo=UTC))
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert cron.next_after("30 2 * * *", "Europe/Paris", first) == datetime(
        2026, 10, 26, 1, 30, tzinfo=UTC
    )


def test_an_expression_with_a_star_in_its_hour_follows_the_clock_through_a_change() -> None:
    # 2026-03-29: Paris skips 02:00-03:00, so 02:00 does not run, not even at 03:00.
    night = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # midnight in Paris
    assert cron.next_after("0 */2 * * *", "Europe/Paris", night) == datetime(
        2026,
        3,
        29,
        2,
        0,
        tzinfo=UTC,  # 04:00 in Paris
    )
    # 2026-10-25: Paris goes from 03:00 back to 02:00; 02:30 runs in both passes.
    first = cron.next_after(
        "*/30 * * * *", "Europe/Paris", datetime(2026, 10, 25, 0, 0, tzinfo=UTC)
    )
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert cron.next_after(
        "*/30 * * * *", "Europe/Paris", datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
    ) == (datetime(2026, 10, 25, 1, 30, tzinfo=UTC))


@pytest.mark.parametrize("expression", ["30 2 * * *", "15,45 2 * * *"])
def test_from_the_second_pass_of_a_repeated_hour_the_next_time_lies_ahead(
    expression: str,
) -> None:
    # 2026-10-25: Paris goes from 03:00 back to 02:00; at 01:10 UTC it is 02:10 for the
    # second time, and the 02:xx times of the day ran in the first pass.
    second_pass = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)
    next_time = cron.next_after(expression, "Europe/Paris", second_pass)
    assert next_time > second_pass
    assert next_time.date() == datetime(2026, 10, 26).date()


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("@hourly", datetime(2026, 1, 5, 13, 0, tzinfo=UTC)),
        ("@DAILY", datetime(2026, 1, 6, 0, 0, tzinfo=UTC)),
        ("@weekly", datetime(2026, 1, 11, 0, 0, tzinfo=UTC)),
        ("@monthly", datetime(2026, 2, 1, 0, 0, tzinfo=UTC)),
        ("@yearly", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
        ("*/7 * * * *", datetime(2026, 1, 5, 12, 7, tzinfo=UTC)),
    ],
)
def test_the_next_time_is_strictly_after(expression: str, expected: datetime) -> None:
    assert cron.next_after(expression, "UTC", datetime(2026, 1, 5, 12, 0, tzinfo=UTC)) == expected


@pytest.mark.parametrize(
    ("expression", "timezone"),
    [
        ("* * * * * *", "UTC"),
        ("* * * *", "UTC"),
        ("60 * * * *", "UTC"),
        ("0 0 30 2 *", "UTC"),
        ("@often", "UTC"),
        ("0 0 * * *", "Nowhere/Town"),
        ("0 0 * * *", "../../etc/passwd"),
        ("0 0 * * *", ""),
        ("0 0 * * *", "Europe"),
        ("0 0 * * *", "x" * 300),
    ],
)
def test_what_cannot_be_read_is_refused(expression: str, timezone: str) -> None:
    with pytest.raises(InvalidSchedule):
        cron.next_after(expression, timezone, datetime(2026, 1, 5, tzinfo=UTC))
