"""``taskport submit | get | list | cancel | retry | delete | workers | stats``: the API from
a terminal (``taskport schedule ...`` is in ``schedule_cli``).

Human output by default, ``--json`` for scripts. The server and the key come from
``--url`` / ``--api-key`` or ``TASKPORT_URL`` / ``TASKPORT_API_KEY``. Exit status: 0 when
all went well, 1 when the API refused (its problem detail is shown) or a waited-for task
did not succeed, 3 when the server cannot be reached (2 is a usage error).
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column, Table
from rich.text import Text

from domain.values import DEFAULT_QUEUE

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
FOLLOW_WAIT = 1
"""Seconds one read of ``--wait`` waits on the server for the task to end."""
FOLLOW_UNREACHABLE_SECONDS = 60
"""How long ``--wait`` keeps trying a server it cannot reach (one restarting)."""
API_REFUSED, UNREACHABLE = 1, 3

Url = Annotated[
    str, typer.Option("--url", envvar="TASKPORT_URL", help="the Taskport server", show_default=True)
]
PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
"""What a header value may hold here, as the server reads it."""


def _header_value(value: str | None) -> str | None:
    """``value`` without the spaces around it (a key read from a file ends with a newline),
    or a usage error when no header can carry it."""
    if value is None:
        return None
    value = value.strip()
    if not PRINTABLE_ASCII.fullmatch(value):
        raise typer.BadParameter("must be printable ASCII characters, to be sent in a header")
    return value


ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="TASKPORT_API_KEY",
        help="sent as a bearer token",
        callback=_header_value,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON, for scripts")]


def _finite_seconds(value: float | None) -> float | None:
    """Click reads nan and inf as floats, which JSON has no words for."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number of seconds")
    return value


Timeout = Annotated[
    float | None, typer.Option(help="seconds per attempt", callback=_finite_seconds)
]
Queue = Annotated[
    str | None,
    typer.Option(help="the queue its runs go to (one of the server's TASKPORT_QUEUES)"),
]

DELAY = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)([smhd])")
DELAY_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _delay_seconds(value: str) -> float | None:
    """The seconds of a delay written with its unit (``90s``, ``10m``, ``2h``, ``1d``)."""
    delay = DELAY.fullmatch(value.strip())
    return float(delay[1]) * DELAY_UNITS[delay[2]] if delay else None


def _moment(value: str | None) -> str | None:
    """A time with its offset (RFC 3339, as the API takes it), or a delay from now (``90s``,
    ``10m``, ``2h``, ``1d``), which is sent as the time it comes to on this machine's clock."""
    if value is None:
        return None
    if (seconds := _delay_seconds(value)) is not None:
        try:
            return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
        except OverflowError:
            raise typer.BadParameter(f"{value} from now is past any date") from None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither a time (2030-01-01T09:00:00Z) nor a delay (90s, 10m, 2h, 1d)"
        ) from None
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{value!r} needs its offset (Z, +02:00): whose 9 o'clock?")
    return moment.isoformat()


def _moment_option(help: str) -> Any:
    """An option taking a time or a delay from now (``_moment``)."""
    return typer.Option(callback=_moment, metavar="TIME|DELAY", help=help)


def parse_duration(value: str | None) -> float | None:
    """A duration in seconds, written as a number (``3600``) or with its unit (``1h``)."""
    if value is None:
        return None
    if (seconds := _delay_seconds(value)) is not None:
        return seconds
    try:
        return _finite_seconds(float(value))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is no duration (3600, 90s, 10m, 2h, 1d)") from None


# A pipe has no width: tables printed to one are not squeezed into 80 columns.
out = Console(soft_wrap=True, highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True, highlight=False)


