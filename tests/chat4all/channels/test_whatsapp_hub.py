"""WhatsApp end to end through a whole hub (REST → outbox → dispatcher → the Cloud API
simulator; the simulator's signed webhooks → the hub → a client's webhook and SSE)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio

from chat4all.adapters.channels.telegram import CHANNEL as TELEGRAM
from chat4all.adapters.channels.whatsapp import CHANNEL as WHATSAPP
from chat4all.adapters.channels.whatsapp import (
    WhatsAppConnector,
    WhatsAppSettings,
    WhatsAppSimulator,
)
from chat4all.adapters.channels.whatsapp.simulator import SIMULATOR_TOKEN
from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub
from chat4all.registry import Registry
from tests.chat4all.conftest import hub_running, live_events
from tests.chat4all.integration.test_webhooks import Receiver, receiving

USER = "16505551234"
INBOUND_USER = "16505551235"
LATE_USER = "16505551236"

# One hub for the module: each test writes to users of its own.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Hub]:
    async with hub_running(
        tmp_path_factory.mktemp("whatsapp-hub"),
        channels=Registry([TELEGRAM, WHATSAPP]),
        WHATSAPP_PACE_SECONDS=0.05,
        WHATSAPP_PAIR_INTERVAL=0.2,
        WHATSAPP_PAUSE_RETRY=0.2,
    ) as running:
        yield running


def simulator(hub: Hub) -> WhatsAppSimulator:
    sim = hub.channels.simulators["whatsapp"]
    assert isinstance(sim, WhatsAppSimulator)
    return sim


async def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def api(hub: Hub) -> httpx.AsyncClient:
    assert hub.admin_key is not None
    return httpx.AsyncClient(
        base_url=hub.url, headers={"Authorization": f"Bearer {hub.admin_key}"}, timeout=10
    )


def send(content: dict[str, Any], recipient: str = USER) -> dict[str, Any]:
    return {
        "channel": "whatsapp",
        "account": SIMULATOR_ACCOUNT,
        "recipient": recipient,
        "content": content,
    }


async def post_webhook(hub: Hub, payload: dict[str, Any] | bytes, genuine: bool = True) -> int:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signed = simulator(hub).webhook_request(SIMULATOR_ACCOUNT, body, genuine=genuine)
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            f"{hub.url}/v1/channels/whatsapp/{SIMULATOR_ACCOUNT}/webhook",
            content=body,
            headers=dict(signed.headers),
        )
    return answer.status_code


async def status_of(client: httpx.AsyncClient, message_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = (await client.get(f"/v1/messages/{message_id}")).json()
    return doc


async def test_each_kind_reaches_the_simulator_as_documented_and_statuses_only_move_forward(
    hub: Hub,
) -> None:
    sim = simulator(hub)
    base = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": USER}
    three = [{"title": t, "payload": t.lower()} for t in ("Yes", "No", "Later")]
    rows = [{"id": f"r{n}", "title": f"Row {n}"} for n in range(5)]
    kinds: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (
            {"text": "see https://example.org", "options": {"whatsapp": {"preview_url": True}}},
            {"type": "text", "text": {"body": "see https://example.org", "preview_url": True}},
        ),
        (
            {"attachments": [{"url": "https://e.org/a.jpg", "kind": "image", "caption": "c"}]},
            {"type": "image", "image": {"link": "https://e.org/a.jpg", "caption": "c"}},
        ),
        (
            {
                "attachments": [
                    {"url": "https://e.org/i.pdf", "kind": "document", "filename": "i.pdf"}
                ]
            },
            {"type": "document", "document": {"link": "https://e.org/i.pdf", "filename": "i.pdf"}},
        ),
        (
            {"attachments": [{"url": "https://e.org/a.ogg", "kind": "audio"}]},
            {"type": "audio", "audio": {"link": "https://e.org/a.ogg"}},
        ),
        (
            {"location": {"latitude": -23.55, "longitude": -46.63, "name": "SP"}},
            {
                "type": "location",
                "location": {"latitude": -23.55, "longitude": -46.63, "name": "SP"},
            },
        ),
        (
            {"template": {"name": "order_update", "language": "pt_BR", "parameters": ["42"]}},
            {
                "type": "template",
                "template": {
                    "name": "order_update",
                    "language": {"code": "pt_BR"},
                    "components": [
                        {"type": "body", "parameters": [{"type": "text", "text": "42"}]}
                    ],
                },
            },
        ),
        (
            {"text": "ok?", "buttons": three},
            {
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": "ok?"},
                    "action": {
                        "buttons": [
                            {"type": "reply", "reply": {"id": b["payload"], "title": b["title"]}}
                            for b in three
                        ]
                    },
                },
            },
        ),
        (
            {
                "text": "pick",
                "menu": {"button": "Open", "sections": [{"title": "S", "rows": rows}]},
            },
            {
                "type": "interactive",
                "interactive": {
                    "type": "list",
                    "body": {"text": "pick"},
                    "action": {
                        "button": "Open",
                        "sections": [{"title": "S", "rows": rows}],
                    },
                },
            },
        ),
        (
            {"contacts": [{"name": "Ana Silva", "phones": ["+5511999990000"]}]},
            {
                "type": "contacts",
                "contacts": [
                    {
                        "name": {
                            "formatted_name": "Ana Silva",
                            "first_name": "Ana",
                            "last_name": "Silva",
                        },
                        "phones": [{"phone": "+5511999990000"}],
                    }
                ],
            },
        ),
        (
            {
                "attachments": [
                    {"url": "https://e.org/s.webp", "kind": "sticker", "caption": "dropped"}
                ]
            },
            {"type": "sticker", "sticker": {"link": "https://e.org/s.webp"}},
        ),
    ]
    ids = []
    async with api(hub) as client:
        for content, _ in kinds:
            answer = await client.post("/v1/messages", json=send(content))
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        await until(lambda: len(sim.sent) == len(kinds))
        for (_, expected), our_id, got in zip(kinds, ids, sim.bodies(USER), strict=True):
            assert got == {**base, **expected, "biz_opaque_callback_data": our_id}
        # statuses: read, then a late delivered and sent: the status stays read
        first = sim.sent[0]
        for _ in range(200):
            if (await status_of(client, ids[0]))["status"] == "sent":
                break
            await asyncio.sleep(0.02)
        assert await post_webhook(hub, sim.statuses_of(first, "delivered")) == 200
        assert (await status_of(client, ids[0]))["status"] == "delivered"
        assert await post_webhook(hub, sim.statuses_of(first, "read", "delivered", "sent")) == 200
        got = await status_of(client, ids[0])
        assert got["status"] == "read"
        assert [h["status"] for h in got["history"]][-2:] == ["delivered", "read"]
        assert got["provider_message_id"] == first.wamid
        # failed after delivered (another device): in the history, the status stays delivered
        window = [{"code": 131047, "title": "Re-engagement message"}]
        second, third = sim.sent[1], sim.sent[2]
        to = str(second.body["to"])
        late = sim.notification(
            statuses=[
                sim.status(second.wamid, "delivered", to, ids[1]),
                sim.status(second.wamid, "failed", to, ids[1], window),
            ]
        )
        assert await post_webhook(hub, late) == 200
        got = await status_of(client, ids[1])
        assert got["status"] == "delivered"
        assert got["history"][-1]["status"] == "failed"
        # a failure reported only by webhook (131047): failed, with the template advice
        async_failure = sim.notification(
            statuses=[sim.status(third.wamid, "failed", to, ids[2], window)]
        )
        assert await post_webhook(hub, async_failure) == 200
        got = await status_of(client, ids[2])
        assert got["status"] == "failed"
        assert "131047" in got["history"][-1]["detail"]
        assert "template" in got["history"][-1]["detail"]


async def test_inbound_reaches_the_client_once_and_forgeries_store_nothing(hub: Hub) -> None:
    sim = simulator(hub)
    receiver = Receiver()
    async with receiving(receiver) as url, api(hub) as client:
        created = await client.post(
            "/v1/subscriptions", json={"url": url, "events": ["message.inbound"]}
        )
        receiver.secret = created.json()["secret"]

        async with live_events(hub, client) as live:
            # the handshake
            settings = hub.channels.settings["whatsapp"]
            assert isinstance(settings, WhatsAppSettings)
            verify = settings.verify_token(SIMULATOR_ACCOUNT)
            webhook = f"/v1/channels/whatsapp/{SIMULATOR_ACCOUNT}/webhook"
            query = {"hub.mode": "subscribe", "hub.verify_token": verify, "hub.challenge": "8231"}
            shook = await client.get(webhook, params=query)
            assert (shook.status_code, shook.text) == (200, "8231")
            query["hub.verify_token"] = "wrong"
            assert (await client.get(webhook, params=query)).status_code == 403
            # forged and unsigned: 401, nothing stored
            forged = sim.user_message(INBOUND_USER, "forged")
            assert await post_webhook(hub, forged, genuine=False) == 401
            unsigned = await client.post(webhook, content=forged)
            assert unsigned.status_code == 401
            # a batch of two messages, delivered twice
            one = sim.notification([sim.message(INBOUND_USER, body="first")])
            two = sim.notification([sim.message(INBOUND_USER, body="second")])
            batch = sim.batch(one, two)
            webhook_url = f"{hub.url}{webhook}"
            assert await sim.push(webhook_url, batch, times=2) == [200, 200]
            await until(lambda: len(receiver.received) >= 2 and len(live) >= 2)
            await asyncio.sleep(0.3)  # a repeat would arrive in this time
        await client.delete(f"/v1/subscriptions/{created.json()['id']}")
        # once each (client webhooks are delivered concurrently: in any order)
        received = sorted((e["data"] for _, e in receiver.received), key=lambda d: d["seq"])
        texts = [d["content"]["text"] for d in received]
        assert texts == ["first", "second"]
        assert [e["content"]["text"] for k, e in live if k == "message.inbound"] == texts
        conversations = (await client.get("/v1/conversations")).json()["items"]
        [conversation] = [
            c for c in conversations if (c["channel"], c["recipient"]) == ("whatsapp", INBOUND_USER)
        ]
        stored = (await client.get(f"/v1/conversations/{conversation['id']}/messages")).json()
        assert [m["content"]["text"] for m in stored["items"]] == ["first", "second"]


async def test_errors_by_code_window_storm_and_a_dead_token(hub: Hub) -> None:
    sim = simulator(hub)
    connector = hub.channels.connectors["whatsapp"]
    assert isinstance(connector, WhatsAppConnector)
    async with api(hub) as client:
        # outside the 24 h window: failed, with the reason telling to send a template
        sim.fail(131047)
        late = (await client.post("/v1/messages", json=send({"text": "late"}, LATE_USER))).json()
        for _ in range(300):
            got = await status_of(client, late["id"])
            if got["status"] == "failed":
                break
            await asyncio.sleep(0.02)
        assert got["status"] == "failed"
        reason = got["history"][-1]["detail"]
        assert "131047" in reason and "template" in reason
        assert sim.sent_to(LATE_USER) == 0
        # a storm of throughput errors and a pair limit: nothing lost, order kept
        # 12 in a row: each send waits out two itself, so the dispatcher sees 4 failures (a
        # fifth in a row would open its breaker for its 30 s cooldown)
        sim.fail(130429, times=12)
        for n in range(8):
            for user in ("111", "222"):
                answer = await client.post("/v1/messages", json=send({"text": f"{user}:{n}"}, user))
                assert answer.status_code == 202
            if n == 3:
                await until(lambda: sim.sent_to("111") >= 1)
                sim.fail(131056)
                sim.fail(80007)
        await until(lambda: sim.sent_to("111") == 8 and sim.sent_to("222") == 8, timeout=30)
        assert not sim.faults  # all 12 were met
        for user in ("111", "222"):
            assert [b["text"]["body"] for b in sim.bodies(user)] == [
                f"{user}:{n}" for n in range(8)
            ]
        # the token expires: the account pauses, its messages wait (not failed) until resumed
        sim.expire(SIMULATOR_TOKEN)
        waiting = (await client.post("/v1/messages", json=send({"text": "wait"}, "333"))).json()
        await until(lambda: bool(connector.paused()))
        await asyncio.sleep(0.5)  # several pause retries pass
        assert (await status_of(client, waiting["id"]))["status"] == "queued"
        assert SIMULATOR_TOKEN not in str(connector.paused())
        sim.expired.clear()
        assert connector.resume(SIMULATOR_ACCOUNT)
        await until(lambda: sim.sent_to("333") == 1)
        assert not connector.paused()


async def test_an_inbound_image_reaches_the_client_as_our_media(hub: Hub) -> None:
    sim = simulator(hub)
    data = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20
    media_id = sim.add_media(data, "image/jpeg")
    image = sim.message("16505551237", "image", id=media_id, mime_type="image/jpeg", caption="c")
    async with api(hub) as client:
        async with live_events(hub, client) as live:
            assert await post_webhook(hub, sim.notification([image])) == 200
            await until(lambda: bool(live))
        [(kind, announced)] = live
        assert kind == "message.inbound"
        [attachment] = announced["content"]["attachments"]
        assert attachment["url"] == f"whatsapp-media:{media_id}"
        assert (attachment["kind"], attachment["caption"]) == ("image", "c")
        download = await client.get(f"/v1/media/{attachment['media_id']}")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == hashlib.sha256(data).hexdigest()
