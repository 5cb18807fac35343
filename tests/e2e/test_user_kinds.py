"""Kinds of the user's own: loaded from modules and entry points, validated at submit,
reporting progress while they run."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from adapters.handlers.loader import KindLoadError
from adapters.handlers.registry import Kind
from adapters.handlers.sdk import task_kind
from entrypoints.container import create_container
from entrypoints.settings import Settings
from tests.e2e.conftest import ApiFactory, wait_for_status
from tests.polling import eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "thumbnails"


def write_module(directory: Path, name: str, source: str) -> str:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def install_fake_distribution(directory: Path, entry_points: str) -> None:
    """A dist-info on sys.path is what importlib.metadata finds for an installed package."""
    dist_info = directory / "taskport_thumbnails-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: taskport-thumbnails\nVersion: 0.1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [name for name in sys.modules if name.startswith("user_kinds_")]:
        del sys.modules[name]


@pytest.fixture
def thumbnails_installed(on_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    install_fake_distribution(
        on_path, "[taskport.handlers]\nthumbnails = taskport_thumbnails.kinds\n"
    )


SHOUT = """
    from adapters.handlers.registry import Kind
    from adapters.handlers.sdk import task_kind

    @task_kind("shout", description="upper-cases payload.text")
    def shout(payload, context):
        return {"text": payload["text"].upper(), "task_id": str(context.task_id)}

    async def whisper(payload, context):
        return {"text": payload["text"].lower()}

    WHISPER = Kind("whisper", whisper, "lower-cases payload.text")
"""


@pytest.mark.usefixtures("thumbnails_installed")
async def test_kinds_of_an_entry_point_and_of_a_handler_module_run(
    api_factory: ApiFactory, on_path: Path
) -> None:
    module = write_module(on_path, "user_kinds_shout", SHOUT)
    api = await api_factory(handler_modules=[module])
    names = {kind["name"] for kind in (await api.get("/v1/kinds")).json()["items"]}
    assert {"echo", "shout", "whisper", "thumbnails.resize", "thumbnails.palette"} <= names

    submitted = {
        "shout": {"text": "hey"},
        "whisper": {"text": "HEY"},
        "thumbnails.resize": {"source": "cat.png", "width": 64, "height": 48},
        "thumbnails.palette": {"colors": ["#FFFFFF", "#000000", "#ffffff"]},
    }
    ids = {}
    for kind, payload in submitted.items():
        created = await api.post("/v1/tasks", json={"kind": kind, "payload": payload})
        assert created.status_code == 201, created.json()
        ids[kind] = created.json()["id"]
    results = {
        kind: (await wait_for_status(api, task_id, "SUCCEEDED", "FAILED"))["result"]
        for kind, task_id in ids.items()
    }
    assert results == {
        "shout": {"text": "HEY", "task_id": ids["shout"]},
        "whisper": {"text": "hey"},
        "thumbnails.resize": {"thumbnail": "cat.png@64x48", "attempt": 1},
        "thumbnails.palette": {"palette": ["#000000", "#ffffff"]},
    }


async def test_as_many_plain_function_handlers_run_at_once_as_the_worker_concurrency(
    api_factory: ApiFactory, on_path: Path
) -> None:
    """Each in a thread of its own: more of them than asyncio gives its default executor,
    which would leave the others waiting, their time limit running."""
    together = min(32, (os.cpu_count() or 1) + 4) + 2
    module = write_module(
        on_path,
        "user_kinds_together",
        f"""
        import threading

        from adapters.handlers.sdk import task_kind

        ALL_IN = threading.Barrier({together})

        @task_kind("together")
        def together(payload, context):
            ALL_IN.wait(timeout=8)  # passes once all of them run at the same time
            return "together"
        """,
    )
    api = await api_factory(handler_modules=[module], worker_concurrency=together)
    ids = []
    for _ in range(together):
        body = {"kind": "together", "payload": {}, "max_attempts": 1}
        ids.append((await api.post("/v1/tasks", json=body)).json()["id"])
    for task_id in ids:
        task = await wait_for_status(api, task_id, "SUCCEEDED", "FAILED")
        assert task["status"] == "SUCCEEDED", task["error"]


STUCK = """
    import threading

    from adapters.handlers.sdk import task_kind

    RELEASED = threading.Event()

    @task_kind("stuck")
    def stuck(payload, context):
        RELEASED.wait(payload["seconds"])  # deaf to context.cancelled
        return "unstuck"

    @task_kind("quick")
    def quick(payload, context):
        return "quick"
