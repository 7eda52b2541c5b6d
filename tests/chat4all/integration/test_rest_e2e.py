"""The hub as `chat4all serve` runs it (API, dispatcher, SQLite, the Bot API simulator over
HTTP), driven by a real HTTP client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub
from chat4all.domain.access import Role
from tests.chat4all.channels.telegram_hub import telegram_of


def body(text: str, recipient: str = "42", **content: object) -> dict[str, object]:
    return {
        "channel": "telegram",
        "account": SIMULATOR_ACCOUNT,
        "recipient": recipient,
        "content": {"text": text, **content},
    }


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_a_sent_message_reaches_the_provider_and_its_status_follows(hub: Hub) -> None:
    assert hub.admin_key is not None
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:
        answer = await client.post("/v1/messages", json=body("hello"))
        assert answer.status_code == 202
        message = answer.json()
        assert message["status"] == "queued"
        await until(lambda: telegram_of(hub).texts("42") == ["hello"])
        for _ in range(100):
            got = (await client.get(f"/v1/messages/{message['id']}")).json()
            if got["status"] == "sent":
                break
            await asyncio.sleep(0.02)
        assert [h["status"] for h in got["history"]] == ["accepted", "queued", "sent"]
        assert got["provider_message_id"] == "1"
        conversations = (await client.get("/v1/conversations")).json()["items"]
        assert [c["recipient"] for c in conversations] == ["42"]


async def test_a_burst_per_conversation_arrives_in_order_despite_throttling(hub: Hub) -> None:
    assert hub.admin_key is not None
    telegram_of(hub).throttle(retry_after=1, times=2)
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:
        for n in range(10):
            for chat in ("1", "2"):
                answer = await client.post("/v1/messages", json=body(f"{chat}:{n}", recipient=chat))
                assert answer.status_code == 202
    await until(lambda: len(telegram_of(hub).sent) == 20, timeout=20)
    for chat in ("1", "2"):
        assert telegram_of(hub).texts(chat) == [f"{chat}:{n}" for n in range(10)]


async def test_idempotency_over_http(hub: Hub) -> None:
    auth = {"Authorization": f"Bearer {hub.admin_key}", "Idempotency-Key": "order-1"}
    async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:
        first = await client.post("/v1/messages", json=body("once"))
        again = await client.post("/v1/messages", json=body("once"))
        other = await client.post("/v1/messages", json=body("twice"))
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_conflict"
    await asyncio.sleep(0.5)
    assert telegram_of(hub).texts() == ["once"]
    # once sent, a replay still answers what the first request was answered (README)
    async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:
        status = ""
        for _ in range(200):
            status = (await client.get(f"/v1/messages/{first.json()['id']}")).json()["status"]
            if status == "sent":
                break
            await asyncio.sleep(0.05)
        assert status == "sent"
        later = await client.post("/v1/messages", json=body("once"))
    assert later.status_code == 202
    assert later.headers["Idempotent-Replayed"] == "true"
    assert later.json() == first.json()
    assert later.json()["status"] == "queued"


async def test_bad_input_is_refused_with_the_field_and_nothing_is_stored(hub: Hub) -> None:
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:
        too_long = await client.post("/v1/messages", json=body("x" * 4097))
        unknown = await client.post("/v1/messages", json={**body("hi"), "channel": "fax"})
        empty = await client.post("/v1/messages", json={**body("hi"), "content": {}})
        listed = (await client.get("/v1/conversations")).json()["items"]
    assert too_long.status_code == 422
    assert too_long.json()["error"]["field"] == "content.text"
    assert "4096" in too_long.json()["error"]["message"]
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "channel"
    assert empty.status_code == 422
    assert listed == []


async def test_keys_roles_and_tenants(hub: Hub) -> None:
    reader_key, _ = await hub.keys.create("default", Role.READER)
    other_key, _ = await hub.keys.create("tenant-b", Role.SENDER)
    async with httpx.AsyncClient(base_url=hub.url) as client:
        assert (await client.post("/v1/messages", json=body("x"))).status_code == 401
        bad = await client.post(
            "/v1/messages", json=body("x"), headers={"Authorization": "Bearer c4a_nope_nope"}
        )
        assert bad.status_code == 401
        sent = await client.post(
            "/v1/messages", json=body("mine"), headers={"Authorization": f"Bearer {hub.admin_key}"}
        )
        mine = sent.json()["id"]
        as_reader = {"Authorization": f"Bearer {reader_key}"}
        assert (
            await client.post("/v1/messages", json=body("x"), headers=as_reader)
        ).status_code == 403
        assert (await client.get(f"/v1/messages/{mine}", headers=as_reader)).status_code == 200
        as_other = {"Authorization": f"Bearer {other_key}"}
        assert (await client.get(f"/v1/messages/{mine}", headers=as_other)).status_code == 404
        assert (await client.get("/v1/conversations", headers=as_other)).json()["items"] == []
        await hub.keys.revoke(reader_key.split("_")[1])
        assert (await client.get(f"/v1/messages/{mine}", headers=as_reader)).status_code == 401


async def test_health_ready_and_the_openapi_document(hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=hub.url) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        ok = {"ok": True, "required": True, "detail": None}
        assert (await client.get("/ready")).json() == {
            "ready": True,
            "degraded": [],
            "checks": {"database": ok, "tasks": ok},  # the embedded hub: no NATS, no Redis
        }
        spec = (await client.get("/v1/openapi.json")).json()
    assert "/v1/messages" in spec["paths"]
    assert "/v1/conversations/{conversation_id}/messages" in spec["paths"]


async def test_dead_letters_are_listed_replayed_and_counted_in_metrics(hub: Hub) -> None:
    telegram_of(hub).blocked.add("666")
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:
        sent = (
            await client.post("/v1/messages", json=body("are you there", recipient="666"))
        ).json()
        for _ in range(200):
            dead = (await client.get("/v1/dead-letters")).json()["items"]
            if dead:
                break
            await asyncio.sleep(0.02)
        assert [d["message"]["id"] for d in dead] == [sent["id"]]
        assert "blocked" in dead[0]["error"]
        assert dead[0]["message"]["status"] == "failed"
        scrape = (await client.get("/metrics")).text
        assert "chat4all_dead_letters 1.0" in scrape
        assert 'chat4all_dispatch_total{channel="telegram",outcome="failed"} 1.0' in scrape
        assert (
            'chat4all_http_requests_total{method="POST",route="/v1/messages",status="202"} 1.0'
            in scrape
        )

        telegram_of(hub).blocked.clear()  # the cause is fixed: replay
        replayed = await client.post(f"/v1/dead-letters/{sent['id']}/replay")
        assert replayed.status_code == 202
        await until(lambda: telegram_of(hub).texts("666") == ["are you there"])
        assert (await client.get("/v1/dead-letters")).json()["items"] == []
        again = await client.post(f"/v1/dead-letters/{sent['id']}/replay")
        assert again.status_code == 404
        reader_key, _ = await hub.keys.create("default", Role.READER)
        forbidden = await client.get(
            "/v1/dead-letters", headers={"Authorization": f"Bearer {reader_key}"}
        )
        assert forbidden.status_code == 403


async def test_concurrent_senders_to_the_same_new_conversations_all_succeed(hub: Hub) -> None:
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:
        answers = await asyncio.gather(
            *(
                client.post("/v1/messages", json=body(f"c{n}", recipient=str(n % 5)))
                for n in range(60)
            )
        )
    assert [a.status_code for a in answers] == [202] * 60, [
        a.text for a in answers if a.status_code != 202
    ][:3]
    seqs: dict[str, list[int]] = {}
    for a in answers:
        seqs.setdefault(a.json()["conversation_id"], []).append(a.json()["seq"])
    assert len(seqs) == 5
    assert all(sorted(s) == list(range(1, 13)) for s in seqs.values())


async def test_a_message_in_parts_is_not_repeated_when_a_later_part_fails(hub: Hub) -> None:
    telegram_of(hub).fail(502, method="sendPhoto")
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    photo = [{"url": "https://example.org/p.jpg", "kind": "image"}]
    async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:
        sent = (await client.post("/v1/messages", json=body("two parts", attachments=photo))).json()
        for _ in range(500):
            got = (await client.get(f"/v1/messages/{sent['id']}")).json()
            if got["status"] == "sent":
                break
            await asyncio.sleep(0.02)
    assert got["status"] == "sent"
    methods = [s.method for s in telegram_of(hub).sent]
    assert methods == ["sendMessage", "sendPhoto"]  # the text went once, through the retry
    assert got["provider_message_id"] == "1"
