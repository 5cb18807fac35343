"""Cron expressions read by cronsim, in IANA time zones (``zoneinfo``, with the ``tzdata``
package where the system has no zone files)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from domain.errors import InvalidSchedule

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronRecurrence:
    """``Recurrence`` on cronsim. Minutes are the finest unit: a sixth (seconds) field is
    refused."""

    def next_after(self, cron: str, timezone: str, after: datetime) -> datetime:
        expression = MACROS.get(cron.strip().lower(), cron)
        if len(expression.split()) != 5:
            raise InvalidSchedule(
                f"cron {cron!r} must have five fields (minute hour day-of-month month "
                "day-of-week) or be one of " + ", ".join(MACROS)
            )
        try:
            zone = ZoneInfo(timezone)
        # OSError: a name that is a folder of the database (Europe), or too long for a file.
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise InvalidSchedule(f"timezone {timezone!r} is not an IANA time zone") from None
        try:
            times = CronSim(expression, after.astimezone(zone))
            # cronsim reads a fixed time of a repeated hour as its first pass: from the
            # second pass, it names that hour's times again, gone by already.
            return next(time for time in times if time > after.astimezone(UTC)).astimezone(UTC)
        except CronSimError as exc:
            raise InvalidSchedule(f"cron {cron!r}: {exc}") from None
        except StopIteration:
            raise InvalidSchedule(f"cron {cron!r} names no time after {after}") from None