"""


async def test_plain_function_handlers_past_their_timeout_leave_the_next_tasks_a_thread(
    api_factory: ApiFactory, on_path: Path
) -> None:
    """A thread cannot be stopped: one whose handler ignores the cancel signal runs on
    after its attempt timed out, and must not keep the next tasks from a thread."""
    concurrency = 2
    outlived = concurrency + min(32, (os.cpu_count() or 1) + 4)
    module = write_module(on_path, "user_kinds_stuck", STUCK)
    released = __import__(module).RELEASED
    api = await api_factory(handler_modules=[module], worker_concurrency=concurrency)
    try:
        stuck = {"kind": "stuck", "payload": {"seconds": 60}, "timeout_seconds": 0.1}
        stuck_ids = [
            (await api.post("/v1/tasks", json={**stuck, "max_attempts": 1})).json()["id"]
            for _ in range(outlived)
        ]
        for task_id in stuck_ids:
            task = await wait_for_status(api, task_id, "SUCCEEDED", "FAILED")
            assert task["error"]["type"] == "Timeout"
        quick = {"kind": "quick", "payload": {}, "timeout_seconds": 5, "max_attempts": 1}
        quick_id = (await api.post("/v1/tasks", json=quick)).json()["id"]
        task = await wait_for_status(api, quick_id, "SUCCEEDED", "FAILED")
        assert (task["status"], task["result"]) == ("SUCCEEDED", "quick"), task["error"]
    finally:
        released.set()


@pytest.mark.usefixtures("thumbnails_installed")
@pytest.mark.parametrize(
    ("kind", "payload", "complaint"),
    [
        ("thumbnails.resize", {"source": "a.png", "width": 0, "height": 1}, "width"),
        ("thumbnails.resize", {"source": "a.png", "height": 1}, "width: Field required"),
        ("thumbnails.palette", {"colors": ["red"]}, "$.colors[0]: 'red' does not match"),
        ("thumbnails.palette", {"colors": ["#ffffff\n"]}, "$.colors[0]: '#ffffff\\n' is too long"),
        ("thumbnails.palette", {"colours": []}, "'colors' is a required property"),
    ],
)
async def test_a_payload_breaking_the_schema_of_its_kind_is_refused_at_submit(
    api_factory: ApiFactory, kind: str, payload: dict[str, object], complaint: str
) -> None:
    api = await api_factory()
    refused = await api.post("/v1/tasks", json={"kind": kind, "payload": payload})
    assert refused.status_code == 422
    problem = refused.json()
    assert problem["type"] == "/problems/invalid-payload"
    assert any(complaint in error["message"] for error in problem["errors"]), problem
    assert (await api.get("/v1/tasks")).json()["items"] == []


@pytest.mark.parametrize("name", ["Shout", "shout\n", "x" * 101])
def test_a_kind_name_the_api_would_refuse_is_refused_at_once(name: str) -> None:
    with pytest.raises(ValueError, match="must be 1-100 characters"):
        task_kind(name)

    async def handler(payload: object, context: object) -> object:
        return payload

    with pytest.raises(ValueError, match="must be 1-100 characters"):
        Kind(name, handler)


def test_a_kind_named_like_a_builtin_stops_the_start(on_path: Path) -> None:
    module = write_module(
        on_path,
        "user_kinds_echo",
        """
        from adapters.handlers.sdk import task_kind

        @task_kind("echo")
        def my_echo(payload, context):
            return payload
        """,
    )
    with pytest.raises(KindLoadError) as refused:
        create_container(Settings(handler_modules=[module]))
    message = str(refused.value)
    assert "'echo' is defined twice" in message
    assert "builtin" in message and "module user_kinds_echo" in message


@pytest.mark.usefixtures("thumbnails_installed")
def test_two_origins_declaring_one_kind_name_stop_the_start(on_path: Path) -> None:
    module = write_module(
        on_path,
        "user_kinds_resize",
        """
        from adapters.handlers.sdk import task_kind

        @task_kind("thumbnails.resize")
        async def resize(payload, context):
            return None
        """,
    )
    with pytest.raises(KindLoadError) as refused:
        create_container(Settings(handler_modules=[module]))
    message = str(refused.value)
    assert "'thumbnails.resize' is defined twice" in message
    assert "module user_kinds_resize" in message
    assert "entry point thumbnails = taskport_thumbnails.kinds" in message


def test_a_handler_module_that_fails_to_import_stops_the_start(on_path: Path) -> None:
    module = write_module(on_path, "user_kinds_broken", "import no_such_library\n")
    with pytest.raises(KindLoadError, match="cannot import handler module 'user_kinds_broken'"):
        create_container(Settings(handler_modules=[module]))
    with pytest.raises(KindLoadError, match="ModuleNotFoundError"):
        create_container(Settings(handler_modules=["user_kinds_missing"]))


def test_an_entry_point_that_fails_to_load_stops_the_start(on_path: Path) -> None:
    install_fake_distribution(on_path, "[taskport.handlers]\nbroken = user_kinds_nowhere:kinds\n")
    with pytest.raises(KindLoadError, match=r"cannot load entry point broken = user_kinds_nowhere"):
        create_container(Settings())


PROGRESS = """
    from adapters.handlers.sdk import task_kind

    @task_kind("steps", payload={"type": "object", "required": ["steps"]})
    def steps(payload, context):
        for step in range(payload["steps"]):
            context.report_progress((step + 1) / payload["steps"], f"step {step + 1}")
        context.cancelled.wait(30)  # holds the task RUNNING until it is cancelled
        return "stopped"
"""


async def test_progress_a_running_kind_reports_shows_on_the_task(
    api_factory: ApiFactory, on_path: Path
) -> None:
    module = write_module(on_path, "user_kinds_progress", PROGRESS)
    api = await api_factory(handler_modules=[module], progress_interval_seconds=0.05)
    task_id = (await api.post("/v1/tasks", json={"kind": "steps", "payload": {"steps": 4}})).json()[
        "id"
    ]
    seen = {}

    async def progress_reported() -> bool:
        seen.update((await api.get(f"/v1/tasks/{task_id}")).json())
        return seen["progress"] is not None and seen["progress"]["fraction"] == 1.0

    await eventually(progress_reported)
    assert seen["status"] == "RUNNING"
    assert seen["progress"]["message"] == "step 4"
    assert seen["progress"]["updated_at"] >= seen["started_at"]
    assert (await api.post(f"/v1/tasks/{task_id}/cancel")).status_code == 200
    await wait_for_status(api, task_id, "CANCELLED")
