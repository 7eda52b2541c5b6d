"""One trace and one request id from the API call to the provider call, over REST and gRPC,
recorded by an in-memory exporter and read back from the JSON logs."""

from __future__ import annotations

import http.server
import io
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chat4all.adapters.storage.sql import SqlStore
from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub
from chat4all.domain.model import Content
from chat4all.entrypoints.grpc_server import SERVICE_NAME
from chat4all.ports import Origin, SendRequest
from chat4all.telemetry import NO_TRACER, tracer_for
from chat4all.v1 import api_pb2 as pb
from chat4all.v1 import api_pb2_grpc as pb_grpc
from opskit.logs import setup_logging
from tests.chat4all.conftest import hub_running

from .test_rest_e2e import body, until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    setup_logging("DEBUG", "json", stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@pytest.fixture
async def hub(tmp_path: Path, spans: InMemorySpanExporter) -> AsyncIterator[Hub]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    async with hub_running(tmp_path, overrides={"tracer": provider.get_tracer("test")}) as running:
        yield running


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def trace_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


async def test_a_rest_send_is_one_trace_down_to_the_provider_call_and_logs_its_request_id(
    hub: Hub, spans: InMemorySpanExporter, json_logs: io.StringIO
) -> None:
    assert hub.admin_key is not None
    headers = {
        "Authorization": f"Bearer {hub.admin_key}",
        "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01",
        "X-Request-ID": "req-42.a",
    }
    async with httpx.AsyncClient(base_url=hub.url) as client:
        answer = await client.post("/v1/messages", json=body("traced"), headers=headers)
        assert answer.status_code == 202
        assert answer.headers["x-request-id"] == "req-42.a"
        message_id = answer.json()["id"]
        await until(
            lambda: bool(named(spans, "deliver message") and named(spans, "POST /v1/messages"))
        )

    (server,) = named(spans, "POST /v1/messages")
    (accept,) = named(spans, "accept message")
    (deliver,) = named(spans, "deliver message")
    (call,) = named(spans, "telegram send")
    assert {trace_of(s) for s in (server, accept, deliver, call)} == {TRACE_ID}
    assert parent_of(server) == int(CALLER_SPAN, 16)
    assert parent_of(accept) == span_id(server)
    assert parent_of(deliver) == span_id(accept)  # continued from the outbox row
    assert parent_of(call) == span_id(deliver)
    assert server.attributes is not None and server.attributes["http.response.status_code"] == 202
    assert deliver.attributes is not None
    assert deliver.attributes["chat4all.message_id"] == message_id
    assert deliver.attributes["chat4all.request_id"] == "req-42.a"

    records = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    (sent,) = [r for r in records if r["message"].startswith(f"message {message_id} sent")]
    assert sent["component"] == "chat4all.service_layer.dispatcher"  # a worker, not the API
    assert (sent["request_id"], sent["trace_id"]) == ("req-42.a", TRACE_ID)


async def test_an_unsafe_request_id_is_replaced_not_echoed(hub: Hub) -> None:
    assert hub.admin_key is not None
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:
        for bad in ("x" * 65, "two words", 'quote"d'):
            answer = await client.get("/v1/conversations", headers={"X-Request-ID": bad})
            assert answer.status_code == 200
            given = answer.headers["x-request-id"]
            assert given != bad
            assert len(given) == 16
        fresh = await client.get("/v1/conversations")
        assert len(fresh.headers["x-request-id"]) == 16


async def test_a_grpc_send_continues_the_callers_trace_and_returns_the_request_id(
    hub: Hub, spans: InMemorySpanExporter
) -> None:
    assert hub.admin_key is not None
    metadata = (
        ("authorization", f"Bearer {hub.admin_key}"),
        ("traceparent", f"00-{TRACE_ID}-{CALLER_SPAN}-01"),
        ("x-request-id", "grpc-7"),
    )
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        stub = pb_grpc.Chat4AllServiceStub(channel)
        call = stub.SendMessage(
            pb.SendMessageRequest(
                channel="telegram",
                account=SIMULATOR_ACCOUNT,
                recipient="7",
                content=pb.Content(text="over grpc"),
            ),
            metadata=metadata,
        )
        await call
        trailers = dict(await call.trailing_metadata() or ())
        assert trailers["x-request-id"] == "grpc-7"
        refused = stub.GetMessage(pb.GetMessageRequest(id="m_nope"), metadata=metadata)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await refused
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        await until(lambda: bool(named(spans, "deliver message")))

    (server,) = named(spans, f"{SERVICE_NAME}/SendMessage")
    (deliver,) = named(spans, "deliver message")
    assert trace_of(server) == trace_of(deliver) == TRACE_ID
    assert parent_of(server) == int(CALLER_SPAN, 16)


async def test_the_origin_survives_in_the_outbox_across_a_restart(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'o.db'}"
    origin = Origin(f"00-{TRACE_ID}-{CALLER_SPAN}-01", "req-restart")
    store = await SqlStore.open(url)
    request = SendRequest("telegram", "bot", "1", Content(text="x"))
    await store.accept("t1", request, None, 1.0, origin)
    await store.close()
    reopened = await SqlStore.open(url)
    try:
        (item,) = await reopened.claim(2.0, 10, worker="w", lease=30.0)
        assert item.origin == origin
    finally:
        await reopened.close()


def test_spans_are_exported_over_otlp_http_when_an_endpoint_is_set() -> None:
    received: list[tuple[str, str, int]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers["Content-Length"])
            self.rfile.read(size)
            received.append((self.path, self.headers["Content-Type"], size))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        tracer, provider = tracer_for(endpoint)
        assert provider is not None
        with tracer.start_as_current_span("exported"):
            pass
        provider.shutdown()  # flushes the batch
    finally:
        server.shutdown()
        server.server_close()
    assert [(path, kind) for path, kind, _ in received] == [
        ("/v1/traces", "application/x-protobuf")
    ]
    assert received[0][2] > 0
    assert tracer_for("") == (NO_TRACER, None)
