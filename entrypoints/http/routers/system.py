"""Health, readiness and the list of task kinds."""

from __future__ import annotations

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from application.ports.handlers import HandlerRegistry
from application.use_cases.check_readiness import CheckReadinessHandler
from application.use_cases.get_stats import GetStatsHandler
from entrypoints.http.dependencies import Owner, authenticate, container_of, provided
from entrypoints.http.problems import Problem
from entrypoints.http.routing import Router
from entrypoints.http.schemas import READY, KindOut, KindsOut, ReadinessOut, StatsOut

router = Router()


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is alive and serving."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadinessOut,
    tags=["health"],
    responses={503: {"description": "the storage or the broker does not answer (checks)"}},
)
async def readyz(
    request: Request,
    check: CheckReadinessHandler = provided("check_readiness"),
) -> ReadinessOut:
    """Storage and broker answer; 503 otherwise, with the reasons for a caller with an API
    key (they name hosts, ports and driver errors), ``unavailable`` for anyone else."""
    reasons = await check()
    failing = {name: reason for name, reason in reasons.items() if reason is not None}
    if failing and not await _authenticated(request):
        failing = dict.fromkeys(failing, "unavailable")
    checks = {name: failing.get(name, READY) for name in reasons}
    if failing:
        detail = "; ".join(f"{name}: {reason}" for name, reason in failing.items())
        raise Problem(
            503, "not-ready", "Not ready", detail, headers={"Retry-After": "1"}, checks=checks
        )
    return ReadinessOut(status="ready", checks=checks)


async def _authenticated(request: Request) -> bool:
    try:
        await authenticate(request)
    except Problem:
        return False
    return True


@router.get("/metrics", tags=["operations"], include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    registry = container_of(request).metrics().registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/kinds", response_model=KindsOut, tags=["tasks"])
async def list_kinds(owner: Owner, registry: HandlerRegistry = provided("registry")) -> KindsOut:
    return KindsOut(items=[KindOut.of(kind) for kind in registry.kinds()])


@router.get("/v1/stats", response_model=StatsOut, tags=["operations"])
async def stats(owner: Owner, get_stats: GetStatsHandler = provided("get_stats")) -> StatsOut:
    """The caller's tasks by status and kind, how long the oldest queued one has waited since
    it was due, and the outbox backlog."""
    return StatsOut.of(await get_stats(owner))
