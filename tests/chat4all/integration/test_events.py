"""Inbound Telegram updates through the webhook (secret, dedup, normalisation) and live events
over SSE and gRPC streaming."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx

from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub
from chat4all.entrypoints.grpc_server import _answer as grpc_answer
from chat4all.entrypoints.rest.events import _frame as sse_frame
from chat4all.service_layer.events import OVERFLOW, Event
from chat4all.v1 import api_pb2 as pb
from chat4all.v1 import api_pb2_grpc as pb_grpc
from tests.chat4all.channels.telegram_hub import telegram_of, webhook_secret
from tests.chat4all.conftest import hub_running, live_events


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_a_telegram_update_is_stored_once_and_announced(hub: Hub) -> None:
    webhook = f"{hub.url}/v1/channels/telegram/{SIMULATOR_ACCOUNT}/webhook"
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    async with httpx.AsyncClient(base_url=hub.url, headers=auth, timeout=20) as client:
        async with live_events(hub, client) as seen:
            update = telegram_of(hub).update(777, "hi there", reply_to_message={"message_id": 5})
            secret = webhook_secret(hub)
            assert await telegram_of(hub).push(webhook, secret, update) == 200
            assert await telegram_of(hub).push(webhook, secret, update) == 200  # redelivery
            assert await telegram_of(hub).push(webhook, "wrong", update) == 401
            assert await telegram_of(hub).push(webhook, None, update) == 401
            await until(lambda: len(seen) >= 1)
        [(kind, data)] = seen
        assert kind == "message.inbound"
        assert data["direction"] == "inbound"
        assert data["content"]["text"] == "hi there"
        assert data["content"]["extensions"]["reply_to_provider_id"] == "5"
        [conversation] = (await client.get("/v1/conversations")).json()["items"]
        assert conversation["recipient"] == "777"
        history = (await client.get(f"/v1/conversations/{conversation['id']}/messages")).json()
    assert [m["content"]["text"] for m in history["items"]] == ["hi there"]  # stored once


async def test_status_events_reach_sse_and_grpc_streams(hub: Hub) -> None:
    streamed: list[pb.Event] = []

    async def grpc_stream() -> None:
        async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
            stub = pb_grpc.Chat4AllServiceStub(channel)
            call = stub.StreamEvents(
                pb.StreamEventsRequest(), metadata=(("authorization", f"Bearer {hub.admin_key}"),)
            )
            async for event in call:
                streamed.append(event.event)
                return

    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    async with (
        httpx.AsyncClient(base_url=hub.url, headers=auth, timeout=20) as client,
        live_events(hub, client) as seen,
    ):
        streamer = asyncio.create_task(grpc_stream())
        await until(lambda: hub.bus.subscribers("default") >= 2)
        sent = await client.post(
            "/v1/messages",
            json={
                "channel": "telegram",
                "account": SIMULATOR_ACCOUNT,
                "recipient": "42",
                "content": {"text": "hello"},
            },
        )
        await asyncio.wait_for(streamer, 10)
        await until(lambda: len(seen) >= 1)
    message_id = sent.json()["id"]
    assert seen == [
        (
            "message.status",
            {
                "id": message_id,
                "conversation_id": sent.json()["conversation_id"],
                "status": "sent",
                "detail": None,
            },
        )
    ]
    [event] = streamed
    assert event.type == "message.status"
    assert json.loads(event.data_json)["id"] == message_id


async def test_a_closed_sse_stream_is_let_go_while_no_event_comes(hub: Hub) -> None:
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    async with httpx.AsyncClient(base_url=hub.url, headers=auth, timeout=20) as client:
        async with client.stream("GET", "/v1/events") as stream:
            assert stream.status_code == 200
            await until(lambda: hub.bus.subscribers("default") == 1)
        # the response closed unread: its connection is closed, and nothing is published
        await until(lambda: hub.bus.subscribers("default") == 0)


def test_each_event_gets_its_own_frame_and_answer_shared_by_its_streams() -> None:
    first = Event(1, "t", "message.status", {"id": "m1"}, 1.0)
    second = Event(2, "t", "message.status", {"id": "m2"}, 2.0)

    assert sse_frame(first) == b'id: 1\nevent: message.status\ndata: {"id":"m1"}\n\n'
    assert sse_frame(first) is sse_frame(first)  # encoded once for all its streams
    assert sse_frame(second) == b'id: 2\nevent: message.status\ndata: {"id":"m2"}\n\n'
    assert grpc_answer(first) is grpc_answer(first)
    assert json.loads(grpc_answer(second).event.data_json) == {"id": "m2"}
    assert grpc_answer(second).event.id == 2
    assert json.loads(grpc_answer(first).event.data_json) == {"id": "m1"}
    dropped = Event(3, "t", OVERFLOW, {"dropped_from": 3}, 3.0)
    assert sse_frame(dropped) == b'event: overflow\ndata: {"dropped_from":3}\n\n'  # no id


async def test_long_polling_receives_updates_once_each(tmp_path: Path) -> None:
    async with hub_running(tmp_path, TELEGRAM_POLLING=True) as hub:
        first = telegram_of(hub).update(555, "polled one")
        telegram_of(hub).enqueue(first)
        telegram_of(hub).enqueue(telegram_of(hub).update(555, "polled two"))
        telegram_of(hub).enqueue(first)  # Telegram redelivers when the offset was not confirmed
        auth = {"Authorization": f"Bearer {hub.admin_key}"}
        async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:
            texts: list[str] = []
            for _ in range(200):
                items = (await client.get("/v1/conversations")).json()["items"]
                if items:
                    page = await client.get(f"/v1/conversations/{items[0]['id']}/messages")
                    texts = [m["content"]["text"] for m in page.json()["items"]]
                    if len(texts) == 2:
                        break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the redelivered update, if it were stored, would be by now
            page = await client.get(f"/v1/conversations/{items[0]['id']}/messages")
        assert [m["content"]["text"] for m in page.json()["items"]] == ["polled one", "polled two"]
        assert telegram_of(hub).updates == []  # the offset confirmed everything it stored


async def test_sse_resumes_from_the_query_parameter_and_refuses_a_bad_last_event_id(
    hub: Hub,
) -> None:
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    webhook = f"{hub.url}/v1/channels/telegram/{SIMULATOR_ACCOUNT}/webhook"
    for n in range(3):  # three stored events, nobody streaming
        update = telegram_of(hub).update(900 + n, f"m{n}")
        assert await telegram_of(hub).push(webhook, webhook_secret(hub), update) == 200
    stored = await hub.store.events_after("default", 0, 10)
    assert len(stored) == 3
    async with httpx.AsyncClient(base_url=hub.url, headers=auth, timeout=20) as client:
        bad = await client.get("/v1/events", headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 422, bad.text
        assert "Last-Event-ID" in bad.text
        got: list[tuple[str, str]] = []
        async with client.stream("GET", f"/v1/events?last_event_id={stored[0].id}") as stream:
            assert stream.status_code == 200
            async for line in stream.aiter_lines():
                if line.startswith(("id: ", "event: ")):
                    got.append((line.split(": ")[0], line.split(": ", 1)[1]))
                if len(got) == 4:
                    break
    assert got == [
        ("id", str(stored[1].id)),
        ("event", "message.inbound"),
        ("id", str(stored[2].id)),
        ("event", "message.inbound"),
    ]
