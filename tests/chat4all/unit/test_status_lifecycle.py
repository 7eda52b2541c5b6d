"""The status lifecycle with the receipts the Meta channels send: status only moves forward, an
out-of-order or repeated receipt changes nothing and is counted, ``failed`` after ``delivered``
is kept in the history, a watermark covers every earlier message of its conversation, an echo
of our own send is not stored twice, and a received reaction finds the message it is on."""

from __future__ import annotations

from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import Content, DeliveryStatus, Reaction
from chat4all.plugin import InboundMessage, Receipt, Received
from chat4all.ports import SendRequest
from chat4all.service_layer.accounts import Accounts
from chat4all.service_layer.inbound import Inbound

ACCOUNTS = Accounts({("meta", "page"): "t1"})


def hub(store: SqlStore) -> tuple[Inbound, list[tuple[str, str]]]:
    counted: list[tuple[str, str]] = []
    inbound = Inbound(
        store,
        ACCOUNTS,
        clock=lambda: 100.0,
        counted=lambda channel, outcome: counted.append((channel, outcome)),
    )
    return inbound, counted


async def send(store: SqlStore, recipient: str, provider_id: str, at: float) -> str:
    accepted = await store.accept(
        "t1", SendRequest("meta", "page", recipient, Content(text="hi")), None, at
    )
    (item,) = await store.claim(at, 10, worker="w", lease=30.0)
    await store.sent(item, provider_id, at)
    return accepted.message.id


async def test_status_only_moves_forward_and_late_receipts_are_counted(store: SqlStore) -> None:
    inbound, counted = hub(store)
    mid = await send(store, "u1", "wamid.1", 1.0)
    receipts = (
        Receipt("wamid.1", DeliveryStatus.DELIVERED),
        Receipt("wamid.1", DeliveryStatus.SENT),  # late, out of order
        Receipt("wamid.1", DeliveryStatus.DELIVERED),  # redelivered
        Receipt("wamid.1", DeliveryStatus.FAILED, detail="131026: undeliverable (2nd device)"),
        Receipt("wamid.nope", DeliveryStatus.READ),
    )
    await inbound.received("meta", "page", Received(receipts=receipts))
    message = await store.get("t1", mid)
    assert message.status is DeliveryStatus.DELIVERED
    assert [(e.status.value, e.detail) for e in message.history] == [
        ("accepted", None),
        ("queued", None),
        ("sent", None),
        ("delivered", None),
        ("failed", "131026: undeliverable (2nd device)"),
    ]
    assert [o for _, o in counted] == ["applied", "stale", "stale", "recorded", "unknown"]
    # read still moves it on; failed before delivery fails it
    await inbound.apply("meta", "page", Receipt("wamid.1", DeliveryStatus.READ))
    assert (await store.get("t1", mid)).status is DeliveryStatus.READ
    other = await send(store, "u2", "wamid.2", 2.0)
    await inbound.apply("meta", "page", Receipt("wamid.2", DeliveryStatus.FAILED, "131047"))
    failed = await store.get("t1", other)
    assert (failed.status, failed.history[-1].detail) == (DeliveryStatus.FAILED, "131047")


async def test_a_watermark_covers_every_earlier_message_of_its_conversation(
    store: SqlStore,
) -> None:
    inbound, counted = hub(store)
    first = await send(store, "u1", "m.1", 3.0)
    second = await send(store, "u1", "m.2", 4.0)
    third = await send(store, "u1", "m.3", 5.0)
    elsewhere = await send(store, "u2", "m.4", 3.5)
    delivered = Receipt("", DeliveryStatus.DELIVERED, watermark=4.5, recipient="u1")
    changed = await inbound.apply("meta", "page", delivered)
    assert [m.id for m in changed] == [first, second]
    assert (await store.get("t1", third)).status is DeliveryStatus.SENT
    assert (await store.get("t1", elsewhere)).status is DeliveryStatus.SENT
    read = await inbound.apply(
        "meta", "page", Receipt("", DeliveryStatus.READ, watermark=9.0, recipient="u1")
    )
    assert [m.id for m in read] == [first, second, third]
    # the same watermark again changes nothing, and is counted as such
    assert await inbound.apply("meta", "page", delivered) == []
    assert [o for _, o in counted] == ["applied", "applied", "stale"]


async def test_echoes_and_received_reactions(store: SqlStore) -> None:
    inbound, _ = hub(store)
    mid = await send(store, "u1", "mid.ours", 1.0)
    echo_of_ours = InboundMessage("e1", "u1", "mid.ours", Content(text="hi"), echo=True)
    from_inbox = InboundMessage("e2", "u1", "mid.inbox", Content(text="by hand"), echo=True)
    reaction = InboundMessage(
        "e3",
        "u1",
        "mid.react",
        Content(reaction=Reaction(None, "\N{THUMBS UP SIGN}", "mid.ours")),
    )
    stored = await inbound.received(
        "meta", "page", Received(messages=(echo_of_ours, from_inbox, reaction))
    )
    assert [(m.direction, m.status.value) for m in stored] == [
        ("outbound", "sent"),
        ("inbound", "delivered"),
    ]
    assert stored[0].content.text == "by hand"
    assert stored[1].content.reaction == Reaction(mid, "\N{THUMBS UP SIGN}", "mid.ours")
    page = await store.messages("t1", stored[0].conversation_id, None, 10)
    assert len(page.items) == 3  # ours once, the inbox's, the reaction
