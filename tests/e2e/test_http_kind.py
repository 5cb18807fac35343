"""The http kind against a real (tiny) HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest
from pydantic import ValidationError

from adapters.handlers.http import HttpKind, HttpKindConfig, host_allowed, refused_address
from application.errors import PermanentFailure, RetryLater
from application.ports.handlers import TaskContext
from entrypoints.settings import Settings
from tests.e2e.conftest import ApiFactory, wait_for_status
from tests.e2e.tiny_http import TinyHttpServer, json_answer


async def run_http(
    api_factory: ApiFactory, payload: dict[str, Any], *final: str, **settings: Any
) -> dict[str, Any]:
    settings = {
        "http_allowed_hosts": ["127.0.0.1"],
        "http_allow_private_networks": True,
        **settings,
    }
    api = await api_factory(**settings)
    created = await api.post(
        "/v1/tasks", json={"kind": "http", "payload": payload, "max_attempts": 3}
    )
    assert created.status_code == 201, created.json()
    return await wait_for_status(api, created.json()["id"], *(final or ("SUCCEEDED", "FAILED")))


async def test_an_answer_is_the_result_through_its_transform(
    api_factory: ApiFactory, remote: TinyHttpServer
) -> None:
    remote.routes["/items"] = lambda _: json_answer(200, {"items": [{"id": 1}, {"id": 2}]})
    task = await run_http(
        api_factory,
        {
            "method": "POST",
            "url": remote.url("/items"),
            "query": {"page": 2},
            "headers": {"X-Trace": "t1"},
            "json": {"name": "new"},
            "transform": "items[].id",
        },
    )
    assert (task["status"], task["result"], task["attempts"]) == ("SUCCEEDED", [1, 2], 1)
    [request] = remote.requests
    assert (request["method"], request["target"]) == ("POST", "/items?page=2")
    assert request["headers"]["host"] == f"127.0.0.1:{remote.port}"
    assert request["headers"]["x-trace"] == "t1"
    assert json.loads(request["body"]) == {"name": "new"}


async def test_the_urls_own_query_is_kept_and_the_query_field_added_to_it(
    api_factory: ApiFactory, remote: TinyHttpServer
) -> None:
    remote.routes["/items"] = lambda _: json_answer(200, {})
    await run_http(api_factory, {"url": remote.url("/items?token=s3cret&a=1"), "query": {"b": 2}})
    [request] = remote.requests
    assert request["target"] == "/items?token=s3cret&a=1&b=2"


async def test_a_request_that_cannot_be_sent_fails_for_good() -> None:
    async def public_dns(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError("Illegal header value")

    kind = HttpKind(
        HttpKindConfig(allowed_hosts=("api.example.com",)),
        resolver=public_dns,
        transport=httpx.MockTransport(refuse),
    )
    with pytest.raises(PermanentFailure, match="cannot be sent"):
        await kind({"url": "https://api.example.com/"}, context())
    # Stored before the checks of today, a payload they refuse fails for good too.
    with pytest.raises(PermanentFailure, match="cannot be sent"):
        await kind({"url": "https://api.example.com/", "headers": {"X-A": "1\n"}}, context())


async def test_spaces_around_a_header_value_are_not_part_of_it(
    api_factory: ApiFactory, remote: TinyHttpServer
) -> None:
    """As in HTTP itself (RFC 9110, 5.5), where a request may not even carry them."""
    remote.routes["/items"] = lambda _: json_answer(200, {})
    task = await run_http(
        api_factory, {"url": remote.url("/items"), "headers": {"X-Trace": " t1\t", "X-Empty": "  "}}
    )
    assert (task["status"], task["error"]) == ("SUCCEEDED", None)
    assert task["payload"]["headers"] == {"X-Trace": "t1", "X-Empty": ""}
    [request] = remote.requests
    assert (request["headers"]["x-trace"], request["headers"]["x-empty"]) == ("t1", "")


async def test_without_a_transform_the_result_is_status_headers_and_body(
    api_factory: ApiFactory, remote: TinyHttpServer
) -> None:
    remote.routes["/text"] = lambda _: (200, {"Content-Type": "text/plain"}, b"plain")
    task = await run_http(api_factory, {"url": remote.url("/text")})
    assert task["result"]["status"] == 200
    assert task["result"]["body"] == "plain"
    assert task["result"]["headers"]["content-type"] == "text/plain"


@pytest.mark.parametrize(
    ("content_type", "content", "body"),
    [
        ("application/json", b"[" * 5000 + b"]" * 5000, "[" * 5000 + "]" * 5000),
        ("application/json", b"[" * 101 + b"]" * 101, "[" * 101 + "]" * 101),
        ("application/json", b'{"a": NaN}', '{"a": NaN}'),
        ("application/json", b'{"a": "\\u0000"}', '{"a": "\\u0000"}'),
        ("text/plain", b"a\x00b\xff", "a\ufffdb\ufffd"),
    ],
    ids=["nested-past-python", "nested-past-100", "nan", "nul-in-json", "nul-in-text"],
)
async def test_an_answer_a_result_cannot_hold_as_json_is_its_text(
    api_factory: ApiFactory, remote: TinyHttpServer, content_type: str, content: bytes, body: str
) -> None:
    """The call succeeded: its answer is the result, as text where JSON would not be stored
    (a NUL, like a byte that is not UTF-8, as U+FFFD), never a failure or a retry."""
    remote.routes["/odd"] = lambda _: (200, {"Content-Type": content_type}, content)
    task = await run_http(api_factory, {"url": remote.url("/odd")})
    assert (task["status"], task["attempts"]) == ("SUCCEEDED", 1), task["error"]
    assert task["result"]["body"] == body


async def test_a_503_is_retried_no_sooner_than_its_retry_after(
    api_factory: ApiFactory, remote: TinyHttpServer
) -> None:
    remote.routes["/flaky"] = lambda hit: (
        json_answer(503, {"busy": True}, **{"Retry-After": "1"})
        if hit == 1
        else json_answer(200, {"ok": True})
    )
    api = await api_factory(http_allowed_hosts=["127.0.0.1"], http_allow_private_networks=True)
    created = await api.post(
        "/v1/tasks", json={"kind": "http", "payload": {"url": remote.url("/flaky")}}
    )
    task_id = created.json()["id"]
    waiting = await wait_for_status(api, task_id, "SCHEDULED")
    wait = datetime.fromisoformat(waiting["run_at"]) - datetime.fromisoformat(waiting["updated_at"])
    assert wait.total_seconds() == pytest.approx(1, abs=0.01)  # the backoff alone is 0.05s
    assert waiting["error"]["type"] == "RetryLater" and "503" in waiting["error"]["message"]
    done = await wait_for_status(api, task_id, "SUCCEEDED", "FAILED")
    assert (done["status"], done["attempts"], done["result"]["body"]) == (
        "SUCCEEDED",
        2,
        {"ok": True},
    )


async def test_a_404_fails_without_retry(api_factory: ApiFactory, remote: TinyHttpServer) -> None:
    remote.routes["/missing"] = lambda _: json_answer(404, {"detail": "no"})
    task = await run_http(api_factory, {"url": remote.url("/missing")})
    assert (task["status"], task["attempts"], task["error"]["retryable"]) == ("FAILED", 1, False)
    assert "404" in task["error"]["message"]
    assert remote.hits["/missing"] == 1


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
async def test_an_oversized_answer_is_cut_off_and_fails(
    api_factory: ApiFactory, remote: TinyHttpServer, declared: bool
) -> None:
    big = b"x" * (2 * 1024 * 1024)
    headers = {"Content-Length": str(len(big))} if declared else {}
    remote.routes["/big"] = lambda _: (200, {"Content-Type": "text/plain", **headers}, big)
    task = await run_http(api_factory, {"url": remote.url("/big")}, http_max_response_bytes=4096)
    assert (task["status"], task["attempts"], task["error"]["retryable"]) == ("FAILED", 1, False)
    assert "over the limit of 4096" in task["error"]["message"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_answer_is_cut_off_at_the_limit_as_it_is_decoded(
    encoding: str,
) -> None:
    """64 MiB of zeros, 64 KiB on the wire: decoded only up to the limit, never held whole."""
    compress = gzip.compress if encoding == "gzip" else zlib.compress
    answers = {
        "/small": compress(b'{"ok": true}'),
        "/bomb": compress(bytes(64 * 1024 * 1024)),
    }

    async def public_dns(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]

    kind = HttpKind(
        HttpKindConfig(allowed_hosts=("api.example.com",)),
        resolver=public_dns,
        transport=httpx.MockTransport(
            lambda request: streamed(
                200,
                {"Content-Encoding": encoding, "Content-Type": "application/json"},
                answers[request.url.path],
            )
        ),
    )
    small = await kind({"url": "https://api.example.com/small"}, context())
    assert small["body"] == {"ok": True}
    tracemalloc.start()
    try:
        with pytest.raises(PermanentFailure, match="over the limit of 1048576 bytes"):
            await kind({"url": "https://api.example.com/bomb"}, context())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


async def test_an_answer_in_an_encoding_the_kind_does_not_read_fails_for_good() -> None:
    """Brotli (or zstd) has no bound on what a few bytes decode to: the kind asks for gzip
    or deflate, whatever decoders are installed, and reads no other."""
    seen: list[httpx.Request] = []

    async def public_dns(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]

    kind = HttpKind(
        HttpKindConfig(allowed_hosts=("api.example.com",)),
        resolver=public_dns,
        transport=httpx.MockTransport(
            lambda request: (
                seen.append(request)
                or streamed(200, {"Content-Encoding": "br"}, b"\x0b\x02\x80hello\x03")
            )
        ),
    )
    with pytest.raises(PermanentFailure, match="answered in the br encoding"):
        await kind({"url": "https://api.example.com/"}, context())
    assert seen[0].headers["accept-encoding"] == "gzip, deflate"
    # The payload may ask for an encoding of its own: it replaces the kind's.
    with pytest.raises(PermanentFailure, match="answered in the br encoding"):
        await kind(
            {"url": "https://api.example.com/", "headers": {"accept-encoding": "br"}}, context()
        )
    assert seen[1].headers.get_list("accept-encoding") == ["br"]


async def test_a_host_not_allowed_is_refused_at_submit(
    api_factory: ApiFactory, remote: TinyHttpServer
) -> None:
    remote.routes["/items"] = lambda _: json_answer(200, {})
    api = await api_factory(
        http_allowed_hosts=["api.example.com"], http_allow_private_networks=True
    )
    refused = await api.post(
        "/v1/tasks", json={"kind": "http", "payload": {"url": remote.url("/items")}}
    )
    assert refused.status_code == 422
    assert (
        "calls to 127.0.0.1 are not allowed (TASKPORT_HTTP_ALLOWED_HOSTS)"
        in (refused.json()["detail"])
    )
    assert remote.hits["/items"] == 0


async def test_the_handler_checks_the_host_again_before_calling() -> None:
    """A worker whose settings allow fewer hosts than the API's refuses the call."""
    called: list[httpx.Request] = []
    kind = HttpKind(
        HttpKindConfig(allowed_hosts=("api.example.com",)),
        transport=httpx.MockTransport(
            lambda request: called.append(request) or httpx.Response(200)
        ),
    )
    with pytest.raises(PermanentFailure, match="TASKPORT_HTTP_ALLOWED_HOSTS"):
        await kind({"url": "https://other.example.com/items"}, context())
    assert called == []


