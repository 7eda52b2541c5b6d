"""A stream (``follow``): the stored events after an id, then live ones, none twice and none
missed at the seam; a purged id is said; a gap on the bus is filled from the store."""

from __future__ import annotations

import asyncio

from chat4all.service_layer.events import GAP, OVERFLOW, QUEUE, RESET, EventBus, follow
from tests.chat4all.live import Log, take


async def test_from_now_on_without_an_id() -> None:
    bus, log = EventBus(), Log()
    log.add(None, "t", 3)
    stream = follow(bus, log, "t", None)
    pending = asyncio.ensure_future(anext(stream))
    while not bus.subscribers("t"):
        await asyncio.sleep(0)
    [event] = log.add(bus, "t")
    assert (await asyncio.wait_for(pending, 5)) == event
    assert log.reads == 0  # nothing replayed
    await stream.aclose()
    assert bus.subscribers("t") == 0


async def test_resume_replays_what_was_missed_then_goes_live_with_no_duplicate() -> None:
    bus, log = EventBus(), Log()
    seen = log.add(None, "t", 2)
    log.add(None, "other", 2)  # another tenant's: never replayed here
    missed = log.add(None, "t", 3)
    log.before_read = asyncio.Event()
    stream = follow(bus, log, "t", seen[-1].id)
    pending = asyncio.ensure_future(anext(stream))
    while not bus.subscribers("t"):
        await asyncio.sleep(0)
    # committed while the replay reads: in the replay AND published live (the seam)
    during = log.add(bus, "t", 2)
    log.before_read.set()
    got = [await asyncio.wait_for(pending, 5), *await take(stream, 4)]
    assert [e.id for e in got] == [e.id for e in missed + during]
    after = log.add(bus, "t")
    assert await take(stream, 1) == after  # the live one, once: the seam gave nothing twice
    await stream.aclose()


async def test_an_id_of_another_tenant_replays_only_ones_own() -> None:
    bus, log = EventBus(), Log()
    theirs = log.add(None, "other", 1)
    mine = log.add(None, "t", 2)
    log.add(None, "other", 2)
    stream = follow(bus, log, "t", theirs[0].id)
    assert await take(stream, 2) == mine
    await stream.aclose()


async def test_a_purged_id_gets_a_reset_then_live_events() -> None:
    bus, log = EventBus(), Log(first=100)
    log.add(None, "t", 3)  # 100..102 kept; 1..99 purged
    stream = follow(bus, log, "t", 40)
    [reset] = await take(stream, 1)
    assert (reset.type, reset.id, reset.data) == (RESET, 102, {"after": 40, "oldest": 100})
    [live] = log.add(bus, "t")
    assert await take(stream, 1) == [live]
    await stream.aclose()


async def test_a_gap_on_the_bus_is_filled_from_the_store() -> None:
    bus, log = EventBus(), Log()
    stream = follow(bus, log, "t", None)
    pending = asyncio.ensure_future(anext(stream))
    while not bus.subscribers("t"):
        await asyncio.sleep(0)
    [first] = log.add(bus, "t")
    assert await asyncio.wait_for(pending, 5) == first
    lost = log.add(None, "t", 2)  # committed while the bus was away: never published
    bus.gap()
    [again] = log.add(bus, "t")
    assert await take(stream, 3) == [*lost, again]
    await stream.aclose()


async def test_a_slow_stream_ends_with_overflow_naming_the_last_id_sent() -> None:
    bus, log = EventBus(), Log()
    stream = follow(bus, log, "t", None)
    pending = asyncio.ensure_future(anext(stream))
    while not bus.subscribers("t"):
        await asyncio.sleep(0)
    [first] = log.add(bus, "t")
    assert await asyncio.wait_for(pending, 5) == first
    log.add(bus, "t", QUEUE + 1)  # the stream reads nothing meanwhile
    assert bus.subscribers("t") == 0  # dropped at once
    rest = [e async for e in stream]
    assert [(e.type, e.id) for e in rest] == [(OVERFLOW, first.id)]
    assert GAP not in {e.type for e in rest}
