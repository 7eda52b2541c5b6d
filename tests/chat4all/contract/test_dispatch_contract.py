"""The dispatch contract: the :class:`~chat4all.ports.Outbox` port as the
:class:`~chat4all.service_layer.dispatcher.Dispatcher` uses it (recover, claim, renew, sent,
retry, dead, depth), run over each way a deployment dispatches:

- ``sqlite``: :class:`SqlStore` on SQLite (the embedded default: one process, its workers
  share the store);
- ``postgresql``: :class:`SqlStore` on PostgreSQL, each worker with a store of its own (as
  each worker process has), the lease-based dispatch of a deployment without NATS;
- ``memory-log``: :class:`LogQueue` fed by the :class:`Relay` over :class:`MemoryLog`, on
  PostgreSQL (NATS needs PostgreSQL: SQLite with a log is refused at start);
- ``jetstream``: the same over :class:`JetStreamLog` on the real NATS server, a stream of the
  test's own, each worker with a log client of its own.

Each log variant has one partition, so every conversation shares it: a conversation that waits
must not hold up another. Before each claim a log variant runs relay rounds until nothing is
left to publish and rebalances the worker's :class:`PartitionOwner` (leases in PostgreSQL), as
the relay and the worker's owner do in their own loops. The clock is a fake one (leases, retry
times, partition leases; the in-memory log's ack wait too); JetStream's ack wait runs on the
server's real clock, so a log variant claims again until what a test waits for has come (or
fails after :data:`PATIENCE` seconds), never after a fixed sleep.

A Kafka adapter joins with its module and one parameter: ``kafka`` in :func:`variant`'s
parameters, whose case in :func:`rig` gives each worker a client of it (a
:class:`~chat4all.ports.MessageLog`) as the ``jetstream`` case does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import nats
import pytest

from chat4all.adapters.log.jetstream import JetStreamLog
from chat4all.adapters.log.memory import MemoryLog
from chat4all.adapters.storage.partitions import SqlPartitionLeases
from chat4all.adapters.storage.sql import SqlStore, sqlite_url
from chat4all.domain.model import Content, DeliveryStatus, Message
from chat4all.ports import LogEntry, MessageLog, Outbox, OutboxItem, SendRequest
from chat4all.service_layer.log_dispatch import LogQueue, PartitionOwner
from chat4all.service_layer.relay import Relay
from chat4all.service_layer.wakeup import LocalWakeup
from tests.chat4all.log.conftest import stream_name

pytestmark = [pytest.mark.timeout(120)]

TENANT: Final = "t1"
LEASE: Final = 30.0
"""The workers' message lease (fake seconds)."""
PARTITION_LEASE: Final = 10.0
"""The workers' partition lease (fake seconds): shorter than :data:`LEASE`, so a worker
presumed dead has lost its partitions too by the time its messages are taken over."""
HORIZON: Final = 3600.0
"""The relay's republish horizon (fake seconds; the in-memory log's duplicate window too): no
test moves the clock that far."""
WINDOW: Final = 120.0
"""JetStream's duplicate window (the server's real seconds)."""
MEMORY_ACK_WAIT: Final = 10.0
"""The in-memory log's ack wait (fake seconds)."""
JETSTREAM_ACK_WAIT: Final = 1.0
"""JetStream's ack wait (the server's real seconds)."""
MAX_DELIVER: Final = 10
PATIENCE: Final = 20.0
"""Real seconds a log variant claims again for what a test expects."""


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


class Offers:
    """A worker's :class:`~chat4all.ports.MessageLog`, counting how often it was handed each
    message's entry (so a test can wait until a worker has been offered one, and see what the
    worker made of it)."""

    def __init__(self, log: MessageLog) -> None:
        self.partitions = log.partitions
        self.max_deliver = log.max_deliver
        self.seen: Counter[str] = Counter()
        self._log = log

    async def publish(self, key: str, msg_id: str, payload: bytes) -> bool:
        return await self._log.publish(key, msg_id, payload)

    async def fetch(self, partition: int, limit: int, wait: float = 0.0) -> list[LogEntry]:
        got = await self._log.fetch(partition, limit, wait)
        self.seen.update(e.payload.decode() for e in got)
        return got

    async def ack(self, entry: LogEntry) -> None:
        await self._log.ack(entry)

    async def nak(self, entry: LogEntry, delay: float) -> None:
        await self._log.nak(entry, delay)

    async def term(self, entry: LogEntry) -> None:
        await self._log.term(entry)

    async def progress(self, entry: LogEntry) -> None:
        await self._log.progress(entry)

    async def lag(self) -> int:
        return await self._log.lag()


