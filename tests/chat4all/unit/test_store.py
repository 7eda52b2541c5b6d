"""The SQLite store's guarantees: durable accept, idempotency, per-conversation FIFO claims."""

from __future__ import annotations

import asyncio
import random

import pytest
import sqlalchemy as sa

from chat4all.adapters.storage.sql import IDEMPOTENCY_LEASE, SqlStore, messages, outbox
from chat4all.domain.model import Attachment, Content, DeliveryStatus
from chat4all.errors import IdempotencyConflict, IdempotencyInFlight, NotFound
from chat4all.ports import SendRequest


def req(text: str, recipient: str = "42") -> SendRequest:
    return SendRequest("telegram", "bot", recipient, Content(text=text))


async def test_an_accepted_message_is_queued_with_its_history(store: SqlStore) -> None:
    accepted = await store.accept("t1", req("hello"), None, 100.0)
    message = await store.get("t1", accepted.message.id)
    assert message.status is DeliveryStatus.QUEUED
    assert [e.status for e in message.history] == [DeliveryStatus.ACCEPTED, DeliveryStatus.QUEUED]
    assert message.content.text == "hello"
    assert message.seq == 1
    assert await store.depth() == 1


async def test_messages_of_a_conversation_get_consecutive_seqs(store: SqlStore) -> None:
    seqs = [(await store.accept("t1", req(f"m{n}"), None, 100.0)).message.seq for n in range(3)]
    other = await store.accept("t1", req("x", recipient="43"), None, 100.0)
    assert seqs == [1, 2, 3]
    assert other.message.seq == 1  # another recipient: another conversation


async def test_concurrent_accepts_share_a_commit_and_keep_each_conversations_order(
    store: SqlStore,
) -> None:
    # One group commit: several conversations, new and known, interleaved in one batch.
    await store.accept("t1", req("known"), None, 100.0)
    accepted = await asyncio.gather(
        *(
            store.accept("t1", req(f"m{n}", recipient=str(40 + n % 3)), None, 100.0 + n)
            for n in range(30)
        )
    )
    for recipient in ("40", "41", "42"):
        mine = [
            a.message
            for a in accepted
            if a.message.content.text and int(a.message.content.text[1:]) % 3 == int(recipient) - 40
        ]
        first = 2 if recipient == "42" else 1
        assert [m.seq for m in mine] == list(range(first, first + len(mine)))
        stored = [await store.get("t1", m.id) for m in mine]
        assert [m.seq for m in stored] == [m.seq for m in mine]
    page = await store.conversations("t1", None, 10)
    assert {c.recipient: c.last_message_at for c in page.items} == {
        "40": 127.0,
        "41": 128.0,
        "42": 129.0,
    }
    # delivered together, recorded together
    claimed = await store.claim(200.0, 10)
    await asyncio.gather(*(store.sent(i, f"p-{i.message.id}", 201.0) for i in claimed))
    for item in claimed:
        sent = await store.get("t1", item.message.id)
        assert sent.status is DeliveryStatus.SENT
        assert sent.provider_message_id == f"p-{item.message.id}"
        assert [e.status for e in sent.history][-1] is DeliveryStatus.SENT


async def test_idempotency_replays_refuses_other_bodies_and_reports_in_flight(
    store: SqlStore,
) -> None:
    first = await store.accept("t1", req("hello"), ("k1", "hash-a"), 100.0)
    again = await store.accept("t1", req("hello"), ("k1", "hash-a"), 101.0)
    assert again.replayed is True
    assert again.message.id == first.message.id
    assert await store.depth() == 1  # the replay queued nothing
    with pytest.raises(IdempotencyConflict):
        await store.accept("t1", req("bye"), ("k1", "hash-b"), 102.0)
    # Another tenant may use the same key for its own message.
    other = await store.accept("t2", req("hello"), ("k1", "hash-a"), 103.0)
    assert other.replayed is False


async def test_a_reserved_key_is_in_flight_until_its_lease_ends(store: SqlStore) -> None:
    # The first request reserved the key and died before completing.
    assert await store._reserve("t1", "k2", "hash", 100.0) is None
    with pytest.raises(IdempotencyInFlight):
        await store.accept("t1", req("hi"), ("k2", "hash"), 100.0 + IDEMPOTENCY_LEASE - 1)
    taken_over = await store.accept("t1", req("hi"), ("k2", "hash"), 100.0 + IDEMPOTENCY_LEASE + 1)
    assert taken_over.replayed is False


async def test_claims_hand_out_one_message_per_conversation_in_order(store: SqlStore) -> None:
    a = [(await store.accept("t1", req(f"a{n}"), None, 100.0)).message for n in range(3)]
    b = (await store.accept("t1", req("b0", recipient="43"), None, 100.0)).message
    first = await store.claim(200.0, 10)
    assert sorted(i.message.id for i in first) == sorted([a[0].id, b.id])
    assert await store.claim(200.0, 10) == []  # both conversations have one in flight
    await store.sent(next(i for i in first if i.message.id == a[0].id), "p1", 201.0)
    second = await store.claim(202.0, 10)
    assert [i.message.id for i in second] == [a[1].id]
    sent = await store.get("t1", a[0].id)
    assert sent.status is DeliveryStatus.SENT
    assert sent.provider_message_id == "p1"


