"""The store contract: every test runs over SQLite and over PostgreSQL (the ``any_store``
fixture), so both engines keep the same guarantees: durable accept, idempotency (a replay is the
first answer), per-conversation FIFO claims with leases, safe with several workers at once."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from chat4all.adapters.storage import migrate
from chat4all.adapters.storage.audit import AuditLog
from chat4all.adapters.storage.messages import IDEMPOTENCY_LEASE, Job
from chat4all.adapters.storage.schema import messages, outbox
from chat4all.adapters.storage.sql import SqlStore
from chat4all.adapters.storage.webhooks import WebhookStore, fanout
from chat4all.domain.model import Attachment, Content, DeliveryStatus
from chat4all.errors import IdempotencyConflict, IdempotencyInFlight, NotFound
from chat4all.ports import NO_ORIGIN, Backlog, SendRequest
from chat4all.service_layer.events import Event

LEASE = 30.0


@pytest.fixture
def store(any_store: SqlStore) -> SqlStore:
    return any_store


@pytest.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open(postgres_url)
    try:
        yield opened
    finally:
        await opened.close()


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
    claimed = await store.claim(200.0, 10, worker="w1", lease=LEASE)
    await asyncio.gather(*(store.sent(i, f"p-{i.message.id}", 201.0) for i in claimed))
    for item in claimed:
        sent = await store.get("t1", item.message.id)
        assert sent.status is DeliveryStatus.SENT
        assert sent.provider_message_id == f"p-{item.message.id}"
        assert [e.status for e in sent.history][-1] is DeliveryStatus.SENT


async def test_a_claim_shares_the_group_commit_of_the_accepts_and_records_beside_it(
    store: SqlStore,
) -> None:
    first = (await store.accept("t1", req("first"), None, 100.0)).message
    [held] = await store.claim(100.0, 10, worker="w1", lease=LEASE)
    assert held.message.id == first.id
    # submitted together: one batch, written in order (accepts, records, then the claim)
    _, second, other, claimed = await asyncio.gather(
        store.sent(held, "p-1", 101.0),
        store.accept("t1", req("second"), None, 101.0),
        store.accept("t1", req("elsewhere", recipient="43"), None, 101.0),
        store.claim(101.0, 10, worker="w1", lease=LEASE),
    )
    # the claim saw the conversation freed and both messages accepted in its own transaction
    assert {i.message.id for i in claimed} == {second.message.id, other.message.id}
    assert (await store.get("t1", first.id)).status is DeliveryStatus.SENT
    assert await store.claim(102.0, 10, worker="w2", lease=LEASE) == []  # held by w1


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
    assert await store.message_log.reserve("t1", "k2", "hash", 100.0) is None
    with pytest.raises(IdempotencyInFlight):
        await store.accept("t1", req("hi"), ("k2", "hash"), 100.0 + IDEMPOTENCY_LEASE - 1)
    taken_over = await store.accept("t1", req("hi"), ("k2", "hash"), 100.0 + IDEMPOTENCY_LEASE + 1)
    assert taken_over.replayed is False


async def test_claims_hand_out_one_message_per_conversation_in_order(store: SqlStore) -> None:
    a = [(await store.accept("t1", req(f"a{n}"), None, 100.0)).message for n in range(3)]
    b = (await store.accept("t1", req("b0", recipient="43"), None, 100.0)).message
    first = await store.claim(200.0, 10, worker="w1", lease=LEASE)
    assert sorted(i.message.id for i in first) == sorted([a[0].id, b.id])
    # both conversations have one in flight
    assert await store.claim(200.0, 10, worker="w1", lease=LEASE) == []
    await store.sent(next(i for i in first if i.message.id == a[0].id), "p1", 201.0)
    second = await store.claim(202.0, 10, worker="w1", lease=LEASE)
    assert [i.message.id for i in second] == [a[1].id]
    sent = await store.get("t1", a[0].id)
    assert sent.status is DeliveryStatus.SENT
    assert sent.provider_message_id == "p1"


async def test_a_retry_waits_and_keeps_the_conversation_blocked(store: SqlStore) -> None:
    m1 = (await store.accept("t1", req("one"), None, 100.0)).message
    await store.accept("t1", req("two"), None, 100.0)
    [item] = await store.claim(100.0, 10, worker="w1", lease=LEASE)
    await store.retry(item, 150.0, "HTTP 500", 100.0)
    # m1 not due yet, and m2 must not overtake it
    assert await store.claim(120.0, 10, worker="w1", lease=LEASE) == []
    [again] = await store.claim(151.0, 10, worker="w1", lease=LEASE)
    assert again.message.id == m1.id
    assert again.attempts == 1


async def test_a_paused_accounts_retry_keeps_its_attempts_and_comes_due_when_resumed(
    store: SqlStore,
) -> None:
    paused = (await store.accept("t1", req("one"), None, 100.0)).message
    other = SendRequest("telegram", "bot2", "42", Content(text="elsewhere"))
    await store.accept("t1", other, None, 100.0)
    items = await store.claim(100.0, 10, worker="w1", lease=LEASE)
    for item in items:
        await store.retry(item, 500.0, "paused", 100.0, counted=False)
    assert await store.due_now("telegram", "bot", 120.0) == 1  # the other account's waits on
    [again] = await store.claim(120.0, 10, worker="w1", lease=LEASE)
    assert again.message.id == paused.id
    assert again.attempts == 0


async def test_recover_hands_back_what_was_in_flight(store: SqlStore) -> None:
    await store.accept("t1", req("one"), None, 100.0)
    await store.claim(100.0, 10, worker="w1", lease=LEASE)
    assert await store.recover(100.0 + LEASE + 1) == 1
    assert len(await store.claim(100.0 + LEASE + 1, 10, worker="w1", lease=LEASE)) == 1


async def test_dead_letters_fail_the_message_with_the_reason(store: SqlStore) -> None:
    m = (await store.accept("t1", req("one"), None, 100.0)).message
    [item] = await store.claim(100.0, 10, worker="w1", lease=LEASE)
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
    (lowest pending seq of a conversation with nothing in flight) and nothing else. The history
    accepts, delivers, retries, dead-letters and replays dead letters as it goes."""
    rng = random.Random(7)
    now = 1000.0
    for n in range(120):
        await store.accept("t1", req(f"m{n}", recipient=str(rng.randrange(12))), None, now)
        now += 0.01
    dead: list[str] = []
    for _round in range(40):
        now += rng.choice((0.0, 1.0, 5.0))
        for _ in range(rng.randrange(4)):
            await store.accept("t1", req("more", recipient=str(rng.randrange(12))), None, now)
        if dead and rng.random() < 0.3:
            await store.replay("t1", dead.pop(rng.randrange(len(dead))), now)
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
        claimed = await store.claim(now, 1000, worker="w1", lease=1e9)  # no lease runs out
        assert {i.message.id for i in claimed} == due
        for item in claimed:
            fate = rng.random()
            if fate < 0.5:
                await store.sent(item, "p", now)
            elif fate < 0.8:
                await store.retry(item, now + rng.choice((0.0, 3.0, 30.0)), "later", now)
            elif fate < 0.9:
                await store.dead(item, "gone", now)
                dead.append(item.message.id)
            # else: left in flight, blocking its conversation