@dataclass
class Worker:
    name: str
    outbox: Outbox
    """What this worker's dispatcher is given."""
    owner: PartitionOwner | None = None
    offers: Offers | None = None
    store: SqlStore | None = None
    """The store its claims go to (where a lapsed lease it resets is counted)."""


@dataclass
class Rig:
    """One way of dispatching, behind the uniform calls the contract needs."""

    store: SqlStore
    """The store the API accepts into (and where a test reads the outcome)."""
    worker_store: Callable[[], Awaitable[SqlStore]]
    """A store for a new worker (the same one on SQLite)."""
    worker_log: Callable[[], Awaitable[MessageLog]] | None = None
    """A log client for a new worker; ``None``: the outbox alone, without a log."""
    relay: Relay | None = None
    leases: Callable[[str], SqlPartitionLeases] | None = None
    """A worker's partition leases, by the name of the log they are kept under."""
    stream: str = ""
    clock: Clock = field(default_factory=Clock)
    workers: dict[str, Worker] = field(default_factory=dict)
    _sent: int = 0

    async def accept(self, text: str, conversation: str) -> Message:
        """A message to ``conversation`` (its recipient), accepted at the clock's now."""
        request = SendRequest("telegram", "bot", conversation, Content(text=text))
        return (await self.store.accept(TENANT, request, None, self.clock.now)).message

    async def worker(self, name: str, *, every_partition: bool = False) -> Worker:
        """The worker ``name`` (made on first use). ``every_partition``: on a log, its
        partition leases are its own, so it fetches every partition whoever else does (as a
        worker whose lease was lost to a pause does until its next rebalance): the outbox
        alone keeps two workers apart."""
        found = self.workers.get(name)
        if found is not None:
            return found
        store = await self.worker_store()
        if self.worker_log is None or self.leases is None:
            made = Worker(name, store, store=store)
        else:
            offers = Offers(await self.worker_log())
            leases = self.leases(f"{self.stream}-{name}" if every_partition else self.stream)
            owner = PartitionOwner(leases, 1, PARTITION_LEASE, name, self.clock)
            queue = LogQueue(store, offers, owner, lambda: None)
            made = Worker(name, queue, owner, offers, store)
        self.workers[name] = made
        return made

    def outbox(self, name: str) -> Outbox:
        """The outbox of the worker ``name`` (made by :meth:`worker` or a claim before)."""
        return self.workers[name].outbox

    async def claim(
        self,
        name: str,
        expect: int = 0,
        *,
        offered: str | None = None,
        limit: int = 64,
        lease: float = LEASE,
    ) -> list[OutboxItem]:
        """What ``name`` claims at the clock's now: one claim, then more (a log variant's
        entries come when the log hands them out) until ``expect`` items came in all and, on a
        log, the worker has been handed the entry of the message ``offered`` during this call
        (outside a log every claim looks at every row); what came, after :data:`PATIENCE`
        seconds at most."""
        worker = await self.worker(name)
        offers = worker.offers
        before = offers.seen[offered] if offers is not None and offered is not None else 0
        got: list[OutboxItem] = []
        deadline = time.monotonic() + PATIENCE
        while True:
            got += await self._claim_once(worker, limit, lease)
            seen = offers is None or offered is None or offers.seen[offered] > before
            if (len(got) >= expect and seen) or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.02)  # the log's next hand-out: a poll, not a wait for it

    async def _claim_once(self, worker: Worker, limit: int, lease: float) -> list[OutboxItem]:
        if self.relay is not None:
            while await self.relay.round() >= self.relay.batch:
                pass
        if worker.owner is not None:
            await worker.owner.rebalance()
        return await worker.outbox.claim(self.clock.now, limit, worker=worker.name, lease=lease)

    async def sent(self, name: str, item: OutboxItem) -> None:
        self._sent += 1
        await self.outbox(name).sent(item, f"provider-{self._sent}", self.clock.now)


