"""Write task kinds for Taskport in your own package, without touching Taskport.

    from pydantic import BaseModel
    from adapters.handlers.sdk import TaskContext, task_kind

    class ResizePayload(BaseModel):
        width: int

    @task_kind("resize", payload=ResizePayload, description="resizes an image")
    def resize(payload: ResizePayload, context: TaskContext) -> dict[str, int]:
        context.report_progress(0.5, "halfway")
        return {"width": payload.width}

``@task_kind`` only marks the function; Taskport finds it when it loads your module (named
in ``TASKPORT_HANDLER_MODULES``, or by an entry point of the ``taskport.handlers`` group).

- ``async def`` handlers run on the worker's event loop; plain functions run in a thread.
- ``payload`` is a pydantic model (the handler receives an instance of it) or a JSON Schema
  dict (the handler receives the JSON value); a payload breaking it is refused at submit.
- The result must be JSON (a pydantic model is dumped to JSON).
- Raise ``PermanentFailure`` for a failure no retry can fix, ``RetryLater`` to ask for a
  retry no sooner than some time; any other exception fails the attempt and is retried.
- ``context`` has ``task_id``, ``owner``, ``attempt``, ``cancelled`` (a
  ``threading.Event``; a thread should stop once it is set) and ``report_progress``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from attrs import frozen
from pydantic import BaseModel

from adapters.handlers.registry import Kind, check_kind_name
from application.errors import PermanentFailure, RetryLater
from application.ports.handlers import TaskContext, TaskHandler
from domain.values import JsonValue

__all__ = ["PermanentFailure", "RetryLater", "TaskContext", "is_task_kind", "task_kind"]

_MARK = "__taskport_kind__"

logger = logging.getLogger("taskport.worker")

OUTLIVED_AFTER_SECONDS = 1.0
"""How long a plain-function handler may run on after its attempt ended before a warning
says so."""

F = TypeVar("F", bound=Callable[..., Any])


@frozen
class _KindSpec:
    name: str
    description: str
    payload: type[BaseModel] | Mapping[str, Any] | None


def task_kind(
    name: str,
    *,
    payload: type[BaseModel] | Mapping[str, Any] | None = None,
    description: str = "",
) -> Callable[[F], F]:
    """Marks ``function(payload, context)`` as the handler of the task kind ``name``."""
    check_kind_name(name)
    is_model = isinstance(payload, type) and issubclass(payload, BaseModel)
    if payload is not None and not is_model and not isinstance(payload, Mapping):
        raise TypeError(f"payload of kind {name!r} must be a pydantic model or a JSON Schema dict")

    def mark(function: F) -> F:
        if not callable(function):
            raise TypeError(f"@task_kind({name!r}) marks a function")
        summary = description or (inspect.getdoc(function) or "").split("\n", 1)[0]
        setattr(function, _MARK, _KindSpec(name, summary, payload))
        return function

    return mark


def is_task_kind(value: object) -> bool:
    return callable(value) and isinstance(getattr(value, _MARK, None), _KindSpec)


def kind_of(function: Callable[..., Any], origin: str) -> Kind:
    """The ``Kind`` a ``@task_kind`` function declares."""
    spec: _KindSpec = getattr(function, _MARK)
    model = spec.payload if isinstance(spec.payload, type) else None
    schema = spec.payload if isinstance(spec.payload, Mapping) else None
    return Kind(
        name=spec.name,
        handler=_handler(function, model),
        description=spec.description,
        payload_model=model,
        payload_schema=schema,
        origin=origin,
    )


def _handler(function: Callable[..., Any], model: type[BaseModel] | None) -> TaskHandler:
    runs_on_loop = inspect.iscoroutinefunction(function)

    @functools.wraps(function)
    async def handler(payload: JsonValue, context: TaskContext) -> JsonValue:
        argument = model.model_validate(payload) if model is not None else payload
        if runs_on_loop:
            result = await function(argument, context)
        else:
            result = await _in_a_thread_of_its_own(function, argument, context)
        return result.model_dump(mode="json") if isinstance(result, BaseModel) else result

    return handler


async def _in_a_thread_of_its_own(
    function: Callable[..., Any], payload: Any, context: TaskContext
) -> Any:
    """Runs a plain-function handler in a daemon thread started for it. A thread cannot be
    stopped: a handler deaf to ``context.cancelled`` runs on after its attempt ended (timed
    out, cancelled). In a thread of its own it takes no thread from the tasks after it, as
    it would from a pool, and it does not keep the process from exiting."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[Any] = loop.create_future()
    call = functools.partial(contextvars.copy_context().run, function, payload, context)

    def settle(settled: Callable[[], None]) -> None:
        if not outcome.done():  # else the attempt ended without it
            settled()

    def run() -> None:
        try:
            result = call()
        except BaseException as exc:
            answer = functools.partial(settle, functools.partial(outcome.set_exception, exc))
        else:
            answer = functools.partial(settle, functools.partial(outcome.set_result, result))
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(answer)

    thread = threading.Thread(target=run, name=f"taskport-{context.kind}", daemon=True)
    thread.start()
    try:
        return await outcome
    except asyncio.CancelledError:
        context.cancelled.set()
        loop.call_later(OUTLIVED_AFTER_SECONDS, _say_if_still_running, thread, context)
        raise


def _say_if_still_running(thread: threading.Thread, context: TaskContext) -> None:
    if thread.is_alive():
        logger.warning(
            "task %s: its %s handler still runs in its thread %gs after its attempt ended "
            "(it does not stop on context.cancelled)",
            context.task_id,
            context.kind,
            OUTLIVED_AFTER_SECONDS,
        )
