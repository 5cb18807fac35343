"""With a task retention, finished tasks are deleted once unchanged for that long."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import ApiFactory, wait_for_status
from tests.polling import eventually


async def test_a_finished_task_is_deleted_after_the_retention_and_its_key_is_free(
    api_factory: ApiFactory,
) -> None:
    api: httpx.AsyncClient = await api_factory(
        task_retention_seconds=0.3, outbox_prune_interval_seconds=0.05
    )
    key = {"Idempotency-Key": "order-7"}
    done = (await api.post("/v1/tasks", json={"kind": "echo"}, headers=key)).json()
    later = (
        await api.post("/v1/tasks", json={"kind": "echo", "run_at": "2100-01-01T00:00:00Z"})
    ).json()
    await wait_for_status(api, done["id"], "SUCCEEDED")

    async def deleted() -> bool:
        return (await api.get(f"/v1/tasks/{done['id']}")).status_code == 404

    await eventually(deleted)
    assert (await api.get(f"/v1/tasks/{later['id']}")).json()["status"] == "SCHEDULED"
    again = await api.post("/v1/tasks", json={"kind": "echo"}, headers=key)
    assert again.status_code == 201 and again.json()["id"] != done["id"]
