"""/v1/schedules: tasks submitted at the times of a cron expression."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import Query, Response, status

from adapters.codecs import CursorCodec
from application.use_cases.create_schedule import CreateScheduleHandler
from application.use_cases.manage_schedules import MAX_SCHEDULE_PAGE, ManageSchedules
from entrypoints.http.dependencies import Owner, provided
from entrypoints.http.routing import Router
from entrypoints.http.schemas import ScheduleIn, ScheduleOut, SchedulePageOut

router = Router(prefix="/v1/schedules", tags=["schedules"])

NOT_FOUND: dict[str, Any] = {"description": "no such schedule (or another owner's)"}
CURSOR_OF = {"list": "schedules"}
"""What a cursor of this list is signed with: one of the task list is refused here."""


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleOut,
    responses={
        201: {
            "description": "the schedule, stored",
            "headers": {"Location": {"description": "the schedule", "schema": {"type": "string"}}},
        },
        409: {
            "description": "the owner has a schedule of this name (schedule-name-taken), or "
            "as many schedules as TASKPORT_MAX_SCHEDULES_PER_OWNER allows (too-many-schedules)"
        },
    },
)
async def create_schedule(
    body: ScheduleIn,
    owner: Owner,
    response: Response,
    create: CreateScheduleHandler = provided("create_schedule"),
) -> ScheduleOut:
    """Its kind, payload and callback URL are checked as a submit checks them, and its cron
    expression and time zone are read (422 otherwise)."""
    schedule = await create(body.command(owner))
    response.headers["Location"] = f"/v1/schedules/{schedule.id}"
    return ScheduleOut.of(schedule)


@router.get(
    "",
    response_model=SchedulePageOut,
    responses={400: {"description": "a cursor this server did not issue for this list"}},
)
async def list_schedules(
    owner: Owner,
    limit: Annotated[int, Query(ge=1, le=MAX_SCHEDULE_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    schedules: ManageSchedules = provided("manage_schedules"),
    cursors: CursorCodec = provided("cursor_codec"),
) -> SchedulePageOut:
    """The owner's schedules, newest first."""
    before = cursors.decode(cursor, CURSOR_OF) if cursor else None
    page = await schedules.list(owner, limit, before)
    return SchedulePageOut(
        items=[ScheduleOut.of(schedule) for schedule in page.items],
        next_cursor=cursors.encode(page.next_before, CURSOR_OF) if page.next_before else None,
    )


@router.get("/{schedule_id}", response_model=ScheduleOut, responses={404: NOT_FOUND})
async def get_schedule(
    schedule_id: UUID,
    owner: Owner,
    schedules: ManageSchedules = provided("manage_schedules"),
) -> ScheduleOut:
    return ScheduleOut.of(await schedules.get(owner, schedule_id))


@router.delete("/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: NOT_FOUND})
async def delete_schedule(
    schedule_id: UUID,
    owner: Owner,
    schedules: ManageSchedules = provided("manage_schedules"),
) -> Response:
    """The tasks it submitted already are kept."""
    await schedules.delete(owner, schedule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{schedule_id}/pause", response_model=ScheduleOut, responses={404: NOT_FOUND})
async def pause_schedule(
    schedule_id: UUID,
    owner: Owner,
    schedules: ManageSchedules = provided("manage_schedules"),
) -> ScheduleOut:
    """No task is submitted for it until it is resumed."""
    return ScheduleOut.of(await schedules.pause(owner, schedule_id))


@router.post("/{schedule_id}/resume", response_model=ScheduleOut, responses={404: NOT_FOUND})
async def resume_schedule(
    schedule_id: UUID,
    owner: Owner,
    schedules: ManageSchedules = provided("manage_schedules"),
) -> ScheduleOut:
    """It is next due at its first time from now on: those passed while paused are
    skipped."""
    return ScheduleOut.of(await schedules.resume(owner, schedule_id))
