"""The workers' side of the log (:class:`LogQueue`, :class:`Relay`) on the in-memory log and
SQLite, on a fake clock: claims through the log, acks after the outcome, a wait scheduled and
not held, and a message the workers keep crashing on dead-lettered after the last delivery."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from chat4all.adapters.log.memory import MemoryLog
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import Content, DeliveryStatus, Message
from chat4all.domain.partition import partition_of
from chat4all.ports import SendRequest
from chat4all.service_layer.events import Event
from chat4all.service_layer.log_dispatch import LogQueue, PartitionOwner
from chat4all.service_layer.relay import Relay
from chat4all.service_layer.status import StatusPublisher
from chat4all.service_layer.wakeup import LocalWakeup

LEASE = 30.0
ACK_WAIT = 10.0
MAX_DELIVER = 3


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


class Bus:
    """The live bus, recording what is published."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def publish(self, event: Event) -> None:
        self.events.append((event.tenant, event.type, event.data))


@dataclass
class AllPartitions:
    """Leases of a worker alone: it holds every partition (but ``lost``)."""

    lost: set[int] = field(default_factory=set)

    async def rebalance(self, worker: str, now: float, lease: float, partitions: int) -> list[int]:
        return [p for p in range(partitions) if p not in self.lost]

    async def release(self, worker: str) -> None:
        pass


@dataclass
class Rig:
    store: SqlStore
    clock: Clock = field(default_factory=Clock)
    wakes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log = MemoryLog(2, ack_wait=ACK_WAIT, max_deliver=MAX_DELIVER, clock=self.clock)
        self.relay = Relay(
            self.store.outbox,
            self.log,
            LocalWakeup(),
            lambda: self.wakes.append("workers"),
            horizon=120.0,
            clock=self.clock,
        )
        self.bus = Bus()
        self.store.announcer.live = StatusPublisher(self.bus).committed  # type: ignore[arg-type]

    async def queue(self, worker: str) -> LogQueue:
        owner = PartitionOwner(AllPartitions(), 2, lease=1e9, worker=worker, clock=self.clock)
        await owner.rebalance()
        return LogQueue(
            self.store,
            self.log,
            owner,
            lambda: self.wakes.append("relay"),
            clock=self.clock,
        )

    async def accept(self, text: str, recipient: str = "42") -> Message:
        request = SendRequest("telegram", "bot", recipient, Content(text=text))
        return (await self.store.accept("t1", request, None, self.clock.now)).message


async def claim(queue: LogQueue, rig: Rig, worker: str) -> list[str]:
    items = await queue.claim(rig.clock.now, 64, worker=worker, lease=LEASE)
    return [i.message.content.text or "" for i in items]


async def test_claims_follow_the_log_and_an_entry_is_acked_once_its_outcome_is_recorded(
    store: SqlStore,
) -> None:
    rig = Rig(store)
    queue = await rig.queue("w1")
    await rig.accept("a0")
    await rig.accept("a1")
    await rig.accept("b0", recipient="43")
    assert await queue.claim(rig.clock.now, 64, worker="w1", lease=LEASE) == []  # unpublished
    assert await rig.relay.round() == 2 and rig.wakes == ["workers"]
    items = await queue.claim(rig.clock.now, 64, worker="w1", lease=LEASE)
    assert sorted(i.message.content.text or "" for i in items) == ["a0", "b0"]
    assert await rig.log.lag() == 2  # held until the outcomes are recorded
    for item in items:
        await queue.sent(item, "p", rig.clock.now)
    assert await rig.log.lag() == 0
    # a1 was claimed with a0's delivery: nothing for the relay to publish, no wake-up
    assert rig.wakes.count("relay") == 0
    assert await rig.relay.round() == 0
    assert await claim(queue, rig, "w1") == ["a1"]
    assert await claim(queue, rig, "w1") == []  # handed out once


async def test_a_message_claimed_with_a_delivery_keeps_its_lease_until_handed_out(
    store: SqlStore,
) -> None:
    """The dispatcher renews what it holds; the queue renews what waits for the next round
    with it, so a long round (a hung provider) does not let another worker take it."""
    rig = Rig(store)
    await rig.accept("a0")
    await rig.accept("a1")
    await rig.relay.round()
    queue = await rig.queue("w1")
    [item] = await queue.claim(rig.clock.now, 64, worker="w1", lease=LEASE)
    await queue.sent(item, "p", rig.clock.now)  # a1 waits for the next round
    rig.clock.now += LEASE - 1
    await queue.renew([], worker="w1", until=rig.clock.now + LEASE)
    rig.clock.now += LEASE - 1  # past the first lease, within the renewed one
    # any claim in the store would take a row whose lease ran out
    assert await store.claim(rig.clock.now, 64, worker="w2", lease=LEASE) == []
    assert await claim(queue, rig, "w1") == ["a1"]