async def test_migrations_reach_the_newest_revision(store: SqlStore) -> None:
    assert store.migrated == (None, migrate.revisions()[-1])


async def test_concurrent_first_requests_with_one_key_make_one_message(store: SqlStore) -> None:
    outcomes = await asyncio.gather(
        *(store.accept("t1", req("once"), ("key-1", "hash"), 1.0) for _ in range(8)),
        return_exceptions=True,
    )
    unexpected = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(o, IdempotencyInFlight) for o in unexpected), unexpected
    made = {o.message.id for o in outcomes if not isinstance(o, BaseException)}
    assert len(made) == 1
    again = await store.accept("t1", req("once"), ("key-1", "hash"), 2.0)
    assert again.replayed and again.message.id in made


async def test_one_bad_change_fails_alone_in_its_group_commit(pg_store: SqlStore) -> None:
    store = pg_store  # SQLite stores a NUL byte: the bad change is PostgreSQL's
    good = [store.accept("t1", req(f"good {n}", recipient=f"r{n}"), None, 1.0) for n in range(6)]
    bad = store.accept("t2", req("bad", recipient="nul\x00byte"), None, 1.0)  # PostgreSQL refuses
    outcomes = await asyncio.gather(*good, bad, return_exceptions=True)
    assert isinstance(outcomes[-1], sa.exc.DBAPIError)
    accepted = [o for o in outcomes[:-1] if not isinstance(o, BaseException)]
    assert len(accepted) == 6, outcomes
    assert await store.depth() == 6


