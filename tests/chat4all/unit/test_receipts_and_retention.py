"""Provider receipts move a sent message to delivered and read (never back), through the
inbound use case to live events; old idempotency keys and seen update ids are forgotten."""

from __future__ import annotations

import asyncio

import pytest

from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import Content, DeliveryStatus
from chat4all.errors import IdempotencyConflict, InvalidRequest, NotFound
from chat4all.ports import SendRequest
from chat4all.service_layer.accounts import Accounts
from chat4all.service_layer.events import EventBus
from chat4all.service_layer.inbound import Inbound
from chat4all.service_layer.status import StatusPublisher

ACCOUNTS = Accounts({("telegram", "bot"): "t1", ("telegram", "other"): "t2"})


async def sent_message(store: SqlStore, provider_id: str) -> str:
    accepted = await store.accept(
        "t1", SendRequest("telegram", "bot", "42", Content(text="hi")), None, 1.0
    )
    (item,) = await store.claim(2.0, 10, worker="w", lease=30.0)
    await store.sent(item, provider_id, 3.0)
    return accepted.message.id


async def test_receipts_advance_the_status_and_are_announced_once(store: SqlStore) -> None:
    message_id = await sent_message(store, "p-1")
    bus = EventBus()
    store.announcer.live = StatusPublisher(bus).committed
    inbound = Inbound(store, ACCOUNTS, clock=lambda: 10.0)
    events = bus.subscribe("t1")
    pending = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)  # subscribed

    delivered = await inbound.receipt("telegram", "bot", "p-1", DeliveryStatus.DELIVERED)
    assert delivered is not None and delivered.status is DeliveryStatus.DELIVERED
    first = await asyncio.wait_for(pending, 5)
    assert (first.type, first.data["id"], first.data["status"]) == (
        "message.status",
        message_id,
        "delivered",
    )
    read = await inbound.receipt("telegram", "bot", "p-1", DeliveryStatus.READ)
    assert read is not None and read.status is DeliveryStatus.READ
    # a late or repeated receipt changes nothing and announces nothing
    assert await inbound.receipt("telegram", "bot", "p-1", DeliveryStatus.DELIVERED) is None
    assert await inbound.receipt("telegram", "bot", "p-1", DeliveryStatus.READ) is None
    history = (await store.get("t1", message_id)).history
    assert [e.status.value for e in history] == ["accepted", "queued", "sent", "delivered", "read"]
    second = await asyncio.wait_for(anext(events), 5)
    assert second.data["status"] == "read"
    await events.aclose()


async def test_a_receipt_must_name_our_message_on_that_account(store: SqlStore) -> None:
    await sent_message(store, "p-2")
    inbound = Inbound(store, ACCOUNTS)
    assert await inbound.receipt("telegram", "bot", "nope", DeliveryStatus.READ) is None
    # the same provider id on another account is not this message
    assert await inbound.receipt("telegram", "other", "p-2", DeliveryStatus.READ) is None
    with pytest.raises(NotFound):
        await inbound.receipt("telegram", "stranger", "p-2", DeliveryStatus.READ)
    with pytest.raises(InvalidRequest):
        await inbound.receipt("telegram", "bot", "p-2", DeliveryStatus.ACCEPTED)


async def test_purge_forgets_old_keys_and_update_ids_and_keeps_recent_ones(
    store: SqlStore,
) -> None:
    def req(text: str) -> SendRequest:
        return SendRequest("telegram", "bot", "42", Content(text=text))

    for n in range(5):
        await store.accept("t1", req(f"old{n}"), (f"old-{n}", f"h{n}"), 100.0)
    await store.accept("t1", req("new"), ("new", "h-new"), 200.0)
    for n in range(3):
        await store.record_inbound("t1", req("in"), f"u{n}", f"pm{n}", 100.0)
    await store.record_inbound("t1", req("in"), "u-new", "pm-new", 200.0)

    assert await store.purge(older_than=150.0, batch=2) == (5, 3)
    # a forgotten key is new again; a kept one still guards its body
    again = await store.accept("t1", req("other body"), ("old-0", "other"), 300.0)
    assert again.replayed is False
    with pytest.raises(IdempotencyConflict):
        await store.accept("t1", req("x"), ("new", "different"), 300.0)
    assert await store.record_inbound("t1", req("in"), "u0", "pm0", 300.0) is not None
    assert await store.record_inbound("t1", req("in"), "u-new", "pm-new", 300.0) is None
    assert await store.purge(older_than=150.0) == (0, 0)