class Api:
    """A thin HTTP client that turns every failure into a message and an exit status."""

    def __init__(self, url: str, api_key: str | None, as_json: bool) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._url = url.rstrip("/")
        self._as_json = as_json
        try:
            self._client = httpx.Client(base_url=self._url, headers=headers, timeout=30)
        except (httpx.InvalidURL, ValueError) as exc:
            raise typer.BadParameter(f"not a server URL: {exc}", param_hint="--url") from None

    def call(self, method: str, path: str, **arguments: Any) -> Any:
        try:
            response = self.request(method, path, **arguments)
        except httpx.TransportError as exc:
            self.unreachable(exc)
        return self.answer(response)

    def request(self, method: str, path: str, **arguments: Any) -> httpx.Response:
        """The answer, or ``httpx.TransportError`` when the server cannot be reached."""
        try:
            return self._client.request(method, path, **arguments)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise typer.BadParameter(f"not a server URL: {exc}", param_hint="--url") from None

    def unreachable(self, exc: httpx.TransportError) -> NoReturn:
        err.print(f"taskport: cannot reach {self._url}: {exc or type(exc).__name__}")
        raise typer.Exit(UNREACHABLE) from None

    def answer(self, response: httpx.Response) -> Any:
        """The JSON of a successful answer; a refusal is shown and ends the command."""
        if response.is_error:
            self._refused(response)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            err.print(f"taskport: {self._url} answered without JSON: is it a Taskport server?")
            raise typer.Exit(UNREACHABLE) from None

    def _refused(self, response: httpx.Response) -> NoReturn:
        try:
            problem = response.json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            problem = {"status": response.status_code, "title": response.reason_phrase}
            problem["detail"] = response.text[:500]
        if self._as_json:
            typer.echo(json.dumps(problem))
        else:
            title = problem.get("title") or response.reason_phrase
            err.print(Text(f"Error {response.status_code} {title}: {problem.get('detail', '')}"))
        raise typer.Exit(API_REFUSED)


def submit(
    kind: Annotated[str, typer.Argument(help="the task kind, e.g. echo")],
    payload: Annotated[
        str, typer.Option("--payload", "-p", help="JSON payload, or @file.json")
    ] = "{}",
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="follow the task until it ends")
    ] = False,
    max_attempts: Annotated[int | None, typer.Option(min=1)] = None,
    timeout: Timeout = None,
    idempotency_key: Annotated[str | None, typer.Option(callback=_header_value)] = None,
    callback_url: Annotated[
        str | None, typer.Option(help="POST the outcome here each time the task finishes")
    ] = None,
    run_at: Annotated[
        str | None,
        _moment_option("start no earlier than this time (2030-01-01T09:00:00Z) or delay (10m)"),
    ] = None,
    expires_at: Annotated[
        str | None, _moment_option("fail as Expired if no attempt has started by then")
    ] = None,
    queue: Queue = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Submit a task; with --wait, show its progress and exit 0 only if it succeeded."""
    body = {
        "kind": kind,
        "payload": parse_payload(payload),
        **given(
            max_attempts=max_attempts,
            timeout_seconds=timeout,
            callback_url=callback_url,
            run_at=run_at,
            expires_at=expires_at,
            queue=queue,
        ),
    }
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    api = Api(url, api_key, as_json)
    task = api.call("POST", "/v1/tasks", json=body, headers=headers)
    if not wait:
        _print_task(task, as_json)
        return
    task = _follow(api, task)
    if as_json:
        typer.echo(json.dumps(task))
    elif task["status"] == "SUCCEEDED":
        err.print(Text(f"{task['status']} after {_attempts(task)} ({task['id']})"))
        typer.echo(json.dumps(task["result"], indent=2))
    else:
        err.print(Text(f"{task['status']} after {_attempts(task)} ({task['id']})"))
        if task.get("error"):
            err.print(Text(f"{task['error']['type']}: {task['error']['message']}"))
    if task["status"] != "SUCCEEDED":
        raise typer.Exit(API_REFUSED)


TaskId = Annotated[uuid.UUID, typer.Argument(metavar="ID", help="the task's id")]


def get(
    task_id: TaskId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Show a task."""
    _print_task(Api(url, api_key, as_json).call("GET", f"/v1/tasks/{task_id}"), as_json)


