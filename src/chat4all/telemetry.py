"""Tracing and correlation: one trace and one request id from the API to the provider call.

- An API call (REST or gRPC) opens a server span, continuing the caller's W3C ``traceparent``
  when it sends one, and gets a request id: the caller's ``X-Request-ID`` when it is sane, else a
  new one. Both go into every log record of the call (:func:`opskit.logs.log_context`).
- Accepting a message stores its :class:`Origin` (the trace context and the request id) with the
  outbox row, so the dispatcher's span, minutes or a restart later, continues the same trace and
  its logs carry the same request id.
- Spans go to the tracer given at start-up: OTLP over HTTP when ``CHAT4ALL_OTLP_ENDPOINT`` is set,
  an in-memory exporter in tests, nowhere (a no-op tracer) otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import secrets
from collections.abc import Iterator, Mapping
from typing import Final

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from chat4all import __version__
from chat4all.ports import Origin
from opskit.logs import log_context

__all__ = [
    "Origin",
    "current_origin",
    "request_scope",
    "continued",
    "request_id_from",
    "tracer_for",
    "failed",
    "NO_TRACER",
]

_SANE_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_REQUEST_ID: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "chat4all_request_id", default=None
)
NO_TRACER: Final[Tracer] = trace.NoOpTracer()


def request_id_from(header: str | None) -> str:
    """The caller's request id when it is 1-64 of ``[A-Za-z0-9._:-]``; otherwise a new one (a
    header is never echoed into logs unchecked)."""
    if header and _SANE_ID.fullmatch(header):
        return header
    return secrets.token_hex(8)


def _trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@contextlib.contextmanager
def request_scope(
    tracer: Tracer, name: str, carrier: Mapping[str, str], request_id: str, **attributes: str
) -> Iterator[trace.Span]:
    """A server span for one API call, continuing ``carrier``'s trace context, with the request
    id bound for logs and for :func:`current_origin`."""
    parent = propagate.extract(carrier)
    with tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.SERVER, attributes=attributes
    ) as span:
        span.set_attribute("chat4all.request_id", request_id)
        token = _REQUEST_ID.set(request_id)
        try:
            with log_context(request_id=request_id, trace_id=_trace_id()):
                yield span
        finally:
            _REQUEST_ID.reset(token)


def current_origin() -> Origin:
    """The trace context and request id of the running call, to store with what it creates."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return Origin(carrier.get("traceparent"), _REQUEST_ID.get())


@contextlib.contextmanager
def continued(tracer: Tracer, name: str, origin: Origin, **attributes: str) -> Iterator[trace.Span]:
    """A span that continues a stored :class:`Origin` (the dispatcher's, for one delivery), with
    its request id bound for logs."""
    parent = propagate.extract({"traceparent": origin.traceparent} if origin.traceparent else {})
    with tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ) as s:
        if origin.request_id:
            s.set_attribute("chat4all.request_id", origin.request_id)
        token = _REQUEST_ID.set(origin.request_id)
        try:
            with log_context(request_id=origin.request_id, trace_id=_trace_id()):
                yield s
        finally:
            _REQUEST_ID.reset(token)


def failed(span: trace.Span, reason: str) -> None:
    span.set_status(Status(StatusCode.ERROR, reason))


def tracer_for(otlp_endpoint: str | None) -> tuple[Tracer, TracerProvider | None]:
    """The hub's tracer: exporting over OTLP/HTTP to ``otlp_endpoint``, or a no-op one."""
    if not otlp_endpoint:
        return NO_TRACER, None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    provider = TracerProvider(
        resource=Resource.create({"service.name": "chat4all", "service.version": __version__})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    return provider.get_tracer("chat4all", __version__), provider
