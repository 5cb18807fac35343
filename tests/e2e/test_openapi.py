"""The API describes its errors: declared in OpenAPI as the problems they are, and a 405 names
the methods the path serves; every GET answers HEAD."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import jsonschema
import pytest

from tests.e2e.conftest import ApiFactory, wait_for_status

PROBLEM_JSON = "application/problem+json"


@pytest.fixture
async def api(api_factory: ApiFactory) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await api_factory()
    return client


async def document(api: httpx.AsyncClient) -> dict[str, Any]:
    answer = await api.get("/openapi.json")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


async def test_every_error_is_declared_as_a_problem(api: httpx.AsyncClient) -> None:
    paths = (await document(api))["paths"]
    errors = [
        (path, method, status, response)
        for path, operations in paths.items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if int(status) >= 400
    ]
    assert errors
    for path, method, status, response in errors:
        assert list(response["content"]) == ["application/problem+json"], (path, method, status)
        schema = response["content"]["application/problem+json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Problem"}, (path, method, status)


async def test_submit_declares_what_it_answers(api: httpx.AsyncClient) -> None:
    submit = (await document(api))["paths"]["/v1/tasks"]["post"]
    assert set(submit["responses"]) == {
        "200",
        "201",
        "400",
        "401",
        "409",
        "413",
        "415",
        "422",
        "503",
    }
    assert "Location" in submit["responses"]["201"]["headers"]
    assert "Idempotent-Replayed" in submit["responses"]["200"]["headers"]
    [key] = [p for p in submit["parameters"] if p["name"] == "idempotency-key"]
    assert key["schema"]["pattern"] == r"^[\x21-\x7e]{1,255}$"
    assert submit["security"] == [{"bearer": []}, {}]  # no API keys: the key or nothing


async def test_with_api_keys_every_v1_operation_requires_the_key(
    api_factory: ApiFactory,
) -> None:
    keyed = await api_factory(api_keys="alice:alice-key")
    paths = (await document(keyed))["paths"]
    securities = {
        (path, method): operation.get("security")
        for path, operations in paths.items()
        for method, operation in operations.items()
    }
    assert securities[("/v1/tasks", "post")] == [{"bearer": []}]
    for (path, method), security in securities.items():
        expected = [{"bearer": []}] if path.startswith("/v1/") else None
        assert security == expected, (path, method)


async def test_creating_a_schedule_declares_what_it_answers(api: httpx.AsyncClient) -> None:
    create = (await document(api))["paths"]["/v1/schedules"]["post"]
    assert set(create["responses"]) == {"201", "400", "401", "409", "413", "415", "422", "503"}
    assert "malformed-json" in create["responses"]["400"]["description"]
    assert "too-many-schedules" in create["responses"]["409"]["description"]
    assert "invalid-schedule" in create["responses"]["422"]["description"]
    assert "Location" in create["responses"]["201"]["headers"]
    malformed = await api.post(
        "/v1/schedules", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400


async def test_answered_problems_match_the_declared_schema(api: httpx.AsyncClient) -> None:
    problem = (await document(api))["components"]["schemas"]["Problem"]
    answers = [
        await api.get(f"/v1/tasks/{uuid.uuid4()}"),
        await api.post("/v1/tasks", json={"kind": "echo", "max_attempts": 0}),
        await api.post("/v1/tasks", content=b"{", headers={"Content-Type": "application/json"}),
        await api.get("/v1/tasks", params={"cursor": "forged"}),
        await api.post("/v1/tasks", json={"kind": "echo", "payload": {"k": "\u0000"}}),
        await api.post("/v1/tasks/batch", json={"tasks": [{"kind": "echo"}, {"kind": "-"}]}),
    ]
    assert [answer.status_code for answer in answers] == [404, 422, 400, 400, 422, 422]
    for answer in answers:
        assert answer.headers["content-type"] == "application/problem+json"
        jsonschema.validate(answer.json(), problem)


async def test_every_route_with_a_body_declares_the_400_of_a_body_that_is_not_json(
    api: httpx.AsyncClient,
) -> None:
    paths = (await document(api))["paths"]
    with_body = [
        (path, method, operation)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]
    assert len(with_body) >= 3
    for path, method, operation in with_body:
        assert "400" in operation["responses"], (path, method)
    answer = await api.post(
        "/v1/schedules", content=b"\x00", headers={"Content-Type": "application/json"}
    )
    assert (answer.status_code, answer.json()["type"]) == (400, "/problems/malformed-json")


async def test_a_method_not_allowed_names_every_method_the_path_serves(
    api: httpx.AsyncClient,
) -> None:
    task = f"/v1/tasks/{uuid.uuid4()}"
    for method, path, allowed in [
        ("OPTIONS", "/v1/tasks", "GET, HEAD, POST"),
        ("DELETE", "/v1/tasks", "GET, HEAD, POST"),
        ("PUT", task, "GET, HEAD, DELETE"),
        ("GET", f"{task}/cancel", "POST"),
        ("HEAD", f"{task}/retry", "POST"),
        ("POST", "/v1/stats", "GET, HEAD"),
        ("PUT", "/healthz", "GET, HEAD"),
        # "batch" is no task id: the path is the batch route's, which serves POST only.
        ("GET", "/v1/tasks/batch", "POST"),
        ("HEAD", "/v1/tasks/batch", "POST"),
        ("DELETE", "/v1/tasks/batch", "POST"),
    ]:
        answer = await api.request(method, path)
        assert (answer.status_code, answer.headers.get("allow")) == (405, allowed), (method, path)
        assert answer.headers["content-type"] == "application/problem+json"


async def test_the_health_checks_answer_head_and_readiness_declares_its_503(
    api: httpx.AsyncClient,
) -> None:
    for path in ("/healthz", "/readyz"):
        answer = await api.head(path)
        assert (answer.status_code, answer.content) == (200, b""), path
    paths = (await document(api))["paths"]
    ready = paths["/readyz"]["get"]["responses"]
    assert list(ready["503"]["content"]) == ["application/problem+json"]
    ids = [operation["operationId"] for item in paths.values() for operation in item.values()]
    assert len(ids) == len(set(ids))  # one operation per route and method


async def test_the_docs_pages_load_everything_from_this_server(api: httpx.AsyncClient) -> None:
    """Swagger UI and ReDoc come with the server: the pages work on a network with no way
    out, and send nothing of the API's to a CDN."""
    for page in ("/docs", "/redoc"):
        answer = await api.get(page)
        assert answer.status_code == 200, page
        assert answer.headers["content-type"].startswith("text/html")
        loaded = re.findall(r'(?:src|href)="([^"]*)"', answer.text)
        assert any(url.endswith(".js") for url in loaded), answer.text
        for url in loaded:
            assert url.startswith("/"), f"{page} loads {url} from elsewhere"
            assert (await api.get(url)).status_code == 200, url
        head = await api.head(page)
        assert (head.status_code, head.content) == (200, b""), page