def ids(items: Iterable[OutboxItem]) -> list[str]:
    return [i.message.id for i in items]


def texts(items: Iterable[OutboxItem]) -> list[str]:
    return sorted(i.message.content.text or "" for i in items)


@dataclass(frozen=True)
class Variant:
    kind: str
    database: str
    nats: str = ""


@pytest.fixture(params=["sqlite", "postgresql", "memory-log", "jetstream"])
def variant(request: pytest.FixtureRequest, tmp_path: Path) -> Variant:
    """Which way of dispatching, and the servers it needs."""
    if request.param == "sqlite":
        return Variant("sqlite", sqlite_url(tmp_path / "chat4all.db"))
    database: str = request.getfixturevalue("postgres_url")
    nats_url: str = request.getfixturevalue("nats_url") if request.param == "jetstream" else ""
    return Variant(request.param, database, nats_url)


@pytest.fixture
async def rig(variant: Variant) -> AsyncIterator[Rig]:
    """The contract runs over each way of dispatching (see the module's documentation)."""
    async with contextlib.AsyncExitStack() as stack:
        url = variant.database
        if variant.kind == "sqlite":
            store = await SqlStore.open(url)
            stack.push_async_callback(store.close)

            async def same() -> SqlStore:
                return store

            yield Rig(store, same)
            return
        store = await SqlStore.open(url)
        stack.push_async_callback(store.close)

        async def own() -> SqlStore:
            opened = await SqlStore.open(url)
            stack.push_async_callback(opened.close)
            return opened

        if variant.kind == "postgresql":
            yield Rig(store, own)
            return
        clock = Clock()
        stream = stream_name()
        worker_log: Callable[[], Awaitable[MessageLog]]
        if variant.kind == "memory-log":
            shared = MemoryLog(
                1,
                duplicate_window=HORIZON,
                ack_wait=MEMORY_ACK_WAIT,
                max_deliver=MAX_DELIVER,
                clock=clock,
            )

            async def memory() -> MessageLog:
                return shared  # the log is a server: every worker's client reaches the same

            publisher: MessageLog = shared
            worker_log = memory
        else:
            assert variant.kind == "jetstream"
            nc = await nats.connect(variant.nats)
            stack.push_async_callback(nc.close)

            async def drop() -> None:
                with contextlib.suppress(Exception):
                    await nc.jetstream().delete_stream(stream)

            stack.push_async_callback(drop)

            async def jetstream() -> MessageLog:
                client = JetStreamLog(
                    nc,
                    stream,
                    1,
                    duplicate_window=WINDOW,
                    ack_wait=JETSTREAM_ACK_WAIT,
                    max_deliver=MAX_DELIVER,
                )
                await client.ensure()
                stack.push_async_callback(client.close)
                return client

            publisher = await jetstream()
            worker_log = jetstream
        relay = Relay(store.outbox, publisher, LocalWakeup(), lambda: None, HORIZON, clock=clock)
        yield Rig(
            store,
            own,
            worker_log,
            relay,
            lambda name: SqlPartitionLeases(store.db, name),
            stream,
            clock,
        )


async def test_accepted_messages_are_claimed_one_head_per_conversation_in_send_order(
    rig: Rig,
) -> None:
    a = [await rig.accept(f"a{n}", "alice") for n in range(3)]
    b = [await rig.accept(f"b{n}", "bob") for n in range(2)]
    first = await rig.claim("w", 2)
    assert texts(first) == ["a0", "b0"]  # the heads, one per conversation
    assert all(i.holder == "w" and i.attempts == 0 and not i.reclaimed for i in first)
    assert {i.conversation.id for i in first} == {a[0].conversation_id, b[0].conversation_id}
    heads = {i.message.content.text: i for i in first}
    await rig.sent("w", heads["a0"])
    assert ids(await rig.claim("w", 1)) == [a[1].id]  # alice's next; bob's head is in flight
    assert await rig.claim("w") == []  # both conversations have one in flight
    await rig.sent("w", heads["b0"])
    assert ids(await rig.claim("w", 1)) == [b[1].id]
    assert await rig.store.depth() == 3  # a1 and b1 in flight, a2 pending


