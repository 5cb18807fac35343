"""Pure ASGI middleware guarding request bodies: JSON only, and never more than the limit.

The limit counts the bytes actually received, so a chunked body without a Content-Length
(or with a false one) is cut off as soon as it passes the limit.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from entrypoints.http.problems import Problem


class _TooLarge(Exception):
    pass


class BodyGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = {key.lower(): value for key, value in scope["headers"]}
        problem = self._check_headers(headers)
        if problem is not None:
            await problem.response(scope["path"])(scope, receive, send)
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # Once the body passed the limit, whatever the app makes of the error is dropped:
            # the answer is 413.
            nonlocal started
            if exceeded and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if started:
                raise
        if exceeded and not started:
            await self._too_large().response(scope["path"])(scope, receive, send)

    def _check_headers(self, headers: dict[bytes, bytes]) -> Problem | None:
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return Problem(400, "bad-content-length", "Bad Content-Length", "not a number")
            if int(length) > self.max_body_bytes:
                return self._too_large()
        has_body = (length is not None and int(length) > 0) or b"transfer-encoding" in headers
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if has_body and not (
            content_type == b"application/json" or content_type.endswith(b"+json")
        ):
            shown = content_type.decode("latin-1") or "none"
            return Problem(
                415,
                "unsupported-media-type",
                "Unsupported media type",
                f"request bodies must be application/json, not {shown}",
            )
        return None

    def _too_large(self) -> Problem:
        return Problem(
            413,
            "body-too-large",
            "Request body too large",
            f"the request body is over the limit of {self.max_body_bytes} bytes",
            max_body_bytes=self.max_body_bytes,
        )
