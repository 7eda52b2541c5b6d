"""Client webhooks: subscribed events arrive signed at a real receiver; failures retry with
backoff for 24 h and then dead-letter (fake clock, httpx's MockTransport at the edge)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI, Request, Response

from chat4all.adapters.storage.sql import SqlStore
from chat4all.adapters.storage.webhooks import WebhookStore, fanout, subscriptions, webhook_outbox
from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub, Injected
from chat4all.service_layer.targets import TargetPolicy
from chat4all.service_layer.webhooks import GIVE_UP_AFTER, WebhookDispatcher, verify
from chat4all.simulator.host import QuietServer
from tests.chat4all.channels.telegram_hub import telegram_of, webhook_secret
from tests.chat4all.conftest import hub_running, live_events


async def public(host: str, _port: int) -> list[str]:
    """A resolver for the names these tests use (no DNS here): all public addresses."""
    return {"client.example": ["151.101.1.69", "93.184.216.34"]}.get(host, ["93.184.216.34"])


class Receiver:
    """A client's webhook endpoint that checks every signature it gets."""

    def __init__(self) -> None:
        self.secret = ""
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.bad_signatures = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            ok = verify(
                self.secret,
                request.headers["X-Chat4All-Timestamp"],
                body,
                request.headers["X-Chat4All-Signature"],
                now=time.time(),
            )
            if not ok:
                self.bad_signatures += 1
                return Response(status_code=401)
            self.received.append((request.headers["X-Chat4All-Event"], json.loads(body)))
            return Response(status_code=204)

        return app


