"""The store's side of the partitioned log, over SQLite and PostgreSQL: what the relay
publishes (due heads, once per attempt, again after the horizon under a new generation, the
same ids after a crash before marking), and claims of exactly the ids the log hands out."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from chat4all.adapters.log.memory import MemoryLog
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import Content, DeliveryStatus
from chat4all.domain.partition import partition_of
from chat4all.ports import Publishable, SendRequest

LEASE = 30.0
HORIZON = 120.0


@pytest.fixture
def store(any_store: SqlStore) -> SqlStore:
    return any_store


def req(text: str, recipient: str = "42") -> SendRequest:
    return SendRequest("telegram", "bot", recipient, Content(text=text))


async def everything(batch: list[Publishable]) -> Sequence[Publishable]:
    return batch


async def relayed(store: SqlStore, now: float) -> list[Publishable]:
    return await store.outbox.relay(now, 100, HORIZON, everything)


async def test_the_relay_publishes_each_due_head_once_per_attempt(store: SqlStore) -> None:
    a = [(await store.accept("t1", req(f"a{n}"), None, 100.0)).message for n in range(2)]
    b = (await store.accept("t1", req("b", recipient="43"), None, 100.0)).message
    first = await relayed(store, 100.0)
    assert sorted(p.message_id for p in first) == sorted([a[0].id, b.id])
    assert {p.msg_id for p in first} == {f"{a[0].id}:0:0", f"{b.id}:0:0"}
    assert not any(p.again for p in first)
    assert await relayed(store, 101.0) == []  # published: not again within the horizon

    # a retry is pending again later: published again only once due, under a new generation
    items, later = await store.claim_ids(102.0, [a[0].id, b.id], worker="w", lease=LEASE)
    assert later == {}
    head = next(i for i in items if i.message.id == a[0].id)
    await store.retry(head, 150.0, "HTTP 500", 102.0)
    assert await relayed(store, 120.0) == []  # not due; and a[1] is not a head
    [again] = await relayed(store, 150.0)
    assert again.msg_id == f"{a[0].id}:1:1"


async def test_a_row_still_unclaimed_past_the_horizon_is_published_under_a_new_generation(
    store: SqlStore,
) -> None:
    m = (await store.accept("t1", req("lost"), None, 100.0)).message
    await relayed(store, 100.0)
    assert await relayed(store, 100.0 + HORIZON - 1) == []
    [again] = await relayed(store, 100.0 + HORIZON + 1)
    assert (again.msg_id, again.again) == (f"{m.id}:0:1", True)
    assert await relayed(store, 100.0 + HORIZON + 2) == []


async def test_a_relay_that_dies_before_marking_publishes_the_same_ids_and_the_log_drops_them(
    store: SqlStore,
) -> None:
    log = MemoryLog(4)
    for n in range(3):
        await store.accept("t1", req(f"m{n}", recipient=str(n)), None, 100.0)

    async def publish_then_die(batch: list[Publishable]) -> Sequence[Publishable]:
        for p in batch:
            assert await log.publish(p.conversation_id, p.msg_id, p.message_id.encode())
        raise ConnectionError("the relay's process died here")

    with pytest.raises(ConnectionError):
        await store.outbox.relay(100.0, 100, HORIZON, publish_then_die)
    dropped: list[bool] = []

    async def publish(batch: list[Publishable]) -> Sequence[Publishable]:
        for p in batch:
            dropped.append(not await log.publish(p.conversation_id, p.msg_id, b""))
        return batch

    assert len(await store.outbox.relay(101.0, 100, HORIZON, publish)) == 3
    assert dropped == [True, True, True]
    assert await log.lag() == 3


async def test_claiming_ids_keeps_the_conversation_rule_and_says_what_to_look_at_again(
    store: SqlStore,
) -> None:
    a = [(await store.accept("t1", req(f"a{n}"), None, 100.0)).message for n in range(2)]
    [published] = await relayed(store, 100.0)
    # a[1] is not a head: settled (not claimed, nothing to look at again), left unpublished
    items, later = await store.claim_ids(100.0, [a[0].id, a[1].id], worker="w1", lease=LEASE)
    assert [i.message.id for i in items] == [a[0].id]
    assert later == {}
    # a[0] again (a second copy): in flight under w1's lease, look again when it runs out
    items, later = await store.claim_ids(110.0, [a[0].id], worker="w2", lease=LEASE)
    assert items == []
    assert later == {a[0].id: pytest.approx(20.0)}
    # its lease ran out: w2 takes it over (a possible duplicate, counted)
    [taken] = (await store.claim_ids(131.0, [a[0].id], worker="w2", lease=LEASE))[0]
    assert taken.reclaimed
    await store.sent(taken, "p1", 132.0)
    # sent: its row is gone, a copy of it settles
    assert await store.claim_ids(133.0, [a[0].id], worker="w2", lease=LEASE) == ([], {})
    [nxt] = await relayed(store, 133.0)
    assert nxt.message_id == a[1].id
    assert partition_of(nxt.conversation_id, 16) == partition_of(published.conversation_id, 16)


async def test_a_head_handed_out_for_the_last_time_is_dead_lettered(store: SqlStore) -> None:
    m = (await store.accept("t1", req("poison"), None, 100.0)).message
    [item] = (await store.claim_ids(100.0, [m.id], worker="w1", lease=LEASE))[0]
    # w1 crashed on it: while its lease runs it is not a head; then it is, and dies
    assert await store.dead_heads([m.id], "handed out 5 times", 110.0) == []
    assert [d.id for d in await store.dead_heads([m.id], "handed out 5 times", 131.0)] == [m.id]
    failed = await store.get("t1", m.id)
    assert failed.status is DeliveryStatus.FAILED
    page = await store.dead_letters("t1", None, 10)
    assert [(msg.id, why) for msg, why in page.items] == [(m.id, "handed out 5 times")]
    assert item.attempts == 0


async def test_relays_running_at_once_publish_different_rows(postgres_url: str) -> None:
    store = await SqlStore.open(postgres_url)
    try:
        for n in range(40):
            await store.accept("t1", req(f"m{n}", recipient=str(n)), None, 100.0)
        inside = asyncio.Event()
        both = asyncio.Event()

        async def slow(batch: list[Publishable]) -> Sequence[Publishable]:
            if inside.is_set():
                both.set()
            inside.set()
            await asyncio.wait_for(both.wait(), 10)  # both relays hold their rows at once
            return batch

        first, second = await asyncio.gather(
            store.outbox.relay(100.0, 25, HORIZON, slow),
            store.outbox.relay(100.0, 25, HORIZON, slow),
        )
        assert sorted([len(first), len(second)]) == [15, 25]
        assert not {p.message_id for p in first} & {p.message_id for p in second}
        assert await relayed(store, 101.0) == []
    finally:
        await store.close()
