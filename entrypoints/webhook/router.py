"""``POST /webhook/pubsub`` (and ``/webhook``): a Pub/Sub push runs its task through the
same use case as the worker, and the answer tells Pub/Sub whether to deliver it again.

- 204: the task's new state is committed (it ran, or there was nothing to do: finished,
  cancelled, a duplicate push); and for a poison message in a well-formed envelope
  (``data`` not base64, not a run-task message, an unknown task, delivered too often)
  once a copy is on the dead-letter topic, so that it is never pushed again;
- 503 + Retry-After: storage unavailable, the task is held by another attempt, a poison
  message's copy could not be put on the dead-letter topic, or the server cut the push as
  it stopped (its run hands the task back); Pub/Sub pushes it again after its retry
  backoff;
- 400: the body is not JSON, or not a push envelope (no ``message``, ``messageId`` or
  ``subscription``, wrong types): Pub/Sub never sends that, so it is a client's error;
- 401 / 403: missing / invalid OIDC token (``TASKPORT_PUSH_AUTH=oidc``);
- 413 / 415: body over ``TASKPORT_MAX_BODY_BYTES`` / not JSON (the body guard).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from adapters.brokers.pubsub.publisher import dead_letter_attributes
from application import correlation
from application.errors import BrokerUnavailable, PoisonMessage
from application.messages import RunTaskMessage
from application.ports.dead_letters import DeadLetters
from application.use_cases.run_task import Outcome, RunTask, RunTaskHandler
from entrypoints.http.dependencies import provided
from entrypoints.http.problems import Problem
from entrypoints.webhook.auth import PushAuthenticator
from entrypoints.webhook.envelope import PushEnvelope

logger = logging.getLogger("taskport.webhook")

# As the worker: a message pushed this often is dead-lettered rather than run again.
MAX_DELIVERIES = 100

router = APIRouter(tags=["webhook"])

PUSH_ANSWERS: dict[int | str, dict[str, Any]] = {
    204: {
        "description": "the task's outcome is committed (or there was nothing to do), or a "
        "poison message's copy is on the dead-letter topic: Pub/Sub does not push it again"
    },
    400: {
        "description": "the body is not JSON (malformed-json), or not a push envelope "
        "(malformed-push)"
    },
    401: {"description": "no bearer token (TASKPORT_PUSH_AUTH=oidc)"},
    403: {
        "description": "a token that is invalid, expired, for another audience or issuer, or "
        "not of TASKPORT_PUSH_SERVICE_ACCOUNT"
    },
    413: {"description": "the body is over TASKPORT_MAX_BODY_BYTES"},
    415: {"description": "the body is not JSON (Content-Type)"},
    503: {
        "description": "storage unavailable, the task is being run by another attempt, the "
        "dead-letter copy could not be published, or the server is stopping: Retry-After; "
        "Pub/Sub pushes it again"
    },
}


@router.post("/webhook/pubsub", status_code=204, response_class=Response, responses=PUSH_ANSWERS)
@router.post("/webhook", status_code=204, response_class=Response, include_in_schema=False)
async def pubsub_push(
    request: Request,
    run_task: RunTaskHandler = provided("run_task"),
    authenticator: PushAuthenticator = provided("push_authenticator"),
    dead_letters: DeadLetters = provided("dead_letters"),
) -> Response:
    """Runs the task a Pub/Sub push names; 204 once its outcome is committed, or once a
    poison message's copy is on the dead-letter topic."""
    await authenticator.verify(request.headers.get("authorization"))
    envelope = _parse(await request.body())
    message = envelope.message
    try:
        run = RunTaskMessage.decode(message.decoded_data())
    except (ValueError, PoisonMessage) as exc:
        return await _dead_letter(dead_letters, envelope, str(exc))
    # As in a worker: the run's lines name the request that submitted the task (the
    # push's own request id stays on its answer).
    if run.request_id is not None:
        correlation.request_id.set(run.request_id)
    correlation.task_id.set(str(run.task_id))
    if (envelope.delivery_attempt or 1) > MAX_DELIVERIES:
        reason = f"delivered {envelope.delivery_attempt} times"
        return await _dead_letter(dead_letters, envelope, reason)
    try:
        result = await run_task(RunTask(run.task_id))  # Unavailable: 503 from the mapping
    except asyncio.CancelledError:
        raise _cut(envelope, run) from None
    if result.outcome is Outcome.UNKNOWN_TASK:
        return await _dead_letter(dead_letters, envelope, f"unknown task {run.task_id}")
    if result.outcome is Outcome.BUSY:
        seconds = max(1, math.ceil(result.retry_after.total_seconds())) if result.retry_after else 1
        raise Problem(
            503,
            "task-busy",
            "Task busy",
            f"task {run.task_id} is being run by another attempt; push it again later",
            headers={"Retry-After": str(seconds)},
        )
    return Response(status_code=204)


def _cut(envelope: PushEnvelope, run: RunTaskMessage) -> Problem:
    """The server cut the push as it stopped (its grace period was over): the run has seen
    its cancellation through, handing its task back. The push ends with a 503 for Pub/Sub
    to push it again, and one line in the log, not the server's traceback of a cancelled
    request."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()  # answered: the cancellation ends here
    logger.warning(
        "push of message %s (task %s) cut by the shutdown; Pub/Sub will push it again",
        envelope.message.message_id,
        run.task_id,
    )
    return Problem(
        503,
        "shutting-down",
        "Shutting down",
        f"the server stopped while running task {run.task_id}; push it again later",
        headers={"Retry-After": "1"},
    )


def _parse(body: bytes) -> PushEnvelope:
    try:
        return PushEnvelope.model_validate_json(body)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise Problem(
                400, "malformed-json", "Malformed JSON", "the request body is not valid JSON"
            ) from exc
        summary = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()
        )
        raise Problem(400, "malformed-push", "Not a Pub/Sub push envelope", summary[:1000]) from exc


async def _dead_letter(dead_letters: DeadLetters, envelope: PushEnvelope, reason: str) -> Response:
    """Acks a poison message (204) only once its copy is on the dead-letter topic; 503 when
    it cannot be put there, so that Pub/Sub pushes it again and nothing is lost."""
    message = envelope.message
    logger.error(
        "dead-lettering pushed message %s from %s (delivery %s): %s",
        message.message_id,
        envelope.subscription,
        envelope.delivery_attempt or "?",
        reason,
    )
    try:
        await dead_letters.put(_original_data(envelope), _copy_attributes(envelope), reason)
    except BrokerUnavailable as exc:
        logger.warning(
            "cannot dead-letter pushed message %s: %s; Pub/Sub will push it again",
            message.message_id,
            exc.reason,
        )
        raise Problem(
            503,
            "dead-letter-unavailable",
            "Dead-letter topic unavailable",
            f"message {message.message_id} cannot be put on the dead-letter topic now; "
            "push it again later",
            headers={"Retry-After": str(exc.retry_after_seconds)},
        ) from exc
    return Response(status_code=204)


def _original_data(envelope: PushEnvelope) -> bytes:
    """The message's bytes; the ``data`` text itself when it is not base64."""
    try:
        return envelope.message.decoded_data()
    except ValueError:
        return envelope.message.data.encode()


def _copy_attributes(envelope: PushEnvelope) -> Mapping[str, str]:
    message = envelope.message
    return dead_letter_attributes(
        message.attributes, message.message_id, envelope.subscription, envelope.delivery_attempt
    )
