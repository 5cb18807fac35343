"""Tell whether every backing service answers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from application.errors import Unavailable
from application.ports.health import HealthCheck


class CheckReadinessHandler:
    """Checks every service concurrently, each within ``timeout`` seconds; returns a map
    of service name to ``None`` (ready) or the reason it is not."""

    def __init__(self, checks: Sequence[HealthCheck], timeout: float = 2.0) -> None:
        self._checks = checks
        self._timeout = timeout

    async def __call__(self) -> dict[str, str | None]:
        reasons = await asyncio.gather(*(self._probe(check) for check in self._checks))
        return {check.name: reason for check, reason in zip(self._checks, reasons, strict=True)}

    async def _probe(self, check: HealthCheck) -> str | None:
        try:
            async with asyncio.timeout(self._timeout):
                await check.check()
        except TimeoutError:
            return f"no answer within {self._timeout:g} seconds"
        except Unavailable as exc:
            return exc.reason
        return None