async def test_a_message_in_flight_is_handed_to_nobody_else_and_its_next_waits_for_it(
    rig: Rig,
) -> None:
    a = [await rig.accept(f"a{n}", "alice") for n in range(2)]
    [head] = await rig.claim("w", 1)
    assert head.message.id == a[0].id
    rig.clock.now += MEMORY_ACK_WAIT + 1  # within the lease; past the in-memory log's ack wait
    # on a log: the entry is handed out again (its ack wait ran out), and not claimed
    assert await rig.claim("other", 0, offered=a[0].id) == []
    await rig.sent("w", head)
    [nxt] = await rig.claim("other", 1)
    assert (nxt.message.id, nxt.holder) == (a[1].id, "other")
    assert nxt.message.seq > head.message.seq


async def test_two_workers_claiming_at_once_never_share_a_message_or_a_conversation(
    rig: Rig,
) -> None:
    conversations, each = 6, 3
    sent_order: dict[str, list[str]] = {}
    for c in range(conversations):
        for n in range(each):
            m = await rig.accept(f"c{c}-{n}", f"c{c}")
            sent_order.setdefault(m.conversation_id, []).append(m.id)
    workers = [await rig.worker(w, every_partition=True) for w in ("w1", "w2")]
    claimed: dict[str, list[str]] = {c: [] for c in sent_order}
    by_worker = {w.name: 0 for w in workers}
    deadline = time.monotonic() + PATIENCE * 2
    while sum(map(len, claimed.values())) < conversations * each:
        assert time.monotonic() < deadline, f"claimed only {claimed}"
        rig.clock.now += 1  # a head one claim left to the other's is handed out again then
        rounds = await asyncio.gather(*(rig.claim(w.name, limit=2) for w in workers))
        ones = [i.message.id for items in rounds for i in items]
        assert len(ones) == len(set(ones)), f"one message claimed twice: {rounds}"
        busy = [i.conversation.id for items in rounds for i in items]
        assert len(busy) == len(set(busy)), f"two of one conversation in flight: {rounds}"
        for worker, items in zip(workers, rounds, strict=True):
            by_worker[worker.name] += len(items)
            for item in items:
                claimed[item.conversation.id].append(item.message.id)
        for worker, items in zip(workers, rounds, strict=True):
            for item in items:
                await rig.sent(worker.name, item)
    assert claimed == sent_order  # each conversation in send order, each message once
    assert all(by_worker.values()), f"a worker never claimed anything: {by_worker}"
    assert await rig.store.depth() == 0


async def test_a_retry_waits_for_its_time_without_holding_up_another_conversation(
    rig: Rig,
) -> None:
    x = [await rig.accept(f"x{n}", "slow") for n in range(2)]
    [head] = await rig.claim("w", 1)
    assert head.message.id == x[0].id
    await rig.outbox("w").retry(head, rig.clock.now + 60, "HTTP 429", rig.clock.now)
    y = await rig.accept("y0", "fast")
    meanwhile = await rig.claim("w", 1)
    assert ids(meanwhile) == [y.id]  # the other conversation goes on; x0 waits, x1 behind it
    await rig.sent("w", meanwhile[0])
    rig.clock.now += 59
    assert await rig.claim("w") == []  # not before its time
    rig.clock.now += 2
    [again] = await rig.claim("w", 1)
    assert (again.message.id, again.attempts) == (x[0].id, 1)
    await rig.sent("w", again)
    assert ids(await rig.claim("w", 1)) == [x[1].id]


