"""Verifying the OIDC token Pub/Sub attaches to each push (``TASKPORT_PUSH_AUTH=oidc``)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from entrypoints.http.problems import Problem

if TYPE_CHECKING:
    from google.auth.transport import Request

# google-auth (with requests) is imported on the first push to verify: a process that
# never verifies one does not carry it.

logger = logging.getLogger("taskport.webhook")

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="taskport-push"'}


class PushAuthenticator:
    """Checks a push's ``Authorization: Bearer <OIDC token>``: Google's signature (the
    certificates fetched through ``request``), issuer, expiry, ``audience``, and that the
    token names ``service_account`` with a verified email. ``mode="none"`` checks nothing
    (local only: the settings refuse it elsewhere)."""

    def __init__(
        self,
        mode: str,
        audience: str | None,
        service_account: str | None,
        request: Request | None = None,
    ) -> None:
        self._mode = mode
        self._audience = audience
        self._service_account = service_account
        self._request = request or _caching_request()

    async def verify(self, authorization: str | None) -> None:
        if self._mode == "none":
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(
                401,
                "unauthenticated",
                "Unauthenticated",
                "a push needs 'Authorization: Bearer <OIDC token>'",
                headers=CHALLENGE,
            )
        if not (self._audience and self._service_account):
            raise _forbidden(
                "push authentication is not configured: set TASKPORT_PUSH_AUDIENCE and "
                "TASKPORT_PUSH_SERVICE_ACCOUNT"
            )
        claims = await asyncio.to_thread(self._verified_claims, token.strip())
        if claims.get("email") != self._service_account:
            raise _forbidden("the token names another service account")
        if claims.get("email_verified") is not True:
            raise _forbidden("the token's email is not verified")

    def _verified_claims(self, token: str) -> dict[str, Any]:
        from google.auth import exceptions as auth_errors
        from google.auth import jwt
        from google.oauth2 import id_token

        try:
            # Read before the certificates are fetched: a token that is not one is a 403
            # even while they cannot be.
            jwt.decode(token, verify=False)  # type: ignore[no-untyped-call]
        except (ValueError, auth_errors.GoogleAuthError) as exc:
            raise _forbidden(f"invalid token: {exc}") from exc
        try:
            claims: dict[str, Any] = id_token.verify_oauth2_token(  # type: ignore[no-untyped-call]
                token, self._request, audience=self._audience
            )
        except auth_errors.TransportError as exc:
            logger.warning("cannot fetch Google's certificates: %s", exc)
            raise Problem(
                503,
                "service-unavailable",
                "Service unavailable",
                "cannot verify the token now",
                headers={"Retry-After": "5"},
            ) from exc
        except (ValueError, auth_errors.GoogleAuthError) as exc:
            raise _forbidden(f"invalid token: {exc}") from exc
        return claims


def _caching_request() -> Request:
    """Fetches Google's certificates over HTTPS, cached as long as Google's Cache-Control
    allows, rather than once per push."""
    import requests
    from cachecontrol import CacheControl
    from google.auth.transport.requests import Request as RequestsRequest

    return RequestsRequest(session=CacheControl(requests.Session()))


def _forbidden(detail: str) -> Problem:
    return Problem(403, "forbidden", "Forbidden", detail[:300], headers=CHALLENGE)
