"""``taskport schedule add | list | show | pause | resume | delete``: the schedules of the
API from a terminal, with the client commands' options, output and exit statuses."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from entrypoints.client_cli import (
    DEFAULT_URL,
    Api,
    ApiKey,
    AsJson,
    Queue,
    Timeout,
    Url,
    err,
    given,
    named_queue,
    out,
    parse_duration,
    parse_payload,
    print_fields,
)

schedules = typer.Typer(help="Recurring tasks, submitted at the times of a cron expression.")

ScheduleId = Annotated[uuid.UUID, typer.Argument(metavar="ID", help="the schedule's id")]


@schedules.command("add")
def add(
    kind: Annotated[str, typer.Argument(help="the kind of its tasks, e.g. echo")],
    cron: Annotated[
        str, typer.Option("--cron", help="'0 3 * * *' (minute hour day month weekday), @daily...")
    ],
    timezone: Annotated[str, typer.Option("--timezone", "--tz", help="IANA name")] = "UTC",
    name: Annotated[str | None, typer.Option(help="unique among your schedules")] = None,
    payload: Annotated[
        str, typer.Option("--payload", "-p", help="JSON payload, or @file.json")
    ] = "{}",
    paused: Annotated[bool, typer.Option("--paused", help="create it paused")] = False,
    max_attempts: Annotated[int | None, typer.Option(min=1)] = None,
    timeout: Timeout = None,
    callback_url: Annotated[str | None, typer.Option()] = None,
    expires_after: Annotated[
        float | None,
        typer.Option(
            parser=parse_duration,
            metavar="DURATION",
            help="each task expires this long after its time (3600, 90s, 10m, 2h, 1d)",
        ),
    ] = None,
    queue: Queue = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Create a schedule."""
    body = {
        "kind": kind,
        "cron": cron,
        "timezone": timezone,
        "payload": parse_payload(payload),
        "paused": paused,
        **given(
            name=name,
            max_attempts=max_attempts,
            timeout_seconds=timeout,
            callback_url=callback_url,
            expires_after_seconds=expires_after,
            queue=queue,
        ),
    }
    _print(Api(url, api_key, as_json).call("POST", "/v1/schedules", json=body), as_json)


@schedules.command("list")
def list_schedules(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """List your schedules, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if cursor:
        params["cursor"] = cursor
    page = Api(url, api_key, as_json).call("GET", "/v1/schedules", params=params)
    if as_json:
        typer.echo(json.dumps(page))
        return
    table = Table(box=None)
    for column in ("id", "name", "cron", "timezone", "kind", "next run (UTC)", "paused"):
        table.add_column(column, no_wrap=True)
    for item in page["items"]:
        row = (item["id"], item["name"] or "", item["cron"], item["timezone"], item["kind"])
        table.add_row(*map(Text, (*row, _when(item["next_run_at"]), _yes(item["paused"]))))
    out.print(table if page["items"] else "no schedules")
    if page.get("next_cursor"):
        out.print(Text(f"more: --cursor {page['next_cursor']}"))


@schedules.command("show")
def show(
    schedule_id: ScheduleId, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Show a schedule."""
    _print(Api(url, api_key, as_json).call("GET", f"/v1/schedules/{schedule_id}"), as_json)


@schedules.command("pause")
def pause(
    schedule_id: ScheduleId, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Stop submitting its tasks."""
    api = Api(url, api_key, as_json)
    _print(api.call("POST", f"/v1/schedules/{schedule_id}/pause"), as_json)


@schedules.command("resume")
def resume(
    schedule_id: ScheduleId, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Submit its tasks again, from its next time ahead."""
    api = Api(url, api_key, as_json)
    _print(api.call("POST", f"/v1/schedules/{schedule_id}/resume"), as_json)


@schedules.command("delete")
def delete(
    schedule_id: ScheduleId, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Delete a schedule (the tasks it submitted are kept)."""
    api = Api(url, api_key, as_json)
    api.call("DELETE", f"/v1/schedules/{schedule_id}")
    if not as_json:
        err.print(Text(f"deleted schedule {schedule_id}"))


def _print(schedule: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(schedule))
        return
    print_fields(
        {
            "id": schedule["id"],
            "name": schedule["name"],
            "cron": f"{schedule['cron']} ({schedule['timezone']})",
            "paused": _yes(schedule["paused"]) if schedule["paused"] else None,
            "next run": _when(schedule["next_run_at"]) + " UTC",
            "last run": schedule["last_run_at"] and _when(schedule["last_run_at"]) + " UTC",
            "last task": schedule["last_task_id"],
            "kind": schedule["kind"],
            "queue": named_queue(schedule.get("queue")),
            "payload": json.dumps(schedule["payload"]),
            "expires after": schedule.get("expires_after_seconds")
            and f"{schedule['expires_after_seconds']:g} s",
        }
    )


def _when(instant: str) -> str:
    return instant[:19].replace("T", " ")


def _yes(flag: bool) -> str:
    return "yes" if flag else ""
