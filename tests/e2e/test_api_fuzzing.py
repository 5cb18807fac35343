"""Every operation of the OpenAPI document, fuzzed by Schemathesis against a served API.

``taskport serve`` runs on the embedded default with an API key set, and holds a task that
succeeded, one running, one scheduled, one failed, and a schedule. For each operation,
Schemathesis generates requests from the document, some that follow it and some that break
it; those that follow it name the stored tasks and schedule, so that they reach more than a
404. Every answer is checked: never a 5xx; a status, a content type, headers and a body the
document declares for that operation; and a 401 when the same request is sent without the
key or with a wrong one. Schemathesis's command line then runs its coverage phase (the
edge cases of every parameter and field) against the same server, with the same checks.
The server's log must show no unhandled error either.

The examples are derandomized, so a run in CI meets the same requests every time. To look
further, run Schemathesis itself against a server (``make run``):
``uv run st run http://127.0.0.1:8000/openapi.json --checks all``. Its
``positive_data_acceptance`` check then also reports what the document allows and a rule
of the deployment refuses: a cursor this server did not issue (400), a callback to a host
``TASKPORT_HTTP_ALLOWED_HOSTS`` does not name (422).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy, one_of
from schemathesis import GenerationMode, checks
from schemathesis.schemas import APIOperation

from tests.e2e.server import ServerProcess, serving_embedded

API_KEY = "fuzzing-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
EXAMPLES = 30
"""Requests per operation and mode."""
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.ignored_auth,
]
CHECKS_OF_BROKEN = [*CHECKS, checks.negative_data_rejection]
"""For requests that break the document: also, that they are refused."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "TASKPORT_API_KEYS": f"fuzzer:{API_KEY}",
        "TASKPORT_SHUTDOWN_GRACE_SECONDS": "1",  # the sleeping task is handed back at once
    }
    with serving_embedded(tmp_path_factory.mktemp("fuzzing"), env) as server:
        yield server


@pytest.fixture(scope="module")
def document(served: ServerProcess) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{served.base_url}/openapi.json")


@pytest.fixture(scope="module")
def stored(served: ServerProcess) -> dict[str, list[str]]:
    """Ids of tasks and a schedule the server holds, by the path parameter they fill: a
    task that succeeded, one running, one scheduled, one failed; a schedule."""
    submits = [
        {"kind": "echo", "payload": {"n": 1}},
        {"kind": "sleep", "payload": {"seconds": 3600}},
        {"kind": "echo", "payload": {}, "run_at": "2100-01-01T00:00:00Z"},
        {"kind": "fail", "payload": {"permanent": True}},
    ]
    schedule = {"cron": "0 3 * * *", "kind": "echo", "payload": {}}
    with httpx.Client(base_url=served.base_url, headers=AUTH) as client:
        tasks = [client.post("/v1/tasks", json=submit) for submit in submits]
        created = client.post("/v1/schedules", json=schedule)
    assert [answer.status_code for answer in [*tasks, created]] == [201] * 5
    return {
        "task_id": [answer.json()["id"] for answer in tasks],
        "schedule_id": [created.json()["id"]],
    }


def strategy(
    operation: APIOperation, mode: GenerationMode, stored: dict[str, list[str]]
) -> SearchStrategy[schemathesis.Case]:
    """Requests to ``operation``; positive ones name the stored tasks and schedules (found,
    in every state), where requests with ids of their own would meet only 404s."""
    names = [parameter.name for parameter in operation.path_parameters]
    if mode is GenerationMode.NEGATIVE or not names:
        return operation.as_strategy(generation_mode=mode)
    [name] = names
    # Reads of the running and the scheduled task would wait up to a minute with ?wait=.
    waits = any(parameter.name == "wait" for parameter in operation.query)
    query = {"wait": 0} if waits else None
    return one_of(
        operation.as_strategy(generation_mode=mode, path_parameters={name: known}, query=query)
        for known in stored[name]
    )


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_operation_answers_a_server_error_or_what_it_does_not_declare(
    document: schemathesis.BaseSchema, stored: dict[str, list[str]], mode: GenerationMode
) -> None:
    """Positive requests follow the document; negative ones break it somewhere (a wrong
    type, a missing field, a value out of range), and must meet a declared 4xx."""
    operations = [result.ok() for result in document.get_all_operations()]
    assert len(operations) >= 18
    if mode is GenerationMode.NEGATIVE:  # what takes nothing cannot be asked wrongly
        operations = [op for op in operations if op.path_parameters or op.query or op.body]
    operations.sort(key=lambda op: op.method == "delete")  # what is stored is deleted last
    checked = CHECKS_OF_BROKEN if mode is GenerationMode.NEGATIVE else CHECKS
    for operation in operations:

        @given(case=strategy(operation, mode, stored))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_as_declared(case: schemathesis.Case) -> None:
            case.validate_response(case.call(headers=AUTH), checks=checked)

        try:
            answers_as_declared()
        except Exception as exc:
            exc.add_note(f"{operation.method.upper()} {operation.path}, {mode.value} requests")
            raise


def test_the_edge_cases_of_every_operation_answer_as_declared(
    served: ServerProcess, tmp_path: Path
) -> None:
    """Schemathesis's own coverage phase, run by its command line: the document's examples
    and, for every parameter and field, the values at and past its limits, of another type,
    or missing. It is deterministic; it found that a builtin kind took ``false`` for a
    number. Run in a folder of its own: it keeps what it found failing there."""
    named = ",".join(check.__name__ for check in CHECKS_OF_BROKEN)
    ran = subprocess.run(
        [str(Path(sys.executable).with_name("st")), "run", f"{served.base_url}/openapi.json",
         "--phases", "examples,coverage", "--checks", named,
         "--header", f"Authorization: Bearer {API_KEY}",
         "--workers", "1", "--seed", "1", "--generation-database", "none", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-6000:] + ran.stderr[-2000:]
    assert "Coverage" in ran.stdout


def test_the_fuzzed_server_logged_no_unexpected_error(served: ServerProcess) -> None:
    """Runs after the fuzzing (pytest keeps a module's order): an exception nothing answered
    is logged by the server even where the client saw a 4xx."""
    log = served.log.read_text(errors="replace")
    assert "unhandled error" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