async def test_a_lapsed_lease_is_taken_over_and_flagged_and_a_renewed_one_is_never_taken(
    rig: Rig,
) -> None:
    lapsed = await rig.accept("lapsed", "alice")
    renewed = await rig.accept("renewed", "bob")
    held = await rig.claim("dies", 2)
    assert texts(held) == ["lapsed", "renewed"]
    start = rig.clock.now
    rig.clock.now = start + LEASE * 2 / 3  # the worker renews what it still delivers
    alive = [i for i in held if i.message.id == renewed.id]
    await rig.outbox("dies").renew(alive, worker="dies", until=rig.clock.now + LEASE)
    rig.clock.now = start + LEASE + 1  # "lapsed" ran out unrenewed: its worker presumed dead
    heir = await rig.worker("heir")
    assert heir.store is not None
    counted: list[int] = []
    heir.store.outbox.lapsed = counted.append
    taken = await rig.claim("heir", 1, offered=renewed.id)
    shown = [(i.message.content.text, i.holder, i.reclaimed) for i in taken]
    assert ids(taken) == [lapsed.id], shown  # "renewed" was looked at, left to its live worker
    [item] = taken
    assert item.holder == "heir" and item.attempts == 0, shown
    # counted once where its lease was reset (on a log the claim that reset it may not be the
    # one the log handed the entry to: the item's own flag is then not set)
    assert sum(counted) == 1, (counted, shown)
    assert await rig.outbox("heir").recover(rig.clock.now) == 0  # the renewed lease stays
    await rig.sent("heir", item)
    assert (await rig.store.get(TENANT, lapsed.id)).status is DeliveryStatus.SENT
    assert await rig.store.depth() == 1


async def test_recover_returns_only_the_lapsed_leases_and_they_are_claimable_again(
    rig: Rig,
) -> None:
    m = await rig.accept("m", "alice")
    [item] = await rig.claim("dies", 1)
    await rig.worker("heir")
    assert await rig.outbox("heir").recover(rig.clock.now + LEASE - 1) == 0  # still live
    rig.clock.now += LEASE + 1
    assert await rig.outbox("heir").recover(rig.clock.now) == 1
    [again] = await rig.claim("heir", 1)
    assert (again.message.id, again.holder) == (m.id, "heir")
    assert item.holder == "dies"


async def test_a_dead_letter_leaves_the_queue_and_shows_in_the_dead_letters(
    rig: Rig,
) -> None:
    doomed = await rig.accept("doomed", "alice")
    after = await rig.accept("after", "alice")
    [head] = await rig.claim("w", 1)
    assert head.message.id == doomed.id
    await rig.outbox("w").dead(head, "HTTP 400: chat not found", rig.clock.now)
    assert await rig.store.depth() == 1
    page = await rig.store.dead_letters(TENANT, None, 10)
    assert [(m.id, why) for m, why in page.items] == [(doomed.id, "HTTP 400: chat not found")]
    assert (await rig.store.get(TENANT, doomed.id)).status is DeliveryStatus.FAILED
    [nxt] = await rig.claim("w", 1)  # the conversation goes on without it
    assert nxt.message.id == after.id
    await rig.sent("w", nxt)
    assert await rig.claim("w") == []
    assert await rig.store.depth() == 0


async def test_depth_counts_what_waits_pending_or_in_flight(rig: Rig) -> None:
    async def depth() -> int:
        return await rig.outbox("w").depth()

    await rig.worker("w")
    assert await depth() == 0
    await rig.accept("a0", "alice")
    await rig.accept("a1", "alice")
    await rig.accept("b0", "bob")
    assert await depth() == 3
    heads = {i.message.content.text or "": i for i in await rig.claim("w", 2)}
    assert sorted(heads) == ["a0", "b0"]
    assert await depth() == 3  # in flight still waits
    await rig.sent("w", heads["a0"])
    assert await depth() == 2
    await rig.outbox("w").retry(heads["b0"], rig.clock.now + 60, "HTTP 500", rig.clock.now)
    assert await depth() == 2
    [a1] = await rig.claim("w", 1)
    await rig.outbox("w").dead(a1, "HTTP 403", rig.clock.now)
    assert await depth() == 1
    rig.clock.now += 61
    [b0] = await rig.claim("w", 1)
    await rig.sent("w", b0)
    assert await depth() == 0
