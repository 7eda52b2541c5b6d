"""Per request: a server span, a request id, and the request metrics."""

from __future__ import annotations

import time

from opentelemetry.trace import Tracer
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as Message_

from chat4all.metrics import HubMetrics
from chat4all.telemetry import failed, request_id_from, request_scope

__all__ = ["Observe"]


class Observe:
    """Per request: a server span continuing the caller's ``traceparent``, a request id (the
    caller's ``X-Request-ID`` or a new one, echoed in the answer and bound to the logs), and the
    request metrics. A plain ASGI middleware: Starlette's BaseHTTPMiddleware costs a task and a
    stream copy per request."""

    def __init__(self, app: ASGIApp, metrics: HubMetrics | None, tracer: Tracer) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = request_id_from(headers.get("x-request-id"))
        echoed = (b"x-request-id", request_id.encode())
        method = scope["method"]

        async def capture(message: Message_) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        with request_scope(self.tracer, method, headers, request_id) as span:
            try:
                await self.app(scope, receive, capture)
            finally:
                template = getattr(scope.get("route"), "path", "unmatched")
                span.update_name(f"{method} {template}")
                span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    failed(span, f"HTTP {status}")
                if self.metrics is not None:
                    self.metrics.requests.labels(template, method, str(status)).inc()
                    self.metrics.latency.labels(template, method).observe(
                        time.perf_counter() - began
                    )