async def test_a_conversation_on_a_partition_not_owned_goes_back_through_the_log(
    store: SqlStore,
) -> None:
    """A worker that lost a conversation's partition records its delivery alone: the next
    message is published by the relay, for the partition's owner."""
    rig = Rig(store)
    first = await rig.accept("a0")
    await rig.accept("a1")
    assert await rig.relay.round() == 1
    queue = await rig.queue("w1")
    [item] = await queue.claim(rig.clock.now, 64, worker="w1", lease=LEASE)
    leases = queue.owner.leases
    assert isinstance(leases, AllPartitions)
    leases.lost.add(partition_of(first.conversation_id, 2))  # a rebalance took it
    await queue.owner.rebalance()
    await queue.sent(item, "p", rig.clock.now)
    assert rig.wakes.count("relay") == 1
    assert await rig.relay.round() == 1  # a1, for whoever owns its partition
    assert await claim(queue, rig, "w1") == []


async def test_a_stopping_worker_hands_back_what_it_claimed_with_a_delivery(
    store: SqlStore,
) -> None:
    rig = Rig(store)
    await rig.accept("a0")
    second = await rig.accept("a1")
    await rig.relay.round()
    queue = await rig.queue("w1")
    stop = asyncio.Event()

    async def dispatcher(stop: asyncio.Event) -> None:  # one round, then stopped
        [item] = await queue.claim(rig.clock.now, 64, worker="w1", lease=LEASE)
        await queue.sent(item, "p", rig.clock.now)
        stop.set()

    await queue.serving(dispatcher)(stop)
    assert (await store.get("t1", second.id)).status is DeliveryStatus.QUEUED
    assert await rig.relay.round() == 1  # pending again at once, not after its lease
    other = await rig.queue("w2")
    assert await claim(other, rig, "w2") == ["a1"]


async def test_a_retry_is_scheduled_not_held_and_published_again_once_due(
    store: SqlStore,
) -> None:
    rig = Rig(store)
    queue = await rig.queue("w1")
    await rig.accept("slow")
    await rig.relay.round()
    [item] = await queue.claim(rig.clock.now, 64, worker="w1", lease=LEASE)
    await queue.retry(item, rig.clock.now + 60, "HTTP 429", rig.clock.now)
    assert await rig.log.lag() == 0  # nothing waits in the log
    assert await rig.relay.round() == 0
    rig.clock.now += 61
    assert await rig.relay.round() == 1
    [again] = await queue.claim(rig.clock.now, 64, worker="w1", lease=LEASE)
    assert again.attempts == 1


async def test_a_message_the_workers_crash_on_is_dead_lettered_after_the_last_delivery(
    store: SqlStore,
) -> None:
    rig = Rig(store)
    poison = await rig.accept("poison")
    await rig.relay.round()
    for n in range(MAX_DELIVER - 1):  # each worker takes it and dies without an outcome
        worker = f"w{n}"
        assert await claim(await rig.queue(worker), rig, worker) == ["poison"]
        rig.clock.now += LEASE + 1  # its lease and the ack wait run out
    last = await rig.queue("w-last")
    assert await claim(last, rig, "w-last") == []
    failed = await store.get("t1", poison.id)
    assert failed.status is DeliveryStatus.FAILED
    [(message, reason)] = (await store.dead_letters("t1", None, 10)).items
    assert message.id == poison.id
    assert "handed out 3 times by the log without an outcome" in reason
    assert await rig.log.lag() == 0  # termed
    assert [(t, kind, e["status"]) for t, kind, e in rig.bus.events] == [
        ("t1", "message.status", "failed")
    ]


async def test_a_copy_of_a_row_in_flight_elsewhere_is_handed_back_until_that_lease_ends(
    store: SqlStore,
) -> None:
    rig = Rig(store)
    await rig.accept("once")
    await rig.relay.round()
    first = await rig.queue("w1")
    [item] = await first.claim(rig.clock.now, 64, worker="w1", lease=LEASE)
    rig.clock.now += ACK_WAIT + 1  # w1 is slow, and did not renew: the log hands it out again
    second = await rig.queue("w2")
    assert await claim(second, rig, "w2") == []  # w1's lease still runs: handed back
    await first.sent(item, "p", rig.clock.now)
    rig.clock.now += LEASE
    assert await claim(second, rig, "w2") == []  # sent meanwhile: settled
    assert await rig.log.lag() == 0


async def test_its_own_entry_handed_out_again_stays_held_and_is_acked_with_the_outcome(
    store: SqlStore,
) -> None:
    rig = Rig(store)
    await rig.accept("slow")
    await rig.relay.round()
    queue = await rig.queue("w1")
    [item] = await queue.claim(rig.clock.now, 64, worker="w1", lease=LEASE)
    rig.clock.now += ACK_WAIT + 1  # no renewal came in time: the log hands it out again
    assert await claim(queue, rig, "w1") == []
    assert await rig.log.lag() == 1  # still held, not acked as a copy
    await queue.sent(item, "p", rig.clock.now)
    assert await rig.log.lag() == 0


async def test_the_relay_looks_for_lost_rows_every_quarter_of_its_horizon(
    store: SqlStore,
) -> None:
    rig = Rig(store)  # horizon 120 s: looks every 30 s
    await rig.accept("lost")
    assert await rig.relay.round() == 1  # published at 1000 (and looked: nothing lost)
    rig.clock.now = 1120.0
    assert await rig.relay.round() == 0  # looked: not lost yet
    rig.clock.now = 1125.0
    assert await rig.relay.round() == 0  # lost now, but the last look was 5 s ago
    rig.clock.now = 1150.0
    assert await rig.relay.round() == 1  # looked again: published again