async def test_inbound_and_outbound_open_a_new_conversation_together(store: SqlStore) -> None:
    inbound = store.record_inbound("t1", req("hi from them", "new"), "u1", "pm1", 1.0)
    outbound = store.accept("t1", req("hi from us", "new"), None, 1.0)
    received, sent = await asyncio.gather(inbound, outbound)
    assert received is not None
    assert received.conversation_id == sent.message.conversation_id
    assert sorted([received.seq, sent.message.seq]) == [1, 2]


# ---- leases ----------------------------------------------------------------------------------


async def test_a_live_workers_rows_are_never_recovered_nor_claimed(store: SqlStore) -> None:
    await store.accept("t1", req("one"), None, 100.0)
    [item] = await store.claim(100.0, 10, worker="alive", lease=LEASE)
    assert item.holder == "alive"
    assert not item.reclaimed
    assert await store.recover(100.0 + LEASE - 1) == 0
    assert await store.claim(100.0 + LEASE - 1, 10, worker="other", lease=LEASE) == []


async def test_an_expired_lease_is_recovered_and_claimed_again(store: SqlStore) -> None:
    m = (await store.accept("t1", req("one"), None, 100.0)).message
    await store.claim(100.0, 10, worker="dead", lease=LEASE)
    assert await store.recover(100.0 + LEASE + 1) == 1
    [again] = await store.claim(100.0 + LEASE + 1, 10, worker="survivor", lease=LEASE)
    assert (again.message.id, again.holder) == (m.id, "survivor")


async def test_every_lapsed_lease_is_counted_once_whichever_claim_sends_it_again(
    store: SqlStore,
) -> None:
    """A claim resets every lapsed lease but returns at most ``limit`` rows: the others go out
    in a later claim, unflagged. Each is counted where its lease is reset, once."""
    lapsed: list[int] = []
    store.outbox.lapsed = lapsed.append
    for recipient in ("42", "43", "44"):
        await store.accept("t1", req("one", recipient=recipient), None, 100.0)
    assert len(await store.claim(100.0, 10, worker="dead", lease=LEASE)) == 3
    later = 100.0 + LEASE + 1
    first = await store.claim(later, 1, worker="heir", lease=LEASE)
    rest = await store.claim(later, 10, worker="other", lease=LEASE)
    assert len(first) + len(rest) == 3
    assert sum(lapsed) == 3  # though the flag reached only the first claim's row
    assert sum(item.reclaimed for item in rest) == 0
    assert await store.claim(later, 10, worker="third", lease=LEASE) == []
    assert sum(lapsed) == 3


