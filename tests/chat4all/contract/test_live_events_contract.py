"""The contract of :class:`~chat4all.service_layer.events.LiveEvents`, run over the in-process
bus and the Redis one (two buses on one Redis: two API processes): a tenant's events reach all
of its subscribers, in order, and no other tenant's; a slow subscriber is dropped with one
``overflow``. Then Redis alone: a bus that lost Redis reconnects by itself, and a stream fills
what it missed meanwhile from the store."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from chat4all.adapters.redis_events import RedisEventBus
from chat4all.service_layer.events import (
    GAP,
    OVERFLOW,
    QUEUE,
    Event,
    EventBus,
    LiveEvents,
    Subscription,
    follow,
)
from tests.chat4all.live import Log, take
from tests.services import Redis

Pair = tuple[LiveEvents, LiveEvents]


async def ready(bus: LiveEvents) -> None:
    """The bus listens (Redis: its subscription is confirmed)."""
    if isinstance(bus, RedisEventBus):
        probe = bus.subscribe("-")  # starts it
        await asyncio.wait_for(bus.subscribed.wait(), 10)
        await probe.aclose()


@contextlib.asynccontextmanager
async def redis_bus(url: str, channel: str, ping: float = 5.0) -> AsyncIterator[RedisEventBus]:
    bus = RedisEventBus(url, channel=channel, retry=0.05, ping=ping)
    try:
        await ready(bus)
        yield bus
    finally:
        await bus.close()


@pytest.fixture(params=["memory", "redis"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    """The bus as two processes see it: one in-process bus (the same on both sides), or two
    Redis buses on one channel of their own."""
    if request.param == "memory":
        bus = EventBus()
        yield bus, bus
        return
    url: str = request.getfixturevalue("redis_url")
    channel = f"test:{uuid.uuid4().hex}:events"
    async with redis_bus(url, channel) as a, redis_bus(url, channel) as b:
        yield a, b


def event(n: int, tenant: str = "t1") -> Event:
    return Event(n, tenant, "message.status", {"n": n}, float(n))


async def next_event(subscription: Subscription) -> Event:
    """The next event a client would see (a ``gap`` is the stream's business)."""
    while True:
        got = await asyncio.wait_for(anext(subscription), 10)
        if got.type != GAP:
            return got


async def test_a_tenants_subscribers_get_its_events_in_order_and_no_others(pair: Pair) -> None:
    a, b = pair
    mine, also_mine, theirs = a.subscribe("t1"), b.subscribe("t1"), a.subscribe("t2")
    assert (b.subscribers("t1"), a.subscribers("t2"), a.subscribers("t3")) == (1 + (a is b), 1, 0)
    for n in range(1, 6):
        a.publish(event(n))
    a.publish(event(6, "t3"))  # nobody listens: nothing happens
    a.publish(event(7, "t2"))  # after t1's: had they reached t2's subscriber, they came first
    for subscription in (mine, also_mine):
        assert [(await next_event(subscription)) for _ in range(5)] == [
            event(n) for n in range(1, 6)
        ]
    assert await next_event(theirs) == event(7, "t2")
    for subscription in (mine, also_mine, theirs):
        await subscription.aclose()
    assert (a.subscribers("t1"), a.subscribers("t2")) == (0, 0)
    assert b.subscribers("t1") == 0


async def test_each_process_sees_the_others_events(pair: Pair) -> None:
    a, b = pair
    on_a, on_b = a.subscribe("t1"), b.subscribe("t1")
    b.publish(event(1))
    a.publish(event(2))
    assert {(await next_event(on_a)).id, (await next_event(on_a)).id} == {1, 2}
    assert {(await next_event(on_b)).id, (await next_event(on_b)).id} == {1, 2}
    await on_a.aclose()
    await on_b.aclose()


async def test_a_slow_subscriber_is_dropped_with_one_overflow_event(pair: Pair) -> None:
    a, b = pair
    stream = a.subscribe("t")
    b.publish(event(1, "t"))
    assert (await next_event(stream)).id == 1
    for n in range(2, QUEUE + 3):  # the subscriber reads nothing meanwhile
        b.publish(event(n, "t"))
    deadline = time.monotonic() + 10
    while a.subscribers("t"):  # dropped as soon as its queue is full: the hub never waits
        assert time.monotonic() < deadline, "the slow subscriber was not dropped"
        await asyncio.sleep(0.01)
    rest = [e async for e in stream]
    assert [(e.type, e.data) for e in rest] == [(OVERFLOW, {"dropped_from": QUEUE + 2})]


# ---- Redis comes and goes -----------------------------------------------------------------------


async def test_a_stream_misses_nothing_while_redis_restarts() -> None:
    log = Log()
    with Redis("unused://").server() as server:  # this test's own: it is stopped
        async with redis_bus(server.url, "c:events") as a, redis_bus(server.url, "c:events") as b:
            stream = follow(a, log, "t", None)
            pending = asyncio.ensure_future(anext(stream))
            while not a.subscribers("t"):
                await asyncio.sleep(0.01)
            [first] = log.add(b, "t")
            assert await asyncio.wait_for(pending, 10) == first
            gaps = a.gaps
            await asyncio.to_thread(server.kill)
            while a.subscribed.is_set():  # the bus noticed
                await asyncio.sleep(0.01)
            during = log.add(b, "t", 2)  # stored; their publication waits for Redis
            lost = log.add(None, "t", 2)  # stored by a process killed before it published
            await asyncio.to_thread(server.start)
            got = await take(stream, 4)  # by the replay after the gap, or live: once each
            assert sorted(e.id for e in got) == [e.id for e in during + lost]
            assert a.gaps > gaps  # it resubscribed by itself, and said so
            [after] = log.add(b, "t")
            assert await take(stream, 1) == [after]
            await stream.aclose()


async def test_a_frozen_redis_is_noticed_and_the_stream_catches_up() -> None:
    log = Log()
    with Redis("unused://").server() as server:  # this test's own: it is frozen
        async with (
            redis_bus(server.url, "f:events", ping=0.1) as a,
            redis_bus(server.url, "f:events", ping=0.1) as b,
        ):
            stream = follow(a, log, "t", None)
            pending = asyncio.ensure_future(anext(stream))
            while not a.subscribers("t"):
                await asyncio.sleep(0.01)
            [first] = log.add(b, "t")
            assert await asyncio.wait_for(pending, 10) == first
            server.freeze()  # no error, no closed socket: only silence
            try:
                deadline = time.monotonic() + 10
                while a.subscribed.is_set():  # its pings go unanswered
                    assert time.monotonic() < deadline, "a frozen Redis went unnoticed"
                    await asyncio.sleep(0.01)
                lost = log.add(None, "t", 2)  # stored meanwhile, never published
            finally:
                server.thaw()
            assert await take(stream, 2) == lost
            [after] = log.add(b, "t")
            assert await take(stream, 1) == [after]
            await stream.aclose()
