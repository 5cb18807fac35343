from __future__ import annotations

from typing import Protocol


class HealthCheck(Protocol):
    """A backing service that can say whether it is reachable.

    ``check()`` returns when the service answered and raises
    ``application.errors.Unavailable`` when it did not.
    """

    name: str

    async def check(self) -> None: ...
