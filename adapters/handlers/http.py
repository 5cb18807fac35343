"""The ``http`` kind: one outbound HTTP request, its answer (or a JMESPath view of it) as
the result.

Outbound calls are guarded: the URL's host must match ``allowed_hosts`` (checked at submit,
and again before the call), and every address it resolves to must be public (no loopback,
private, link-local, reserved, multicast...) unless ``allow_private_networks``. The request
then goes to an address that was checked, the first that takes the connection (the Host
header, and SNI for https, still name the host), so a DNS answer that changes between the
check and the connection cannot redirect it. Redirects are not followed.

Connection errors, timeouts, 408, 429 and 5xx are retried (no sooner than ``Retry-After``);
other 4xx, redirects, answers over the size limit (counted as decoded) and answers in an
encoding other than gzip or deflate fail without retry.

The deliveries of callbacks (``callback`` in the payload, which only Taskport sets) are
signed as Standard Webhooks (https://www.standardwebhooks.com) with the deployment's
callback secrets: ``webhook-id`` (the delivery task's id, the same on every attempt),
``webhook-timestamp`` (the attempt's) and ``webhook-signature`` (one per secret, for
rotating them), over the body exactly as sent.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import json
import re
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx
import idna
import jmespath
from attrs import frozen
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from standardwebhooks import Webhook

from adapters.handlers.registry import Kind
from application.errors import PermanentFailure, RetryLater
from application.json_values import unstorable
from application.ports.handlers import TaskContext
from domain.values import JsonValue

RETRYABLE_STATUSES = frozenset({408, 429})
HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+")
"""A host name as it goes to DNS (IDNA-encoded); IP literals pass too."""
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""A token (RFC 9110)."""
HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
"""Visible ASCII, spaces and tabs: no line breaks, nothing the request could not encode."""
SET_BY_THE_CALL = frozenset({"host", "content-length", "transfer-encoding", "connection"})
"""Headers that frame the request: from the URL and the body, never from the payload."""
ERROR_SNIPPET_BYTES = 200
ACCEPT_ENCODING = "gzip, deflate"
"""The encodings the kind asks for (unless the payload's headers say otherwise), whatever
decoders are installed: it reads no other."""
ZLIB_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""The encodings the kind decodes, with zlib, stopping at the size limit. (httpx decodes each
chunk it receives whole: 64 KiB of gzip can be 64 MiB, a few bytes of brotli gigabytes.)"""

Scalar = str | int | float | bool


@frozen
class HttpKindConfig:
    allowed_hosts: tuple[str, ...] = ()
    """Host patterns (``api.example.com``, ``*.example.org``, ``*`` for any host); none
    allows no call at all."""
    allow_private_networks: bool = False
    max_response_bytes: int = 1024 * 1024
    max_retry_after: timedelta = timedelta(hours=1)
    callback_secrets: tuple[str, ...] = ()
    """Standard Webhooks secrets (``whsec_`` and base64) that sign callback deliveries; none
    sends them unsigned."""


class HttpPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    url: str = Field(max_length=8192, description="http:// or https:// URL")
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    body: JsonValue = Field(default=None, alias="json", description="a JSON request body")
    timeout: float = Field(default=30, gt=0, le=300, description="seconds for the whole call")
    transform: str | None = Field(
        default=None,
        max_length=2000,
        description="JMESPath expression applied to the response body; its value is the result",
    )
    callback: bool = Field(
        default=False,
        description="set by Taskport on the deliveries of callbacks, which it signs; "
        "refused at submit",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("must be an absolute http:// or https:// URL")
        if ":" not in parsed.host and not _host_name(parsed.raw_host.decode("ascii")):
            raise ValueError(
                f"{parsed.host!r} is not a host name (labels of 1 to 63 characters, "
                "253 in all, of letters, digits, '-' and '_')"
            )
        if parsed.port is not None and not 0 < parsed.port < 65536:
            raise ValueError(f"port {parsed.port} is not 1-65535")
        return url

    @field_validator("headers")
    @classmethod
    def _header_fields(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a header name")
            if not HEADER_VALUE.fullmatch(value):
                raise ValueError(f"the value of {name} holds a character a header cannot")
            if name.lower() in SET_BY_THE_CALL:
                raise ValueError(f"the {name} header comes from the call itself")
        # Spaces and tabs around a value are not part of it (RFC 9110, 5.5), and a request
        # that carries them cannot be sent.
        return {name: value.strip(" \t") for name, value in headers.items()}

    @field_validator("transform")
    @classmethod
    def _jmespath(cls, expression: str | None) -> str | None:
        if expression is not None:
            try:
                jmespath.compile(expression)
            except JMESPathError as exc:
                raise ValueError(f"not a JMESPath expression: {exc}") from exc
            except RecursionError:
                raise ValueError("the JMESPath expression nests too deep") from None
        return expression


def _host_name(host: str) -> bool:
    """Whether DNS can be asked for ``host``: its labels are not empty and hold at most 63
    characters, 253 in all (the resolver refuses others on every attempt)."""
    name = host.removesuffix(".")
    return (
        HOST_NAME.fullmatch(name) is not None
        and len(name) <= 253
        and all(0 < len(label) <= 63 for label in name.split("."))
    )


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """``*.example.org`` matches any subdomain of example.org (not example.org itself). A
    pattern may name a host in Unicode (``bücher.example``): the URL's host, as it goes to
    DNS, is its IDNA form."""
    host = host.lower().rstrip(".")
    return any(fnmatch.fnmatchcase(host, _ascii_pattern(pattern)) for pattern in patterns)


def _ascii_pattern(pattern: str) -> str:
    pattern = pattern.strip().lower()
    if pattern.isascii():
        return pattern
    return ".".join(map(_ascii_label, pattern.split(".")))


def _ascii_label(label: str) -> str:
    try:
        return label if label.isascii() else idna.encode(label, uts46=True).decode("ascii")
    except idna.IDNAError:
        return label  # matches no host a URL can name


def refused_host(host: str, patterns: Sequence[str]) -> str | None:
    """Why the deployment does not let the kind call ``host`` (see ``host_allowed``), or
    None."""
    if host_allowed(host, patterns):
        return None
    return f"calls to {host} are not allowed (TASKPORT_HTTP_ALLOWED_HOSTS)"


def refused_address(address: str) -> str | None:
    """Why a resolved address may not be called without ALLOW_PRIVATE_NETWORKS, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address reached through IPv6 (mapped, or 6to4 through a relay) is judged
        # as that IPv4 address.
        ip = ip.ipv4_mapped or ip.sixtofour or ip
    for reason, flagged in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("not public", not ip.is_global),
    ):
        if flagged:
            return reason
    return None


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host``, in the order the system prefers them."""
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RetryLater(f"cannot resolve {host}: {exc.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in found))


class HttpKind:
    """The handler of the ``http`` kind. ``resolver`` and ``transport`` replace DNS and the
    network (tests); by default they are the system's."""

    def __init__(
        self,
        config: HttpKindConfig,
        *,
        resolver: Resolver = resolve,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._resolve = resolver
        self._transport = transport
        self._tls: ssl.SSLContext | None = None
        self._signers = [Webhook(secret) for secret in config.callback_secrets]

    @property
    def tls(self) -> ssl.SSLContext:
        """Loading the certificate authorities takes tens of milliseconds of CPU, on the
        event loop, and 2 MB: once per process, at its first call, not per call (nor in a
        process that makes none). Connections are not shared (each call has its own
        client), so none made for one host name serves another."""
        if self._tls is None:
            self._tls = httpx.create_ssl_context(trust_env=False)
        return self._tls

    async def __call__(self, payload: JsonValue, context: TaskContext) -> JsonValue:
        try:
            request = HttpPayload.model_validate(payload)
        except ValidationError as exc:  # stored before a check it now fails: never sendable
            raise PermanentFailure(f"the payload cannot be sent: {exc}") from None
        url = httpx.URL(request.url)
        host = url.raw_host.decode("ascii")
        if refused := refused_host(host, self._config.allowed_hosts):
            raise PermanentFailure(refused)
        try:
            async with asyncio.timeout(request.timeout):
                addresses = await self._checked_addresses(host, url.port or _default_port(url))
                status, headers, content = await self._call_first_reachable(
                    request, url, host, addresses, str(context.task_id)
                )
        except TimeoutError:
            raise RetryLater(
                f"{host} gave no complete answer within {request.timeout:g}s"
            ) from None
        except httpx.LocalProtocolError as exc:  # a request that cannot be sent, ever
            raise PermanentFailure(f"the request to {host} cannot be sent: {exc}") from None
        except httpx.TransportError as exc:
            raise RetryLater(f"cannot reach {host}: {type(exc).__name__} {exc}") from None
        body = _decoded(content, headers.get("content-type", ""))
        if request.transform is None:
            if unstorable(body, "body"):  # NaN, a NUL, nested past 100 levels: kept as text
                body = _text(content)
            return {"status": status, "headers": headers, "body": body}
        try:
            return jmespath.search(request.transform, body)
        except JMESPathError as exc:  # an unknown function, a wrong argument: never better
            raise PermanentFailure(f"the transform failed on the answer: {exc}") from None
        except RecursionError:
            raise PermanentFailure("the transform nests too deep to apply") from None

    async def _checked_addresses(self, host: str, port: int) -> list[str]:
        addresses = await self._resolve(host, port)
        if not addresses:
            raise RetryLater(f"{host} resolves to no address")
        if not self._config.allow_private_networks:
            for address in addresses:
                if reason := refused_address(address):
                    article = "an" if reason[0] in "aeiou" else "a"
                    raise PermanentFailure(
                        f"{host} resolves to {address}, {article} {reason} address; calls to "
                        "private networks are refused (TASKPORT_HTTP_ALLOW_PRIVATE_NETWORKS)"
                    )
        return addresses

    async def _call_first_reachable(
        self, request: HttpPayload, url: httpx.URL, host: str, addresses: list[str], task_id: str
    ) -> tuple[int, dict[str, str], bytes]:
        """The call to the first of ``addresses`` that takes the connection (a host on IPv6
        and IPv4 may listen on one only); nothing was sent to those that refused it."""
        for address in addresses[:-1]:
            try:
                return await self._call(request, url, host, address, task_id)
            except httpx.ConnectError:
                continue
        return await self._call(request, url, host, addresses[-1], task_id)

    async def _call(
        self, request: HttpPayload, url: httpx.URL, host: str, address: str, task_id: str
    ) -> tuple[int, dict[str, str], bytes]:
        host_header = url.netloc.decode("ascii")  # host[:port], an IPv6 address in brackets
        headers = httpx.Headers({"Accept-Encoding": ACCEPT_ENCODING})
        headers.update(request.headers)  # the payload's own, whatever their case, replace it
        headers["Host"] = host_header
        body = None
        if request.body is not None:
            body = _json_bytes(request.body)
            if "content-type" not in headers:
                headers["Content-Type"] = "application/json"
        if request.callback and self._signers:
            headers.update(self._signature(task_id, body or b""))
        async with httpx.AsyncClient(
            timeout=request.timeout,
            follow_redirects=False,
            trust_env=False,
            verify=self.tls,
            transport=self._transport,
        ) as client:
            outbound = client.build_request(
                request.method,
                # Merged into the URL's own query (``params`` would replace it).
                url.copy_with(host=address).copy_merge_params(request.query),
                headers=headers,
                content=body,
                extensions={"sni_hostname": host} if url.scheme == "https" else {},
            )
            response = await client.send(outbound, stream=True)
            try:
                self._check_status(response, host)
                content = await self._read(response, host)
            finally:
                await response.aclose()
        headers = {name.decode("latin-1").lower(): "" for name, _ in response.headers.raw}
        for name in headers:
            headers[name] = ", ".join(response.headers.get_list(name))
        return response.status_code, headers, content

    def _signature(self, message_id: str, body: bytes) -> dict[str, str]:
        """The Standard Webhooks headers of a callback delivery sent now."""
        seconds = int(datetime.now(UTC).timestamp())
        sent_at = datetime.fromtimestamp(seconds, UTC)
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(seconds),
            "webhook-signature": " ".join(
                signer.sign(message_id, sent_at, body) for signer in self._signers
            ),
        }

    def _check_status(self, response: httpx.Response, host: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        answered = f"{host} answered {status} {response.reason_phrase}".rstrip()
        if status in RETRYABLE_STATUSES or status >= 500:
            raise RetryLater(answered, self._retry_after(response.headers.get("retry-after")))
        if 300 <= status < 400:
            location = response.headers.get("location", "")
            raise PermanentFailure(f"{answered} (to {location}); redirects are not followed")
        raise PermanentFailure(answered)

    async def _read(self, response: httpx.Response, host: str) -> bytes:
        limit = self._config.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PermanentFailure(f"{host} answered {declared} bytes, over the limit of {limit}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            decoder = None
        elif encoding in ZLIB_WBITS:
            decoder = zlib.decompressobj(ZLIB_WBITS[encoding])
        else:
            raise PermanentFailure(
                f"{host} answered in the {encoding} encoding, which the http kind does not "
                f"read (it asks for {ACCEPT_ENCODING})"
            )
        received = bytearray()
        try:
            async for chunk in response.aiter_raw():
                # At most one byte past the limit: enough to tell the answer is over it.
                received += (
                    decoder.decompress(chunk, limit + 1 - len(received)) if decoder else chunk
                )
                if len(received) > limit:
                    raise PermanentFailure(
                        f"the answer of {host} is over the limit of {limit} bytes; stopped reading"
                    )
        except zlib.error as exc:
            raise PermanentFailure(
                f"the {encoding} answer of {host} cannot be decoded: {exc}"
            ) from None
        return bytes(received)

    def _retry_after(self, value: str | None) -> timedelta | None:
        if not value:
            return None
        value = value.strip()
        if value.isascii() and value.isdigit():
            seconds = value.lstrip("0") or "0"
            # Ten digits and more (over 30 years) is past any cap: int() refuses numbers of
            # over 4,300 digits, and timedelta those of over 999,999,999 days.
            wait = (
                self._config.max_retry_after
                if len(seconds) > 9
                else timedelta(seconds=int(seconds))
            )
        else:
            try:
                wait = parsedate_to_datetime(value) - datetime.now(UTC)
            except (TypeError, ValueError):
                return None
        return min(max(wait, timedelta(0)), self._config.max_retry_after)


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def _json_bytes(body: JsonValue) -> bytes:
    """A JSON body as httpx would encode it; built here so a signature covers these bytes."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _decoded(content: bytes, content_type: str) -> Any:
    """JSON when the answer is JSON, else text (None for no body)."""
    if not content:
        return None
    if "json" in content_type.lower():
        try:
            return json.loads(content)
        except (ValueError, RecursionError):  # RecursionError: nested past what Python reads
            pass
    return _text(content)


def _text(content: bytes) -> str:
    """The answer as text that can be stored: a byte that is not UTF-8, and the NUL
    character, as U+FFFD."""
    return content.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def http_kind(config: HttpKindConfig) -> Kind:
    return Kind(
        "http",
        HttpKind(config),
        "calls an allowed HTTP endpoint; the result is its answer or a JMESPath view of it",
        _allowed_payload(config),
    )


def _allowed_payload(config: HttpKindConfig) -> type[HttpPayload]:
    """``HttpPayload`` that also refuses, at submit, a host the deployment does not allow
    (the handler checks again before calling: the worker's settings decide then)."""

    class AllowedHttpPayload(HttpPayload):
        model_config = ConfigDict(title="HttpPayload")

        @field_validator("url")
        @classmethod
        def _allowed_host(cls, url: str) -> str:
            host = httpx.URL(url).raw_host.decode("ascii")
            if refused := refused_host(host, config.allowed_hosts):
                raise ValueError(refused)
            return url

        @field_validator("callback")
        @classmethod
        def _not_submitted(cls, callback: bool) -> bool:
            if callback:
                raise ValueError("only Taskport sets it, on the deliveries of callbacks")
            return callback

    return AllowedHttpPayload
