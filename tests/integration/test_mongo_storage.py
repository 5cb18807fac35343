"""What the MongoDB storage does beyond the shared contract: outbox messages inside task
documents, claims that expire with a dead process, and 503 while the server is away."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager

from adapters.storage.mongo import MongoStorage
from adapters.storage.mongo import storage as mongo_storage
from adapters.system import Uuid7Generator
from application.errors import DuplicateIdempotencyKey, StorageUnavailable
from application.messages import RunTaskMessage, TaskEventMessage, event_messages
from application.ports.task_repository import TaskQuery
from domain.schedule import Schedule, TaskTemplate
from domain.values import DEFAULT_QUEUE, TaskStatus
from entrypoints.container import create_container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.factories import T0, make_message, make_task, new_id
from tests.integration.tcp_proxy import TcpProxy
from tests.polling import eventually


@pytest.fixture
async def storage(mongo_url: str) -> AsyncIterator[MongoStorage]:
    store = MongoStorage.from_url(mongo_url)
    await store.prepare()
    yield store
    await store.close()


def run_message(task: object) -> object:
    return make_message(body=RunTaskMessage(task.id).encode())  # type: ignore[attr-defined]


async def test_a_submitted_task_carries_its_message_until_the_relay_marks_it_sent(
    storage: MongoStorage,
) -> None:
    task = make_task()
    message = run_message(task)
    async with storage.unit_of_work() as uow:
        await uow.tasks.add(task)
        await uow.outbox.put(message)
        await uow.commit()
    document = await storage.tasks.find_one({"_id": str(task.id)})
    assert document is not None and document["outbox_count"] == 1
    assert await storage.outbox.count_documents({}) == 0

    first, second = storage.unit_of_work(), storage.unit_of_work()
    async with first, second:
        assert [m.id for m in await first.outbox.pending(10)] == [message.id]
        assert list(await second.outbox.pending(10)) == []
        await first.outbox.mark_sent([message])
        await first.commit()
    async with storage.unit_of_work() as uow:
        assert list(await uow.outbox.pending(10)) == []
    document = await storage.tasks.find_one({"_id": str(task.id)})
    assert document is not None and not document.get("outbox")
    assert "outbox_count" not in document


async def test_each_message_of_a_sweep_rides_in_its_own_task(storage: MongoStorage) -> None:
    tasks = [make_task(run_at=T0 + timedelta(seconds=n + 1)) for n in range(3)]
    async with storage.unit_of_work() as uow:
        for task in tasks:
            await uow.tasks.add(task)
        await uow.commit()
    async with storage.unit_of_work() as uow:
        due = await uow.tasks.due(T0 + timedelta(hours=1), 10)
        for task in due:
            task.enqueue(T0 + timedelta(hours=1))
            await uow.tasks.save(task)
        for task in reversed(due):
            await uow.outbox.put(run_message(task))
        await uow.commit()
    async for document in storage.tasks.find({}):
        (body,) = [fields["body"] for fields in document["outbox"].values()]
        assert RunTaskMessage.decode(bytes(body)).task_id.hex == document["_id"].replace("-", "")


async def test_the_event_of_each_outcome_rides_in_the_task_it_finished(
    storage: MongoStorage,
) -> None:
    """Written with the outcome in one document write: never an outcome without its event."""
    tasks = [make_task() for _ in range(3)]
    async with storage.unit_of_work() as uow:
        for task in tasks:
            await uow.tasks.add(task)
        await uow.commit()
    async with storage.unit_of_work() as uow:
        finished = list((await uow.tasks.get_many([task.id for task in tasks])).values())
        for task in finished:
            task.start(T0)
            task.succeed(T0, {"ok": True})
            await uow.tasks.save(task)
        recorded = [event for task in finished for event in task.pull_events()]
        for message in reversed(event_messages(finished, recorded, Uuid7Generator(), T0)):
            await uow.outbox.put(message)
        await uow.commit()
    assert await storage.outbox.count_documents({}) == 0
    async for document in storage.tasks.find({}):
        (body,) = [fields["body"] for fields in document["outbox"].values()]
        assert str(TaskEventMessage.decode(bytes(body)).task_id) == document["_id"]


async def test_a_message_stays_pending_when_it_arrives_while_the_relay_holds_the_task(
    storage: MongoStorage,
) -> None:
    task = make_task()
    first_message = run_message(task)
    async with storage.unit_of_work() as uow:
        await uow.tasks.add(task)
        await uow.outbox.put(first_message)
        await uow.commit()
    async with storage.unit_of_work() as relay:
        assert [m.id for m in await relay.outbox.pending(10)] == [first_message.id]
        async with storage.unit_of_work() as uow:
            loaded = await uow.tasks.get(task.id)
            assert loaded is not None
            loaded.start(T0)
            await uow.tasks.save(loaded)
            later_message = make_message()
            await uow.outbox.put(later_message)
            await uow.commit()
        await relay.outbox.mark_sent([first_message])
        await relay.commit()
    async with storage.unit_of_work() as uow:
        assert [m.id for m in await uow.outbox.pending(10)] == [later_message.id]


async def test_tasks_and_schedules_stored_before_queues_are_in_the_default_queue(
    storage: MongoStorage,
) -> None:
    task = make_task(queue="images")
    schedule = Schedule(
        id=new_id(),
        owner="alice",
        name=None,
        cron="0 * * * *",
        timezone="UTC",
        task=TaskTemplate(kind="echo", payload=None, queue="images"),
        next_run_at=T0,
        created_at=T0,
        updated_at=T0,
    )
    async with storage.unit_of_work() as uow:
        await uow.tasks.add(task)
        await uow.commit()
    await storage.schedules().add(schedule)
    # As written before queues were: without the field.
    await storage.tasks.update_one({"_id": str(task.id)}, {"$unset": {"queue": ""}})
    await storage.schedules_collection.update_one(
        {"_id": str(schedule.id)}, {"$unset": {"queue": ""}}
    )
    async with storage.unit_of_work() as uow:
        stored = await uow.tasks.get(task.id)
        stats = await uow.tasks.stats(None)
        listed = await uow.tasks.list(TaskQuery("alice", limit=10, queue=DEFAULT_QUEUE))
        in_images = await uow.tasks.list(TaskQuery("alice", limit=10, queue="images"))
    stored_schedule = await storage.schedules().get("alice", schedule.id)
    assert stored is not None and stored.queue == DEFAULT_QUEUE
    assert stats.by_queue == {(TaskStatus.QUEUED, DEFAULT_QUEUE): 1}
    assert list(stats.oldest_queued_by_queue) == [DEFAULT_QUEUE]
    assert ([t.id for t in listed], in_images) == ([task.id], [])
    assert stored_schedule is not None and stored_schedule.task.queue == DEFAULT_QUEUE


async def test_claims_of_a_unit_that_never_ended_expire(
    storage: MongoStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mongo_storage, "CLAIM_LEASE", timedelta(0))
    tasks = [make_task(run_at=T0 + timedelta(seconds=1)) for _ in range(2)]
    async with storage.unit_of_work() as uow:
        for task in tasks:
            await uow.tasks.add(task)
        await uow.commit()
    abandoned = storage.unit_of_work()
    assert len(await abandoned.tasks.due(T0 + timedelta(hours=1), 10)) == 2
    async with storage.unit_of_work() as uow:
        assert len(await uow.tasks.due(T0 + timedelta(hours=1), 10)) == 2


async def test_an_unreachable_server_is_reported_unavailable_within_seconds() -> None:
    storage = MongoStorage.from_url("mongodb://127.0.0.1:9/taskport?serverSelectionTimeoutMS=300")
    try:
        with pytest.raises(StorageUnavailable):
            await storage.check()
        with pytest.raises(StorageUnavailable):
            async with storage.unit_of_work() as uow:
                await uow.tasks.get(make_task().id)
    finally:
        await storage.close()


@pytest.fixture
async def proxy(mongo_url: str) -> AsyncIterator[TcpProxy]:
    running = TcpProxy(target_port=urlsplit(mongo_url).port or 27017)
    await running.start()
    yield running
    await running.stop()


async def test_the_api_answers_503_while_mongodb_is_away_then_recovers(
    proxy: TcpProxy, mongo_url: str
) -> None:
    parts = urlsplit(mongo_url)
    url = f"mongodb://127.0.0.1:{proxy.port}{parts.path}?serverSelectionTimeoutMS=500"
    settings = Settings(storage_url=url, sweep_interval_seconds=0.1)
    app = create_app(create_container(settings))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://taskport") as client:
            submitted = await client.post("/v1/tasks", json={"kind": "echo", "payload": {}})
            assert submitted.status_code == 201
            location = f"/v1/tasks/{submitted.json()['id']}"

            await proxy.stop()
            for response in (
                await client.post("/v1/tasks", json={"kind": "echo", "payload": {}}),
                await client.get(location),
                await client.get("/readyz"),
            ):
                assert response.status_code == 503, response.text
                assert int(response.headers["retry-after"]) >= 1

            await proxy.start()

            async def served_again() -> bool:
                response = await client.get(location)
                return response.status_code == 200 and response.json()["status"] == "SUCCEEDED"

            await eventually(served_again, within=20)


async def test_the_keys_of_tasks_taken_back_are_never_found(
    storage: MongoStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A unit whose second task is refused (its key is taken) takes the first back: a
    concurrent request looking for the first one's key meanwhile does not find it, and
    cannot answer with a task that is about to disappear."""
    async with storage.unit_of_work() as uow:
        await uow.tasks.add(make_task(idempotency_key="taken"))
        await uow.commit()
    found_meanwhile: list[object] = []
    delete_many = storage.tasks.delete_many

    async def looked_up_first(*args: object, **kwargs: object) -> object:
        async with storage.unit_of_work() as other:
            found_meanwhile.append(await other.tasks.find_by_idempotency_key("alice", "fresh"))
            found_meanwhile.append(await other.tasks.find_by_idempotency_keys("alice", ["fresh"]))
        return await delete_many(*args, **kwargs)

    monkeypatch.setattr(storage.tasks, "delete_many", looked_up_first)
    with pytest.raises(DuplicateIdempotencyKey):
        async with storage.unit_of_work() as uow:
            await uow.tasks.add(make_task(idempotency_key="fresh"))
            await uow.tasks.add(make_task(idempotency_key="taken"))
            await uow.commit()
    assert found_meanwhile == [None, {}]

    async with storage.unit_of_work() as uow:  # a unit that got all of its tasks in
        both = [make_task(idempotency_key="fresh"), make_task(idempotency_key="other")]
        for task in both:
            await uow.tasks.add(task)
        await uow.commit()
    async with storage.unit_of_work() as uow:
        found = await uow.tasks.find_by_idempotency_keys("alice", ["fresh", "other"])
    assert {key: task.id for key, task in found.items()} == {
        "fresh": both[0].id,
        "other": both[1].id,
    }
