"""The in-process event bus: a tenant's subscribers get its events in order, and only its; a
subscriber that leaves is forgotten at once."""

from __future__ import annotations

import asyncio

from chat4all.service_layer.events import EventBus


async def test_subscribers_get_their_tenants_events_in_order_and_no_others() -> None:
    bus = EventBus()
    mine, also_mine, theirs = bus.subscribe("t1"), bus.subscribe("t1"), bus.subscribe("t2")
    first = [asyncio.ensure_future(anext(s)) for s in (mine, also_mine, theirs)]
    await asyncio.sleep(0)  # each is subscribed once it waits for its first event
    assert (bus.subscribers("t1"), bus.subscribers("t2"), bus.subscribers("t3")) == (2, 1, 0)

    bus.publish("t1", "message.status", {"n": 1})
    bus.publish("t1", "message.inbound", {"n": 2})
    bus.publish("t3", "message.status", {"n": 3})  # nobody listens: nothing happens

    one, two = await first[0], await anext(mine)
    assert [(e.type, e.data, e.tenant) for e in (one, two)] == [
        ("message.status", {"n": 1}, "t1"),
        ("message.inbound", {"n": 2}, "t1"),
    ]
    assert one.id < two.id
    assert one.at <= two.at
    assert (await first[1]) == one  # every subscriber of the tenant gets the same event
    assert not first[2].done()  # t2 heard nothing of t1's

    bus.publish("t2", "message.status", {"n": 4})
    assert (await first[2]).data == {"n": 4}
    await also_mine.aclose()
    await theirs.aclose()
    assert (bus.subscribers("t1"), bus.subscribers("t2")) == (1, 0)
    await mine.aclose()