@pytest.mark.parametrize(
    ("transform", "answer"),
    [("nosuchfunction(@)", {}), ("abs(@)", "text"), ("a" + "|a" * 900, {})],
)
async def test_a_transform_that_fails_on_the_answer_fails_the_task_for_good(
    transform: str, answer: Any
) -> None:
    async def public_dns(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]

    kind = HttpKind(
        HttpKindConfig(allowed_hosts=("api.example.com",)),
        resolver=public_dns,
        transport=httpx.MockTransport(
            lambda request: streamed(200, {"Content-Type": "application/json"}, json.dumps(answer))
        ),
    )
    with pytest.raises(PermanentFailure, match="transform"):
        await kind({"url": "https://api.example.com/", "transform": transform}, context())


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_an_allowed_host_on_a_private_address_is_refused(
    api_factory: ApiFactory, remote: TinyHttpServer, host: str
) -> None:
    remote.routes["/items"] = lambda _: json_answer(200, {})
    task = await run_http(
        api_factory,
        {"url": remote.url("/items", host=host)},
        http_allowed_hosts=[host],
        http_allow_private_networks=False,
    )
    assert (task["status"], task["error"]["retryable"]) == ("FAILED", False)
    assert "loopback address" in task["error"]["message"]
    assert remote.hits["/items"] == 0


