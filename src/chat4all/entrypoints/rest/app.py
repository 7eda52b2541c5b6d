"""The REST app (FastAPI, ``/v1``): the routers, the error answers and the observing
middleware. Routes only translate: parse, call one use case, answer.

Every error body is ``{"error": {"code", "message", "field"}}`` with the status of
:mod:`chat4all.entrypoints.error_codes` (422 for invalid input, with the field).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry.trace import Tracer
from starlette.exceptions import HTTPException
from starlette.routing import Match

from chat4all import __version__
from chat4all.entrypoints.rest import (
    channels,
    conversations,
    dead_letters,
    events,
    media,
    messages,
    resumable,
    settings,
    subscriptions,
)
from chat4all.entrypoints.rest.answers import domain_error_response, error_response
from chat4all.entrypoints.rest.observe import Observe
from chat4all.entrypoints.rest.operations import operations_router
from chat4all.entrypoints.services import Services
from chat4all.errors import Chat4AllError
from chat4all.metrics import HubMetrics
from chat4all.plugin import ChannelPlugin
from chat4all.registry import Registry
from chat4all.service_layer.readiness import Report
from chat4all.telemetry import NO_TRACER

__all__ = ["create_app", "create_probes_app"]


def _document_channel_options(app: FastAPI, plugins: Iterable[ChannelPlugin[Any]] | None) -> None:
    """``content.options.<channel>`` in the OpenAPI document: each installed channel's options
    model (its ``Limits.options``) as ``<Channel>Options``, referenced under its name."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = plain()
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        content = schemas.get("ContentIn", {}).get("properties", {}).get("options")
        if content is None:
            return doc
        named: dict[str, Any] = {}
        for plugin in Registry.discover() if plugins is None else plugins:
            model = plugin.limits.options
            if model is None:
                continue
            title = f"{plugin.name.title().replace('_', '')}Options"
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            schemas[title] = {**schema, "title": title}
            named[plugin.name] = {"$ref": f"#/components/schemas/{title}"}
        if named:
            content["properties"] = named
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    services: Services,
    *,
    ready: Callable[[], Awaitable[Report]],
    metrics: HubMetrics | None = None,
    refresh_gauges: Callable[[], Awaitable[None]] | None = None,
    tracer: Tracer = NO_TRACER,
    plugins: Iterable[ChannelPlugin[Any]] | None = None,
) -> FastAPI:
    """The API over ``services``. ``ready`` answers ``/ready`` (the process's readiness
    checks); ``metrics`` (with
    ``refresh_gauges`` run before each scrape) are served at ``/metrics`` when given.
    ``plugins``: the channels whose options the OpenAPI document shows (``None``: the
    installed ones)."""
    app = FastAPI(
        title="chat4all",
        version=__version__,
        openapi_url="/v1/openapi.json",
        # Our own server spans and metrics (Observe); FastAPI's native OpenTelemetry would only
        # look up the global providers on every request (os.environ reads) to find them unset.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    app.add_middleware(Observe, metrics=metrics, tracer=tracer)
    for router in (
        messages.router,
        media.router,
        media.public_router,
        resumable.router,
        conversations.router,
        dead_letters.router,
        subscriptions.router,
        events.router,
        channels.router,
        settings.router,
    ):
        app.include_router(router)
    app.include_router(operations_router(ready, metrics, refresh_gauges))
    _document_channel_options(app, plugins)

    @app.exception_handler(Chat4AllError)
    async def domain_error(_request: Request, exc: Chat4AllError) -> JSONResponse:
        return domain_error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        """Starlette's own answers (no such route, method not allowed, an unreadable body) in
        the one error body."""
        if exc.status_code == 400:  # FastAPI's "error parsing the body" is bad input too
            return error_response(
                422, "invalid_argument", "body: the body cannot be parsed", "body"
            )
        answer = error_response(exc.status_code, f"http_{exc.status_code}", str(exc.detail))
        if exc.status_code == 405:  # every method of the path (Starlette names only one route's)
            allowed = {
                method
                for route in app.router.routes
                if route.matches(request.scope)[0] is not Match.NONE
                for method in getattr(route, "methods", None) or ()
            }
            answer.headers["Allow"] = ", ".join(sorted(allowed))
        return answer

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return error_response(422, "invalid_argument", f"{where}: {first['msg']}", where)

    return app


def create_probes_app(
    *,
    ready: Callable[[], Awaitable[Report]],
    metrics: HubMetrics | None = None,
    refresh_gauges: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """Only ``/health``, ``/ready`` and ``/metrics`` (as :func:`create_app` serves them), for
    a process that runs the workers without the API (``chat4all worker``)."""
    app = FastAPI(title="chat4all probes", version=__version__, openapi_url=None)
    app.include_router(operations_router(ready, metrics, refresh_gauges))
    return app
