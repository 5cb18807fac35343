"""FastAPI dependencies: the container's use cases, and the caller's identity."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from entrypoints.container import Container
from entrypoints.http.problems import Problem
from entrypoints.settings import LOCAL_OWNER


def container_of(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def provided(name: str) -> Any:
    """A dependency on the container's provider ``name`` (a use case, a codec)."""

    # Async, as is ``authenticate``: FastAPI runs a plain ``def`` dependency in a worker
    # thread, a hop that costs more than the lookup itself.
    async def dependency(request: Request) -> Any:
        provider: Callable[[], Any] = getattr(container_of(request), name)
        return provider()

    return Depends(dependency)


async def authenticate(request: Request) -> str:
    """The owner the bearer key belongs to; with no keys configured (local only), the
    single local owner."""
    owners: dict[str, str] = request.app.state.owners_by_key_digest
    if not owners:
        return LOCAL_OWNER
    challenge = {"WWW-Authenticate": 'Bearer realm="taskport"'}
    # Two Authorization lines name no one caller: neither is taken.
    authorizations = request.headers.getlist("authorization")
    scheme, _, key = (authorizations[0] if len(authorizations) == 1 else "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Problem(
            401,
            "unauthenticated",
            "Unauthenticated",
            "send one API key as 'Authorization: Bearer <key>'",
            headers=challenge,
        )
    owner = owners.get(hashlib.sha256(key.strip().encode()).hexdigest())
    if owner is None:
        raise Problem(
            401, "unauthenticated", "Unauthenticated", "unknown API key", headers=challenge
        )
    return owner


Owner = Annotated[str, Depends(authenticate)]