async def test_every_get_route_answers_head_with_its_status_and_headers(
    api: httpx.AsyncClient,
) -> None:
    task_id = (await api.post("/v1/tasks", json={"kind": "echo"})).json()["id"]
    await wait_for_status(api, task_id, "SUCCEEDED")
    schedule = {"cron": "@daily", "kind": "echo"}
    schedule_id = (await api.post("/v1/schedules", json=schedule)).json()["id"]
    items = (await document(api))["paths"]
    assert not [path for path, item in items.items() if "head" in item]  # the GET describes it
    paths = [path for path, item in items.items() if "get" in item]
    assert {"/v1/tasks", "/v1/tasks/{task_id}", "/v1/stats", "/v1/workers"} <= set(paths)
    for path in [*paths, "/metrics", "/openapi.json"]:
        url = path.format(task_id=task_id, schedule_id=schedule_id)
        got, head = await api.get(url), await api.head(url)
        assert (head.status_code, head.content) == (got.status_code, b""), path
        # The length of a document read a moment apart (metrics, heartbeats) may differ.
        assert int(head.headers["content-length"]) > 0, path
        assert _lasting(head.headers) == _lasting(got.headers), path


async def test_head_is_authenticated_and_answers_the_problems_of_get(
    api_factory: ApiFactory,
) -> None:
    api = await api_factory(api_keys={"alice": "alice-key"})
    alice = {"Authorization": "Bearer alice-key"}
    unknown = f"/v1/tasks/{uuid.uuid4()}"
    for path, headers, status in [
        (unknown, {}, 401),
        ("/v1/tasks", {}, 401),
        ("/v1/stats", {"Authorization": "Bearer mallory-key"}, 401),
        (unknown, alice, 404),
        ("/v1/tasks?limit=0", alice, 422),
    ]:
        got = await api.get(path, headers=headers)
        head = await api.head(path, headers=headers)
        assert (got.status_code, head.status_code, head.content) == (status, status, b""), path
        assert head.headers["content-type"] == PROBLEM_JSON, path
        assert _lasting(head.headers) == _lasting(got.headers), path


