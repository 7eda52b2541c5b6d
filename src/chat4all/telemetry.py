"""Tracing and correlation: one trace and one request id from the API to the provider call.

- An API call (REST or gRPC) opens a server span, continuing the caller's W3C ``traceparent``
  when it sends one, and gets a request id: the caller's ``X-Request-ID`` when it is sane, else a
  new one. Both go into every log record of the call (:func:`opskit.logs.log_context`).
- Accepting a message stores its :class:`Origin` (the trace context and the request id) with the
  outbox row, so the dispatcher's span, minutes or a restart later, continues the same trace and
  its logs carry the same request id.
- Spans go to the tracer given at start-up: OTLP over HTTP when ``CHAT4ALL_OTLP_ENDPOINT`` is set,
  an in-memory exporter in tests, nowhere (a no-op tracer) otherwise.

Without tracing, a span costs nothing measurable: :data:`NO_TRACER` hands back the current
(non-recording) span instead of attaching a new context when that is all OpenTelemetry's no-op
tracer would do, and a call that carries no trace context skips extracting one. A caller's
``traceparent`` is still continued (stored with the message, in the dispatcher's logs) as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import secrets
from collections.abc import Iterator, Mapping
from typing import Any, Final

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanKind, Status, StatusCode, Tracer

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


class _NoOpTracer(trace.NoOpTracer):
    """OpenTelemetry's no-op tracer, without its cost where it changes nothing.

    The no-op tracer's span is the parent's own non-recording span (or the invalid span), which
    ``start_as_current_span`` then attaches as the current context: when that span already is
    the current one, attaching it again changes nothing a caller can see, and costs a context
    switch, a generator and two context managers per span. Then the span is handed back as it
    is; in every other case the library's own path runs."""

    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Context | None = None, *args: Any, **kwargs: Any
    ) -> contextlib.AbstractContextManager[trace.Span]:
        current = trace.get_current_span()
        span = current if context is None else trace.get_current_span(context)
        if span is current and isinstance(span, NonRecordingSpan):
            return contextlib.nullcontext(span)
        return super().start_as_current_span(name, context, *args, **kwargs)


NO_TRACER: Final[Tracer] = _NoOpTracer()
_NO_CONTEXT: Final = Context()
_fields: tuple[object, frozenset[str]] = (None, frozenset())


def _extract(carrier: Mapping[str, str]) -> Context:
    """``propagate.extract(carrier)``, skipped (an empty context, as it would give) when the
    carrier has none of the global propagator's fields (no ``traceparent``, no ``baggage``)."""
    global _fields  # noqa: PLW0603 - a cache of the global propagator's fields
    textmap = propagate.get_global_textmap()
    if _fields[0] is not textmap:
        _fields = (textmap, frozenset(textmap.fields))
    if any(field in carrier for field in _fields[1]):
        return propagate.extract(carrier)
    return _NO_CONTEXT


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
    parent = _extract(carrier)
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
    if not trace.get_current_span().get_span_context().is_valid:
        return Origin(None, _REQUEST_ID.get())  # no trace: no propagator writes a traceparent
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return Origin(carrier.get("traceparent"), _REQUEST_ID.get())


@contextlib.contextmanager
def continued(tracer: Tracer, name: str, origin: Origin, **attributes: str) -> Iterator[trace.Span]:
    """A span that continues a stored :class:`Origin` (the dispatcher's, for one delivery), with
    its request id bound for logs."""
    parent = _extract({"traceparent": origin.traceparent} if origin.traceparent else {})
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
