"""Helpers of the live event tests: an event log in memory, reading a stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from chat4all.service_layer.events import Event, LiveEvents


@dataclass
class Log:
    """The store's side of the stream: events as committed, some of them purged."""

    events: list[Event] = field(default_factory=list)
    first: int = 1
    reads: int = 0
    before_read: asyncio.Event | None = None
    """When set, a replay waits for it (so a test can publish while the replay runs)."""

    def add(self, bus: LiveEvents | None, tenant: str, n: int = 1) -> list[Event]:
        made = []
        for _ in range(n):
            event = Event(self.first + len(self.events), tenant, "message.status", {"n": 0}, 1.0)
            self.events.append(event)
            made.append(event)
            if bus is not None:
                bus.publish(event)
        return made

    async def events_after(self, tenant: str, after: int, limit: int) -> list[Event]:
        self.reads += 1
        if self.before_read is not None:
            await self.before_read.wait()
        return [e for e in self.events if e.tenant == tenant and e.id > after][:limit]

    async def events_kept(self) -> tuple[int, int]:
        return (self.first, self.events[-1].id) if self.events else (0, 0)

    async def replay_from(self, tenant: str, after: int) -> int:
        return after  # ids in commit order, as on SQLite


async def take(stream: AsyncIterator[Event], n: int) -> list[Event]:
    return [await asyncio.wait_for(anext(stream), 5) for _ in range(n)]
