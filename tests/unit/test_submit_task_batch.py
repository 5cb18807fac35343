"""Batch submit on the in-memory adapters, wired by the real container."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.storage.memory.storage import MemoryTaskRepository
from application.errors import IdempotencyKeyReused, InvalidBatch
from application.ports.task_repository import TaskQuery
from application.use_cases.submit_task import SubmitTask
from application.use_cases.submit_task_batch import MAX_BATCH_SIZE, SubmitTaskBatch
from entrypoints.container import Container, create_container
from entrypoints.settings import Settings


@pytest.fixture
def app() -> Container:
    return create_container(Settings(storage_url="memory://"))


def item(kind: str = "echo", payload: Any = None, **fields: Any) -> SubmitTask:
    return SubmitTask("alice", kind, {"n": 1} if payload is None else payload, **fields)


async def stored(app: Container) -> tuple[list[Any], int]:
    """The tasks of alice, oldest first, and the outbox messages not yet sent."""
    page = await app.list_tasks()(TaskQuery("alice", limit=1000))
    async with app.uow()() as uow:
        backlog = await uow.outbox.backlog()
    return list(reversed(page.items)), backlog


async def test_a_batch_stores_every_task_with_its_dispatch_message_in_order(
    app: Container,
) -> None:
    items = tuple(item(payload={"n": n}) for n in range(3))
    answers = await app.submit_task_batch()(SubmitTaskBatch(items))
    assert [answer.task.payload for answer in answers] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert all(answer.created for answer in answers)
    tasks, backlog = await stored(app)
    assert [task.id for task in tasks] == [answer.task.id for answer in answers]
    assert backlog == 3


async def test_bad_items_refuse_the_whole_batch_each_named_by_its_index(
    app: Container,
) -> None:
    items = (item(), item("nope"), item("sleep", {"seconds": -1}), item(max_attempts=1000))
    with pytest.raises(InvalidBatch) as refused:
        await app.submit_task_batch()(SubmitTaskBatch(items))
    assert [index for index, _ in refused.value.problems] == [1, 2, 3]
    assert await stored(app) == ([], 0)


async def test_a_key_given_twice_in_one_batch_refuses_it(app: Container) -> None:
    items = (item(idempotency_key="a"), item(), item(idempotency_key="a"))
    with pytest.raises(InvalidBatch) as refused:
        await app.submit_task_batch()(SubmitTaskBatch(items))
    assert refused.value.problems == [(2, "idempotency key 'a' is also the key of item 0")]
    assert await stored(app) == ([], 0)


@pytest.mark.parametrize("size", [0, MAX_BATCH_SIZE + 1])
async def test_a_batch_holds_one_to_the_limit_of_tasks(app: Container, size: int) -> None:
    with pytest.raises(InvalidBatch, match="1 to 1000 tasks"):
        await app.submit_task_batch()(SubmitTaskBatch(tuple(item() for _ in range(size))))
    assert await stored(app) == ([], 0)


async def test_an_item_repeating_an_earlier_request_gets_its_task_and_the_rest_is_created(
    app: Container,
) -> None:
    earlier = await app.submit_task()(item(idempotency_key="k1"))
    answers = await app.submit_task_batch()(
        SubmitTaskBatch((item(payload={"n": 2}), item(idempotency_key="k1")))
    )
    assert [answer.created for answer in answers] == [True, False]
    assert answers[1].task.id == earlier.task.id
    tasks, backlog = await stored(app)
    assert [task.id for task in tasks] == [earlier.task.id, answers[0].task.id]
    assert backlog == 2


async def test_a_key_used_for_a_different_request_refuses_the_whole_batch(
    app: Container,
) -> None:
    earlier = await app.submit_task()(item(idempotency_key="k1"))
    with pytest.raises(IdempotencyKeyReused):
        await app.submit_task_batch()(
            SubmitTaskBatch((item(), item(payload={"other": 1}, idempotency_key="k1")))
        )
    tasks, backlog = await stored(app)
    assert ([task.id for task in tasks], backlog) == ([earlier.task.id], 1)


async def test_a_key_taken_between_lookup_and_commit_is_answered_with_its_task(
    app: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    earlier = await app.submit_task()(item(idempotency_key="k1"))
    find = MemoryTaskRepository.find_by_idempotency_key
    lookups = 0

    async def late_lookup(self: MemoryTaskRepository, owner: str, key: str) -> Any:
        # The first lookup runs as if the other request had not committed yet.
        nonlocal lookups
        lookups += 1
        return None if lookups == 1 else await find(self, owner, key)

    monkeypatch.setattr(MemoryTaskRepository, "find_by_idempotency_key", late_lookup)
    answers = await app.submit_task_batch()(
        SubmitTaskBatch((item(idempotency_key="k1"), item(payload={"n": 2})))
    )
    assert [answer.created for answer in answers] == [False, True]
    assert answers[0].task.id == earlier.task.id
    tasks, backlog = await stored(app)
    assert len(tasks) == 2
    assert backlog == 2  # the retried commit staged the new task's message again


async def test_keys_taken_one_after_another_while_it_retries_are_all_answered_with_their_tasks(
    app: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = ["k1", "k2", "k3"]
    earlier = [await app.submit_task()(item(idempotency_key=key)) for key in keys]
    find = MemoryTaskRepository.find_by_idempotency_keys
    lookups = 0

    async def late_lookups(self: MemoryTaskRepository, owner: str, wanted: Any) -> Any:
        # Each attempt's lookup sees one more of the other requests' commits.
        nonlocal lookups
        found = await find(self, owner, wanted)
        seen = keys[:lookups]
        lookups += 1
        return {key: task for key, task in found.items() if key in seen}

    monkeypatch.setattr(MemoryTaskRepository, "find_by_idempotency_keys", late_lookups)
    answers = await app.submit_task_batch()(
        SubmitTaskBatch(tuple(item(idempotency_key=key) for key in keys))
    )
    assert [answer.task.id for answer in answers] == [e.task.id for e in earlier]
    assert lookups == 4
    tasks, _ = await stored(app)
    assert len(tasks) == 3