async def test_a_dead_local_processs_live_lease_is_recovered_at_start(store: SqlStore) -> None:
    """A restart on the same host takes its predecessor's rows back at once (that pid no
    longer runs), not after the lease; a running process's rows stay its own."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    host = socket.gethostname()
    dead, alive = f"{host}:{gone.stdout.strip()}:0", f"{host}:{os.getpid()}:0"
    orphan = (await store.accept("t1", req("orphan"), None, 100.0)).message
    await store.accept("t1", req("kept", recipient="43"), None, 100.5)  # due after the orphan
    [first] = await store.claim(100.5, 1, worker=dead, lease=LEASE)
    [second] = await store.claim(100.5, 1, worker=alive, lease=LEASE)
    assert (first.message.id, second.message.content.text) == (orphan.id, "kept")
    assert await store.recover(101.0) == 1  # long before the lease ends; "kept" stays held
    [again] = await store.claim(101.0, 10, worker="survivor", lease=LEASE)
    assert again.message.id == orphan.id


async def test_a_claim_takes_expired_leases_without_a_recover(store: SqlStore) -> None:
    m = (await store.accept("t1", req("one"), None, 100.0)).message
    await store.claim(100.0, 10, worker="dead", lease=LEASE)
    [again] = await store.claim(100.0 + LEASE + 1, 10, worker="survivor", lease=LEASE)
    assert again.message.id == m.id
    assert again.reclaimed  # counted as a possible duplicate
    assert again.attempts == 0


async def test_renew_extends_only_the_holders_leases(store: SqlStore) -> None:
    await store.accept("t1", req("one"), None, 100.0)
    [item] = await store.claim(100.0, 10, worker="w1", lease=LEASE)
    await store.renew([item], worker="w1", until=200.0)
    assert await store.recover(199.0) == 0
    assert await store.claim(199.0, 10, worker="w2", lease=LEASE) == []
    await store.renew([item], worker="w2", until=500.0)  # not w2's: changes nothing
    assert await store.recover(201.0) == 1


async def test_a_late_outcome_of_a_lost_lease_leaves_the_new_holder_alone(
    store: SqlStore,
) -> None:
    await store.accept("t1", req("one"), None, 100.0)
    await store.accept("t1", req("two"), None, 100.0)
    [old] = await store.claim(100.0, 10, worker="slow", lease=LEASE)
    [new] = await store.claim(100.0 + LEASE + 1, 10, worker="fast", lease=LEASE)
    assert new.message.id == old.message.id
    await store.retry(old, 100.0, "late failure", 140.0)  # the slow worker's answer, too late
    await store.dead(old, "late failure", 140.0)
    # still in flight for the new holder: nothing of the conversation is handed out
    assert await store.claim(140.0, 10, worker="third", lease=LEASE) == []
    assert (await store.get("t1", old.message.id)).status is DeliveryStatus.QUEUED
    await store.sent(new, "p1", 141.0)
    [second] = await store.claim(141.0, 10, worker="third", lease=LEASE)
    assert second.message.content.text == "two"


async def test_a_late_delivery_of_a_lost_lease_keeps_the_conversation_busy(
    store: SqlStore,
) -> None:
    await store.accept("t1", req("one"), None, 100.0)
    await store.accept("t1", req("two"), None, 100.0)
    [old] = await store.claim(100.0, 10, worker="slow", lease=LEASE)
    [new] = await store.claim(100.0 + LEASE + 1, 10, worker="fast", lease=LEASE)
    await store.sent(old, "p-old", 140.0)  # the slow worker's success, too late
    # the provider has it: sent, with the first provider id ...
    first = await store.get("t1", old.message.id)
    assert first.status is DeliveryStatus.SENT and first.provider_message_id == "p-old"
    # ... but "fast" still delivers it: nothing else of the conversation is handed out
    assert await store.claim(140.0, 10, worker="third", lease=LEASE) == []
    await store.sent(new, "p-new", 141.0)
    again = await store.get("t1", old.message.id)
    assert again.provider_message_id == "p-old"  # the first delivery's id stays
    assert [e.status for e in again.history].count(DeliveryStatus.SENT) == 1
    [second] = await store.claim(141.0, 10, worker="third", lease=LEASE)
    assert second.message.content.text == "two"


async def test_retries_taking_over_an_expired_key_together_make_one_message(
    store: SqlStore,
) -> None:
    assert await store.message_log.reserve("t1", "k", "h", 100.0) is None  # its process died
    later = 100.0 + IDEMPOTENCY_LEASE + 1
    outcomes = await asyncio.gather(
        *(store.accept("t1", req("x"), ("k", "h"), later) for _ in range(4)),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(o, IdempotencyInFlight) for o in refused), refused
    made = {o.message.id for o in outcomes if not isinstance(o, BaseException)}
    assert len(made) == 1
    assert await store.depth() == 1


async def test_a_completion_after_a_takeover_keeps_the_first_answer(store: SqlStore) -> None:
    """A first request slower than its reservation's lease is taken over; the one that
    completes first is the answer, the other fails instead of making a second message."""
    assert await store.message_log.reserve("t1", "k", "h", 100.0) is None  # slow, not dead
    later = 100.0 + IDEMPOTENCY_LEASE + 1
    taken = await store.accept("t1", req("x"), ("k", "h"), later)
    assert not taken.replayed
    with pytest.raises(IdempotencyInFlight):  # the slow first request, completing at last
        await store._commits.submit(Job("t1", req("x"), "k", 100.5, NO_ORIGIN))
    replay = await store.accept("t1", req("x"), ("k", "h"), later + 1)
    assert replay.replayed and replay.message.id == taken.message.id
    assert await store.depth() == 1


async def test_concurrent_claimers_never_hold_two_messages_of_one_conversation(
    store_url: str,
) -> None:
    """Workers of two "processes" (two stores, two connection pools) claim, deliver, retry and
    record at once; a conversation never has two messages out, and each conversation's
    deliveries are its messages in send order, each once."""
    stores = [await SqlStore.open(store_url) for _ in range(2)]
    try:
        sent_order: dict[str, list[int]] = {}
        expected: dict[str, list[int]] = {}
        for n in range(160):
            accepted = await stores[0].accept("t1", req(f"m{n}", str(n % 8)), None, 1.0)
            expected.setdefault(accepted.message.conversation_id, []).append(accepted.message.seq)
        holding: dict[str, str] = {}
        rng = random.Random(11)
        overlaps: list[str] = []

        async def worker(name: str, store: SqlStore) -> None:
            idle = 0
            while idle < 20:
                items = await store.claim(2.0, 3, worker=name, lease=LEASE)
                if not items:
                    idle += 1
                    await asyncio.sleep(0.005)
                    continue
                idle = 0
                for item in items:
                    conversation = item.message.conversation_id
                    if conversation in holding:
                        overlaps.append(f"{name} and {holding[conversation]} in {conversation}")
                    holding[conversation] = name
                await asyncio.sleep(rng.random() / 200)  # delivering
                for item in items:
                    del holding[item.message.conversation_id]
                    if rng.random() < 0.2:
                        await store.retry(item, 0.0, "try again", 2.0)
                    else:
                        sent_order.setdefault(item.message.conversation_id, []).append(
                            item.message.seq
                        )
                        await store.sent(item, "p", 2.0)

        await asyncio.gather(
            *(worker(f"w{n}", stores[n % 2]) for n in range(6)),
        )
        assert overlaps == []
        assert sent_order == expected
        assert await stores[0].depth() == 0
    finally:
        for opened in stores:
            await opened.close()


async def test_accepts_racing_deliveries_never_strand_a_conversation(store_url: str) -> None:
    """Accepts (two "processes") append to a few conversations while workers deliver their
    heads: each delivery passes the turn while an accept may be committing the next row beside
    it. Every message is delivered, in each conversation's order; nothing is left waiting
    without a head."""
    stores = [await SqlStore.open(store_url) for _ in range(2)]
    try:
        expected: dict[str, list[int]] = {}
        sent_order: dict[str, list[int]] = {}
        accepting = True

        async def producer(n: int) -> None:
            for k in range(60):
                accepted = await stores[n].accept("t1", req(f"m{n}.{k}", str(k % 3)), None, 1.0)
                expected.setdefault(accepted.message.conversation_id, []).append(
                    accepted.message.seq
                )

        async def worker(name: str, store: SqlStore) -> None:
            idle = 0
            while accepting or idle < 20:
                items = await store.claim(2.0, 5, worker=name, lease=LEASE)
                idle = 0 if items else idle + 1
                if not items:
                    await asyncio.sleep(0.005)
                for item in items:
                    sent_order.setdefault(item.message.conversation_id, []).append(item.message.seq)
                    await store.sent(item, "p", 2.0)

        workers = [asyncio.create_task(worker(f"w{n}", stores[n % 2])) for n in range(4)]
        await asyncio.gather(producer(0), producer(1))
        accepting = False
        await asyncio.gather(*workers)
        assert sent_order == expected
        assert await stores[0].depth() == 0
    finally:
        for opened in stores:
            await opened.close()


# ---- idempotent replay: the first answer -------------------------------------------------------


async def test_a_replay_returns_the_first_answer_not_the_current_state(store: SqlStore) -> None:
    first = await store.accept("t1", req("hello"), ("k1", "hash"), 100.0)
    [item] = await store.claim(101.0, 10, worker="w1", lease=LEASE)
    await store.sent(item, "p-1", 102.0)
    assert (await store.get("t1", first.message.id)).status is DeliveryStatus.SENT
    again = await store.accept("t1", req("hello"), ("k1", "hash"), 103.0)
    assert again.replayed
    assert again.message == first.message  # queued, no provider id, two events: as first sent
    assert again.message.status is DeliveryStatus.QUEUED


# ---- periodic jobs in several processes ---------------------------------------------------------


async def test_two_purgers_at_once_forget_each_old_record_once(store_url: str) -> None:
    stores = [await SqlStore.open(store_url) for _ in range(2)]
    try:
        for n in range(300):
            await stores[0].accept("t1", req(f"m{n}", str(n % 5)), (f"k{n}", "h"), 1.0)
        await stores[0].accept("t1", req("new"), ("fresh", "h"), 50.0)
        counts = await asyncio.gather(
            *(s.purge(10.0, batch=25) for s in stores), return_exceptions=True
        )
        assert not [c for c in counts if isinstance(c, BaseException)], counts
        assert sum(c[0] for c in counts if not isinstance(c, BaseException)) == 300
        again = await stores[1].accept("t1", req("new"), ("fresh", "h"), 60.0)
        assert again.replayed  # the recent key stayed
    finally:
        for opened in stores:
            await opened.close()


# ---- the webhook queue: the same leases ----------------------------------------------------------


async def queued_webhooks(store: SqlStore, count: int) -> WebhookStore:
    webhooks = WebhookStore(store)
    await webhooks.subscribe("t1", "https://example.org/hook", ("message.inbound",))
    for n in range(count):
        async with store.transaction() as conn:
            await fanout(conn, "t1", "message.inbound", {"n": n}, 100.0)
    return webhooks


async def test_webhook_leases_are_recovered_only_once_expired_and_renewed(
    store: SqlStore,
) -> None:
    webhooks = await queued_webhooks(store, 1)
    [delivery] = await webhooks.claim(100.0, 10, worker="w1", lease=LEASE)
    assert delivery.holder == "w1"
    assert await webhooks.recover(100.0 + LEASE - 1) == 0
    assert await webhooks.claim(100.0 + LEASE - 1, 10, worker="w2", lease=LEASE) == []
    await webhooks.renew([delivery], worker="w1", until=200.0)
    assert await webhooks.claim(199.0, 10, worker="w2", lease=LEASE) == []
    [taken] = await webhooks.claim(201.0, 10, worker="w2", lease=LEASE)  # w1 presumed dead
    assert (taken.id, taken.holder) == (delivery.id, "w2")
    await webhooks.retry(delivery, 500.0, "late")  # w1's late answer changes nothing
    assert await webhooks.recover(201.0 + LEASE - 1) == 0
    await webhooks.delivered(taken)
    assert await webhooks.recover(10_000.0) == 0


async def test_concurrent_webhook_claimers_never_share_a_delivery(store_url: str) -> None:
    stores = [await SqlStore.open(store_url) for _ in range(2)]
    try:
        await queued_webhooks(stores[0], 120)
        queues = [WebhookStore(s) for s in stores]
        got: list[int] = []

        async def worker(name: str, queue: WebhookStore) -> None:
            while batch := await queue.claim(200.0, 7, worker=name, lease=LEASE):
                got.extend(d.id for d in batch)
                for delivery in batch:
                    await queue.delivered(delivery)

        await asyncio.gather(*(worker(f"w{n}", queues[n % 2]) for n in range(4)))
        assert sorted(got) == sorted(set(got))
        assert len(got) == 120
    finally:
        for opened in stores:
            await opened.close()


async def test_two_processes_appending_to_the_audit_log_keep_one_chain(store_url: str) -> None:
    stores = [await SqlStore.open(store_url) for _ in range(2)]
    try:
        logs = [AuditLog(s) for s in stores]
        await asyncio.gather(
            *(logs[n % 2].append("auth_failed", "t1", None, f"attempt {n}") for n in range(40))
        )
        assert await logs[0].verify() == (40, None)
    finally:
        for opened in stores:
            await opened.close()


async def test_postgresql_a_delivery_beside_an_accept_passes_the_turn_to_its_row(
    pg_store: SqlStore,
) -> None:
    """A delivery records while an accept into the same conversation is not committed yet:
    the delivery waits for the head the accept holds, so it sees the new row when it passes
    the turn (else the row would be left with no head, never claimed)."""
    store = pg_store
    await store.accept("t1", req("one"), None, 1.0)
    [item] = await store.claim(2.0, 10, worker="w1", lease=LEASE)
    job = Job("t1", req("two"), None, 3.0, NO_ORIGIN)
    async with store.engine.connect() as accepting, accepting.begin():

        def insert(conn: sa.Connection) -> None:
            store.message_log.insert_outbound(
                conn, [job], store.message_log.threads(conn, [job], {})
            )

        await accepting.run_sync(insert)
        recording = asyncio.create_task(store.sent(item, "p-1", 4.0))

        async def blocked() -> None:  # a transaction of this database waits for a lock
            waits = sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            async with store.engine.connect() as conn:
                while not (await conn.execute(waits)).scalar():
                    await asyncio.sleep(0.01)

        waiting = asyncio.create_task(blocked())
        try:
            await asyncio.wait(
                {recording, waiting}, timeout=30, return_when=asyncio.FIRST_COMPLETED
            )
            assert waiting.done() and not recording.done(), "the delivery did not wait"
        finally:
            waiting.cancel()
    await asyncio.wait_for(recording, 30)
    claimed = await store.claim(5.0, 10, worker="w1", lease=LEASE)
    assert [i.message.content.text for i in claimed] == ["two"]


async def test_postgresql_claims_skip_what_another_transaction_holds(pg_store: SqlStore) -> None:
    """A PostgreSQL claim never waits: a head another transaction locked (another claim taking
    it) is skipped; a conversation whose turn another transaction holds (an accept, a delivery
    record) is still claimed."""
    store = pg_store
    m1 = (await store.accept("t1", req("one", "41"), None, 1.0)).message
    m2 = (await store.accept("t1", req("two", "42"), None, 1.0)).message
    async with store.engine.connect() as other, other.begin():
        await other.execute(
            sa.select(outbox.c.message_id).where(outbox.c.message_id == m2.id).with_for_update()
        )
        await other.execute(
            sa.text("SELECT id FROM conversations WHERE id = :c FOR NO KEY UPDATE"),
            {"c": m1.conversation_id},
        )
        claimed = await asyncio.wait_for(store.claim(2.0, 10, worker="w1", lease=LEASE), 10)
        assert [i.message.id for i in claimed] == [m1.id]
    claimed = await store.claim(2.0, 10, worker="w1", lease=LEASE)
    assert [i.message.id for i in claimed] == [m2.id]


async def test_each_announced_change_is_a_stored_event_published_after_its_commit(
    store: SqlStore,
) -> None:
    published: list[Event] = []
    store.announcer.live = published.extend
    first = await store.accept("t1", req("one"), None, 100.0)
    second = await store.accept("t1", req("two", recipient="43"), None, 100.0)
    other = await store.accept("t2", req("theirs"), None, 100.0)
    assert published == []  # accepting is no live event
    items = await store.claim(101.0, 10, worker="w", lease=LEASE)
    await asyncio.gather(*(store.sent(i, f"p-{i.message.id}", 102.0) for i in items))
    await store.record_receipt(
        "telegram", "bot", f"p-{first.message.id}", DeliveryStatus.READ, 103.0
    )
    inbound = SendRequest("telegram", "bot", "44", Content(text="hi"))
    await store.record_inbound("t1", inbound, "u-1", "p-in", 104.0)

    mine = await store.events_after("t1", 0, 100)
    assert [(e.type, e.data.get("status")) for e in mine] == [
        ("message.status", "sent"),
        ("message.status", "sent"),
        ("message.status", "read"),
        ("message.inbound", "delivered"),
    ]
    assert {e.data["id"] for e in mine[:2]} == {first.message.id, second.message.id}
    assert all(e.tenant == "t1" for e in mine)
    assert [e.id for e in mine] == sorted(e.id for e in mine)
    theirs = await store.events_after("t2", 0, 100)
    assert [e.data["id"] for e in theirs] == [other.message.id]
    # what the bus was given is what a replay reads: the same ids, data and order per tenant
    assert [e for e in published if e.tenant == "t1"] == mine
    assert await store.events_after("t1", mine[1].id, 100) == mine[2:]
    assert await store.events_after("t1", mine[1].id, 1) == mine[2:3]
    assert await store.events_kept() == (min(e.id for e in published), max(e.id for e in published))


async def test_a_replay_sends_an_event_whose_transaction_committed_after_a_higher_id(
    store: SqlStore,
) -> None:
    """On PostgreSQL a transaction takes its event's id when it writes it and may commit after
    another that took a higher id: a client that has that higher id and resumes from it still
    gets the late one. (SQLite writes one transaction at a time: ids commit in order.)"""
    published: list[Event] = []
    store.announcer.live = published.extend
    message = await store.get("t1", (await store.accept("t1", req("one"), None, 100.0)).message.id)
    written, commit = asyncio.Event(), asyncio.Event()

    async def late() -> None:
        async with store.transaction() as conn:
            await conn.run_sync(store.announcer.status, [message], "sent", None, 101.0)
            written.set()
            await commit.wait()

    holding = asyncio.create_task(late())
    postgres = store.db.engine.dialect.name == "postgresql"
    if postgres:  # SQLite's second writer would wait for the first
        await written.wait()
    else:
        commit.set()
        await holding
    async with store.transaction() as conn:
        await conn.run_sync(store.announcer.status, [message], "read", None, 102.0)
    commit.set()
    await holding
    late_id = next(e.id for e in published if e.data["status"] == "sent")
    seen = next(e.id for e in published if e.data["status"] == "read")
    assert (late_id < seen) is True  # ids in the order taken, whatever the commit order

    start = await store.replay_from("t1", seen)
    replayed = [e.id for e in await store.events_after("t1", start, 100)]
    assert late_id in replayed if postgres else replayed == []
    assert start == seen or postgres
    assert await store.replay_from("t1", 0) == 0


async def test_a_rolled_back_change_publishes_nothing(store: SqlStore) -> None:
    published: list[Event] = []
    store.announcer.live = published.extend
    accepted = await store.accept("t1", req("one"), None, 100.0)
    message = await store.get("t1", accepted.message.id)

    async def failing_change() -> None:
        async with store.transaction() as conn:
            await conn.run_sync(store.announcer.status, [message], "sent", None, 101.0)
            raise RuntimeError("the change fails after its event was written")

    with pytest.raises(RuntimeError):
        await failing_change()
    assert published == []
    assert await store.events_after("t1", 0, 10) == []


async def test_retention_forgets_old_events_but_the_newest(store: SqlStore) -> None:
    store.announcer.live = None
    for n in range(3):
        inbound = SendRequest("telegram", "bot", "44", Content(text=f"hi {n}"))
        await store.record_inbound("t1", inbound, f"u-{n}", f"p-{n}", 100.0 + n)
    ids = [e.id for e in await store.events_after("t1", 0, 10)]
    await store.purge(101.5)  # the first two are older
    assert [e.id for e in await store.events_after("t1", 0, 10)] == ids[2:]
    await store.purge(1000.0)  # all are older: the newest stays (a stream compares with it)
    assert await store.events_kept() == (ids[2], ids[2])


async def test_the_backlog_is_the_oldest_due_head_and_a_bounded_depth(store: SqlStore) -> None:
    assert await store.backlog(100.0, 10) == Backlog(0.0, 0)
    a1 = await store.accept("t1", req("a1", recipient="1"), None, 100.0)
    await store.accept("t1", req("a2", recipient="1"), None, 101.0)
    await store.accept("t1", req("b1", recipient="2"), None, 105.0)
    assert await store.backlog(100.0) == Backlog(0.0, 0)  # depth not asked for
    assert await store.backlog(110.0, 10) == Backlog(10.0, 3)
    assert (await store.backlog(110.0, 1)).depth == 2  # counted up to one over the bound
    [claimed] = await store.claim(110.0, 1, worker="w1", lease=LEASE)
    assert claimed.message.id == a1.message.id
    # a2 waits behind a1 in flight: not the workers' to take, so not counted as due
    assert await store.backlog(120.0, 10) == Backlog(15.0, 3)
    # a retry later: its conversation is not due until then
    await store.retry(claimed, 200.0, "provider busy", 120.0)
    [b1] = await store.claim(120.0, 1, worker="w1", lease=LEASE)
    await store.sent(b1, "p-b1", 121.0)
    assert await store.backlog(150.0, 10) == Backlog(0.0, 2)
    assert await store.backlog(230.0, 10) == Backlog(30.0, 2)
