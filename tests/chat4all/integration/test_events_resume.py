"""Live streams across API processes: two hubs on one PostgreSQL and one Redis. A client
streaming from one hub disconnects while events keep coming, reconnects to the OTHER hub with
the last id it got (SSE ``Last-Event-ID``, gRPC ``resume_token``), and has then received every
stored event of its tenant, those of the other hub's sends included; none twice in one stream,
and again only what it had before its id (PostgreSQL's replay starts a few seconds early)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import httpx
import pytest

from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub
from chat4all.v1 import api_pb2 as pb
from chat4all.v1 import api_pb2_grpc as pb_grpc
from tests.chat4all.conftest import hub_running

Seen = list[tuple[int, str, dict[str, object]]]
"""Events as a client got them: id, type, data."""


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def hubs(postgres_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[list[Hub]]:
    """Two hubs (API and workers each) sharing a database and a Redis channel of their own."""
    shared = {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"test-{uuid.uuid4().hex[:12]}:",
    }
    async with (
        hub_running(tmp_path / "a", **shared) as a,
        hub_running(tmp_path / "b", **shared) as b,
    ):
        yield [a, b]


async def send(client: httpx.AsyncClient, text: str) -> str:
    sent = await client.post(
        "/v1/messages",
        json={
            "channel": "telegram",
            "account": SIMULATOR_ACCOUNT,
            "recipient": "42",
            "content": {"text": text},
        },
    )
    assert sent.status_code == 202, sent.text
    return str(sent.json()["id"])


@contextlib.asynccontextmanager
async def sse(hub: Hub, key: str, seen: Seen, last: int | None = None) -> AsyncIterator[None]:
    """``GET /v1/events`` on ``hub`` (from ``Last-Event-ID: last``) for the block, each event
    appended to ``seen``; the block starts once ``hub`` has it subscribed."""
    before = hub.bus.subscribers("default")
    headers = {"Authorization": f"Bearer {key}"}
    if last is not None:
        headers["Last-Event-ID"] = str(last)

    async def listen() -> None:
        async with (
            httpx.AsyncClient(base_url=hub.url, headers=headers, timeout=30) as client,
            client.stream("GET", "/v1/events") as stream,
        ):
            assert stream.status_code == 200
            ident, kind = 0, ""
            async for line in stream.aiter_lines():
                if line.startswith("id: "):
                    ident = int(line[4:])
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    seen.append((ident, kind, json.loads(line[6:])))

    listener = asyncio.create_task(listen())
    try:
        while hub.bus.subscribers("default") <= before:
            if listener.done():
                listener.result()
                raise AssertionError("the stream ended before it was subscribed")
            await asyncio.sleep(0.01)
        yield
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await until(lambda: hub.bus.subscribers("default") <= before)  # the hub let go


@contextlib.asynccontextmanager
async def grpc_stream(
    hub: Hub, key: str, seen: Seen, last: int | None = None
) -> AsyncIterator[None]:
    """``StreamEvents`` on ``hub`` (from ``resume_token=last``), as :func:`sse`."""
    before = hub.bus.subscribers("default")

    async def listen() -> None:
        async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
            stub = pb_grpc.Chat4AllServiceStub(channel)
            request = pb.StreamEventsRequest(resume_token=last) if last is not None else None
            call = stub.StreamEvents(
                request or pb.StreamEventsRequest(),
                metadata=(("authorization", f"Bearer {key}"),),
            )
            async for response in call:
                e = response.event
                seen.append((e.id, e.type, json.loads(e.data_json)))

    listener = asyncio.create_task(listen())
    try:
        while hub.bus.subscribers("default") <= before:
            if listener.done():
                listener.result()
                raise AssertionError("the stream ended before it was subscribed")
            await asyncio.sleep(0.01)
        yield
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await until(lambda: hub.bus.subscribers("default") <= before)


@pytest.mark.parametrize("stream", [sse, grpc_stream], ids=["sse", "grpc"])
async def test_a_client_that_moves_to_another_process_misses_nothing(
    hubs: list[Hub], stream: Callable[..., contextlib.AbstractAsyncContextManager[None]]
) -> None:
    a, b = hubs
    key = a.admin_key
    assert key is not None
    first: Seen = []
    second: Seen = []
    sent: list[str] = []
    auth = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(base_url=a.url, headers=auth, timeout=30) as to_a,
        httpx.AsyncClient(base_url=b.url, headers=auth, timeout=30) as to_b,
    ):
        async with stream(a, key, first):
            for n in range(5):
                sent.append(await send((to_a, to_b)[n % 2], f"before {n}"))
            await until(lambda: len(first) >= 3)
        # disconnected: events go on (deliveries of what is queued, more sends)
        for n in range(5):
            sent.append(await send((to_a, to_b)[n % 2], f"away {n}"))
        last = first[-1][0]
        async with stream(b, key, second, last):
            for n in range(5):
                sent.append(await send((to_a, to_b)[n % 2], f"after {n}"))

            def all_sent() -> bool:
                done = {d["id"] for _, t, d in first + second if d.get("status") == "sent"}
                return done >= set(sent)

            await until(all_sent)
            stored = await a.store.events_after("default", 0, 1000)
            await until(lambda: len({i for i, _, _ in first + second}) >= len(stored))
    for one in (first, second):
        ids = [i for i, _, _ in one]
        assert len(ids) == len(set(ids)), "an event came twice in one stream"
    again = {i for i, _, _ in first} & {i for i, _, _ in second}
    # a resumed stream on PostgreSQL starts a few seconds before its id (a lower id may commit
    # late): what comes again is at most what the client had, and it drops those by id
    assert all(i <= last for i in again), again
    assert sorted({i for i, _, _ in first + second}) == [e.id for e in stored], "one was missed"
    assert {t for _, t, _ in first + second} == {"message.status"}
