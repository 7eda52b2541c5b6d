"""The dispatcher over the real SQLite outbox and a scripted connector: order, retries,
retry_after, dead letters, the circuit breaker."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from chat4all.adapters.storage.schema import outbox
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import Content, Conversation, DeliveryStatus, Message
from chat4all.errors import DeliveryError, PermanentDelivery, RetryableDelivery
from chat4all.metrics import HubMetrics
from chat4all.ports import OutboxItem, SendRequest
from chat4all.service_layer.dispatcher import Dispatcher, DispatchPolicy, NullDispatchEvents


@dataclass
class Scripted:
    """A connector whose next outcomes per text are scripted; records what went out."""

    channel: str = "telegram"
    script: dict[str, list[DeliveryError]] = field(default_factory=dict)
    delivered: list[str] = field(default_factory=list)
    calls: int = 0

    async def send(
        self, conversation: Conversation, message: Message, done: tuple[str, ...] = ()
    ) -> str:
        self.calls += 1
        text = message.content.text or ""
        queue = self.script.get(text, [])
        if queue:
            raise queue.pop(0)
        self.delivered.append(text)
        return f"p{len(self.delivered)}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def send(store: SqlStore, text: str, recipient: str = "42") -> Message:
    request = SendRequest("telegram", "bot", recipient, Content(text=text))
    return (await store.accept("t1", request, None, 1000.0)).message


def dispatcher(store: SqlStore, connector: Scripted, clock: Clock, **policy: float) -> Dispatcher:
    return Dispatcher(
        store,
        {"telegram": connector},
        DispatchPolicy(**policy),  # type: ignore[arg-type]
        clock=clock,
        rng=random.Random(7),
    )


async def drain(d: Dispatcher, clock: Clock, step: float = 1.0, rounds: int = 200) -> None:
    for _ in range(rounds):
        await d.round()
        clock.now += step


async def test_a_conversation_is_delivered_in_send_order_through_retries(store: SqlStore) -> None:
    connector = Scripted(
        script={"m1": [RetryableDelivery("HTTP 500"), RetryableDelivery("HTTP 502")]}
    )
    clock = Clock()
    for n in range(4):
        await send(store, f"m{n}")
    await send(store, "other", recipient="43")
    await drain(dispatcher(store, connector, clock), clock)
    mine = [t for t in connector.delivered if t.startswith("m")]
    assert mine == ["m0", "m1", "m2", "m3"]
    assert "other" in connector.delivered
    assert connector.delivered.index("other") < connector.delivered.index("m2")  # not held up


async def test_the_providers_retry_after_is_honoured(store: SqlStore) -> None:
    connector = Scripted(script={"hi": [RetryableDelivery("HTTP 429", retry_after=30)]})
    clock = Clock()
    await send(store, "hi")
    d = dispatcher(store, connector, clock)
    await d.round()
    clock.now += 29
    await d.round()
    assert connector.delivered == []
    clock.now += 2
    await d.round()
    assert connector.delivered == ["hi"]


async def test_a_permanent_error_fails_the_message_at_once(store: SqlStore) -> None:
    connector = Scripted(
        script={"hi": [PermanentDelivery("HTTP 403: bot was blocked by the user")]}
    )
    clock = Clock()
    m = await send(store, "hi")
    await drain(dispatcher(store, connector, clock), clock, rounds=5)
    failed = await store.get("t1", m.id)
    assert failed.status is DeliveryStatus.FAILED
    assert "blocked" in (failed.history[-1].detail or "")
    assert connector.calls == 1


async def test_after_max_attempts_the_message_is_dead_lettered(store: SqlStore) -> None:
    connector = Scripted(script={"hi": [RetryableDelivery("HTTP 500")] * 10})
    clock = Clock()
    m = await send(store, "hi")
    await drain(
        dispatcher(store, connector, clock, max_attempts=3, breaker_threshold=99), clock, step=400
    )
    assert connector.calls == 3
    dead = await store.get("t1", m.id)
    assert dead.status is DeliveryStatus.FAILED
    assert "gave up after 3 attempts" in (dead.history[-1].detail or "")


async def test_the_breaker_stops_calling_a_failing_account_then_probes(store: SqlStore) -> None:
    connector = Scripted(script={f"m{n}": [RetryableDelivery("HTTP 502")] for n in range(6)})
    clock = Clock()
    for n in range(6):
        await send(store, f"m{n}", recipient=str(100 + n))  # six conversations, one account
    d = dispatcher(store, connector, clock, breaker_threshold=3, breaker_cooldown=60)
    await d.round()
    assert connector.calls == 3  # the third failure in a row opened it: the rest wait
    clock.now += 30
    await d.round()
    assert connector.calls == 3  # open: nobody called
    clock.now += 31
    await drain(d, clock, step=5, rounds=40)
    assert sorted(connector.delivered) == [f"m{n}" for n in range(6)]


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    d = Dispatcher(None, {}, DispatchPolicy(base_backoff=1, max_backoff=60), rng=random.Random(1))  # type: ignore[arg-type]
    waits = [d.backoff(n, None) for n in range(10)]
    assert 0.5 <= waits[0] <= 1
    assert 4 <= waits[3] <= 8
    assert all(w <= 60 for w in waits)
    assert d.backoff(5, 12.0) == 12.0


@dataclass
class Flaky:
    """The real outbox, with scripted failures of some of its writes (a database away)."""

    store: SqlStore
    fail_sent: int = 0
    fail_claim: int = 0

    async def recover(self, now: float) -> int:
        return await self.store.recover(now)

    async def claim(self, now: float, limit: int, *, worker: str, lease: float) -> list[OutboxItem]:
        if self.fail_claim:
            self.fail_claim -= 1
            raise OSError("disk I/O error")
        return await self.store.claim(now, limit, worker=worker, lease=lease)

    async def renew(self, items: Sequence[OutboxItem], *, worker: str, until: float) -> None:
        await self.store.renew(items, worker=worker, until=until)

    async def sent(self, item: OutboxItem, provider_id: str, now: float) -> None:
        if self.fail_sent:
            self.fail_sent -= 1
            raise OSError("database is locked")
        await self.store.sent(item, provider_id, now)

    async def retry(self, item: OutboxItem, at: float, reason: str, now: float) -> None:
        await self.store.retry(item, at, reason, now)

    async def dead(self, item: OutboxItem, reason: str, now: float) -> None:
        await self.store.dead(item, reason, now)

    async def depth(self) -> int:
        return await self.store.depth()


async def test_a_failed_record_of_a_delivery_is_retried_not_sent_again(store: SqlStore) -> None:
    connector, clock = Scripted(), Clock()
    flaky = Flaky(store, fail_sent=2)
    d = Dispatcher(flaky, {"telegram": connector}, DispatchPolicy(record_backoff=0.01), clock=clock)
    message = await send(store, "once")
    await d.round()
    assert connector.delivered == ["once"]  # one provider call despite two failed records
    assert (await store.get("t1", message.id)).status is DeliveryStatus.SENT
    assert await store.depth() == 0


async def test_dispatching_goes_on_after_the_database_fails_a_round(store: SqlStore) -> None:
    connector = Scripted()
    flaky = Flaky(store, fail_claim=1)
    d = Dispatcher(flaky, {"telegram": connector}, DispatchPolicy(poll_interval=0.05))
    await send(store, "later")
    stop = asyncio.Event()
    running = asyncio.create_task(d.run(stop))
    for _ in range(300):
        if connector.delivered:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await running
    assert connector.delivered == ["later"]
    assert flaky.fail_claim == 0


async def test_an_outcome_the_store_keeps_refusing_is_recorded_in_a_later_round(
    store: SqlStore,
) -> None:
    connector, clock = Scripted(), Clock()
    flaky = Flaky(store, fail_sent=6)
    policy = DispatchPolicy(record_tries=2, record_backoff=0.0)
    metrics = HubMetrics(CollectorRegistry())
    d = Dispatcher(flaky, {"telegram": connector}, policy, events=metrics, clock=clock)
    message = await send(store, "patience")
    await d.round()  # delivered; two tries to record it fail
    assert (await store.get("t1", message.id)).status is DeliveryStatus.QUEUED
    assert metrics.registry.get_sample_value("chat4all_unrecorded_outcomes") == 1
    for _ in range(5):
        await d.round()
    assert (await store.get("t1", message.id)).status is DeliveryStatus.SENT
    assert metrics.registry.get_sample_value("chat4all_unrecorded_outcomes") == 0
    assert connector.delivered == ["patience"]  # never sent again meanwhile


@dataclass
class Gate:
    """A connector that holds each send until released."""

    channel: str = "telegram"
    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    delivered: list[str] = field(default_factory=list)

    async def send(
        self, conversation: Conversation, message: Message, done: tuple[str, ...] = ()
    ) -> str:
        self.started.set()
        await self.release.wait()
        self.delivered.append(message.content.text or "")
        return "p1"


async def test_leases_are_renewed_while_a_message_is_being_delivered(store: SqlStore) -> None:
    gate = Gate()
    message = await send(store, "slow")
    lease = 3.0  # renewed every second; a stall of seconds on a busy machine is still fine
    d = Dispatcher(store, {"telegram": gate}, DispatchPolicy(lease=lease))
    stop = asyncio.Event()
    running = asyncio.create_task(d.run(stop))

    async def lease_until() -> float:
        async with store.engine.connect() as conn:
            query = sa.select(outbox.c.lease_until).where(outbox.c.message_id == message.id)
            return float((await conn.execute(query)).scalar_one())

    try:
        await asyncio.wait_for(gate.started.wait(), 10)
        first = await lease_until()
        deadline = time.monotonic() + 30
        while (renewed := await lease_until()) <= first:  # the first renewal
            assert time.monotonic() < deadline, "the lease was never renewed"
            await asyncio.sleep(0.05)
        assert renewed > first
        assert await store.recover(time.time()) == 0
        assert await store.claim(time.time(), 10, worker="other", lease=lease) == []
        gate.release.set()
        while (await store.get("t1", message.id)).status is not DeliveryStatus.SENT:
            assert time.monotonic() < deadline, "never recorded as sent"
            await asyncio.sleep(0.02)
        assert gate.delivered == ["slow"]
    finally:
        stop.set()
        gate.release.set()
        await running


@dataclass
class Counted(NullDispatchEvents):
    recovered_counts: list[int] = field(default_factory=list)

    def recovered(self, count: int) -> None:
        self.recovered_counts.append(count)


async def test_a_dead_workers_message_is_taken_over_and_counted(store: SqlStore) -> None:
    connector, clock = Scripted(), Clock()
    await send(store, "orphan")
    await store.claim(clock.now, 10, worker="dead", lease=5.0)  # its worker then died
    events = Counted()
    d = Dispatcher(
        store, {"telegram": connector}, DispatchPolicy(lease=5.0), events=events, clock=clock
    )
    store.outbox.lapsed = d.lapsed  # as build_hub wires them: counted where a lease is reset
    assert await d.round() == 0  # a live lease: not taken
    clock.now += 6.0
    assert await d.round() == 1
    assert connector.delivered == ["orphan"]
    assert events.recovered_counts == [1]
