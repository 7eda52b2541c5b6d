"""For operators and orchestrators: liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chat4all.entrypoints.rest.models import Health, Readiness
from chat4all.metrics import HubMetrics
from chat4all.service_layer.readiness import Report

__all__ = ["operations_router"]


def operations_router(
    ready: Callable[[], Awaitable[Report]],
    metrics: HubMetrics | None,
    refresh_gauges: Callable[[], Awaitable[None]] | None,
) -> APIRouter:
    """``ready`` asks the process's readiness checks."""
    router = APIRouter(tags=["operations"])

    @router.get("/health", operation_id="getHealth", response_model=Health)
    async def get_health() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @router.get(
        "/ready",
        operation_id="getReadiness",
        response_model=Readiness,
        responses={
            503: {
                "model": Readiness,
                "description": "Not ready: `reason` names each required check that fails and "
                "why (the database, NATS for a worker or relay, or which task is down and "
                "since when)",
            }
        },
    )
    async def get_readiness() -> JSONResponse:
        """Ready to take requests (or to work, for a worker or relay): every required check
        passes (the database answers, every task of the process runs, and for a worker or a
        relay the partitioned log answers). `checks` has each check's answer; `degraded`
        names the optional ones that fail (Redis: the process works on without it)."""
        report = await ready()
        return JSONResponse(report.body(), 200 if report.ready else 503)

    if metrics is not None:

        @router.get("/metrics", include_in_schema=False)
        async def scrape() -> Response:
            if refresh_gauges is not None:
                await refresh_gauges()
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