def list_tasks(
    status: Annotated[
        list[str] | None,
        typer.Option(
            help="SCHEDULED, QUEUED, RUNNING, ...; repeated or comma-separated, any of them"
        ),
    ] = None,
    kind: Annotated[str | None, typer.Option()] = None,
    queue: Annotated[str | None, typer.Option(help="only the tasks of this queue")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="a schedule's id: only the tasks it submitted")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """List tasks, newest first, one page at a time."""
    params = given(
        status=_statuses(status),
        kind=kind,
        limit=limit,
        queue=queue,
        schedule_id=schedule,
        cursor=cursor,
    )
    page = Api(url, api_key, as_json).call("GET", "/v1/tasks", params=params)
    if as_json:
        typer.echo(json.dumps(page))
        return
    # The queue column, only where a task of the page is not in the default one.
    queues = any(task.get("queue", DEFAULT_QUEUE) != DEFAULT_QUEUE for task in page["items"])
    table = Table(box=None)
    columns = ("id", "kind", *(("queue",) if queues else ()), "status", "attempts", "created")
    for column in (*columns, "progress"):
        table.add_column(column, no_wrap=column != "progress")
    for task in page["items"]:
        queue = (task.get("queue", DEFAULT_QUEUE),) if queues else ()
        table.add_row(
            *map(
                Text,
                (
                    task["id"],
                    task["kind"],
                    *queue,
                    task["status"],
                    f"{task['attempts']}/{task['max_attempts']}",
                    task["created_at"][:19].replace("T", " "),
                    _progress_text(task),
                ),
            )
        )
    out.print(table if page["items"] else "no tasks")
    if page.get("next_cursor"):
        out.print(Text(f"more: --cursor {page['next_cursor']}"))


def cancel(
    task_id: TaskId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a task (a running one is asked to stop)."""
    _print_task(Api(url, api_key, as_json).call("POST", f"/v1/tasks/{task_id}/cancel"), as_json)


def retry(
    task_id: TaskId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Send a failed or cancelled task back to the queue."""
    _print_task(Api(url, api_key, as_json).call("POST", f"/v1/tasks/{task_id}/retry"), as_json)


Statuses = Annotated[
    list[str] | None,
    typer.Option("--status", help="repeated or comma-separated, any of them"),
]
KindFilter = Annotated[str | None, typer.Option("--kind", help="only the tasks of this kind")]
QueueFilter = Annotated[str | None, typer.Option("--queue", help="only the tasks of this queue")]
ScheduleFilter = Annotated[
    str | None, typer.Option("--schedule", help="a schedule's id: only the tasks it submitted")
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="change them without asking first")]


def _change_all_command(action: str, done: str, doc: str) -> Callable[..., None]:
    """``taskport cancel-all`` and ``retry-all``: the same filters, another change."""

    def command(
        status: Statuses = None,
        kind: KindFilter = None,
        queue: QueueFilter = None,
        schedule: ScheduleFilter = None,
        yes: Yes = False,
        url: Url = DEFAULT_URL,
        api_key: ApiKey = None,
        as_json: AsJson = False,
    ) -> None:
        filters = {"status": _statuses(status), "kind": kind, "queue": queue}
        filters["schedule_id"] = schedule
        _change_all(action, done, filters, yes, Api(url, api_key, as_json), as_json)

    command.__doc__ = doc
    return command


cancel_all = _change_all_command(
    "cancel",
    "cancelled",
    "Cancel every waiting task (SCHEDULED or QUEUED, both by default) that matches.",
)
retry_all = _change_all_command(
    "retry",
    "retried",
    "Send every finished task that matches (FAILED by default, or CANCELLED) back to the "
    "queue, each with fresh attempts.",
)


def _statuses(given: list[str] | None) -> list[str] | None:
    statuses = [part.strip().upper() for value in given or () for part in value.split(",")]
    return [part for part in statuses if part] or None


def _change_all(
    action: str, done: str, filters: dict[str, Any], yes: bool, api: Api, as_json: bool
) -> None:
    """Asks first (unless ``yes``), then changes the matching tasks a request at a time
    until none is left, and says how many it changed."""
    body = given(**filters)
    if not yes:
        described = (
            ", ".join(
                f"{name} {value if isinstance(value, str) else ' or '.join(value)}"
                for name, value in body.items()
            )
            or "no filter"
        )
        typer.confirm(f"{action} every task that matches ({described})?", abort=True, err=True)
    changed: list[str] = []
    while True:
        answer = api.call("POST", f"/v1/tasks/{action}", json=body)
        changed += answer["ids"]
        if not answer["more"]:
            break
    if as_json:
        typer.echo(json.dumps({"ids": changed, "count": len(changed)}))
    else:
        err.print(Text(f"{done} {len(changed)} task{'' if len(changed) == 1 else 's'}"))


def delete(
    task_id: TaskId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Delete a finished task, its payload and its result (cancel a task that has not
    finished first)."""
    Api(url, api_key, as_json).call("DELETE", f"/v1/tasks/{task_id}")
    if not as_json:
        err.print(Text(f"deleted task {task_id}"))


def workers(url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """List the workers the server knows of."""
    answer = Api(url, api_key, as_json).call("GET", "/v1/workers")
    if as_json:
        typer.echo(json.dumps(answer))
        return
    items = answer.get("items", []) if isinstance(answer, dict) else answer
    if not items:
        out.print("no workers")
        return
    columns = list(dict.fromkeys(key for item in items for key in item))
    table = Table(*columns, box=None)
    for item in items:
        table.add_row(*(Text(_cell(item.get(column))) for column in columns))
    out.print(table)


def stats(url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Count your tasks by kind and status (and by queue, where there are several), and say
    how long the oldest queued one waited."""
    answer = Api(url, api_key, as_json).call("GET", "/v1/stats")
    if as_json:
        typer.echo(json.dumps(answer))
        return
    statuses = list(answer["by_status"])
    counts = {
        (item["kind"], item["status"]): item["count"] for item in answer["by_status_and_kind"]
    }
    table = Table("kind", *(Column(status, justify="right") for status in statuses), box=None)
    for kind in answer["by_kind"]:
        table.add_row(Text(kind), *(str(counts.get((kind, status), "")) for status in statuses))
    table.add_row("all", *(str(answer["by_status"][status]) for status in statuses))
    out.print(table if answer["by_kind"] else "no tasks")
    by_queue = answer.get("by_queue", {})
    if set(by_queue) - {DEFAULT_QUEUE}:
        waits = answer.get("oldest_queued_age_seconds_by_queue", {})
        columns = (Column(status, justify="right") for status in statuses)
        queues = Table("queue", *columns, Column("oldest wait", justify="right"), box=None)
        for queue, counted in by_queue.items():
            wait = f"{waits[queue]:.1f} s" if queue in waits else ""
            counts_of = (str(counted.get(status) or "") for status in statuses)
            queues.add_row(Text(queue), *counts_of, wait)
        out.print(queues)
    age = answer["oldest_queued_age_seconds"]
    out.print(f"oldest queued: {'none' if age is None else f'{age:.1f} s waiting'}")
    out.print(f"outbox backlog: {answer['outbox_backlog']} messages")


def attach(app: typer.Typer) -> None:
    """Adds the client commands to the ``taskport`` command."""
    for command, name in (
        (submit, "submit"),
        (get, "get"),
        (list_tasks, "list"),
        (cancel, "cancel"),
        (retry, "retry"),
        (cancel_all, "cancel-all"),
        (retry_all, "retry-all"),
        (delete, "delete"),
        (workers, "workers"),
        (stats, "stats"),
    ):
        app.command(name)(command)


def given(**fields: Any) -> dict[str, Any]:
    """The fields of a request body that were given (not ``None``): the API's defaults
    stand for the others."""
    return {name: value for name, value in fields.items() if value is not None}


def parse_payload(raw: str) -> Any:
    if raw.startswith("@"):
        try:
            raw = Path(raw[1:]).read_text()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {raw[1:]}: {exc.strerror}") from None
    try:
        return json.loads(raw, parse_constant=_not_a_json_number)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None


def _not_a_json_number(constant: str) -> None:
    """Python's ``json`` reads NaN and Infinity, which JSON has no words for."""
    raise ValueError(f"{constant} is not a JSON number")


def _follow(api: Api, task: dict[str, Any]) -> dict[str, Any]:
    """Reads the task until it ends, with a progress bar on stderr: each read waits on the
    server up to a second for the end (``?wait=``), so the bar moves every second and the
    end shows as it comes. A server that cannot be reached for a while (restarting) is
    tried again for up to ``FOLLOW_UNREACHABLE_SECONDS``."""
    with _progress_bar(task["id"]) as bar:
        line = bar.add_task(task["status"], total=1.0)
        while task["status"] not in TERMINAL:
            task = _read_following(api, task["id"], bar, line)
            progress = task.get("progress") or {}
            label = f"{task['status']} {progress.get('message', '')}".strip()
            bar.update(line, completed=progress.get("fraction", 0), description=label)
        if task["status"] == "SUCCEEDED":
            bar.update(line, completed=1.0, description=task["status"])
        else:
            bar.update(line, description=task["status"])
    return task


def _read_following(api: Api, task_id: str, bar: Progress, line: TaskID) -> dict[str, Any]:
    unreachable_until: float | None = None
    while True:
        try:
            response = api.request("GET", f"/v1/tasks/{task_id}", params={"wait": FOLLOW_WAIT})
        except httpx.TransportError as exc:
            unreachable_until = unreachable_until or time.monotonic() + FOLLOW_UNREACHABLE_SECONDS
            if time.monotonic() > unreachable_until:
                api.unreachable(exc)
            bar.update(line, description=f"server unreachable ({type(exc).__name__}), retrying")
            time.sleep(1)
            continue
        task: dict[str, Any] = api.answer(response)
        return task


@contextmanager
def _progress_bar(task_id: str) -> Iterator[Progress]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=err, transient=False) as bar:
            yield bar
    except KeyboardInterrupt:
        err.print(
            f"taskport: stopped waiting; task {task_id} goes on "
            f"(taskport get {task_id} to look again)"
        )
        raise typer.Exit(130) from None


def named_queue(queue: str | None) -> str | None:
    """A queue worth showing: any but the default one."""
    return queue if queue != DEFAULT_QUEUE else None


def _print_task(task: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(task))
        return
    print_fields(
        {
            "id": task["id"],
            "kind": task["kind"],
            "queue": named_queue(task.get("queue")),
            "status": task["status"]
            + (" (cancel requested)" if task.get("cancel_requested") else ""),
            "attempts": f"{task['attempts']}/{task['max_attempts']}",
            "created": task["created_at"],
            "run at": task.get("run_at"),
            "expires": task.get("expires_at"),
            "schedule": task.get("schedule_id"),
            "finished": task.get("finished_at"),
            "progress": _progress_text(task) or None,
            "payload": json.dumps(task["payload"]),
            "result": json.dumps(task["result"]) if task["status"] == "SUCCEEDED" else None,
            "error": f"{task['error']['type']}: {task['error']['message']}"
            if task.get("error")
            else None,
        }
    )


def print_fields(rows: dict[str, Any]) -> None:
    """One line per field that has a value: its name in bold, then the value."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows.items():
        if value is not None:
            table.add_row(name, Text(str(value)))
    out.print(table)


def _progress_text(task: dict[str, Any]) -> str:
    progress = task.get("progress")
    if not progress:
        return ""
    return f"{progress['fraction']:.0%} {progress['message']}".strip()


def _attempts(task: dict[str, Any]) -> str:
    return f"{task['attempts']} attempt{'s' if task['attempts'] != 1 else ''}"


def _cell(value: Any) -> str:
    if isinstance(value, list):  # a worker's queues
        return ",".join(map(str, value))
    if isinstance(value, dict):  # a worker's queue limits, as --queues takes them
        return ",".join(f"{key}:{item}" for key, item in value.items())
    return value if isinstance(value, str) else json.dumps(value)
