"""For operators and orchestrators: liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chat4all.entrypoints.rest.models import Health, Readiness
from chat4all.metrics import HubMetrics

__all__ = ["operations_router"]


def operations_router(
    ready: Callable[[], Awaitable[str | None]],
    metrics: HubMetrics | None,
    refresh_gauges: Callable[[], Awaitable[None]] | None,
) -> APIRouter:
    """``ready`` says why the process is not ready (``None``: it is)."""
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
                "description": "Not ready: `reason` says why (the database, or which worker "
                "is down and since when)",
            }
        },
    )
    async def get_readiness() -> JSONResponse:
        """Ready to take requests: the database answers and every worker runs."""
        reason = await ready()
        if reason is None:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "reason": reason}, 503)

    if metrics is not None:

        @router.get("/metrics", include_in_schema=False)
        async def scrape() -> Response:
            if refresh_gauges is not None:
                await refresh_gauges()
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
