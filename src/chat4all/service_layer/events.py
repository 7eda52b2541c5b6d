"""Live events of a tenant, for SSE (REST) and server streaming (gRPC), resumable from the store.

Every event a client can watch (``message.status``, ``message.inbound``) is stored (the
``live_events`` table) in the transaction that makes its change; its row's id is the event's id
on every process and across restarts. Once the transaction committed,
:class:`~chat4all.service_layer.status.StatusPublisher` hands the stored events to
:class:`LiveEvents`, the port that fans them out to the streams listening now:
:class:`EventBus` within one process, or
:class:`~chat4all.adapters.redis_events.RedisEventBus` across every API process.

A stream is :func:`follow`: it subscribes first, then replays from the store what the client
missed (the events after the id it names: SSE ``Last-Event-ID``, gRPC ``resume_token``), then
goes live, skipping what the replay already gave (no gap and no duplicate at the seam). When the
bus may have lost events (Redis came back) the stream replays again from the last id it sent.
On PostgreSQL ids are taken before their transactions commit, so a lower id may commit after a
higher one a client already has: a replay there starts at the events stored up to ``SETTLE``
seconds (:mod:`chat4all.adapters.storage.sql`) before the id it resumes from
(:meth:`EventLog.replay_from`). A stream skips what it sent itself; a client that reconnects
may get events it has (same ids) and drops them, as it drops a webhook delivered twice.
An id older than the store keeps (retention) gets a ``reset`` event: re-read through the list
endpoints. Each subscriber has a bounded queue; one that falls behind by more than ``QUEUE``
events gets an ``overflow`` event and the stream ends (reconnecting with the last id replays
the rest), so a slow client never holds the hub up.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

__all__ = [
    "Event",
    "EventBus",
    "EventLog",
    "LiveEvents",
    "LiveStreams",
    "Subscription",
    "follow",
    "GAP",
    "OVERFLOW",
    "QUEUE",
    "RESET",
]

log = logging.getLogger(__name__)

QUEUE: Final = 1000
"""Events a subscriber may fall behind by before it is dropped."""
REPLAY_BATCH: Final = 500
"""Stored events read per query while a stream replays."""
REMEMBERED: Final = 4096
"""Ids a stream remembers having sent, to skip a live event the replay gave already."""

OVERFLOW: Final = "overflow"
"""The subscriber fell behind and is dropped (the stream's last event)."""
RESET: Final = "reset"
"""The id a stream resumes from is older than the stored events: some are gone."""
GAP: Final = "gap"
"""From a bus to its subscribers (never to clients): events may have been lost (its connection
came back); :func:`follow` replays from the store."""


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    """The stored event's id: ordered, the same on every process."""
    tenant: str
    type: str
    """``message.status`` or ``message.inbound`` (or ``overflow``, ``reset``)."""
    data: dict[str, Any]
    at: float


class Subscription:
    """A tenant's events as they are published, from the moment it was made (not from its
    first read); ends after an ``overflow`` event. :meth:`aclose` (or the end) unsubscribes."""

    def __init__(self, tenant: str, forget: Callable[[Subscription], None]) -> None:
        self.tenant = tenant
        self.queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE)
        self._forget = forget
        self._ended = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self._ended:
            raise StopAsyncIteration
        event = await self.queue.get()
        if event.type == OVERFLOW:
            await self.aclose()
        return event

    async def aclose(self) -> None:
        self._ended = True
        self._forget(self)


class LiveEvents(Protocol):
    """The port: publish a stored event to whoever listens now; listen to a tenant's."""

    def publish(self, event: Event) -> None: ...

    def subscribe(self, tenant: str) -> Subscription:
        """The tenant's events from now on (``gap`` included)."""
        ...

    def subscribers(self, tenant: str) -> int:
        """This process's subscribers of ``tenant``."""
        ...


class EventLog(Protocol):
    """Where the stored events are read back (the store)."""

    async def events_after(self, tenant: str, after: int, limit: int) -> list[Event]:
        """``tenant``'s stored events with an id above ``after``, in id order, up to ``limit``."""
        ...

    async def events_kept(self) -> tuple[int, int]:
        """``(first, last)``: the oldest and newest stored event ids (``(0, 0)``: none)."""
        ...

    async def replay_from(self, tenant: str, after: int) -> int:
        """Where a replay after the id ``after`` starts so that it misses nothing: ``after``
        itself where ids are given in commit order; lower where a transaction may commit after
        one that took a higher id (the events in between are sent again)."""
        ...