async def test_subscribed_events_arrive_signed(hub: Hub) -> None:
    """End to end: API → outbox → dispatcher → simulator → status → client webhook and SSE."""
    receiver = Receiver()
    server = QuietServer(
        uvicorn.Config(receiver.app(), port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/hook"
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    try:
        async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:
            created = await client.post(
                "/v1/subscriptions",
                json={"url": url, "events": ["message.status", "message.inbound"]},
            )
            assert created.status_code == 201
            receiver.secret = created.json()["secret"]
            listed = (await client.get("/v1/subscriptions")).json()["items"]
            assert [s["id"] for s in listed] == [created.json()["id"]]
            assert "secret" not in listed[0]

            async with live_events(hub, client) as live:
                sent = await client.post(
                    "/v1/messages",
                    json={
                        "channel": "telegram",
                        "account": SIMULATOR_ACCOUNT,
                        "recipient": "42",
                        "content": {"text": "hi"},
                    },
                )
                update = telegram_of(hub).update(42, "hello back")
                webhook = f"{hub.url}/v1/channels/telegram/{SIMULATOR_ACCOUNT}/webhook"
                assert await telegram_of(hub).push(webhook, webhook_secret(hub), update) == 200
                deadline = time.monotonic() + 10
                while len(receiver.received) < 2 or len(live) < 2:
                    assert time.monotonic() < deadline, (receiver.received, live)
                    await asyncio.sleep(0.05)
            bad = await client.post(
                "/v1/subscriptions", json={"url": url, "events": ["message.deleted"]}
            )
            assert bad.status_code == 422
    finally:
        server.should_exit = True
        await task
    kinds = dict(receiver.received)
    assert kinds["message.status"]["data"]["id"] == sent.json()["id"]
    assert kinds["message.status"]["data"]["status"] == "sent"
    assert kinds["message.inbound"]["data"]["content"]["text"] == "hello back"
    assert receiver.bad_signatures == 0
    streamed = dict(live)
    assert streamed["message.status"] == kinds["message.status"]["data"]
    assert streamed["message.inbound"]["id"] == kinds["message.inbound"]["data"]["id"]


async def test_failures_retry_with_backoff_and_dead_letter_after_24h(store: SqlStore) -> None:
    webhooks = WebhookStore(store)
    sub, secret = await webhooks.subscribe("t1", "https://client.example/hook", ("message.status",))
    async with store.engine.begin() as conn:
        await fanout(conn, "t1", "message.status", {"id": "m_1", "status": "sent"}, 1000.0)
        await fanout(
            conn, "t2", "message.status", {"id": "m_2", "status": "sent"}, 1000.0
        )  # not subscribed
    calls: list[httpx.Request] = []
    answers = iter([500, 503])

    def respond(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(next(answers, 502))

    clock = [1000.0]
    dispatcher = WebhookDispatcher(
        webhooks,
        clock=lambda: clock[0],
        rng=random.Random(3),
        transport=httpx.MockTransport(respond),
        targets=TargetPolicy(resolver=public),
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(respond)) as client:
        assert await dispatcher.round(client) == 1
        assert await dispatcher.round(client) == 0  # waiting for its backoff
        clock[0] += 10
        assert await dispatcher.round(client) == 1
        while clock[0] - 1000.0 < GIVE_UP_AFTER + 3600:
            clock[0] += 60
            await dispatcher.round(client)
    assert len(calls) >= 10
    first = calls[0]
    assert verify(
        secret,
        first.headers["X-Chat4All-Timestamp"],
        first.content,
        first.headers["X-Chat4All-Signature"],
        now=1000.0,
    )
    assert json.loads(first.content)["data"] == {"id": "m_1", "status": "sent"}
    assert len({c.headers["X-Chat4All-Delivery"] for c in calls}) == 1  # one delivery, retried
    assert await webhooks.dead_count() == 1
    assert sub.tenant == "t1"
    # backoff grew: later attempts are far apart, and none came after the 24 h mark plus one
    stamps = [int(c.headers["X-Chat4All-Timestamp"]) for c in calls]
    assert stamps[-1] - stamps[-2] > stamps[2] - stamps[1]
    assert stamps[-1] - 1000 <= GIVE_UP_AFTER + 3600


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[str]:
    """``receiver`` served on loopback; yields its hook's URL."""
    server = QuietServer(
        uvicorn.Config(receiver.app(), port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the receiver did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/hook"
    finally:
        server.should_exit = True
        await task


async def test_a_bad_subscription_url_is_refused_naming_the_field(tmp_path: Path) -> None:
    async with hub_running(tmp_path, WEBHOOK_ALLOW_PRIVATE=False) as hub:
        auth = {"Authorization": f"Bearer {hub.admin_key}"}
        async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:
            for url, says in [
                ("http://[::1", "not a valid URL"),
                ("https://me:pw@hooks.example.com/x", "credentials"),
                ("http://127.0.0.1:9/hook", "CHAT4ALL_WEBHOOK_ALLOW_PRIVATE"),
                ("http://169.254.169.254/latest", "link-local"),
            ]:
                answer = await client.post(
                    "/v1/subscriptions", json={"url": url, "events": ["message.status"]}
                )
                assert answer.status_code == 422, (url, answer.text)
                error = answer.json()["error"]
                assert error["field"] == "url"
                assert says in error["message"]
                assert "pw" not in error["message"]
            good = await client.post(
                "/v1/subscriptions",
                json={"url": "https://hooks.example.com/x", "events": ["message.status"]},
            )
            assert good.status_code == 201  # names are checked at delivery, after DNS
            assert [s["url"] for s in (await client.get("/v1/subscriptions")).json()["items"]] == [
                "https://hooks.example.com/x"
            ]


async def test_a_bad_row_from_an_old_release_stops_no_one_elses_webhooks(hub: Hub) -> None:
    """A subscription URL that no check would let in today, already in the database: its
    deliveries fail (and retry), the worker runs on, other tenants' webhooks arrive."""
    async with hub.store.transaction() as conn:
        await conn.execute(
            subscriptions.insert().values(
                id="s_old",
                tenant="old-tenant",
                url="http://[::1",
                secret="whsec_old",  # noqa: S106 - a test row
                events="message.status",
                created_at=1.0,
            )
        )
    receiver = Receiver()
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    async with (
        receiving(receiver) as url,
        httpx.AsyncClient(base_url=hub.url, headers=auth) as client,
    ):
        created = await client.post(
            "/v1/subscriptions", json={"url": url, "events": ["message.status"]}
        )
        assert created.status_code == 201
        receiver.secret = created.json()["secret"]
        async with hub.store.transaction() as conn:
            await fanout(conn, "old-tenant", "message.status", {"id": "m_old"}, time.time())
        for n in range(2):
            sent = await client.post(
                "/v1/messages",
                json={
                    "channel": "telegram",
                    "account": SIMULATOR_ACCOUNT,
                    "recipient": "42",
                    "content": {"text": f"hi {n}"},
                },
            )
            assert sent.status_code == 202
            deadline = time.monotonic() + 15
            while len(receiver.received) < n + 1:
                assert time.monotonic() < deadline, receiver.received
                await asyncio.sleep(0.05)
        assert (await client.get("/ready")).json()["ready"] is True
    assert [data["data"]["status"] for _, data in receiver.received] == ["sent", "sent"]
    assert receiver.bad_signatures == 0
    async with hub.store.engine.connect() as conn:
        [old] = (
            await conn.execute(
                sa.select(webhook_outbox).where(webhook_outbox.c.subscription_id == "s_old")
            )
        ).all()
    assert old.state == "pending" and old.attempts >= 1  # its own failure, retried later
    assert "not a valid URL" in old.last_error
    states = {s.name: s for s in hub.supervisor.states()}
    assert states["webhooks"].running


async def test_a_name_resolving_to_a_private_address_is_refused_at_delivery(
    tmp_path: Path,
) -> None:
    calls: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(204)

    async def internal(host: str, _port: int) -> list[str]:
        return {"hooks.internal.example": ["10.0.0.5"]}.get(host, ["93.184.216.34"])

    overrides: Injected = {"resolver": internal, "webhook_transport": httpx.MockTransport(respond)}
    async with hub_running(tmp_path, WEBHOOK_ALLOW_PRIVATE=False, overrides=overrides) as hub:
        webhooks = WebhookStore(hub.store)
        for tenant, host in [("t1", "hooks.internal.example"), ("t2", "hooks.example.com")]:
            await hub.subscriptions.subscribe(tenant, f"https://{host}/x", ["message.status"])
            async with hub.store.transaction() as conn:
                await fanout(conn, tenant, "message.status", {"id": f"m_{tenant}"}, time.time())
        deadline = time.monotonic() + 10
        while True:
            async with hub.store.engine.connect() as conn:
                rows = (await conn.execute(sa.select(webhook_outbox))).all()
            if len(rows) == 1 and rows[0].attempts >= 1:
                break
            assert time.monotonic() < deadline, rows
            await asyncio.sleep(0.05)
        assert await webhooks.dead_count() == 0
    # the public one only, at the address that was checked
    assert [(c.headers["Host"], c.url.host) for c in calls] == [
        ("hooks.example.com", "93.184.216.34")
    ]
    assert rows[0].last_error == (
        "refused: hooks.internal.example resolves to 10.0.0.5, a private address; refused "
        "unless CHAT4ALL_WEBHOOK_ALLOW_PRIVATE is set"
    )