async def test_a_retry_waits_and_keeps_the_conversation_blocked(store: SqlStore) -> None:
    m1 = (await store.accept("t1", req("one"), None, 100.0)).message
    await store.accept("t1", req("two"), None, 100.0)
    [item] = await store.claim(100.0, 10)
    await store.retry(item, 150.0, "HTTP 500", 100.0)
    assert await store.claim(120.0, 10) == []  # m1 not due yet, and m2 must not overtake it
    [again] = await store.claim(151.0, 10)
    assert again.message.id == m1.id
    assert again.attempts == 1


async def test_recover_hands_back_what_was_in_flight(store: SqlStore) -> None:
    await store.accept("t1", req("one"), None, 100.0)
    await store.claim(100.0, 10)
    assert await store.recover() == 1
    assert len(await store.claim(100.0, 10)) == 1


async def test_dead_letters_fail_the_message_with_the_reason(store: SqlStore) -> None:
    m = (await store.accept("t1", req("one"), None, 100.0)).message
    [item] = await store.claim(100.0, 10)
    await store.dead(item, "Forbidden: bot was blocked by the user", 101.0)
    failed = await store.get("t1", m.id)
    assert failed.status is DeliveryStatus.FAILED
    assert failed.history[-1].detail == "Forbidden: bot was blocked by the user"
    assert await store.depth() == 0


async def test_tenants_never_see_each_other(store: SqlStore) -> None:
    m = (await store.accept("t1", req("secret"), None, 100.0)).message
    with pytest.raises(NotFound):
        await store.get("t2", m.id)
    with pytest.raises(NotFound):
        await store.messages("t2", m.conversation_id, None, 10)
    assert (await store.conversations("t2", None, 10)).items == ()


async def test_history_pages_in_send_order(store: SqlStore) -> None:
    ids = [(await store.accept("t1", req(f"m{n}"), None, 100.0)).message for n in range(5)]
    conversation = ids[0].conversation_id
    page1 = await store.messages("t1", conversation, None, 2)
    page2 = await store.messages("t1", conversation, page1.next_cursor, 2)
    page3 = await store.messages("t1", conversation, page2.next_cursor, 2)
    seen = [m.content.text for p in (page1, page2, page3) for m in p.items]
    assert seen == ["m0", "m1", "m2", "m3", "m4"]
    assert page3.next_cursor is None


async def test_content_stored_before_uploads_existed_still_loads(store: SqlStore) -> None:
    m = (await store.accept("t1", req("old"), None, 100.0)).message
    # A row as the hub wrote it before attachments could carry a media_id.
    old = (
        '{"text":"old","attachments":[{"url":"https://example.org/a.jpg","kind":"image",'
        '"filename":null,"mime_type":null,"caption":"c"}],"location":null,"reply_to":null,'
        '"template":null,"buttons":[],"extensions":[]}'
    )
    async with store.transaction() as conn:
        await conn.execute(messages.update().where(messages.c.id == m.id).values(content=old))
    [attachment] = (await store.get("t1", m.id)).content.attachments
    assert attachment == Attachment("https://example.org/a.jpg", "image", caption="c")
    assert attachment.media_id is None


async def test_claims_match_the_fifo_rule_through_retries_deaths_and_deliveries(
    store: SqlStore,
) -> None:
    """The claim query against the rule it implements, over a random history: the due heads
    (lowest pending seq of a conversation with nothing in flight) and nothing else."""
    rng = random.Random(7)
    now = 1000.0
    for n in range(120):
        await store.accept("t1", req(f"m{n}", recipient=str(rng.randrange(12))), None, now)
        now += 0.01
    for _round in range(40):
        now += rng.choice((0.0, 1.0, 5.0))
        async with store.engine.connect() as conn:
            rows = (await conn.execute(sa.select(outbox))).all()
        busy = {r.conversation_id for r in rows if r.state == "inflight"}
        heads: dict[str, tuple[int, str, float]] = {}
        for r in rows:
            head = heads.get(r.conversation_id)
            pending = r.state == "pending" and r.conversation_id not in busy
            if pending and (head is None or r.seq < head[0]):
                heads[r.conversation_id] = (r.seq, r.message_id, r.available_at)
        due = {m for _, m, at in heads.values() if at <= now}
        claimed = await store.claim(now, 1000)
        assert {i.message.id for i in claimed} == due
        for item in claimed:
            fate = rng.random()
            if fate < 0.5:
                await store.sent(item, "p", now)
            elif fate < 0.8:
                await store.retry(item, now + rng.choice((0.0, 3.0, 30.0)), "later", now)
            elif fate < 0.9:
                await store.dead(item, "gone", now)
            # else: left in flight, blocking its conversation