@dataclass
class EventBus:
    """The in-process adapter of :class:`LiveEvents`; also the local fan-out of the Redis one."""

    _subscribers: dict[str, set[Subscription]] = field(default_factory=dict)

    def publish(self, event: Event) -> None:
        for subscription in list(self._subscribers.get(event.tenant, ())):
            self._put(subscription, event)

    def gap(self) -> None:
        """Tell every subscriber events may have been lost (they replay from the store)."""
        for subscriptions in list(self._subscribers.values()):
            for subscription in list(subscriptions):
                self._put(subscription, Event(0, subscription.tenant, GAP, {}, 0.0))

    def subscribe(self, tenant: str) -> Subscription:
        subscription = Subscription(tenant, self._forget)
        self._subscribers.setdefault(tenant, set()).add(subscription)
        return subscription

    def subscribers(self, tenant: str) -> int:
        return len(self._subscribers.get(tenant, ()))

    def tenants(self) -> set[str]:
        """The tenants someone here listens to."""
        return set(self._subscribers)

    def _put(self, subscription: Subscription, event: Event) -> None:
        try:
            subscription.queue.put_nowait(event)
        except asyncio.QueueFull:
            # Too slow: drop its backlog and tell it once; the stream then ends.
            self._forget(subscription)
            queue = subscription.queue
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(
                Event(event.id, event.tenant, OVERFLOW, {"dropped_from": event.id}, event.at)
            )

    def _forget(self, subscription: Subscription) -> None:
        mine = self._subscribers.get(subscription.tenant)
        if mine is not None:
            mine.discard(subscription)
            if not mine:
                del self._subscribers[subscription.tenant]


@dataclass(frozen=True, slots=True)
class LiveStreams:
    """The use case of the SSE and gRPC streams: :func:`follow` on this hub's bus and store."""

    bus: LiveEvents
    store: EventLog

    def follow(self, tenant: str, after: int | None) -> AsyncIterator[Event]:
        return follow(self.bus, self.store, tenant, after)


async def follow(
    bus: LiveEvents, store: EventLog, tenant: str, after: int | None
) -> AsyncIterator[Event]:
    """``tenant``'s events after the id ``after`` (``None``: from now on): those stored, then
    live ones, each once. Ends after an ``overflow`` event, whose id is the last one sent (the
    one to resume from)."""
    subscription = bus.subscribe(tenant)  # before the replay: nothing falls between the two
    sent: collections.deque[int] = collections.deque(maxlen=REMEMBERED)
    remembered: set[int] = set()
    try:
        first, newest = await store.events_kept()
        if after is None:
            last, replay = newest, False
        elif after + 1 < first:
            # what followed ``after`` was purged: say so, and carry on from the newest
            yield Event(newest, tenant, RESET, {"after": after, "oldest": first}, 0.0)
            last, replay = newest, False
        else:
            last, replay = after, True
        while True:
            if replay:
                replay = False
                cursor = await store.replay_from(tenant, last)
                while True:
                    batch = await store.events_after(tenant, cursor, REPLAY_BATCH)
                    for event in batch:
                        if event.id not in remembered:
                            _remember(sent, remembered, event.id)
                            yield event
                        cursor = event.id
                        last = max(last, event.id)
                    if len(batch) < REPLAY_BATCH:
                        break
            event = await anext(subscription)
            if event.type == GAP:
                log.info("events of %s may have been missed: replaying after %d", tenant, last)
                replay = True
            elif event.type == OVERFLOW:
                yield Event(last, tenant, OVERFLOW, event.data, event.at)
                return
            elif event.id not in remembered:
                _remember(sent, remembered, event.id)
                last = max(last, event.id)
                yield event
    finally:
        await subscription.aclose()


def _remember(sent: collections.deque[int], remembered: set[int], event_id: int) -> None:
    if len(sent) == sent.maxlen:
        remembered.discard(sent[0])
    sent.append(event_id)
    remembered.add(event_id)