def _lasting(headers: httpx.Headers) -> dict[str, str]:
    """The headers an answer repeats: not its request id, nor its length."""
    return {
        name: value
        for name, value in headers.items()
        if name not in ("x-request-id", "content-length")
    }


async def test_a_kind_is_one_the_deployment_registered_with_the_payload_it_takes(
    api: httpx.AsyncClient,
) -> None:
    schemas = (await document(api))["components"]["schemas"]
    kinds = {kind["name"]: kind for kind in (await api.get("/v1/kinds")).json()["items"]}
    for body in ("TaskIn", "TaskBatchItemIn", "ScheduleIn"):
        assert schemas[body]["properties"]["kind"]["enum"] == sorted(kinds), body
        variants = {variant["title"]: variant for variant in schemas[body]["oneOf"]}
        assert set(variants) == set(kinds), body
        for name, variant in variants.items():
            assert variant["properties"]["kind"] == {"const": name}
            declared = variant["properties"].get("payload")
            assert declared == kinds[name]["payload_schema"], (body, name)
        assert "payload" not in variants["echo"]["properties"]  # any payload
        assert variants["sleep"]["required"] == ["payload"]  # it needs seconds
        assert "required" not in variants["fail"]  # every field has a default


async def test_a_payload_schema_s_own_definitions_are_lifted_into_the_components(
    api_factory: ApiFactory,
) -> None:
    api = await api_factory(handler_modules=["tests.e2e.nested_kind"])
    schemas = (await document(api))["components"]["schemas"]
    [variant] = [v for v in schemas["TaskIn"]["oneOf"] if v["title"] == "resize"]
    payload = variant["properties"]["payload"]
    assert payload["properties"]["size"] == {"$ref": "#/components/schemas/resize.Size"}
    assert "$defs" not in payload
    assert schemas["resize.Size"]["properties"]["width"]["type"] == "integer"
    assert variant["required"] == ["payload"]


async def test_what_names_a_task_or_a_schedule_links_to_what_can_be_done_with_it(
    api: httpx.AsyncClient,
) -> None:
    paths = (await document(api))["paths"]
    operation_ids = {
        (path, method): operation["operationId"]
        for path, operations in paths.items()
        for method, operation in operations.items()
    }
    submitted = paths["/v1/tasks"]["post"]["responses"]["201"]["links"]
    assert submitted["cancel"] == {
        "operationId": operation_ids[("/v1/tasks/{task_id}/cancel", "post")],
        "parameters": {"task_id": "$response.body#/id"},
    }
    assert set(submitted) == {"task", "cancel", "retry", "delete"}
    batch = paths["/v1/tasks/batch"]["post"]["responses"]["201"]["links"]
    assert batch["task"]["parameters"] == {"task_id": "$response.body#/items/0/id"}
    created = paths["/v1/schedules"]["post"]["responses"]["201"]["links"]
    assert set(created) == {"schedule", "pause", "resume", "delete"}
    for links in (submitted, batch, created):
        for link in links.values():
            assert link["operationId"] in operation_ids.values()
