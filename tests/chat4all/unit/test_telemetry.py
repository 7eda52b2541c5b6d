"""Tracing without a tracer: the no-op fast path keeps what OpenTelemetry's no-op tracer gives
(the caller's trace continued into the stored origin and the logs, the request id bound)."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Tracer

from chat4all.ports import Origin
from chat4all.telemetry import NO_TRACER, continued, current_origin, request_scope
from opskit.logs import _CONTEXT

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _seen(tracer: Tracer, carrier: dict[str, str]) -> tuple[object, ...]:
    """What a request and the accept inside it see: the request span's context, the current
    span's context inside a nested span, the stored origin, the log fields."""
    with request_scope(tracer, "POST /v1/messages", carrier, "req-1") as span:
        with tracer.start_as_current_span("accept message", attributes={"a": "b"}) as inner:
            origin = current_origin()
            current = trace.get_current_span().get_span_context()
            fields = dict(_CONTEXT.get())
        return (
            span.get_span_context(),
            inner.get_span_context(),
            current,
            origin,
            fields,
            span.is_recording(),
        )


def test_the_fast_no_op_tracer_sees_what_opentelemetrys_sees_with_and_without_a_caller_trace() -> (
    None
):
    for carrier in (
        {"host": "hub", "content-type": "application/json"},
        {"traceparent": PARENT},
        {"traceparent": PARENT, "tracestate": "k=v", "baggage": "a=b"},
        {"traceparent": "garbage"},
    ):
        assert _seen(NO_TRACER, carrier) == _seen(trace.NoOpTracer(), carrier), carrier


def test_a_callers_trace_is_stored_with_the_message_and_logged_without_a_tracer() -> None:
    *_, origin, fields, recording = _seen(NO_TRACER, {"traceparent": PARENT})
    assert isinstance(origin, Origin)
    assert origin == Origin(PARENT, "req-1")
    assert fields == {"request_id": "req-1", "trace_id": TRACE_ID}
    assert recording is False


def test_without_a_caller_trace_only_the_request_id_is_kept() -> None:
    *_, origin, fields, _ = _seen(NO_TRACER, {"x-request-id": "ignored-here"})
    assert origin == Origin(None, "req-1")
    assert fields == {"request_id": "req-1"}
    assert not trace.get_current_span().get_span_context().is_valid  # nothing leaked out


def test_a_delivery_continues_the_stored_trace_without_a_tracer() -> None:
    for tracer in (NO_TRACER, trace.NoOpTracer()):
        with (
            continued(tracer, "deliver message", Origin(PARENT, "req-1")),
            tracer.start_as_current_span("telegram send"),
        ):
            assert current_origin() == Origin(PARENT, "req-1")
            assert dict(_CONTEXT.get()) == {"request_id": "req-1", "trace_id": TRACE_ID}
        with continued(tracer, "deliver message", Origin(None, None)):
            assert current_origin() == Origin(None, None)