async def test_a_payload_the_http_kind_cannot_run_is_refused_at_submit(
    api_factory: ApiFactory,
) -> None:
    api = await api_factory()
    for payload, complaint in [
        ({"url": "ftp://example.com/"}, "http:// or https://"),
        ({"url": "https://example.com/", "transform": "items[?"}, "JMESPath"),
        ({"url": "https://example.com/", "headers": {"Host": "evil"}}, "Host header"),
        ({"url": "https://example.com/", "transform": "!" * 1999 + "a"}, "nests too deep"),
        ({"url": "https://example.com/", "transform": "(" * 900 + "a" + ")" * 900}, "too deep"),
        ({"url": "https://example.com:99999/"}, "port 99999 is not 1-65535"),
        ({"url": "https://exa mple.com/"}, "is not a host name"),
        ({"url": "https://api..example.com/"}, "is not a host name"),
        ({"url": "https://.example.com/"}, "is not a host name"),
        ({"url": f"https://{'a' * 64}.example.com/"}, "is not a host name"),
        ({"url": f"https://{'a.' * 125}example.com/"}, "is not a host name"),
        ({"url": "https://example.com/", "headers": {"X-A": "1\r\nX-B: 2"}}, "cannot"),
        ({"url": "https://example.com/", "headers": {"X-Name": "Zoë"}}, "cannot"),
        ({"url": "https://example.com/", "headers": {"X A": "1"}}, "not a header name"),
        ({"url": "https://example.com/", "headers": {"X-A\n": "1"}}, "not a header name"),
        ({"url": "https://example.com/", "headers": {"X-A": "1\n"}}, "cannot"),
        ({"url": "https://example.com/", "headers": {"Content-Length": "5"}}, "call itself"),
        ({"url": "https://example.com/", "headers": {"transfer-encoding": "x"}}, "call itself"),
        (
            {"url": "https://example.com/", "timeout": "5"},
            "timeout: Input should be a valid number",
        ),
        (
            {"url": "https://example.com/", "callback": 0},
            "callback: Input should be a valid boolean",
        ),
    ]:
        refused = await api.post("/v1/tasks", json={"kind": "http", "payload": payload})
        assert refused.status_code == 422
        assert complaint in refused.json()["detail"]


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("api.example.com", True),
        ("API.Example.com.", True),
        ("deep.sub.example.org", True),
        ("example.org", False),
        ("evil-example.org", False),
        ("api.example.com.evil.net", False),
    ],
)
def test_allowed_host_patterns(host: str, allowed: bool) -> None:
    assert host_allowed(host, ["api.example.com", "*.example.org"]) is allowed


@pytest.mark.parametrize(
    "entry",
    ["https://api.example.com", "api.example.com/v1", "api.example.com:443", "user@example.com"],
)
def test_an_allowed_host_written_as_a_url_or_with_a_port_is_refused_by_name(entry: str) -> None:
    """It would match no host, and every task for it would be refused as not allowed."""
    with pytest.raises(ValidationError, match="host names or patterns, not URLs"):
        Settings(http_allowed_hosts=f"example.net,{entry}")


@pytest.mark.parametrize("entry", ["*", "*.example.org", "bücher.example", "::1", "10.0.0.7"])
def test_host_names_patterns_and_addresses_are_allowed_hosts(entry: str) -> None:
    assert Settings(http_allowed_hosts=entry).http_allowed_hosts == [entry]


def test_a_pattern_in_unicode_allows_the_host_as_a_url_names_it() -> None:
    url_host = httpx.URL("https://Bücher.example/").raw_host.decode("ascii")
    assert url_host == "xn--bcher-kva.example"
    assert host_allowed(url_host, ["bücher.example"])
    assert host_allowed("shop.xn--bcher-kva.example", [" *.BÜCHER.example "])
    assert not host_allowed(url_host, ["bucher.example", "b\u00fccher..example"])


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        # 6to4: the IPv4 address it carries, reached through a relay
        ("2002:7f00:1::", "loopback"),
        ("2002:a9fe:a9fe::1", "link-local"),
        ("2002:808:808::1", None),
        ("100.64.0.1", "not public"),
        ("0.0.0.0", "unspecified"),
    ],
)
def test_addresses_outside_the_public_internet_are_refused(
    address: str, refused: str | None
) -> None:
    assert refused_address(address) == refused


async def test_no_call_is_accepted_with_the_default_settings(
    api_factory: ApiFactory, remote: TinyHttpServer
) -> None:
    remote.routes["/items"] = lambda _: json_answer(200, {})
    api = await api_factory()
    refused = await api.post(
        "/v1/tasks", json={"kind": "http", "payload": {"url": remote.url("/items")}}
    )
    assert refused.status_code == 422
    assert "not allowed" in refused.json()["detail"]
    assert remote.hits["/items"] == 0


async def test_the_call_goes_to_the_checked_address_with_the_host_name_for_tls() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return streamed(200, {"Content-Type": "application/json"}, b'{"ok": true}')

    lookups: list[str] = []

    async def public_dns(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["93.184.215.14"]

    kind = HttpKind(
        HttpKindConfig(allowed_hosts=("api.example.com",)),
        resolver=public_dns,
        transport=httpx.MockTransport(answer),
    )
    result = await kind({"url": "https://api.example.com/v1/things?a=1"}, context())
    assert result["body"] == {"ok": True}
    [request] = seen
    assert (request.url.scheme, request.url.host, request.url.port) == (
        "https",
        "93.184.215.14",
        None,
    )
    assert request.headers["host"] == "api.example.com"
    assert request.extensions["sni_hostname"] == "api.example.com"
    assert lookups == ["api.example.com"]  # resolved once: nothing to rebind


async def test_a_call_goes_to_the_next_checked_address_when_one_refuses_to_connect(
    remote: TinyHttpServer,
) -> None:
    """``localhost`` is ::1 and 127.0.0.1 on many systems, a receiver often on IPv4 alone."""
    remote.routes["/hook"] = lambda _: json_answer(200, {"ok": True})

    async def dual_stack(host: str, port: int) -> list[str]:
        return ["::1", "127.0.0.1"]  # nothing listens on [::1] at the remote's port

    kind = HttpKind(
        HttpKindConfig(allowed_hosts=("hooks.example.com",), allow_private_networks=True),
        resolver=dual_stack,
    )
    result = await kind({"url": f"http://hooks.example.com:{remote.port}/hook"}, context())
    assert result["body"] == {"ok": True}
    [request] = remote.requests
    assert request["headers"]["host"] == f"hooks.example.com:{remote.port}"


async def test_a_host_with_any_private_address_is_refused() -> None:
    async def split_dns(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.0.0.7"]

    kind = HttpKind(
        HttpKindConfig(allowed_hosts=("*.example.com",)),
        resolver=split_dns,
        transport=httpx.MockTransport(lambda request: httpx.Response(200)),
    )
    with pytest.raises(PermanentFailure, match=r"10\.0\.0\.7, a private address"):
        await kind({"url": "http://api.example.com/"}, context())


def context() -> TaskContext:
    return TaskContext(task_id=uuid4(), owner="alice", kind="http", attempt=1, max_attempts=3)


class _Sent(httpx.AsyncByteStream):
    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body


def streamed(
    status: int, headers: dict[str, str] | None = None, body: bytes | str = b""
) -> httpx.Response:
    """An answer whose body is read as it comes, as from the network (``httpx.Response``
    reads a ``content=`` at once, decoded, and the kind reads the bytes as sent)."""
    raw = body.encode() if isinstance(body, str) else body
    return httpx.Response(status, headers=headers, stream=_Sent(raw))


async def test_an_ipv6_host_keeps_its_brackets_in_the_host_header() -> None:
    seen: list[httpx.Request] = []

    async def dns(host: str, port: int) -> list[str]:
        return [host]

    kind = HttpKind(
        HttpKindConfig(allowed_hosts=("2606:4700::1111",)),
        resolver=dns,
        transport=httpx.MockTransport(lambda request: seen.append(request) or streamed(204)),
    )
    await kind({"url": "https://[2606:4700::1111]:8443/x"}, context())
    assert seen[0].headers["host"] == "[2606:4700::1111]:8443"


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("120", timedelta(seconds=120)),
        ("an HTTP date 10 minutes ahead", "about 10m"),
        ("in a while", None),
        ("999999", timedelta(hours=1)),
        ("99999999999999999999", timedelta(hours=1)),
        ("9" * 5000, timedelta(hours=1)),
        ("\u00b2", None),
    ],
    ids=["seconds", "date", "words", "over-the-cap", "past-timedelta", "past-int", "superscript"],
)
async def test_a_429_asks_for_a_retry_after_its_retry_after(
    retry_after: str, expected: timedelta | str | None
) -> None:
    if expected == "about 10m":
        # Dated when the test runs, not when the suite is collected (minutes earlier).
        retry_after = format_datetime(datetime.now(UTC) + timedelta(minutes=10), usegmt=True)

    async def dns(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]

    if expected == "about 10m":  # the date is taken when the test runs, not when collected
        retry_after = format_datetime(datetime.now(UTC) + timedelta(minutes=10), usegmt=True)
    kind = HttpKind(
        HttpKindConfig(allowed_hosts=("api.example.com",)),
        resolver=dns,
        transport=httpx.MockTransport(
            # As bytes, the way they come over the wire (UTF-8 for the superscript).
            lambda request: httpx.Response(429, headers={"Retry-After": retry_after.encode()})
        ),
    )
    with pytest.raises(RetryLater, match="429") as raised:
        await kind({"url": "https://api.example.com/"}, context())
    if expected == "about 10m":
        assert raised.value.retry_after is not None
        assert timedelta(minutes=9) < raised.value.retry_after <= timedelta(minutes=10)
    else:
        assert raised.value.retry_after == expected
